// kiln::Error: the one exception type kiln throws for misuse and failed operations.
// Messages name the operation, the offending values and what to do instead:
//   KILN_CHECK(a.dim() == 2, "matmul: expected a 2-D tensor, got ", a.sizes());
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

template <class T>
void append(std::ostringstream& os, const std::vector<T>& v) {
  os << '[';
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << ']';
}
template <class T>
void append(std::ostringstream& os, const T& v) {
  os << v;
}

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (append(os, args), ...);
  return os.str();
}

}  // namespace detail

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

}  // namespace kiln

#define KILN_CHECK(cond, ...)               \
  do {                                      \
    if (!(cond)) ::kiln::fail(__VA_ARGS__); \
  } while (0)
