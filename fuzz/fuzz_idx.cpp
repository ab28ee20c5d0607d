// The IDX reader (plain or gzipped): header, declared sizes against the bytes present, data.
#include "data/idx.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::MemFile f(data, size);
  kiln::fuzz::expect_success_or_error([&] { kiln::data::read_idx(f.path()); });
  return 0;
}
