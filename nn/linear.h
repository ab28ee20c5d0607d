// Fully connected and convolution layers with PyTorch's parameter layouts and default
// initialisation (kaiming_uniform_ with a = sqrt(5), bias uniform in +-1/sqrt(fan_in)).
//   auto fc = std::make_shared<kiln::nn::Linear>(2048, 256);           // weight [256, 2048]
//   auto conv = std::make_shared<kiln::nn::Conv2d>(3, 32, 3, kiln::nn::Conv2dOptions{.padding = 1});
#pragma once

#include "nn/module.h"
#include "nn/size.h"

namespace kiln::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  // Draws fresh values with PyTorch's default rule.
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_features, out_features;
  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features], undefined without bias
};

struct Conv2dOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Conv2dOptions options = {});
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_channels, out_channels;
  Size2 kernel_size;
  Conv2dOptions options;
  Tensor weight;  // [out_channels, in_channels / groups, kh, kw]
  Tensor bias;    // [out_channels], undefined without bias
};

}  // namespace kiln::nn
