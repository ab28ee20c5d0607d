// The safetensors parser: header length, JSON header, dtypes, shapes, offsets and coverage.
#include "fabric/safetensors.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  kiln::fuzz::expect_success_or_error([&] { kiln::parse_safetensors(bytes, "fuzz input"); });
  return 0;
}
