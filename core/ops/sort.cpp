// sort, argsort and topk. The kernel sorts the rows of a dense [rows, n] tensor, so the dim is
// moved last and back; the gradient of the values puts each gradient back at its position.
#include "core/ops/internal.h"

namespace kiln {

std::tuple<Tensor, Tensor> sort(const Tensor& x, int64_t dim, bool descending) {
  const int64_t d = detail::wrap_dim(dim, x.dim(), "sort");
  if (x.dim() == 0) return {x.clone(), zeros({}, {.dtype = DType::i64, .device = x.device()})};
  Tensor moved = x.detach().transpose(d, -1).contiguous();
  Tensor values = detail::make_empty(moved.sizes(), x.dtype(), x.device());
  Tensor indices = detail::make_empty(moved.sizes(), DType::i64, x.device());
  if (moved.numel())
    detail::backend(x.device())
        .sort(detail::view_of(values), detail::view_of(indices), detail::view_of(moved), descending);
  values = values.transpose(d, -1);
  indices = indices.transpose(d, -1);
  if (autograd::needs_grad({&x})) {
    SavedTensor si(indices);
    Shape xs = x.sizes();
    autograd::record("sort", {x}, {values}, [si, d, xs](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{scatter_add(zeros(xs, g[0].options()), d, si.unpack("sort"), g[0])};
    });
  }
  return {values, indices};
}

Tensor argsort(const Tensor& x, int64_t dim, bool descending) {
  NoGradGuard g;
  return std::get<1>(sort(x, dim, descending));
}

std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted) {
  (void)sorted;  // always sorted: the kernel sorts whole rows
  const int64_t d = detail::wrap_dim(dim, x.dim(), "topk");
  const int64_t n = x.dim() == 0 ? 1 : x.size(d);
  KILN_CHECK(k >= 0 && k <= n, "topk: k (", k, ") must lie in [0, ", n, "], the size of dim ", dim, " of shape ",
             x.sizes());
  auto [values, indices] = sort(x, d, largest);
  if (x.dim() == 0) return {values, indices};
  return {values.narrow(d, 0, k), indices.narrow(d, 0, k)};
}

}  // namespace kiln
