// Files that appear whole or not at all: data goes to a temporary file in the destination's
// folder, is fsynced, and is renamed over the final name (then the folder is fsynced), so a crash
// or kill mid-write leaves the previous file intact. Used for checkpoints and rewritten logs.
//   kiln::AtomicFile f("ckpt.safetensors");
//   f.write(header.data(), header.size());
//   f.commit();   // without commit(), the destructor removes the temporary file
#pragma once

#include <cstddef>
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
};

// The whole of `contents` written atomically to `path`.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace kiln
