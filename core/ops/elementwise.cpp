// Elementwise ops: arithmetic with broadcasting and PyTorch's type promotion, unary maps,
// comparisons, where, and the in-place variants. Each forward sits next to its gradient.
#include <cmath>
#include <limits>

#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {

using kernels::BinaryOp;
using kernels::UnaryOp;

namespace detail {

DType result_type(const Tensor& a, const Tensor& b) {
  if (a.dtype() == b.dtype()) return a.dtype();
  const bool a0 = a.dim() == 0, b0 = b.dim() == 0;
  if (a0 != b0) {
    const Tensor& dimmed = a0 ? b : a;
    const Tensor& zero_d = a0 ? a : b;
    if (is_floating(dimmed.dtype()) == is_floating(zero_d.dtype()) && zero_d.dtype() != DType::boolean)
      return dimmed.dtype();
    if (is_floating(dimmed.dtype()) && !is_floating(zero_d.dtype())) return dimmed.dtype();
  }
  return promote_types(a.dtype(), b.dtype());
}

Tensor scalar_like(double v, const Tensor& t) {
  DType d = t.dtype();
  if (!is_floating(d) && std::floor(v) != v) d = DType::f32;  // int tensor with a fractional scalar
  if (d == DType::boolean && v != 0 && v != 1) d = DType::i64;
  return full({}, v, {.dtype = d, .device = t.device()});
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = make_empty(x.sizes(), dtype, x.device());
  if (out.numel()) backend(x.device()).copy(view_of(out), view_of(x));
  return out;
}

Tensor unary_raw(UnaryOp op, const Tensor& x, double a, double b) {
  Tensor out = make_empty(x.sizes(), x.dtype(), x.device());
  if (out.numel()) backend(x.device()).unary(op, view_of(out), view_of(x), a, b);
  return out;
}

static bool is_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::eq:
    case BinaryOp::ne:
    case BinaryOp::lt:
    case BinaryOp::le:
    case BinaryOp::gt:
    case BinaryOp::ge:
    case BinaryOp::logical_and:
    case BinaryOp::logical_or: return true;
    default: return false;
  }
}

Tensor binary_raw(BinaryOp op, const Tensor& x, const Tensor& y, double alpha, double beta) {
  check_same_device("elementwise op", x, y);
  const DType ct = result_type(x, y);
  const Shape shape = broadcast_shapes(x.sizes(), y.sizes());
  Tensor xc = cast(x, ct), yc = cast(y, ct);
  Tensor out = make_empty(shape, is_comparison(op) ? DType::boolean : ct, x.device());
  if (out.numel()) backend(x.device()).binary(op, view_of(out), view_as(xc, shape), view_as(yc, shape), alpha, beta);
  return out;
}

void check_inplace(const Tensor& self, const char* op) {
  KILN_CHECK(!(GradMode::is_enabled() && self.requires_grad() && self.is_leaf()), op,
             ": a leaf tensor that requires grad (shape ", self.sizes(),
             ") cannot be modified in "
             "place while gradients are recorded; wrap the update in kiln::NoGradGuard (as "
             "optimizers do) or use the out-of-place op");
}

void binary_inplace(BinaryOp op, Tensor& self, const Tensor& other, double alpha, double beta) {
  check_same_device("in-place op", self, other);
  KILN_CHECK(broadcast_shapes(self.sizes(), other.sizes()) == self.sizes(),
             "in-place op: operand "
             "of shape ",
             other.sizes(), " does not broadcast to the tensor's shape ", self.sizes());
  KILN_CHECK(is_floating(self.dtype()) || !is_floating(other.dtype()), "in-place op: result type ", other.dtype(),
             " cannot be stored in a tensor of dtype ", self.dtype());
  Tensor o = cast(other, self.dtype());
  if (self.numel())
    backend(self.device()).binary(op, view_of(self), view_of(self), view_as(o, self.sizes()), alpha, beta);
  self.bump_version();
}

Tensor& rebase(Tensor& self, const Tensor& result, const char* op) {
  KILN_CHECK(result.sizes() == self.sizes(), op, ": in place, the result of shape ", result.sizes(),
             " must keep the tensor's shape ", self.sizes());
  {
    NoGradGuard g;
    if (self.numel()) backend(self.device()).copy(view_of(self), view_of(result));
  }
  self.bump_version();
  self.impl()->autograd = result.impl()->autograd;
  return self;
}

}  // namespace detail

using detail::binary_raw;
using detail::unary_raw;

// ---------------------------------------------------------------- binary arithmetic

Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  Tensor out = alpha == 1.0 ? binary_raw(BinaryOp::add, a, b) : binary_raw(BinaryOp::add_scaled, a, b, alpha);
  if (autograd::needs_grad({&a, &b})) {
    autograd::record("add", {a, b}, {out}, [alpha](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0], alpha == 1.0 ? g[0] : mul(g[0], alpha)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, double alpha) { return add(a, b, -alpha); }

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::mul, a, b);
  if (autograd::needs_grad({&a, &b})) {
    SavedTensor sa, sb;
    // Each input's gradient needs only the other input.
    if (b.requires_grad()) sa = SavedTensor(a);
    if (a.requires_grad()) sb = SavedTensor(b);
    autograd::record("mul", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
      Tensor ga = sb.defined() ? mul(g[0], sb.unpack("mul")) : Tensor();
      Tensor gb = sa.defined() ? mul(g[0], sa.unpack("mul")) : Tensor();
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor ac = a, bc = b;
  if (!is_floating(a.dtype()) && !is_floating(b.dtype())) {  // true division, as in PyTorch
    ac = detail::cast(a, DType::f32);
    bc = detail::cast(b, DType::f32);
  }
  Tensor out = binary_raw(BinaryOp::div, ac, bc);
  if (autograd::needs_grad({&a, &b})) {
    SavedTensor sb(b), sout = b.requires_grad() ? SavedTensor(out) : SavedTensor();
    autograd::record("div", {a, b}, {out}, [sb, sout](const std::vector<Tensor>& g) {
      Tensor bv = sb.unpack("div");
      Tensor ga = div(g[0], bv);
      Tensor gb = sout.defined() ? neg(div(mul(g[0], sout.unpack("div")), bv)) : Tensor();
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  if (autocast::wants_f32({&a, &b})) return pow(autocast::to_f32(a), autocast::to_f32(b));
  Tensor out = binary_raw(BinaryOp::pow, a, b);
  if (autograd::needs_grad({&a, &b})) {
    SavedTensor sa(a), sb(b), so(out);
    autograd::record("pow", {a, b}, {out}, [sa, sb, so](const std::vector<Tensor>& g) {
      Tensor av = sa.unpack("pow"), bv = sb.unpack("pow");
      Tensor ga = mul(g[0], mul(bv, pow(av, sub(bv, 1.0))));
      Tensor gb = mul(g[0], mul(so.unpack("pow"), log(av)));
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, double e) {
  if (autocast::wants_f32({&a})) return pow(autocast::to_f32(a), e);
  KILN_CHECK(is_floating(a.dtype()), "pow: expected a floating-point tensor, got ", a.dtype());
  Tensor out = unary_raw(UnaryOp::pow_scalar, a, e);
  if (autograd::needs_grad({&a})) {
    SavedTensor sa(a);
    autograd::record("pow", {a}, {out}, [sa, e](const std::vector<Tensor>& g) {
      if (e == 0.0) return std::vector<Tensor>{zeros_like(g[0])};
      Tensor av = sa.unpack("pow");
      return std::vector<Tensor>{mul(g[0], mul(pow(av, e - 1.0), e))};
    });
  }
  return out;
}

static Tensor max_min(const Tensor& a, const Tensor& b, bool is_max) {
  Tensor out = binary_raw(is_max ? BinaryOp::maximum : BinaryOp::minimum, a, b);
  if (autograd::needs_grad({&a, &b})) {
    SavedTensor sa(a), sb(b);
    autograd::record(is_max ? "maximum" : "minimum", {a, b}, {out}, [sa, sb, is_max](const std::vector<Tensor>& g) {
      Tensor av = sa.unpack("maximum"), bv = sb.unpack("maximum");
      // Ties split the gradient evenly, as in PyTorch.
      Tensor wins = detail::cast(is_max ? gt(av, bv) : lt(av, bv), g[0].dtype());
      Tensor ties = detail::cast(eq(av, bv), g[0].dtype());
      Tensor wa = add(wins, ties, 0.5);
      return std::vector<Tensor>{mul(g[0], wa), mul(g[0], 1.0 - wa)};
    });
  }
  return out;
}
Tensor maximum(const Tensor& a, const Tensor& b) { return max_min(a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return max_min(a, b, false); }

Tensor add(const Tensor& a, double b) { return add(a, detail::scalar_like(b, a)); }
Tensor sub(const Tensor& a, double b) { return sub(a, detail::scalar_like(b, a)); }
Tensor mul(const Tensor& a, double b) { return mul(a, detail::scalar_like(b, a)); }
Tensor div(const Tensor& a, double b) { return div(a, detail::scalar_like(b, a)); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) { return div(detail::scalar_like(a, b), b); }
Tensor operator-(const Tensor& a) { return neg(a); }

Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator==(const Tensor& a, double b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, double b) { return ne(a, b); }
Tensor operator<(const Tensor& a, double b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, double b) { return le(a, b); }
Tensor operator>(const Tensor& a, double b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, double b) { return ge(a, b); }
Tensor operator==(double a, const Tensor& b) { return eq(b, a); }
Tensor operator!=(double a, const Tensor& b) { return ne(b, a); }
Tensor operator<(double a, const Tensor& b) { return gt(b, a); }
Tensor operator<=(double a, const Tensor& b) { return ge(b, a); }
Tensor operator>(double a, const Tensor& b) { return lt(b, a); }
Tensor operator>=(double a, const Tensor& b) { return le(b, a); }

static void require_bool(const char* op, const Tensor& t) {
  KILN_CHECK(t.dtype() == DType::boolean, op, ": expected bool tensors (masks), got ", t.dtype(),
             "; compare first (x > 0) or use the arithmetic ops");
}
Tensor logical_and(const Tensor& a, const Tensor& b) {
  return binary_raw(BinaryOp::logical_and, detail::cast(a, DType::boolean), detail::cast(b, DType::boolean));
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  return binary_raw(BinaryOp::logical_or, detail::cast(a, DType::boolean), detail::cast(b, DType::boolean));
}
Tensor logical_xor(const Tensor& a, const Tensor& b) {
  return binary_raw(BinaryOp::ne, detail::cast(a, DType::boolean), detail::cast(b, DType::boolean));
}
Tensor operator&(const Tensor& a, const Tensor& b) {
  require_bool("operator&", a);
  require_bool("operator&", b);
  return logical_and(a, b);
}
Tensor operator|(const Tensor& a, const Tensor& b) {
  require_bool("operator|", a);
  require_bool("operator|", b);
  return logical_or(a, b);
}
Tensor operator^(const Tensor& a, const Tensor& b) {
  require_bool("operator^", a);
  require_bool("operator^", b);
  return logical_xor(a, b);
}
Tensor operator~(const Tensor& a) {
  require_bool("operator~", a);
  return logical_not(a);
}

// ---------------------------------------------------------------- in place

static bool record_inplace(const Tensor& self, const Tensor& other) {
  return GradMode::is_enabled() && (self.requires_grad() || (other.defined() && other.requires_grad()));
}

Tensor& add_(Tensor& self, const Tensor& other, double alpha) {
  detail::check_inplace(self, "add_");
  if (record_inplace(self, other)) return detail::rebase(self, add(self, other, alpha), "add_");
  detail::binary_inplace(alpha == 1.0 ? BinaryOp::add : BinaryOp::add_scaled, self, other, alpha);
  return self;
}
Tensor& sub_(Tensor& self, const Tensor& other, double alpha) { return add_(self, other, -alpha); }
Tensor& mul_(Tensor& self, const Tensor& other) {
  detail::check_inplace(self, "mul_");
  if (record_inplace(self, other)) return detail::rebase(self, mul(self, other), "mul_");
  detail::binary_inplace(BinaryOp::mul, self, other);
  return self;
}
Tensor& div_(Tensor& self, const Tensor& other) {
  detail::check_inplace(self, "div_");
  KILN_CHECK(is_floating(self.dtype()), "div_: true division cannot be stored in a tensor of dtype ", self.dtype());
  if (record_inplace(self, other)) return detail::rebase(self, div(self, other), "div_");
  detail::binary_inplace(BinaryOp::div, self, other);
  return self;
}
Tensor& add_(Tensor& self, double v) { return add_(self, detail::scalar_like(v, self)); }
Tensor& mul_(Tensor& self, double v) { return mul_(self, detail::scalar_like(v, self)); }
Tensor& div_(Tensor& self, double v) { return div_(self, detail::scalar_like(v, self)); }

Tensor& relu_(Tensor& self) {
  detail::check_inplace(self, "relu_");
  if (record_inplace(self, Tensor())) return detail::rebase(self, relu(self), "relu_");
  if (self.numel())
    detail::backend(self.device()).unary(UnaryOp::relu, detail::view_of(self), detail::view_of(self), 0, 0);
  self.bump_version();
  return self;
}

Tensor& clamp_(Tensor& self, std::optional<double> lo, std::optional<double> hi) {
  detail::check_inplace(self, "clamp_");
  if (record_inplace(self, Tensor())) return detail::rebase(self, clamp(self, lo, hi), "clamp_");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (self.numel())
    detail::backend(self.device())
        .unary(UnaryOp::clamp, detail::view_of(self), detail::view_of(self), lo.value_or(nan), hi.value_or(nan));
  self.bump_version();
  return self;
}

// ---------------------------------------------------------------- unary

namespace {

void require_float(const Tensor& x, const char* op) {
  KILN_CHECK(is_floating(x.dtype()), op, ": expected a floating-point tensor, got ", x.dtype(),
             "; convert with .to(kiln::DType::f32)");
}

// A unary op whose gradient is grad_fn(g, saved) with `saved` the input or the output.
template <class GradFn>
Tensor unary_with_grad(const char* name, UnaryOp op, const Tensor& x, bool save_output, double a, double b,
                       GradFn grad_fn) {
  Tensor out = unary_raw(op, x, a, b);
  if (autograd::needs_grad({&x})) {
    SavedTensor s(save_output ? out : x);
    autograd::record(name, {x}, {out}, [s, name, grad_fn](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{grad_fn(g[0], s.unpack(name))};
    });
  }
  return out;
}

}  // namespace

Tensor neg(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::neg, x);
  if (autograd::needs_grad({&x}))
    autograd::record("neg", {x}, {out}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{neg(g[0])}; });
  return out;
}

Tensor abs(const Tensor& x) {
  return unary_with_grad("abs", UnaryOp::abs, x, false, 0, 0,
                         [](const Tensor& g, const Tensor& v) { return mul(g, sign(v)); });
}
Tensor exp(const Tensor& x) {
  if (autocast::wants_f32({&x})) return exp(autocast::to_f32(x));
  require_float(x, "exp");
  return unary_with_grad("exp", UnaryOp::exp, x, true, 0, 0,
                         [](const Tensor& g, const Tensor& y) { return mul(g, y); });
}
Tensor log(const Tensor& x) {
  if (autocast::wants_f32({&x})) return log(autocast::to_f32(x));
  require_float(x, "log");
  return unary_with_grad("log", UnaryOp::log, x, false, 0, 0,
                         [](const Tensor& g, const Tensor& v) { return div(g, v); });
}
Tensor sqrt(const Tensor& x) {
  require_float(x, "sqrt");
  return unary_with_grad("sqrt", UnaryOp::sqrt, x, true, 0, 0,
                         [](const Tensor& g, const Tensor& y) { return div(g, mul(y, 2.0)); });
}
Tensor rsqrt(const Tensor& x) {
  require_float(x, "rsqrt");
  return unary_with_grad("rsqrt", UnaryOp::rsqrt, x, true, 0, 0,
                         [](const Tensor& g, const Tensor& y) { return mul(g, mul(pow(y, 3.0), -0.5)); });
}
Tensor square(const Tensor& x) {
  return unary_with_grad("square", UnaryOp::square, x, false, 0, 0,
                         [](const Tensor& g, const Tensor& v) { return mul(g, mul(v, 2.0)); });
}
Tensor sign(const Tensor& x) { return unary_raw(UnaryOp::sign, x); }
Tensor relu(const Tensor& x) {
  return unary_with_grad("relu", UnaryOp::relu, x, true, 0, 0,
                         [](const Tensor& g, const Tensor& y) { return binary_raw(BinaryOp::relu_backward, g, y); });
}
Tensor leaky_relu(const Tensor& x, double slope) {
  require_float(x, "leaky_relu");
  return unary_with_grad(
      "leaky_relu", UnaryOp::leaky_relu, x, false, slope, 0,
      [slope](const Tensor& g, const Tensor& v) { return binary_raw(BinaryOp::leaky_relu_backward, g, v, slope); });
}
Tensor gelu(const Tensor& x, const std::string& approximate) {
  require_float(x, "gelu");
  KILN_CHECK(approximate == "none" || approximate == "tanh",
             "gelu: approximate must be \"none\" "
             "or \"tanh\", got \"",
             approximate, "\"");
  const bool t = approximate == "tanh";
  return unary_with_grad("gelu", t ? UnaryOp::gelu_tanh : UnaryOp::gelu, x, false, 0, 0,
                         [t](const Tensor& g, const Tensor& v) {
                           return binary_raw(t ? BinaryOp::gelu_tanh_backward : BinaryOp::gelu_backward, g, v);
                         });
}
Tensor sigmoid(const Tensor& x) {
  require_float(x, "sigmoid");
  return unary_with_grad("sigmoid", UnaryOp::sigmoid, x, true, 0, 0,
                         [](const Tensor& g, const Tensor& y) { return binary_raw(BinaryOp::sigmoid_backward, g, y); });
}
Tensor tanh(const Tensor& x) {
  require_float(x, "tanh");
  return unary_with_grad("tanh", UnaryOp::tanh, x, true, 0, 0,
                         [](const Tensor& g, const Tensor& y) { return binary_raw(BinaryOp::tanh_backward, g, y); });
}
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  KILN_CHECK(lo || hi, "clamp: give at least one of min and max");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double l = lo.value_or(nan), h = hi.value_or(nan);
  return unary_with_grad("clamp", UnaryOp::clamp, x, false, l, h, [l, h](const Tensor& g, const Tensor& v) {
    return binary_raw(BinaryOp::clamp_backward, g, v, l, h);
  });
}
Tensor logical_not(const Tensor& x) { return unary_raw(UnaryOp::logical_not, detail::cast(x, DType::boolean)); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::check_same_device("where", cond, a);
  detail::check_same_device("where", a, b);
  KILN_CHECK(cond.dtype() == DType::boolean, "where: condition must be a bool tensor, got ", cond.dtype(),
             "; build it with a comparison such as kiln::gt(x, 0)");
  const DType ct = detail::result_type(a, b);
  const Shape shape = broadcast_shapes(cond.sizes(), broadcast_shapes(a.sizes(), b.sizes()));
  Tensor ac = detail::cast(a, ct), bc = detail::cast(b, ct);
  Tensor out = detail::make_empty(shape, ct, a.device());
  if (out.numel())
    detail::backend(a.device())
        .where(detail::view_of(out), detail::view_as(cond, shape), detail::view_as(ac, shape),
               detail::view_as(bc, shape));
  if (autograd::needs_grad({&a, &b})) {
    SavedTensor sc(cond);
    autograd::record("where", {a, b}, {out}, [sc](const std::vector<Tensor>& g) {
      Tensor c = sc.unpack("where");
      Tensor z = zeros({}, g[0].options());
      return std::vector<Tensor>{where(c, g[0], z), where(c, z, g[0])};
    });
  }
  return out;
}

// ---------------------------------------------------------------- comparisons

Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ge, a, b); }
Tensor eq(const Tensor& a, double b) { return eq(a, detail::scalar_like(b, a)); }
Tensor ne(const Tensor& a, double b) { return ne(a, detail::scalar_like(b, a)); }
Tensor lt(const Tensor& a, double b) { return lt(a, detail::scalar_like(b, a)); }
Tensor le(const Tensor& a, double b) { return le(a, detail::scalar_like(b, a)); }
Tensor gt(const Tensor& a, double b) { return gt(a, detail::scalar_like(b, a)); }
Tensor ge(const Tensor& a, double b) { return ge(a, detail::scalar_like(b, a)); }

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  NoGradGuard g;
  if (broadcast_shapes(a.sizes(), b.sizes()) != a.sizes() || a.sizes() != b.sizes()) return false;
  Tensor ad = detail::cast(a.to(Device::cpu()), DType::f64), bd = detail::cast(b.to(Device::cpu()), DType::f64);
  Tensor diff = abs(sub(ad, bd));
  Tensor tol = add(mul(abs(bd), rtol), atol);
  return all(le(diff, tol)).item<bool>();
}

bool equal(const Tensor& a, const Tensor& b) {
  NoGradGuard g;
  if (a.sizes() != b.sizes()) return false;
  return all(eq(a, b)).item<bool>();
}

Tensor isfinite_all(const Tensor& x) {
  NoGradGuard g;
  if (!is_floating(x.dtype())) return full({}, 1, {.dtype = DType::boolean, .device = x.device()});
  // x - x is 0 for finite values and NaN for inf and NaN.
  Tensor d = sub(x, x);
  return all(eq(d, 0.0));
}

}  // namespace kiln
