// Masks and indexing along one dim: masked_fill, tril/triu (compositions of where), gather and
// scatter (kernels of their own), each beside its gradient. gather's gradient is a scatter_add and
// scatter's gradients are gathers, so the pair is closed under differentiation.
#include "core/ops/internal.h"

namespace kiln {

namespace {

void check_mask(const Tensor& mask, const char* op) {
  KILN_CHECK(mask.dtype() == DType::boolean, op, ": mask must be a bool tensor, got ", mask.dtype(),
             "; build it with a comparison such as x > 0");
}

// The index as int64, checked against x along dim: same number of dims, no larger outside dim
// (than `limit`, x by default), values in [0, x.size(dim)).
Tensor checked_index(const char* op, const Tensor& x, int64_t d, const Tensor& index, const Tensor& limit) {
  detail::check_same_device(op, x, index);
  KILN_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
             ": index must be an int64 "
             "tensor, got ",
             index.dtype());
  KILN_CHECK(index.dim() == x.dim(), op, ": index must have as many dims as the input (", x.dim(), "), got shape ",
             index.sizes(), " for input ", x.sizes());
  for (int64_t i = 0; i < index.dim(); ++i) {
    if (i == d) continue;
    KILN_CHECK(index.size(i) <= limit.size(i), op, ": index of shape ", index.sizes(), " is larger than ",
               limit.sizes(), " in dim ", i, " (only dim ", d, " may differ)");
  }
  Tensor idx = detail::cast(index, DType::i64);
  if (idx.numel() == 0) return idx;
  NoGradGuard g;
  const int64_t n = x.dim() == 0 ? 1 : x.size(d);
  if (any(logical_not(mul(ge(idx, 0.0), lt(idx, double(n))))).item<bool>()) {
    const int64_t lo = min(idx).item<int64_t>(), hi = max(idx).item<int64_t>();
    fail(op, ": index ", lo < 0 ? lo : hi, " is out of bounds for dim ", d, " of size ", n,
         " (indices must lie in [0, ", n, "))");
  }
  return idx;
}

Tensor gather_raw(const Tensor& x, int64_t d, const Tensor& idx) {
  Tensor out = detail::make_empty(idx.sizes(), x.dtype(), x.device());
  if (out.numel())
    detail::backend(x.device()).gather(detail::view_of(out), detail::view_of(x), detail::view_of(idx), int(d));
  return out;
}

// self (dense, fresh) receives src viewed with idx's shape.
void scatter_raw(Tensor& self, int64_t d, const Tensor& idx, const Tensor& src, bool accumulate) {
  if (idx.numel() == 0) return;
  kernels::View sv = detail::view_of(src);
  for (int i = 0; i < sv.ndim; ++i) sv.sizes[i] = idx.size(i);
  detail::backend(self.device()).scatter(detail::view_of(self), detail::view_of(idx), sv, int(d), accumulate);
}

// The gradient of src: grad gathered at idx, zero beyond idx's extent when src is larger.
Tensor src_grad(const Tensor& g, int64_t d, const Tensor& idx, const Shape& src_shape) {
  Tensor gs = gather(g, d, idx);
  if (gs.sizes() == src_shape) return gs;
  Tensor full_g = zeros(src_shape, gs.options());
  Tensor part = full_g;
  for (int64_t i = 0; i < gs.dim(); ++i) part = part.narrow(i, 0, gs.size(i));
  part.copy_(gs);
  return full_g;
}

Tensor scatter_impl(const char* op, const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src,
                    bool accumulate) {
  const int64_t d = detail::wrap_dim(dim, x.dim(), op);
  detail::check_same_device(op, x, src);
  KILN_CHECK(src.dim() == index.dim(), op, ": src must have as many dims as index (", index.dim(), "), got shape ",
             src.sizes());
  for (int64_t i = 0; i < index.dim(); ++i)
    KILN_CHECK(index.size(i) <= src.size(i), op, ": index of shape ", index.sizes(), " is larger than src ",
               src.sizes(), " in dim ", i);
  Tensor idx = checked_index(op, x, d, index, x);
  Tensor out = x.detach().clone();  // dense
  Tensor s = detail::cast(src, x.dtype());
  scatter_raw(out, d, idx, s, accumulate);
  if (autograd::needs_grad({&x, &src})) {
    SavedTensor si(idx);
    Shape src_shape = src.sizes();
    const bool need_src = src.requires_grad();
    autograd::record(op, {x, src}, {out}, [si, d, src_shape, need_src, accumulate, op](const std::vector<Tensor>& g) {
      Tensor i = si.unpack(op);
      Tensor gx = accumulate ? g[0] : scatter(g[0], d, i, 0.0);
      Tensor gs = need_src ? src_grad(g[0], d, i, src_shape) : Tensor();
      return std::vector<Tensor>{gx, gs};
    });
  }
  return out;
}

}  // namespace

Tensor masked_fill(const Tensor& x, const Tensor& mask, const Tensor& value) {
  check_mask(mask, "masked_fill");
  KILN_CHECK(value.dim() == 0, "masked_fill: value must be a 0-d tensor (or a number), got shape ", value.sizes());
  return where(mask, value.to(x.dtype()), x);
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_mask(mask, "masked_fill");
  return where(mask, full({}, value, x.options()), x);
}

Tensor& masked_fill_(Tensor& self, const Tensor& mask, double value) {
  check_mask(mask, "masked_fill_");
  detail::check_inplace(self, "masked_fill_");
  KILN_CHECK(broadcast_shapes(self.sizes(), mask.sizes()) == self.sizes(), "masked_fill_: mask of shape ", mask.sizes(),
             " does not broadcast to the tensor's shape ", self.sizes());
  Tensor filled = masked_fill(self, mask, value);
  if (GradMode::is_enabled() && self.requires_grad()) return detail::rebase(self, filled, "masked_fill_");
  NoGradGuard g;
  self.copy_(filled);
  return self;
}

static Tensor triangle(const Tensor& x, int64_t diagonal, bool lower) {
  const char* op = lower ? "tril" : "triu";
  KILN_CHECK(x.dim() >= 2, op, ": expected a tensor of at least 2 dims, got shape ", x.sizes());
  const int64_t r = x.size(-2), c = x.size(-1);
  Tensor rows = arange(double(r), {.dtype = DType::i64, .device = x.device()}).unsqueeze(1);
  Tensor cols = arange(double(c), {.dtype = DType::i64, .device = x.device()}).unsqueeze(0);
  Tensor offset = sub(cols, rows);  // j - i
  Tensor keep = lower ? le(offset, double(diagonal)) : ge(offset, double(diagonal));
  return where(keep, x, zeros({}, x.options()));
}

Tensor tril(const Tensor& x, int64_t diagonal) { return triangle(x, diagonal, true); }
Tensor triu(const Tensor& x, int64_t diagonal) { return triangle(x, diagonal, false); }

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t d = detail::wrap_dim(dim, x.dim(), "gather");
  Tensor idx = checked_index("gather", x, d, index, x);
  Tensor out = gather_raw(x, d, idx);
  if (autograd::needs_grad({&x})) {
    SavedTensor si(idx);
    Shape xs = x.sizes();
    autograd::record("gather", {x}, {out}, [si, d, xs](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{scatter_add(zeros(xs, g[0].options()), d, si.unpack("gather"), g[0])};
    });
  }
  return out;
}

Tensor scatter(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  return scatter_impl("scatter", x, dim, index, src, false);
}

Tensor scatter(const Tensor& x, int64_t dim, const Tensor& index, double value) {
  Tensor src = full(index.sizes(), value, x.options());
  return scatter_impl("scatter", x, dim, index, src, false);
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  return scatter_impl("scatter_add", x, dim, index, src, true);
}

static Tensor& scatter_inplace(const char* op, Tensor& self, int64_t dim, const Tensor& index, const Tensor& src,
                               bool accumulate) {
  detail::check_inplace(self, op);
  Tensor result = scatter_impl(op, self, dim, index, src, accumulate);
  if (GradMode::is_enabled() && (self.requires_grad() || src.requires_grad())) return detail::rebase(self, result, op);
  NoGradGuard g;
  self.copy_(result);
  return self;
}

Tensor& scatter_(Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  return scatter_inplace("scatter_", self, dim, index, src, false);
}

Tensor& scatter_add_(Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  return scatter_inplace("scatter_add_", self, dim, index, src, true);
}

}  // namespace kiln
