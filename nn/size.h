// kiln::nn::Size2: a (height, width) pair that also accepts one number for both, so layer options
// read like PyTorch's: Conv2d(3, 32, 3, {.stride = 2, .padding = {1, 0}}).
#pragma once

#include <cstdint>
#include <ostream>
#include <utility>

namespace kiln::nn {

struct Size2 {
  int64_t h = 0;
  int64_t w = 0;
  Size2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose (PyTorch's int-or-tuple)
  Size2(int64_t height, int64_t width) : h(height), w(width) {}
  std::pair<int64_t, int64_t> pair() const { return {h, w}; }
  bool operator==(const Size2&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const Size2& s) { return os << "(" << s.h << ", " << s.w << ")"; }

}  // namespace kiln::nn
