// Pooling layers: argument checks at construction, so a bad window fails where it is declared.
#include "nn/pooling.h"

#include <sstream>

#include "nn/functional.h"

namespace kiln::nn {
namespace {

void check_window(const char* layer, Size2 kernel, Size2 stride, Size2 padding) {
  KILN_CHECK(kernel.h > 0 && kernel.w > 0, layer, ": kernel_size must be positive, got ", kernel);
  KILN_CHECK(stride.h >= 0 && stride.w >= 0, layer,
             ": stride must be positive (or 0 for the "
             "kernel size), got ",
             stride);
  KILN_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w, layer,
             ": padding should be at most half of the kernel size, got padding ", padding, " for kernel_size ", kernel);
}

Size2 default_stride(Size2 stride, Size2 kernel) {
  return Size2(stride.h == 0 ? kernel.h : stride.h, stride.w == 0 ? kernel.w : stride.w);
}

std::string window_repr(Size2 kernel, Size2 stride, Size2 padding) {
  std::ostringstream os;
  os << "kernel_size=" << kernel << ", stride=" << stride << ", padding=" << padding;
  return os.str();
}

}  // namespace

MaxPool2d::MaxPool2d(Size2 k, Size2 s, Size2 p) : kernel_size(k), stride(default_stride(s, k)), padding(p) {
  check_window("MaxPool2d", kernel_size, stride, padding);
}
Tensor MaxPool2d::forward(const Tensor& x) {
  return run_forward(x, [this](const Tensor& in) { return functional::max_pool2d(in, kernel_size, stride, padding); });
}
std::string MaxPool2d::extra_repr() const { return window_repr(kernel_size, stride, padding); }

AvgPool2d::AvgPool2d(Size2 k, Size2 s, Size2 p, bool include_pad)
    : kernel_size(k), stride(default_stride(s, k)), padding(p), count_include_pad(include_pad) {
  check_window("AvgPool2d", kernel_size, stride, padding);
}
Tensor AvgPool2d::forward(const Tensor& x) {
  return run_forward(x, [this](const Tensor& in) {
    return functional::avg_pool2d(in, kernel_size, stride, padding, count_include_pad);
  });
}
std::string AvgPool2d::extra_repr() const { return window_repr(kernel_size, stride, padding); }

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Size2 size) : output_size(size) {
  KILN_CHECK(size.h > 0 && size.w > 0, "AdaptiveAvgPool2d: output_size must be positive, got ", size);
}
Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  return run_forward(x, [this](const Tensor& in) { return functional::adaptive_avg_pool2d(in, output_size); });
}
std::string AdaptiveAvgPool2d::extra_repr() const {
  std::ostringstream os;
  os << "output_size=" << output_size;
  return os.str();
}

}  // namespace kiln::nn
