#include "core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "core/error.h"

namespace kiln::detail {

std::string file_type_name(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO (named pipe)";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    case S_IFREG: return "a regular file";
    default: return "not a regular file";
  }
}

std::string bytes_str(uint64_t n) {
  char buf[64];
  if (n >= (uint64_t(1) << 30))
    std::snprintf(buf, sizeof buf, " (%.1f GiB)", double(n) / double(1 << 30));
  else if (n >= (uint64_t(1) << 20))
    std::snprintf(buf, sizeof buf, " (%.1f MiB)", double(n) / double(1 << 20));
  else
    buf[0] = '\0';
  return std::to_string(n) + " bytes" + buf;
}

RegularFile RegularFile::open(const std::string& path, const std::string& what) {
  KILN_CHECK(!path.empty(), what, ": the path is empty; pass the path of a file");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) fail(what, ": ", path, " does not exist");
    if (err == ENOTDIR) fail(what, ": ", path, " does not exist (a part of its path is a file, not a folder)");
    if (err == EISDIR) fail(what, ": ", path, " is a directory, not a file; pass the path of a file");
    fail(what, ": cannot open ", path, ": ", std::strerror(err), err == EACCES ? " (check its permissions)" : "");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(what, ": cannot stat ", path, ": ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(what, ": ", path, " is ", file_type_name(st.st_mode), ", not a regular file; pass the path of a file");
  }
  // Regular files never block; clear the flag so reads behave as usual.
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return RegularFile(fd, uint64_t(st.st_size), path, what);
}

RegularFile::RegularFile(RegularFile&& o) noexcept
    : fd_(o.fd_), size_(o.size_), path_(std::move(o.path_)), what_(std::move(o.what_)) {
  o.fd_ = -1;
}

RegularFile& RegularFile::operator=(RegularFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    size_ = o.size_;
    path_ = std::move(o.path_);
    what_ = std::move(o.what_);
    o.fd_ = -1;
  }
  return *this;
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

int RegularFile::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

size_t RegularFile::read(void* dst, size_t n) {
  KILN_CHECK(fd_ >= 0, what_, ": ", path_, " is closed");
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd_, static_cast<char*>(dst) + got, std::min<size_t>(n - got, size_t(1) << 30));
    if (r < 0 && errno == EINTR) continue;
    KILN_CHECK(r >= 0, what_, ": reading ", path_, " failed: ", std::strerror(errno));
    if (r == 0) break;
    got += size_t(r);
  }
  return got;
}

std::string RegularFile::read_all(uint64_t max_bytes) {
  KILN_CHECK(size_ <= max_bytes, what_, ": ", path_, " is ", bytes_str(size_), ", more than the ", bytes_str(max_bytes),
             " kiln reads for it; the path names the wrong file");
  std::string bytes;
  try {
    bytes.resize(size_t(size_));
  } catch (const std::bad_alloc&) {
    fail(what_, ": cannot allocate ", bytes_str(size_), " to read ", path_, " (out of memory)");
  }
  size_t got = read(bytes.data(), bytes.size());
  bytes.resize(got);  // a file that shrank since fstat: the parser reports it truncated
  return bytes;
}

}  // namespace kiln::detail
