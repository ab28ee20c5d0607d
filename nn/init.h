// kiln::nn::init: in-place parameter initialisers with PyTorch's names, formulas and defaults.
// They run without recording gradients and draw from `gen` (the default generator when null).
//   kiln::nn::init::kaiming_normal_(conv->weight, 0.0, "fan_out", "relu");
//   kiln::nn::init::zeros_(conv->bias);
#pragma once

#include <string>
#include <utility>

#include "core/tensor.h"

namespace kiln::nn::init {

// (fan_in, fan_out) of a weight: [out, in, k...] gives in*prod(k) and out*prod(k).
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor);
// The recommended gain for a nonlinearity: linear/conv*/sigmoid 1, tanh 5/3, relu sqrt(2),
// leaky_relu sqrt(2 / (1 + param^2)) (param: negative slope, default 0.01), selu 3/4.
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

Tensor& uniform_(Tensor& tensor, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor& normal_(Tensor& tensor, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor& constant_(Tensor& tensor, double value);
Tensor& zeros_(Tensor& tensor);
Tensor& ones_(Tensor& tensor);
// Identity for a 2-D tensor (ones on the diagonal).
Tensor& eye_(Tensor& tensor);

// He et al.: bound = gain * sqrt(3 / fan); mode "fan_in" or "fan_out"; `a` is the negative slope
// used when nonlinearity is "leaky_relu" (PyTorch's default layers use a = sqrt(5)).
Tensor& kaiming_uniform_(Tensor& tensor, double a = 0.0, const std::string& mode = "fan_in",
                         const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
Tensor& kaiming_normal_(Tensor& tensor, double a = 0.0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// Glorot & Bengio: bound = gain * sqrt(6 / (fan_in + fan_out)).
Tensor& xavier_uniform_(Tensor& tensor, double gain = 1.0, Generator* gen = nullptr);
Tensor& xavier_normal_(Tensor& tensor, double gain = 1.0, Generator* gen = nullptr);

}  // namespace kiln::nn::init
