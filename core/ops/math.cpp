// sin, cos and silu, each beside its gradient (cos, -sin, and silu's own kernel).
#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {

using kernels::BinaryOp;
using kernels::UnaryOp;

namespace {

void require_float(const Tensor& x, const char* op) {
  KILN_CHECK(is_floating(x.dtype()), op, ": expected a floating-point tensor, got ", x.dtype(),
             "; convert with .to(kiln::DType::f32)");
}

}  // namespace

Tensor sin(const Tensor& x) {
  require_float(x, "sin");
  Tensor out = detail::unary_raw(UnaryOp::sin, x);
  if (autograd::needs_grad({&x})) {
    SavedTensor sx(x);
    autograd::record("sin", {x}, {out}, [sx](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul(g[0], cos(sx.unpack("sin")))};
    });
  }
  return out;
}

Tensor cos(const Tensor& x) {
  require_float(x, "cos");
  Tensor out = detail::unary_raw(UnaryOp::cos, x);
  if (autograd::needs_grad({&x})) {
    SavedTensor sx(x);
    autograd::record("cos", {x}, {out}, [sx](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul(g[0], neg(sin(sx.unpack("cos"))))};
    });
  }
  return out;
}

Tensor silu(const Tensor& x) {
  require_float(x, "silu");
  Tensor out = detail::unary_raw(UnaryOp::silu, x);
  if (autograd::needs_grad({&x})) {
    SavedTensor sx(x);
    autograd::record("silu", {x}, {out}, [sx](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{detail::binary_raw(BinaryOp::silu_backward, g[0], sx.unpack("silu"))};
    });
  }
  return out;
}

}  // namespace kiln
