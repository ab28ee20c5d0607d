// Opening files that users name (checkpoints, datasets, archives): only regular files are read.
// The file is opened without blocking and checked with fstat before any read, so a directory, a
// FIFO that nobody writes, a socket or a device such as /dev/zero is refused at once instead of
// blocking or reading forever; and a size is checked against a limit before it is allocated.
//   auto f = kiln::detail::RegularFile::open(path, "load_safetensors");
//   std::string bytes = f.read_all(kiln::detail::kMaxCheckpointBytes);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln::detail {

class RegularFile {
 public:
  // `what` starts every message ("load_safetensors", "read_idx"). Throws a kiln::Error when the
  // path is missing, unreadable or not a regular file (naming what it is instead).
  static RegularFile open(const std::string& path, const std::string& what);
  RegularFile(RegularFile&& o) noexcept;
  RegularFile& operator=(RegularFile&& o) noexcept;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile();

  uint64_t size() const { return size_; }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // Up to n bytes; fewer only at the end of the file.
  size_t read(void* dst, size_t n);
  // The whole file, refused (before allocating) when it is larger than max_bytes.
  std::string read_all(uint64_t max_bytes);
  // Gives up the descriptor (for zlib's gzdopen, which then owns it).
  int release();

 private:
  RegularFile(int fd, uint64_t size, std::string path, std::string what)
      : fd_(fd), size_(size), path_(std::move(path)), what_(std::move(what)) {}
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string path_, what_;
};

// "a directory", "a FIFO", "a character device", ... for a st_mode.
std::string file_type_name(unsigned mode);

// A byte count for messages: "8589934592 bytes (8.0 GiB)".
std::string bytes_str(uint64_t n);

}  // namespace kiln::detail
