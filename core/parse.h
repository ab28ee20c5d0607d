// Numbers typed by users (command-line flags, environment variables): the whole text must be
// the number, and it must lie in the range the caller accepts; otherwise one kiln::Error that
// names the flag, the text and the range. No std::stoi exceptions, no silent wrap-around.
//   int64_t n = kiln::detail::parse_int(argv[i], "--num-workers", 0, 256);
//   // --num-workers expects an integer in [0, 256], got '100000'
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::detail {

int64_t parse_int(std::string_view text, const std::string& what, int64_t lo, int64_t hi);
// A finite number in [lo, hi] (decimal or scientific notation).
double parse_double(std::string_view text, const std::string& what, double lo, double hi);

}  // namespace kiln::detail
