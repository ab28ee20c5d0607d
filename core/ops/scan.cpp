// cumsum and flip. cumsum's gradient is the reversed cumulative sum of the incoming gradient
// (each input feeds every later output); flip is an index_select per dim, which carries its own
// gradient.
#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {

Tensor cumsum(const Tensor& x, int64_t dim) {
  if (autocast::wants_f32({&x})) return cumsum(autocast::to_f32(x), dim);
  const int64_t d = detail::wrap_dim(dim, x.dim(), "cumsum");
  const DType dt = is_floating(x.dtype()) ? x.dtype() : DType::i64;
  Tensor xc = detail::cast(x.detach(), dt).contiguous();
  Tensor out = detail::make_empty(x.sizes(), dt, x.device());
  if (out.numel()) {
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < d; ++i) outer *= x.size(i);
    for (int64_t i = d + 1; i < x.dim(); ++i) inner *= x.size(i);
    const int64_t n = x.dim() == 0 ? 1 : x.size(d);
    detail::backend(x.device()).cumsum(detail::view_of(out), detail::view_of(xc), outer, n, inner);
  }
  if (autograd::needs_grad({&x})) {
    autograd::record("cumsum", {x}, {out}, [d](const std::vector<Tensor>& g) {
      if (g[0].dim() == 0) return std::vector<Tensor>{g[0]};
      return std::vector<Tensor>{flip(cumsum(flip(g[0], {d}), d), {d})};
    });
  }
  return out;
}

Tensor flip(const Tensor& x, const Shape& dims) {
  auto mask = detail::reduce_mask(x, dims.empty() ? Shape{} : dims, "flip");
  if (dims.empty()) return x.clone();
  Tensor out = x;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (!mask[size_t(d)] || x.size(d) <= 1) continue;
    Tensor rev = arange(double(x.size(d) - 1), -1.0, -1.0, {.dtype = DType::i64, .device = x.device()});
    out = index_select(out, d, rev);
  }
  return out;
}

}  // namespace kiln
