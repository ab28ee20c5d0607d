// Normalisation layers. BatchNorm2d keeps PyTorch's buffers (running_mean, running_var and the
// int64 num_batches_tracked), so checkpoints carry the same keys as PyTorch's.
//   auto bn = std::make_shared<kiln::nn::BatchNorm2d>(64);
//   auto ln = std::make_shared<kiln::nn::LayerNorm>(kiln::Shape{256});
//   auto gn = std::make_shared<kiln::nn::GroupNorm>(8, 64);
//   auto rms = std::make_shared<kiln::nn::RMSNorm>(kiln::Shape{256});
#pragma once

#include <optional>

#include "nn/module.h"

namespace kiln::nn {

struct BatchNormOptions {
  double eps = 1e-5;
  // Weight of the newest batch in the running stats; nullopt: a cumulative average over batches.
  std::optional<double> momentum = 0.1;
  bool affine = true;
  bool track_running_stats = true;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions options = {});
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  void reset_running_stats();
  void reset_parameters();

  int64_t num_features;
  BatchNormOptions options;
  Tensor weight, bias;                                    // [C] when affine
  Tensor running_mean, running_var, num_batches_tracked;  // when track_running_stats

 private:
  Tensor normalize(const Tensor& x);
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true, bool bias = true);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  Shape normalized_shape;
  double eps;
  Tensor weight, bias;  // normalized_shape, when elementwise_affine
};

// Normalises [N, C, ...] over groups of channels, then scales and shifts per channel.
class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  int64_t num_groups, num_channels;
  double eps;
  Tensor weight, bias;  // [num_channels], when affine
};

// x / sqrt(mean(x^2) + eps) * weight over the trailing normalized_shape; eps unset: the input
// dtype's machine epsilon, as PyTorch's.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(Shape normalized_shape, std::optional<double> eps = std::nullopt, bool elementwise_affine = true);
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  Shape normalized_shape;
  std::optional<double> eps;
  Tensor weight;  // normalized_shape, when elementwise_affine
};

}  // namespace kiln::nn
