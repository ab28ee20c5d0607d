// The op front-ends: argument checks, dtype promotion, device dispatch and autograd records.
// Semantics follow PyTorch's ops of the same names (broadcasting, reduction dims, keepdim).
//   auto y = kiln::relu(kiln::linear(x, w, b));
#pragma once

#include <optional>
#include <tuple>
#include <utility>

#include "core/tensor.h"

namespace kiln {

// ---- Elementwise arithmetic (broadcasting; a double operand acts as a 0-d tensor) ----
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator-(const Tensor& a);

// In place: refuse leaves that require grad (while grad mode is on).
Tensor& add_(Tensor& self, const Tensor& other, double alpha = 1.0);
Tensor& sub_(Tensor& self, const Tensor& other, double alpha = 1.0);
Tensor& mul_(Tensor& self, const Tensor& other);
Tensor& div_(Tensor& self, const Tensor& other);
Tensor& add_(Tensor& self, double value);
Tensor& mul_(Tensor& self, double value);
Tensor& div_(Tensor& self, double value);
Tensor& relu_(Tensor& self);
Tensor& clamp_(Tensor& self, std::optional<double> lo, std::optional<double> hi);

// ---- Unary ----
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
// approximate: "none" (erf form, PyTorch's default) or "tanh".
Tensor gelu(const Tensor& x, const std::string& approximate = "none");
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& x);
Tensor isfinite_all(const Tensor& x);  // 0-d bool: every element finite

// ---- Comparisons (bool results, no gradient) ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);
bool equal(const Tensor& a, const Tensor& b);

// ---- Reductions (dims may be negative; empty dims = all) ----
Tensor sum(const Tensor& x, Shape dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, Shape dims = {}, bool keepdim = false);
// correction 1 = unbiased (PyTorch's default), 0 = population variance.
Tensor var(const Tensor& x, Shape dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor std(const Tensor& x, Shape dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor amax(const Tensor& x, Shape dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, Shape dims = {}, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements
Tensor min(const Tensor& x);
std::tuple<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::tuple<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor any(const Tensor& x);
Tensor all(const Tensor& x);
Tensor norm(const Tensor& x);  // 2-norm over all elements
// Sums a broadcast gradient back down to `shape` (the reverse of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- Shape ----
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor reshape(const Tensor& x, Shape shape);
Tensor permute(const Tensor& x, Shape dims);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, Shape shape);
Shape broadcast_shapes(const Shape& a, const Shape& b);

// ---- Linear algebra ----
Tensor matmul(const Tensor& a, const Tensor& b);  // numpy/PyTorch matmul rules, batched
Tensor mm(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);
// x @ w^T + b; w is [out, in] as in PyTorch.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = {});

// ---- Neural-network ops ----
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = {},
              std::pair<int64_t, int64_t> stride = {1, 1}, std::pair<int64_t, int64_t> padding = {0, 0},
              std::pair<int64_t, int64_t> dilation = {1, 1}, int64_t groups = 1);
// stride {0, 0} means "the kernel size", PyTorch's default.
Tensor max_pool2d(const Tensor& x, std::pair<int64_t, int64_t> kernel,
                  std::pair<int64_t, int64_t> stride = {0, 0},
                  std::pair<int64_t, int64_t> padding = {0, 0});
std::tuple<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, std::pair<int64_t, int64_t> kernel,
                                                   std::pair<int64_t, int64_t> stride = {0, 0},
                                                   std::pair<int64_t, int64_t> padding = {0, 0});
Tensor avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> kernel,
                  std::pair<int64_t, int64_t> stride = {0, 0},
                  std::pair<int64_t, int64_t> padding = {0, 0}, bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> output_size);
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);
// Batch norm over [N, C, ...]; in training, running stats (if given) are updated in place with
// PyTorch's rule (unbiased variance, momentum weighting).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

enum class Reduction { none, mean, sum };
Reduction parse_reduction(const std::string& s);
// input [N, C] (or [N, C, d...]) logits, target [N] (or [N, d...]) class indices in int64.
Tensor cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight = {},
                     Reduction reduction = Reduction::mean, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const Tensor& weight = {},
                Reduction reduction = Reduction::mean, int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);
Tensor embedding(const Tensor& indices, const Tensor& weight);
Tensor one_hot(const Tensor& indices, int64_t num_classes = -1);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace kiln
