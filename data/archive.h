// Files behind the dataset readers: MD5 integrity checks, .tar.gz extraction (zlib plus a small
// ustar reader), downloads through an external curl or wget, and reading possibly gzipped files.
//   if (!kiln::data::check_integrity("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")) ...
//   kiln::data::extract_tar_gz("cifar-10-binary.tar.gz", "data/");
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kiln::data {

// MD5 digests as 32 lowercase hex digits.
std::string md5(std::span<const uint8_t> bytes);
std::string md5_file(const std::string& path);
// True when `path` exists and its MD5 is `expected_md5` (case-insensitive).
bool check_integrity(const std::string& path, const std::string& expected_md5);

// Extracts the regular files and directories of a gzipped (or plain) tar archive below `to_dir`
// and returns the paths written. Members with absolute paths or ".." are refused; links and
// special files are skipped.
// A member may not declare more than the archive can hold (deflate inflates at most 1032:1), and
// no more than max_bytes are written in all.
std::vector<std::string> extract_tar_gz(const std::string& archive, const std::string& to_dir,
                                        uint64_t max_bytes = uint64_t(64) << 30);

// Downloads `url` to `path` with curl or wget, through `path`.part, renamed only once complete:
// an interrupted download never replaces an existing file. Throws with `hint` appended when
// neither tool exists or the download fails (for example without network).
void download_url(const std::string& url, const std::string& path, const std::string& hint = {});

// The whole file, gunzipped when it is gzip-compressed (zlib tells by the header). Only regular
// files are read, and data that inflates past max_bytes is refused (a gzip bomb).
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, uint64_t max_bytes = uint64_t(4) << 30);

}  // namespace kiln::data
