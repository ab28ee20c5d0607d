// nn::functional: thin forwards to core ops; the only logic here is argument spelling
// (Size2, string reductions) and option checks that name the functional op.
#include "nn/functional.h"

namespace kiln::nn::functional {

Tensor relu(const Tensor& x) { return kiln::relu(x); }
Tensor leaky_relu(const Tensor& x, double negative_slope) { return kiln::leaky_relu(x, negative_slope); }
Tensor gelu(const Tensor& x, const std::string& approximate) { return kiln::gelu(x, approximate); }
Tensor sigmoid(const Tensor& x) { return kiln::sigmoid(x); }
Tensor tanh(const Tensor& x) { return kiln::tanh(x); }
Tensor silu(const Tensor& x) { return kiln::silu(x); }
Tensor softmax(const Tensor& x, int64_t dim) { return kiln::softmax(x, dim); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return kiln::log_softmax(x, dim); }

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  KILN_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability has to be between 0 and 1, but got ", p);
  return kiln::dropout(x, p, training, gen);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) { return kiln::linear(x, weight, bias); }

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding, Size2 dilation,
              int64_t groups) {
  return kiln::conv2d(x, weight, bias, stride.pair(), padding.pair(), dilation.pair(), groups);
}

Tensor max_pool2d(const Tensor& x, Size2 kernel_size, Size2 stride, Size2 padding) {
  return kiln::max_pool2d(x, kernel_size.pair(), stride.pair(), padding.pair());
}

Tensor avg_pool2d(const Tensor& x, Size2 kernel_size, Size2 stride, Size2 padding, bool count_include_pad) {
  return kiln::avg_pool2d(x, kernel_size.pair(), stride.pair(), padding.pair(), count_include_pad);
}

Tensor adaptive_avg_pool2d(const Tensor& x, Size2 output_size) {
  return kiln::adaptive_avg_pool2d(x, output_size.pair());
}

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  return kiln::batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps);
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  return kiln::layer_norm(x, normalized_shape, weight, bias, eps);
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  return kiln::group_norm(x, num_groups, weight, bias, eps);
}

Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, std::optional<double> eps) {
  return kiln::rms_norm(x, normalized_shape, weight, eps);
}

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding,
              int64_t dilation, int64_t groups) {
  return kiln::conv1d(x, weight, bias, stride, padding, dilation, groups);
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& p, const std::string& mode, double value) {
  return kiln::pad(x, p, mode, value);
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    double dropout_p, bool is_causal, std::optional<double> scale, Generator* gen) {
  return kiln::scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, gen);
}

Tensor embedding(const Tensor& indices, const Tensor& weight) { return kiln::embedding(indices, weight); }
Tensor one_hot(const Tensor& indices, int64_t num_classes) { return kiln::one_hot(indices, num_classes); }
Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) { return kiln::flatten(x, start_dim, end_dim); }

Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& o) {
  KILN_CHECK(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0,
             "cross_entropy: label_smoothing "
             "must be between 0.0 and 1.0, got ",
             o.label_smoothing);
  return kiln::cross_entropy(input, target, o.weight, parse_reduction(o.reduction), o.ignore_index, o.label_smoothing);
}

Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossOptions& o) {
  return kiln::nll_loss(input, target, o.weight, parse_reduction(o.reduction), o.ignore_index);
}

Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  return kiln::mse_loss(input, target, parse_reduction(reduction));
}

Tensor l1_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  KILN_CHECK(input.sizes() == target.sizes(), "l1_loss: input of shape ", input.sizes(), " and target of shape ",
             target.sizes(), " must have the same shape");
  Tensor err = kiln::abs(kiln::sub(input, target));
  switch (parse_reduction(reduction)) {
    case Reduction::none: return err;
    case Reduction::sum: return kiln::sum(err);
    case Reduction::mean: return kiln::mean(err);
  }
  return err;
}

}  // namespace kiln::nn::functional
