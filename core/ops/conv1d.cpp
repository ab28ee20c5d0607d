// conv1d as conv2d over a height of one: [N, C, L] -> [N, C, 1, L] with a [C_out, C_in/g, 1, K]
// weight. The unsqueezes are views, so the gradient flows back through them.
#include "core/ops/internal.h"

namespace kiln {

Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding, int64_t dilation,
              int64_t groups) {
  KILN_CHECK(w.dim() == 3, "conv1d: weight must be [out_channels, in_channels/groups, kernel_size], got ", w.sizes());
  KILN_CHECK(x.dim() == 2 || x.dim() == 3, "conv1d: expected input of shape [N, ", w.size(1) * groups,
             ", L] (or unbatched [C, L]), got ", x.sizes());
  const bool unbatched = x.dim() == 2;
  Tensor xb = unbatched ? x.unsqueeze(0) : x;
  KILN_CHECK(xb.size(1) == w.size(1) * groups, "conv1d: expected input of shape [N, ", w.size(1) * groups,
             ", L] for weight ", w.sizes(), (groups > 1 ? " with groups=" + std::to_string(groups) : ""), ", got ",
             x.sizes());
  Tensor y = conv2d(xb.unsqueeze(2), w.unsqueeze(2), b, {1, stride}, {0, padding}, {1, dilation}, groups);
  y = y.squeeze(2);
  return unbatched ? y.squeeze(0) : y;
}

}  // namespace kiln
