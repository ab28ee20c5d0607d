// The gzip and tar readers: zlib's stream, tar headers, checksums, sizes, long names, member
// paths. Members are extracted below a scratch folder that is emptied after each input.
#include <unistd.h>

#include <filesystem>

#include "data/archive.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kiln_fuzz_archive_" + std::to_string(::getpid()));
  kiln::fuzz::MemFile f(data, size);
  kiln::fuzz::expect_success_or_error([&] { kiln::data::read_file_maybe_gzip(f.path(), 64u << 20); });
  kiln::fuzz::expect_success_or_error([&] { kiln::data::extract_tar_gz(f.path(), dir.string(), 64u << 20); });
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
