// Reductions over dims with keepdim, PyTorch's dtype rules (integer sums give int64), and their
// gradients (broadcast back; max/min share the gradient among ties).
#include <limits>

#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {

using kernels::ReduceOp;

namespace detail {

std::vector<bool> reduce_mask(const Tensor& x, const Shape& dims, const char* op) {
  std::vector<bool> mask(size_t(x.dim()), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;
    KILN_CHECK(!mask[size_t(w)] || dims.empty(), op, ": dim ", d, " appears twice in ", dims);
    mask[size_t(w)] = true;
  }
  return mask;
}

Shape reduced_shape(const Shape& in, const std::vector<bool>& mask) {
  Shape s = in;
  for (size_t i = 0; i < s.size(); ++i)
    if (mask[i]) s[i] = 1;
  return s;
}

}  // namespace detail

namespace {

Shape squeeze_mask(const Shape& keep, const std::vector<bool>& mask) {
  Shape s;
  for (size_t i = 0; i < keep.size(); ++i)
    if (!mask[i]) s.push_back(keep[i]);
  return s;
}

// Raw reduction in the keepdim shape.
Tensor reduce_raw(ReduceOp op, const Tensor& x, const std::vector<bool>& mask, DType out_dtype) {
  Shape ks = detail::reduced_shape(x.sizes(), mask);
  Tensor xin = detail::cast(x, out_dtype);
  Tensor out = detail::make_empty(ks, out_dtype, x.device());
  if (out.numel() == 0) return out;
  if (x.numel() == 0) {
    KILN_CHECK(op == ReduceOp::sum || op == ReduceOp::any || op == ReduceOp::all || op == ReduceOp::prod,
               "reduction over an empty tensor of shape ", x.sizes(), " has no identity for max/min");
    detail::backend(x.device()).fill(detail::view_of(out), op == ReduceOp::sum || op == ReduceOp::any ? 0.0 : 1.0);
    return out;
  }
  detail::backend(x.device()).reduce(op, detail::view_of(out), detail::view_of(xin));
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, Shape dims, bool keepdim) {
  if (autocast::wants_f32({&x})) return sum(autocast::to_f32(x), std::move(dims), keepdim);
  auto mask = detail::reduce_mask(x, dims, "sum");
  DType dt = is_floating(x.dtype()) ? x.dtype() : DType::i64;
  Tensor out = reduce_raw(ReduceOp::sum, x, mask, dt);
  Shape keep_shape = out.sizes();
  if (!keepdim) out = out.detach().reshape(squeeze_mask(keep_shape, mask));
  if (autograd::needs_grad({&x})) {
    Shape in_shape = x.sizes();
    autograd::record("sum", {x}, {out}, [keep_shape, in_shape](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].reshape(keep_shape).expand(in_shape)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, Shape dims, bool keepdim) {
  if (autocast::wants_f32({&x})) return mean(autocast::to_f32(x), std::move(dims), keepdim);
  KILN_CHECK(is_floating(x.dtype()), "mean: expected a floating-point tensor, got ", x.dtype(),
             "; convert with .to(kiln::DType::f32)");
  auto mask = detail::reduce_mask(x, dims, "mean");
  int64_t count = 1;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) count *= x.sizes()[i];
  return div(sum(x, std::move(dims), keepdim), double(count));
}

Tensor var(const Tensor& x, Shape dims, int64_t correction, bool keepdim) {
  if (autocast::wants_f32({&x})) return var(autocast::to_f32(x), std::move(dims), correction, keepdim);
  KILN_CHECK(is_floating(x.dtype()), "var: expected a floating-point tensor, got ", x.dtype());
  auto mask = detail::reduce_mask(x, dims, "var");
  int64_t count = 1;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) count *= x.sizes()[i];
  Tensor centered = sub(x, mean(x, dims, true));
  return div(sum(mul(centered, centered), dims, keepdim), double(std::max<int64_t>(count - correction, 0)));
}

Tensor std(const Tensor& x, Shape dims, int64_t correction, bool keepdim) {
  return sqrt(var(x, std::move(dims), correction, keepdim));
}

static Tensor extreme(const Tensor& x, Shape dims, bool keepdim, bool is_max) {
  const char* name = is_max ? "amax" : "amin";
  auto mask = detail::reduce_mask(x, dims, name);
  KILN_CHECK(x.numel() > 0, name, ": the tensor is empty (shape ", x.sizes(), ")");
  Tensor out = reduce_raw(is_max ? ReduceOp::max : ReduceOp::min, x, mask, x.dtype());
  Tensor keep_out = out;
  if (!keepdim) out = out.detach().reshape(squeeze_mask(out.sizes(), mask));
  if (autograd::needs_grad({&x})) {
    SavedTensor sx(x), so(keep_out);
    Shape keep_shape = keep_out.sizes();
    autograd::record(name, {x}, {out}, [sx, so, keep_shape, mask, name](const std::vector<Tensor>& g) {
      Tensor hit = detail::cast(eq(sx.unpack(name), so.unpack(name)), g[0].dtype());
      Shape dims;
      for (size_t i = 0; i < mask.size(); ++i)
        if (mask[i]) dims.push_back(int64_t(i));
      Tensor count = sum(hit, dims, true);
      return std::vector<Tensor>{mul(div(g[0].reshape(keep_shape), count), hit)};
    });
  }
  return out;
}

Tensor amax(const Tensor& x, Shape dims, bool keepdim) { return extreme(x, std::move(dims), keepdim, true); }
Tensor amin(const Tensor& x, Shape dims, bool keepdim) { return extreme(x, std::move(dims), keepdim, false); }
Tensor max(const Tensor& x) { return amax(x); }
Tensor min(const Tensor& x) { return amin(x); }

static std::tuple<Tensor, Tensor> extreme_dim(const Tensor& x, int64_t dim, bool keepdim, bool is_max) {
  const char* name = is_max ? "max" : "min";
  const int64_t d = detail::wrap_dim(dim, x.dim(), name);
  KILN_CHECK(x.dim() == 0 || x.sizes()[size_t(d)] > 0, name, ": dim ", dim, " of shape ", x.sizes(), " is empty");
  if (x.dim() == 0) return {x.clone(), zeros({}, {.dtype = DType::i64, .device = x.device()})};
  Shape ks = x.sizes();
  ks[size_t(d)] = 1;
  Tensor values = detail::make_empty(ks, x.dtype(), x.device());
  Tensor indices = detail::make_empty(ks, DType::i64, x.device());
  if (values.numel())
    detail::backend(x.device())
        .reduce_index(is_max ? ReduceOp::max : ReduceOp::min, detail::view_of(values), detail::view_of(indices),
                      detail::view_of(x), int(d));
  Tensor keep_idx = indices;
  if (!keepdim) {
    values = values.squeeze(d);
    indices = indices.squeeze(d);
  }
  if (autograd::needs_grad({&x})) {
    Shape in_shape = x.sizes();
    SavedTensor si(keep_idx);
    autograd::record(name, {x}, {values}, [si, in_shape, d, ks, name](const std::vector<Tensor>& g) {
      Shape pos_shape(in_shape.size(), 1);
      pos_shape[size_t(d)] = in_shape[size_t(d)];
      Tensor pos =
          arange(double(in_shape[size_t(d)]), {.dtype = DType::i64, .device = g[0].device()}).reshape(pos_shape);
      Tensor hit = detail::cast(eq(pos, si.unpack(name)), g[0].dtype());
      return std::vector<Tensor>{mul(g[0].reshape(ks), hit)};
    });
  }
  return {values, indices};
}

std::tuple<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_dim(x, dim, keepdim, true);
}
std::tuple<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_dim(x, dim, keepdim, false);
}

static Tensor arg_extreme(const Tensor& x, int64_t dim, bool keepdim, bool is_max) {
  const char* name = is_max ? "argmax" : "argmin";
  const int64_t d = detail::wrap_dim(dim, x.dim(), name);
  if (x.dim() == 0) return zeros({}, {.dtype = DType::i64, .device = x.device()});
  KILN_CHECK(x.sizes()[size_t(d)] > 0, name, ": dim ", dim, " of shape ", x.sizes(), " is empty");
  Shape ks = x.sizes();
  ks[size_t(d)] = 1;
  Tensor indices = detail::make_empty(ks, DType::i64, x.device());
  if (indices.numel())
    detail::backend(x.device())
        .reduce_index(is_max ? ReduceOp::argmax : ReduceOp::argmin, detail::null_view(x.dtype()),
                      detail::view_of(indices), detail::view_of(x), int(d));
  return keepdim ? indices : indices.squeeze(d);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return arg_extreme(x, dim, keepdim, true); }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { return arg_extreme(x, dim, keepdim, false); }

Tensor any(const Tensor& x) {
  auto mask = detail::reduce_mask(x, {}, "any");
  return reduce_raw(ReduceOp::any, detail::cast(x, DType::boolean), mask, DType::boolean).reshape({});
}
Tensor all(const Tensor& x) {
  auto mask = detail::reduce_mask(x, {}, "all");
  return reduce_raw(ReduceOp::all, detail::cast(x, DType::boolean), mask, DType::boolean).reshape({});
}

Tensor norm(const Tensor& x) {
  if (autocast::wants_f32({&x})) return norm(autocast::to_f32(x));
  return sqrt(sum(mul(x, x)));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.sizes() == shape) return x;
  const int64_t lead = x.dim() - int64_t(shape.size());
  KILN_CHECK(lead >= 0, "sum_to: cannot sum shape ", x.sizes(), " to the larger shape ", shape);
  Shape dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead)
      dims.push_back(i);
    else if (shape[size_t(i - lead)] == 1 && x.sizes()[size_t(i)] != 1)
      dims.push_back(i);
    else
      KILN_CHECK(shape[size_t(i - lead)] == x.sizes()[size_t(i)], "sum_to: shape ", x.sizes(),
                 " does not broadcast from ", shape);
  }
  Tensor s = dims.empty() ? x : sum(x, dims, true);
  return s.reshape(shape);
}

}  // namespace kiln
