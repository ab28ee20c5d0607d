// Command lines: train_cifar10's flag parser and the number parsers kiln-run and the programs use.
// The input is split at NUL bytes into arguments.
#include <string>
#include <vector>

#include "core/parse.h"
#include "examples/train_cifar10_args.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> argv{"train_cifar10"};
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0)
      argv.push_back(std::move(cur)), cur.clear();
    else
      cur += char(data[i]);
  }
  argv.push_back(cur);
  kiln::fuzz::expect_success_or_error([&] { train_cifar10::parse_args(argv); });
  for (const auto& a : argv) {
    kiln::fuzz::expect_success_or_error([&] { kiln::detail::parse_int(a, "--n", -5, 1 << 20); });
    kiln::fuzz::expect_success_or_error([&] { kiln::detail::parse_double(a, "--x", -1e6, 1e6); });
  }
  return 0;
}
