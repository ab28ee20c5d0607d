// Parameter-free layers: activations, Dropout (active only in training mode), Flatten, Identity.
//   auto drop = std::make_shared<kiln::nn::Dropout>(0.25);
//   model->eval();   // drop->forward(x) now returns x unchanged
#pragma once

#include "nn/module.h"

namespace kiln::nn {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& input) override;
};

// x * sigmoid(x), also called swish.
class SiLU : public Module {
 public:
  Tensor forward(const Tensor& input) override;
};

class GELU : public Module {
 public:
  // approximate: "none" (exact erf form) or "tanh".
  explicit GELU(std::string approximate = "none");
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  std::string approximate;
};

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  double p;
  Generator* generator = nullptr;  // null: kiln's default generator
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  int64_t start_dim, end_dim;
};

class Identity : public Module {
 public:
  Tensor forward(const Tensor& input) override {
    return run_forward(input, [](const Tensor& x) { return x; });
  }
};

}  // namespace kiln::nn
