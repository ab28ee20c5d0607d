#include "fabric/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"

namespace kiln {
namespace {

std::string os_error() { return std::strerror(errno); }

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // some filesystems refuse; the rename itself already happened
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(path_).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  KILN_CHECK(fs::is_directory(dir, ec), "write ", path_, ": folder ", dir.string(),
             " does not exist; create it first (std::filesystem::create_directories)");
  std::random_device rd;
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd() % 1000000);
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  KILN_CHECK(fd_ >= 0, "write ", path_, ": cannot create temporary file ", tmp_path_, ": ",
             os_error());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t nbytes) {
  KILN_CHECK(fd_ >= 0 && !committed_, "write ", path_, ": file already committed or closed");
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    ssize_t n = ::write(fd_, p, nbytes);
    if (n < 0 && errno == EINTR) continue;
    KILN_CHECK(n > 0, "write ", tmp_path_, ": ", os_error(), " (disk full? the previous ", path_,
               " is left as it was)");
    p += n;
    nbytes -= size_t(n);
  }
}

void AtomicFile::commit() {
  KILN_CHECK(fd_ >= 0 && !committed_, "write ", path_, ": file already committed or closed");
  KILN_CHECK(::fsync(fd_) == 0, "fsync ", tmp_path_, ": ", os_error());
  int rc = ::close(fd_);
  fd_ = -1;
  KILN_CHECK(rc == 0, "close ", tmp_path_, ": ", os_error());
  KILN_CHECK(::rename(tmp_path_.c_str(), path_.c_str()) == 0, "rename ", tmp_path_, " -> ", path_,
             ": ", os_error());
  committed_ = true;
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  fsync_dir(dir.empty() ? "." : dir.string());
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace kiln
