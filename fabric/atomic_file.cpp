#include "fabric/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>

#include "core/error.h"

namespace kiln {
namespace {

std::string os_error() { return std::strerror(errno); }

struct WriteFault {
  std::mutex mu;
  bool active = false;
  std::string path_part;
  uint64_t after_bytes = 0;
  int error = 0;
};
WriteFault& write_fault() {
  static WriteFault* f = new WriteFault;
  return *f;
}

// The errno a write of n more bytes (after `written`) to `path` fails with under the test seam.
int injected_error(const std::string& path, uint64_t written, size_t n) {
  WriteFault& f = write_fault();
  std::lock_guard<std::mutex> g(f.mu);
  if (!f.active || path.find(f.path_part) == std::string::npos) return 0;
  return written + n > f.after_bytes ? f.error : 0;
}

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
  KILN_CHECK(fd_ >= 0, "write ", path_, ": cannot create temporary file ", tmp_path_, ": ", os_error());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t nbytes) {
  KILN_CHECK(fd_ >= 0 && !committed_, "write ", path_, ": file already committed or closed");
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    if (int err = injected_error(path_, written_, nbytes)) {
      fail(detail::write_error_message("write", tmp_path_, path_, err));
    }
    ssize_t n = ::write(fd_, p, nbytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(detail::write_error_message("write", tmp_path_, path_, n < 0 ? errno : ENOSPC));
    p += n;
    nbytes -= size_t(n);
    written_ += uint64_t(n);
  }
}

void AtomicFile::commit() {
  KILN_CHECK(fd_ >= 0 && !committed_, "write ", path_, ": file already committed or closed");
  if (::fsync(fd_) != 0) fail(detail::write_error_message("fsync", tmp_path_, path_, errno));
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail(detail::write_error_message("close", tmp_path_, path_, errno));
  KILN_CHECK(::rename(tmp_path_.c_str(), path_.c_str()) == 0, "rename ", tmp_path_, " -> ", path_, ": ", os_error());
  committed_ = true;
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  fsync_dir(dir.empty() ? "." : dir.string());
}

namespace detail {

void set_write_fault(const std::string& path_part, uint64_t after_bytes, int error) {
  WriteFault& f = write_fault();
  std::lock_guard<std::mutex> g(f.mu);
  f.active = true;
  f.path_part = path_part;
  f.after_bytes = after_bytes;
  f.error = error;
}

void clear_write_fault() {
  WriteFault& f = write_fault();
  std::lock_guard<std::mutex> g(f.mu);
  f.active = false;
}

std::string write_error_message(const std::string& op, const std::string& tmp, const std::string& path, int error) {
  std::error_code ec;
  const std::string kept =
      std::filesystem::exists(path, ec) ? "the previous " + path + " is left as it was" : path + " was not written";
  if (error == ENOSPC || error == EDQUOT)
    return concat(op, " ", tmp, ": no space left on the device (", std::strerror(error), "); ", kept,
                  ". Free some space or save elsewhere");
  return concat(op, " ", tmp, ": ", std::strerror(error), "; ", kept);
}

}  // namespace detail

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace kiln
