// BatchNorm2d and LayerNorm over the core batch_norm/layer_norm ops. BatchNorm2d follows
// PyTorch's module logic: which stats to use in which mode, and the cumulative-average momentum.
#include "nn/normalization.h"

#include <sstream>

#include "core/autograd.h"
#include "nn/functional.h"
#include "nn/init.h"

namespace kiln::nn {

BatchNorm2d::BatchNorm2d(int64_t n, BatchNormOptions o) : num_features(n), options(o) {
  KILN_CHECK(n > 0, "BatchNorm2d: num_features must be positive, got ", n);
  KILN_CHECK(o.eps > 0, "BatchNorm2d: eps must be positive, got ", o.eps);
  if (o.affine) {
    register_parameter("weight", weight, ones({n}));
    register_parameter("bias", bias, zeros({n}));
  }
  if (o.track_running_stats) {
    running_mean = register_buffer("running_mean", zeros({n}));
    running_var = register_buffer("running_var", ones({n}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, {.dtype = DType::i64}));
  }
}

void BatchNorm2d::reset_running_stats() {
  if (!options.track_running_stats) return;
  init::zeros_(running_mean);
  init::ones_(running_var);
  init::zeros_(num_batches_tracked);
}

void BatchNorm2d::reset_parameters() {
  reset_running_stats();
  if (options.affine) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNorm2d::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& x) { return normalize(x); });
}

Tensor BatchNorm2d::normalize(const Tensor& x) {
  KILN_CHECK(x.dim() == 4, "BatchNorm2d: expected 4D input [N, C, H, W], got ", x.dim(), "D input of shape ",
             x.sizes());
  KILN_CHECK(x.size(1) == num_features, "BatchNorm2d: expected ", num_features,
             " channels, got "
             "input of shape ",
             x.sizes());
  double factor = options.momentum.value_or(0.0);
  if (is_training() && options.track_running_stats) {
    NoGradGuard no_grad;
    num_batches_tracked.add_(ones({}, {.dtype = DType::i64, .device = x.device()}));
    // A cumulative average needs the count on the host; only this mode pays for that read.
    if (!options.momentum) factor = 1.0 / num_batches_tracked.item<double>();
  }
  // Without running stats there is nothing to evaluate with, so batch statistics are used always.
  const bool use_batch_stats = is_training() || !running_mean.defined();
  const bool pass_stats = !is_training() || options.track_running_stats;
  return functional::batch_norm(x, pass_stats ? running_mean : Tensor(), pass_stats ? running_var : Tensor(), weight,
                                bias, use_batch_stats, factor, options.eps);
}

std::string BatchNorm2d::extra_repr() const {
  std::ostringstream os;
  os << num_features << ", eps=" << options.eps << ", momentum=";
  if (options.momentum)
    os << *options.momentum;
  else
    os << "None";
  os << ", affine=" << (options.affine ? "true" : "false")
     << ", track_running_stats=" << (options.track_running_stats ? "true" : "false");
  return os.str();
}

LayerNorm::LayerNorm(Shape shape, double e, bool elementwise_affine, bool with_bias)
    : normalized_shape(std::move(shape)), eps(e) {
  KILN_CHECK(!normalized_shape.empty(), "LayerNorm: normalized_shape must have at least one dim");
  for (int64_t s : normalized_shape)
    KILN_CHECK(s > 0, "LayerNorm: normalized_shape must be positive, got ", normalized_shape);
  if (elementwise_affine) {
    register_parameter("weight", weight, ones(normalized_shape));
    register_parameter("bias", bias, with_bias ? zeros(normalized_shape) : Tensor());
  }
}

Tensor LayerNorm::forward(const Tensor& input) {
  return run_forward(
      input, [this](const Tensor& x) { return functional::layer_norm(x, normalized_shape, weight, bias, eps); });
}

std::string LayerNorm::extra_repr() const {
  std::ostringstream os;
  os << shape_str(normalized_shape) << ", eps=" << eps
     << ", elementwise_affine=" << (weight.defined() ? "true" : "false");
  return os.str();
}

GroupNorm::GroupNorm(int64_t groups, int64_t channels, double e, bool affine)
    : num_groups(groups), num_channels(channels), eps(e) {
  KILN_CHECK(groups > 0 && channels > 0 && channels % groups == 0, "GroupNorm: num_channels (", channels,
             ") must be divisible by num_groups (", groups, "), both positive");
  register_parameter("weight", weight, affine ? ones({channels}) : Tensor());
  register_parameter("bias", bias, affine ? zeros({channels}) : Tensor());
}

Tensor GroupNorm::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& x) {
    KILN_CHECK(x.dim() >= 2 && x.size(1) == num_channels, "GroupNorm: expected input of shape [N, ", num_channels,
               ", ...], got ", x.sizes());
    return functional::group_norm(x, num_groups, weight, bias, eps);
  });
}

std::string GroupNorm::extra_repr() const {
  std::ostringstream os;
  os << num_groups << ", " << num_channels << ", eps=" << eps << ", affine=" << (weight.defined() ? "true" : "false");
  return os.str();
}

RMSNorm::RMSNorm(Shape shape, std::optional<double> e, bool elementwise_affine)
    : normalized_shape(std::move(shape)), eps(e) {
  KILN_CHECK(!normalized_shape.empty(), "RMSNorm: normalized_shape must have at least one dim");
  for (int64_t s : normalized_shape)
    KILN_CHECK(s > 0, "RMSNorm: normalized_shape must be positive, got ", normalized_shape);
  KILN_CHECK(!eps || *eps >= 0, "RMSNorm: eps must be non-negative, got ", eps.value_or(0));
  register_parameter("weight", weight, elementwise_affine ? ones(normalized_shape) : Tensor());
}

Tensor RMSNorm::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& x) { return functional::rms_norm(x, normalized_shape, weight, eps); });
}

std::string RMSNorm::extra_repr() const {
  std::ostringstream os;
  os << shape_str(normalized_shape) << ", eps=";
  if (eps)
    os << *eps;
  else
    os << "None";
  os << ", elementwise_affine=" << (weight.defined() ? "true" : "false");
  return os.str();
}

}  // namespace kiln::nn
