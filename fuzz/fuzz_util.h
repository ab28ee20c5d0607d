// Shared by the libFuzzer harnesses: the bytes under test as a file (in memory, through memfd, so
// the readers run their real open/fstat/read path), and the rule every harness checks: a reader
// either succeeds or throws kiln::Error. Any other exception escapes the harness and libFuzzer
// reports it as a crash, with the input that caused it.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace kiln::fuzz {

// The bytes as a regular file, closed (and gone) when this goes out of scope.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("kiln-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += size_t(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

template <class F>
void expect_success_or_error(F&& f) {
  try {
    f();
  } catch (const kiln::Error&) {}
}

}  // namespace kiln::fuzz
