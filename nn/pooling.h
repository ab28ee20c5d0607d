// Pooling layers over NCHW input; stateless wrappers that remember their window settings.
//   auto pool = std::make_shared<kiln::nn::MaxPool2d>(2, 2);   // halves H and W
#pragma once

#include "nn/module.h"
#include "nn/size.h"

namespace kiln::nn {

class MaxPool2d : public Module {
 public:
  // stride 0 means "the kernel size", PyTorch's default.
  explicit MaxPool2d(Size2 kernel_size, Size2 stride = 0, Size2 padding = 0);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  Size2 kernel_size, stride, padding;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Size2 kernel_size, Size2 stride = 0, Size2 padding = 0, bool count_include_pad = true);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  Size2 kernel_size, stride, padding;
  bool count_include_pad;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  Size2 output_size;
};

}  // namespace kiln::nn
