// kiln::nn::Conv1d: a 1-d convolution over [N, C_in, L] (or [C_in, L]) with PyTorch's weight
// layout [C_out, C_in / groups, K] and default initialisation.
//   auto conv = std::make_shared<kiln::nn::Conv1d>(64, 128, 3, kiln::nn::Conv1dOptions{.padding = 1});
#pragma once

#include "nn/module.h"

namespace kiln::nn {

struct Conv1dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv1d : public Module {
 public:
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv1dOptions options = {});
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  // kaiming_uniform_(a = sqrt(5)) for the weight, the bias uniform in +-1/sqrt(fan_in), as PyTorch.
  void reset_parameters(Generator* gen = nullptr);

  int64_t in_channels, out_channels, kernel_size;
  Conv1dOptions options;
  Tensor weight;  // [out_channels, in_channels / groups, kernel_size]
  Tensor bias;    // [out_channels], undefined without bias
};

}  // namespace kiln::nn
