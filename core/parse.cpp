#include "core/parse.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace kiln::detail {

int64_t parse_int(std::string_view text, const std::string& what, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (first != last && *first == '+') ++first;
  auto [end, ec] = std::from_chars(first, last, v);
  bool ok = !text.empty() && ec == std::errc() && end == last && v >= lo && v <= hi;
  KILN_CHECK(ok, what, " expects an integer in [", lo, ", ", hi, "], got '", text, "'",
             ec == std::errc::result_out_of_range || (ec == std::errc() && end == last) ? " (out of range)" : "");
  return v;
}

double parse_double(std::string_view text, const std::string& what, double lo, double hi) {
  std::string s(text);  // strtod needs a terminated string
  char* end = nullptr;
  errno = 0;
  double v = s.empty() || std::isspace(static_cast<unsigned char>(s[0])) ? NAN : std::strtod(s.c_str(), &end);
  bool ok = end && *end == '\0' && std::isfinite(v) && v >= lo && v <= hi;
  KILN_CHECK(ok, what, " expects a number in [", lo, ", ", hi, "], got '", text, "'");
  return v;
}

}  // namespace kiln::detail
