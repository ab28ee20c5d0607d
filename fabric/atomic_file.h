// Files that appear whole or not at all: data goes to a temporary file in the destination's
// folder, is fsynced, and is renamed over the final name (then the folder is fsynced), so a crash
// or kill mid-write leaves the previous file intact. Used for checkpoints and rewritten logs.
//   kiln::AtomicFile f("ckpt.safetensors");
//   f.write(header.data(), header.size());
//   f.commit();   // without commit(), the destructor removes the temporary file
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temporary file unless commit() succeeded; never throws
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t nbytes);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // fsync, rename over the final path, fsync the folder.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
  uint64_t written_ = 0;
};

// The whole of `contents` written atomically to `path`.
void write_file_atomic(const std::string& path, const std::string& contents);

namespace detail {
// A test seam for failures that a test machine cannot always make real (a full disk): while set,
// an AtomicFile whose final path contains `path_part` fails its writes with errno `error` once
// `after_bytes` bytes are written, as the system call would. clear_write_fault() ends it.
void set_write_fault(const std::string& path_part, uint64_t after_bytes, int error);
void clear_write_fault();
// The message for a failed write, fsync or close of `tmp` on its way to `path`: ENOSPC and
// EDQUOT say "no space" and that the previous file is intact.
std::string write_error_message(const std::string& op, const std::string& tmp, const std::string& path, int error);
}  // namespace detail

}  // namespace kiln
