// The CIFAR-10 batch reader: record framing and labels.
#include "data/cifar.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::MemFile f(data, size);
  kiln::fuzz::expect_success_or_error([&] { kiln::data::read_cifar10_file(f.path()); });
  return 0;
}
