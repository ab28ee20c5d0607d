// Internal to data/: reading a regular file through zlib (plain files pass through unchanged),
// knowing the most its data can inflate to, so that a size a file declares (an IDX header, a
// tar member) is checked against the bytes present before anything is allocated. Not installed.
#pragma once

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/file.h"

namespace kiln::data::detail {

// Deflate expands at most 1032:1 (258-byte matches coded in two bits), so no valid gzip file
// inflates past this multiple of its size; a plain file passes through at 1:1.
constexpr uint64_t kMaxInflateRatio = 1032;

// Reads a regular file through zlib, which passes plain files through unchanged. Knows the most
// the data can inflate to, so sizes a file declares can be checked before anything is allocated.
class GzReader {
 public:
  GzReader(const std::string& path, const std::string& what) : path_(path) {
    auto file = kiln::detail::RegularFile::open(path, what);
    compressed_ = file.size();
    int fd = file.release();
    file_ = gzdopen(fd, "rb");
    if (!file_) {
      ::close(fd);
      fail(what, ": cannot read ", path, ": out of memory in zlib");
    }
    gzbuffer(file_, 1 << 18);
    direct_ = gzdirect(file_) == 1;
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader() { gzclose(file_); }
  uint64_t compressed_size() const { return compressed_; }
  uint64_t max_output() const {
    if (direct_) return compressed_;
    return compressed_ > (UINT64_MAX - 4096) / kMaxInflateRatio ? UINT64_MAX : compressed_ * kMaxInflateRatio + 4096;
  }
  uint64_t position() const { return total_; }
  bool direct() const { return direct_; }
  // Fills up to n bytes; fewer only at the end of the data. Corrupt or truncated gzip throws.
  size_t read(void* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      unsigned chunk = unsigned(std::min<size_t>(n - got, 1u << 30));
      int r = gzread(file_, static_cast<char*>(dst) + got, chunk);
      int err = Z_OK;
      const char* msg = gzerror(file_, &err);
      KILN_CHECK(r >= 0 && (err == Z_OK || err == Z_STREAM_END), path_, ": corrupt or truncated gzip data (",
                 msg ? msg : "zlib error", "); delete the file and fetch it again");
      if (r == 0) break;
      got += size_t(r);
    }
    total_ += got;
    return got;
  }
  // Reads on towards the end of the data (at most `cap` bytes) and returns how many were left.
  uint64_t skip_rest(uint64_t cap) {
    char buf[1 << 16];
    uint64_t n = 0;
    while (n < cap)
      if (size_t got = read(buf, sizeof buf))
        n += got;
      else
        break;
    return n;
  }

 private:
  std::string path_;
  gzFile file_;
  uint64_t compressed_ = 0, total_ = 0;
  bool direct_ = false;  // not gzip: the file passes through as it is
};

}  // namespace kiln::data::detail
