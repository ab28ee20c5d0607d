// Matrix products: matmul with PyTorch's broadcasting rules, bmm, mm and linear. Everything
// funnels into one batched kernel call; transposed operands are passed as strided views, which
// the kernels map without copying.
#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {

namespace {

// out [B, M, N] = a [B, M, K] @ b [B, K, N] without autograd.
Tensor bmm_raw(const Tensor& a, const Tensor& b) {
  Tensor out = detail::make_empty({a.size(0), a.size(1), b.size(2)}, a.dtype(), a.device());
  if (out.numel())
    detail::backend(a.device()).matmul(detail::view_of(out), detail::view_of(a), detail::view_of(b), 0.0);
  return out;
}

void check_mm(const char* op, const Tensor& a, const Tensor& b) {
  detail::check_same_device(op, a, b);
  KILN_CHECK(a.dtype() == b.dtype(), op, ": expected both operands to have one dtype, got ", a.dtype(), " and ",
             b.dtype());
}

}  // namespace

Tensor bmm(const Tensor& a, const Tensor& b) {
  if (autocast::wants_low({&a, &b})) return bmm(autocast::to_low(a), autocast::to_low(b));
  check_mm("bmm", a, b);
  KILN_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-D tensors, got shapes ", a.sizes(), " and ", b.sizes());
  KILN_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "bmm: shapes ", a.sizes(), " and ", b.sizes(),
             " cannot be multiplied (need [B, M, K] and [B, K, N])");
  Tensor out = bmm_raw(a, b);
  if (autograd::needs_grad({&a, &b})) {
    SavedTensor sa = b.requires_grad() ? SavedTensor(a) : SavedTensor();
    SavedTensor sb = a.requires_grad() ? SavedTensor(b) : SavedTensor();
    autograd::record("bmm", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
      Tensor ga = sb.defined() ? bmm(g[0], sb.unpack("bmm").transpose(1, 2)) : Tensor();
      Tensor gb = sa.defined() ? bmm(sa.unpack("bmm").transpose(1, 2), g[0]) : Tensor();
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

Tensor mm(const Tensor& a, const Tensor& b) {
  KILN_CHECK(a.dim() == 2 && b.dim() == 2, "mm: expected 2-D tensors, got shapes ", a.sizes(), " and ", b.sizes());
  KILN_CHECK(a.size(1) == b.size(0), "mm: shapes ", a.sizes(), " and ", b.sizes(), " cannot be multiplied (", a.size(1),
             " != ", b.size(0), ")");
  return bmm(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0);
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (autocast::wants_low({&a, &b})) return matmul(autocast::to_low(a), autocast::to_low(b));
  check_mm("matmul", a, b);
  KILN_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least 1 dim, got shapes ", a.sizes(), " and ",
             b.sizes());
  if (a.dim() == 1 && b.dim() == 1) {
    KILN_CHECK(a.size(0) == b.size(0), "matmul: vectors of sizes ", a.size(0), " and ", b.size(0));
    return sum(mul(a, b));
  }
  const bool a_vec = a.dim() == 1, b_vec = b.dim() == 1;
  Tensor a2 = a_vec ? a.unsqueeze(0) : a;
  Tensor b2 = b_vec ? b.unsqueeze(-1) : b;
  const int64_t M = a2.size(-2), K = a2.size(-1), K2 = b2.size(-2), N = b2.size(-1);
  KILN_CHECK(K == K2, "matmul: shapes ", a.sizes(), " and ", b.sizes(), " cannot be multiplied (", K, " != ", K2, ")");
  Shape batch = broadcast_shapes(Shape(a2.sizes().begin(), a2.sizes().end() - 2),
                                 Shape(b2.sizes().begin(), b2.sizes().end() - 2));
  const int64_t B = detail::shape_numel(batch);
  Shape ea = batch, eb = batch;
  ea.insert(ea.end(), {M, K});
  eb.insert(eb.end(), {K, N});
  Tensor out = bmm(a2.expand(ea).reshape({B, M, K}), b2.expand(eb).reshape({B, K, N}));
  Shape out_shape = batch;
  if (!a_vec) out_shape.push_back(M);
  if (!b_vec) out_shape.push_back(N);
  return out.reshape(out_shape);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (autocast::wants_low({&x, &w, &b})) return linear(autocast::to_low(x), autocast::to_low(w), autocast::to_low(b));
  check_mm("linear", x, w);
  KILN_CHECK(w.dim() == 2, "linear: weight must be [out_features, in_features], got ", w.sizes());
  KILN_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input of shape ", x.sizes(), " does not match weight [",
             w.size(0), ", ", w.size(1), "] (last dim must be ", w.size(1), ")");
  if (b.defined())
    KILN_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear: bias of shape ", b.sizes(), " does not match ",
               w.size(0), " output features");
  const int64_t in = w.size(1), outf = w.size(0);
  Tensor x2 = x.detach().reshape({-1, in});
  const int64_t n = x2.size(0);
  Tensor out = detail::make_empty({n, outf}, x.dtype(), x.device());
  auto& be = detail::backend(x.device());
  if (out.numel()) {
    if (b.defined()) { be.copy(detail::view_of(out), detail::view_as(detail::cast(b, x.dtype()), {n, outf})); }
    Tensor wt = w.detach().t().unsqueeze(0);
    be.matmul(detail::view_of(out.unsqueeze(0)), detail::view_of(x2.unsqueeze(0)), detail::view_of(wt),
              b.defined() ? 1.0 : 0.0);
  }
  Shape out_shape = x.sizes();
  out_shape.back() = outf;
  out = out.reshape(out_shape);
  if (autograd::needs_grad({&x, &w, &b})) {
    SavedTensor sx = w.requires_grad() ? SavedTensor(x) : SavedTensor();
    SavedTensor sw = x.requires_grad() ? SavedTensor(w) : SavedTensor();
    const bool has_b = b.defined();
    Shape xs = x.sizes();
    autograd::record("linear", {x, w, b}, {out}, [sx, sw, in, outf, has_b, xs](const std::vector<Tensor>& g) {
      Tensor g2 = g[0].reshape({-1, outf});
      Tensor gx, gw, gb;
      if (sw.defined()) gx = mm(g2, sw.unpack("linear")).reshape(xs);
      if (sx.defined()) gw = mm(g2.t(), sx.unpack("linear").reshape({-1, in}));
      if (has_b) gb = sum(g2, {0});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return out;
}

}  // namespace kiln
