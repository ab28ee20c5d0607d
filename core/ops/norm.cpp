// The normalisations of transformers and small-batch convnets: rms_norm and group_norm, written as
// compositions of differentiable ops (statistics in f32 under autocast, as layer_norm's).
#include <limits>

#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {

Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, std::optional<double> eps) {
  if (autocast::wants_f32({&x, &weight}))
    return rms_norm(autocast::to_f32(x), normalized_shape, autocast::to_f32(weight), eps);
  KILN_CHECK(is_floating(x.dtype()), "rms_norm: expected a floating-point input, got ", x.dtype());
  const int64_t k = int64_t(normalized_shape.size());
  KILN_CHECK(k >= 1 && k <= x.dim(), "rms_norm: normalized_shape ", normalized_shape, " does not fit input of shape ",
             x.sizes());
  for (int64_t i = 0; i < k; ++i)
    KILN_CHECK(x.size(x.dim() - k + i) == normalized_shape[size_t(i)], "rms_norm: input of shape ", x.sizes(),
               " does not end with normalized_shape ", normalized_shape);
  if (weight.defined())
    KILN_CHECK(weight.sizes() == normalized_shape, "rms_norm: weight of shape ", weight.sizes(),
               " must equal normalized_shape ", normalized_shape);
  double e = 0;
  if (eps)
    e = *eps;
  else if (x.dtype() == DType::f64)
    e = std::numeric_limits<double>::epsilon();
  else if (x.dtype() == DType::f32)
    e = std::numeric_limits<float>::epsilon();
  else if (x.dtype() == DType::f16)
    e = 0.0009765625;  // 2^-10
  else
    e = 0.0078125;  // bf16: 2^-7
  Shape dims;
  for (int64_t i = x.dim() - k; i < x.dim(); ++i) dims.push_back(i);
  Tensor y = mul(x, rsqrt(add(mean(mul(x, x), dims, true), e)));
  return weight.defined() ? mul(y, weight) : y;
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  if (autocast::wants_f32({&x, &weight, &bias}))
    return group_norm(autocast::to_f32(x), num_groups, autocast::to_f32(weight), autocast::to_f32(bias), eps);
  KILN_CHECK(x.dim() >= 2, "group_norm: expected an [N, C, ...] input, got ", x.sizes());
  const int64_t n = x.size(0), c = x.size(1);
  KILN_CHECK(num_groups > 0 && c % num_groups == 0, "group_norm: num_groups (", num_groups,
             ") must be positive and divide the ", c, " channels");
  auto check_vec = [&](const Tensor& t, const char* what) {
    if (t.defined())
      KILN_CHECK(t.dim() == 1 && t.size(0) == c, "group_norm: ", what, " must have shape [", c, "], got ", t.sizes());
  };
  check_vec(weight, "weight");
  check_vec(bias, "bias");
  Tensor g = x.reshape({n, num_groups, -1});
  Tensor m = mean(g, {2}, true);
  Tensor v = var(g, {2}, 0, true);
  Tensor y = mul(sub(g, m), rsqrt(add(v, eps))).reshape(x.sizes());
  Shape bshape(size_t(x.dim()), 1);
  bshape[1] = c;
  if (weight.defined()) y = mul(y, weight.reshape(bshape));
  if (bias.defined()) y = add(y, bias.reshape(bshape));
  return y;
}

}  // namespace kiln
