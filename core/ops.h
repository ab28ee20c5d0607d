// The op front-ends: argument checks, dtype promotion, device dispatch and autograd records.
// Semantics follow PyTorch's ops of the same names (broadcasting, reduction dims, keepdim).
//   auto y = kiln::relu(kiln::linear(x, w, b));
#pragma once

#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

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

// Comparisons as operators give bool tensors (x > 0, x == y), as in PyTorch; & | ^ and ~ combine
// bool masks elementwise.
Tensor operator==(const Tensor& a, const Tensor& b);
Tensor operator!=(const Tensor& a, const Tensor& b);
Tensor operator<(const Tensor& a, const Tensor& b);
Tensor operator<=(const Tensor& a, const Tensor& b);
Tensor operator>(const Tensor& a, const Tensor& b);
Tensor operator>=(const Tensor& a, const Tensor& b);
Tensor operator==(const Tensor& a, double b);
Tensor operator!=(const Tensor& a, double b);
Tensor operator<(const Tensor& a, double b);
Tensor operator<=(const Tensor& a, double b);
Tensor operator>(const Tensor& a, double b);
Tensor operator>=(const Tensor& a, double b);
Tensor operator==(double a, const Tensor& b);
Tensor operator!=(double a, const Tensor& b);
Tensor operator<(double a, const Tensor& b);
Tensor operator<=(double a, const Tensor& b);
Tensor operator>(double a, const Tensor& b);
Tensor operator>=(double a, const Tensor& b);
Tensor operator&(const Tensor& a, const Tensor& b);
Tensor operator|(const Tensor& a, const Tensor& b);
Tensor operator^(const Tensor& a, const Tensor& b);
Tensor operator~(const Tensor& a);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_xor(const Tensor& a, const Tensor& b);

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
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor silu(const Tensor& x);  // x * sigmoid(x)
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
// The reductions above over one dim given as an integer: kiln::sum(x, -1), kiln::amax(x, 1, true).
template <DimIndex I>
Tensor sum(const Tensor& x, I dim, bool keepdim = false) {
  return sum(x, Shape{int64_t(dim)}, keepdim);
}
template <DimIndex I>
Tensor mean(const Tensor& x, I dim, bool keepdim = false) {
  return mean(x, Shape{int64_t(dim)}, keepdim);
}
template <DimIndex I>
Tensor amax(const Tensor& x, I dim, bool keepdim = false) {
  return amax(x, Shape{int64_t(dim)}, keepdim);
}
template <DimIndex I>
Tensor amin(const Tensor& x, I dim, bool keepdim = false) {
  return amin(x, Shape{int64_t(dim)}, keepdim);
}
template <DimIndex I>
Tensor var(const Tensor& x, I dim, int64_t correction = 1, bool keepdim = false) {
  return var(x, Shape{int64_t(dim)}, correction, keepdim);
}
template <DimIndex I>
Tensor std(const Tensor& x, I dim, int64_t correction = 1, bool keepdim = false) {
  return std(x, Shape{int64_t(dim)}, correction, keepdim);
}
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
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = {}, std::pair<int64_t, int64_t> stride = {1, 1},
              std::pair<int64_t, int64_t> padding = {0, 0}, std::pair<int64_t, int64_t> dilation = {1, 1},
              int64_t groups = 1);
// stride {0, 0} means "the kernel size", PyTorch's default.
Tensor max_pool2d(const Tensor& x, std::pair<int64_t, int64_t> kernel, std::pair<int64_t, int64_t> stride = {0, 0},
                  std::pair<int64_t, int64_t> padding = {0, 0});
std::tuple<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, std::pair<int64_t, int64_t> kernel,
                                                   std::pair<int64_t, int64_t> stride = {0, 0},
                                                   std::pair<int64_t, int64_t> padding = {0, 0});
Tensor avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> kernel, std::pair<int64_t, int64_t> stride = {0, 0},
                  std::pair<int64_t, int64_t> padding = {0, 0}, bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> output_size);
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);
// Batch norm over [N, C, ...]; in training, running stats (if given) are updated in place with
// PyTorch's rule (unbiased variance, momentum weighting).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

enum class Reduction { none, mean, sum };
Reduction parse_reduction(const std::string& s);
// input [N, C] (or [N, C, d...]) logits, target [N] (or [N, d...]) class indices in int64.
Tensor cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight = {},
                     Reduction reduction = Reduction::mean, int64_t ignore_index = -100, double label_smoothing = 0.0);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const Tensor& weight = {},
                Reduction reduction = Reduction::mean, int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);
Tensor embedding(const Tensor& indices, const Tensor& weight);
Tensor one_hot(const Tensor& indices, int64_t num_classes = -1);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);

// ---- Masks, indexing along a dim, sorting and scans ----
// mask (bool) broadcasts with x; where it is true the result holds value.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
Tensor masked_fill(const Tensor& x, const Tensor& mask, const Tensor& value);  // value: 0-d
Tensor& masked_fill_(Tensor& self, const Tensor& mask, double value);
// The lower (upper) triangle of the last two dims: (i, j) is kept where j - i <= diagonal
// (>= diagonal), the rest is zero.
Tensor tril(const Tensor& x, int64_t diagonal = 0);
Tensor triu(const Tensor& x, int64_t diagonal = 0);
// out[..., i, ...] = x[..., index[..., i, ...], ...] along dim; index (int64) has x's number of
// dims and no larger a size than x outside dim.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// A copy of x with src's elements written (scatter) or added (scatter_add) at the positions index
// names along dim (the reverse of gather). Repeated indices: scatter keeps one of the writes,
// scatter_add sums them all.
Tensor scatter(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor scatter(const Tensor& x, int64_t dim, const Tensor& index, double value);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor& scatter_(Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);
Tensor& scatter_add_(Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);
// Values and their int64 positions along dim, ascending unless descending; the order of equal
// values is kept (stable). NaN sorts above every number.
std::tuple<Tensor, Tensor> sort(const Tensor& x, int64_t dim = -1, bool descending = false);
Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false);
// The k largest (or smallest) values along dim and their positions, largest first (smallest first).
std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true);
// Running sums along dim; integer and bool inputs sum to int64.
Tensor cumsum(const Tensor& x, int64_t dim);
// The order of elements reversed along each of dims.
Tensor flip(const Tensor& x, const Shape& dims);
// Views of x along dim: `chunks` pieces of ceil(size / chunks) (fewer, or a smaller last one, when
// it does not divide), pieces of split_size, or pieces of the given sizes (which sum to the size).
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& split_sizes, int64_t dim = 0);
// PyTorch's F.pad: pad holds (before, after) pairs from the last dim backwards; negative amounts
// crop. mode: "constant" (filled with value), "reflect", "replicate" or "circular".
Tensor pad(const Tensor& x, const std::vector<int64_t>& pad, const std::string& mode = "constant", double value = 0.0);
// Einstein summation as torch.einsum: "ij,jk->ik", "bhid,bhjd->bhij", "ii->i", "...ij->...ji";
// without "->" the output holds the labels that appear once, in alphabetical order. Operands are
// contracted left to right, each pair through one batched matrix product.
Tensor einsum(const std::string& equation, const std::vector<Tensor>& operands);

// ---- Sampling ----
// num_samples column indices per row of probs ([C] or [N, C]; non-negative weights, not
// necessarily normalised), as int64 [num_samples] or [N, num_samples]. Without replacement a
// column is drawn at most once (so num_samples is at most the number of non-zero weights).
Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement = false, Generator* gen = nullptr);

// ---- Attention and the normalisations of transformers ----
// softmax(q k^T * scale + attn_mask) v over q [..., L, E], k [..., S, E], v [..., S, Ev] (the same
// leading dims) -> [..., L, Ev]. attn_mask broadcasts to [..., L, S]: bool (true: may attend) or
// floating (added to the scores). is_causal lets query i see keys j <= i only (not together with
// attn_mask). scale defaults to 1/sqrt(E). dropout_p drops attention weights (training only: pass
// 0 in evaluation). A query that sees no key gets zeros. CPU and CUDA run a fused kernel that never
// holds the [L, S] weights (see set_sdpa_backend).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = {},
                                    double dropout_p = 0.0, bool is_causal = false,
                                    std::optional<double> scale = std::nullopt, Generator* gen = nullptr);
// Which implementation scaled_dot_product_attention uses on this thread: the fused kernel
// (automatic: where the device has one for the inputs) or the composition of matmul, softmax and
// dropout that holds the whole weight matrix ("math", PyTorch's reference path).
enum class SdpaBackend { automatic, fused, math };
void set_sdpa_backend(SdpaBackend backend);
SdpaBackend sdpa_backend();
// x / sqrt(mean(x^2 over normalized_shape) + eps) * weight; eps defaults to the dtype's epsilon.
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                std::optional<double> eps = std::nullopt);
// Normalises x [N, C, ...] over each of num_groups groups of C / num_groups channels (and all
// positions), then scales and shifts per channel.
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);
// 1-d convolution of x [N, C_in, L] (or [C_in, L]) with w [C_out, C_in / groups, K].
Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b = {}, int64_t stride = 1, int64_t padding = 0,
              int64_t dilation = 1, int64_t groups = 1);

}  // namespace kiln
