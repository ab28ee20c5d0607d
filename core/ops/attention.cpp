// scaled_dot_product_attention: the fused kernels of each device (forward and backward beside each
// other, the backward recomputing the weights from the saved log-sum-exp), and the "math" path,
// PyTorch's reference composition, which holds the [L, S] weights and is the fallback where no
// fused kernel fits. Both draw dropout from the same Philox lanes, so with one generator state they
// drop the same weights.
#include <cmath>
#include <limits>

#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {
namespace {

thread_local SdpaBackend tls_backend = SdpaBackend::automatic;

// Head dims the CUDA kernel takes (its tiles live in shared memory).
constexpr int64_t kCudaMaxHeadDim = 256;

struct Shapes {
  Shape lead;  // q's leading dims
  int64_t batch, L, S, E, Ev;
};

Shapes check(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double dropout_p, bool is_causal) {
  const char* op = "scaled_dot_product_attention";
  detail::check_same_device(op, q, k);
  detail::check_same_device(op, q, v);
  KILN_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": expected q [..., L, E], "
             "k [..., S, E] and v [..., S, Ev] with the same number of dims, got ",
             q.sizes(), ", ", k.sizes(), " and ", v.sizes());
  Shapes s;
  s.lead = Shape(q.sizes().begin(), q.sizes().end() - 2);
  KILN_CHECK(Shape(k.sizes().begin(), k.sizes().end() - 2) == s.lead &&
                 Shape(v.sizes().begin(), v.sizes().end() - 2) == s.lead,
             op, ": q, k and v must share their leading dims, got ", q.sizes(), ", ", k.sizes(), " and ", v.sizes());
  s.L = q.size(-2);
  s.E = q.size(-1);
  s.S = k.size(-2);
  s.Ev = v.size(-1);
  s.batch = detail::shape_numel(s.lead);
  KILN_CHECK(k.size(-1) == s.E && v.size(-2) == s.S, op, ": k must be [..., S, ", s.E,
             "] and v [..., S, Ev] with "
             "k's S, got k ",
             k.sizes(), " and v ", v.sizes());
  KILN_CHECK(is_floating(q.dtype()) && q.dtype() == k.dtype() && q.dtype() == v.dtype(), op,
             ": q, k and v must share one floating dtype, got ", q.dtype(), ", ", k.dtype(), " and ", v.dtype());
  KILN_CHECK(dropout_p >= 0 && dropout_p < 1, op, ": dropout_p must be in [0, 1), got ", dropout_p);
  if (mask.defined()) {
    KILN_CHECK(!is_causal, op,
               ": pass either attn_mask or is_causal=true, not both (fold the causal mask "
               "into attn_mask)");
    detail::check_same_device(op, q, mask);
    KILN_CHECK(mask.dtype() == DType::boolean || is_floating(mask.dtype()), op,
               ": attn_mask must be bool or "
               "floating, got ",
               mask.dtype());
    Shape full = s.lead;
    full.push_back(s.L);
    full.push_back(s.S);
    KILN_CHECK(mask.dim() <= int64_t(full.size()) && broadcast_shapes(mask.sizes(), full) == full, op,
               ": attn_mask of shape ", mask.sizes(), " does not broadcast to the weights' shape ", full);
  }
  return s;
}

Tensor math_path(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double dropout_p,
                 bool is_causal, double scale, Generator* gen) {
  Tensor s = mul(matmul(q, k.transpose(-2, -1)), scale);
  const double ninf = -std::numeric_limits<double>::infinity();
  if (is_causal)
    s = masked_fill(
        s, logical_not(tril(ones({s.size(-2), s.size(-1)}, {.dtype = DType::boolean, .device = s.device()}))), ninf);
  if (mask.defined()) s = mask.dtype() == DType::boolean ? masked_fill(s, logical_not(mask), ninf) : add(s, mask);
  // A row that sees no key gives zeros (not softmax's NaN), with a zero gradient.
  Tensor visible;
  {
    NoGradGuard g;
    visible = gt(amax(s, {-1}, true), ninf);
  }
  Tensor p = mul(softmax(where(visible, s, zeros({}, s.options())), -1), visible.to(s.dtype()));
  if (dropout_p > 0) {
    Tensor u = rand(p.sizes(), {.dtype = DType::f32, .device = p.device()}, gen);
    Tensor keep = ge(u.to(DType::f64), dropout_p);
    p = mul(p, mul(keep.to(p.dtype()), 1.0 / (1.0 - dropout_p)));
  }
  return matmul(p, v);
}

bool fused_fits(const Shapes& s, Device device) {
  if (device.is_cpu()) return true;
  return s.E <= kCudaMaxHeadDim && s.Ev <= kCudaMaxHeadDim;
}

Tensor fused_path(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double dropout_p,
                  bool is_causal, double scale, Generator* gen, const Shapes& s) {
  Tensor q3 = q.detach().reshape({s.batch, s.L, s.E}).contiguous();
  Tensor k3 = k.detach().reshape({s.batch, s.S, s.E}).contiguous();
  Tensor v3 = v.detach().reshape({s.batch, s.S, s.Ev}).contiguous();
  // Floating masks in the arithmetic type (f32, f64 for f64 inputs): the kernels read two kinds only.
  const DType acc = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor m = mask.defined() ? mask.detach() : Tensor();
  if (m.defined() && m.dtype() != DType::boolean && m.dtype() != acc) m = m.to(acc);
  Shape mask_shape = s.lead;
  mask_shape.push_back(s.L);
  mask_shape.push_back(s.S);
  kernels::SdpaParams p{};
  p.batch = s.batch;
  p.tq = s.L;
  p.tk = s.S;
  p.d = s.E;
  p.dv = s.Ev;
  p.scale = scale;
  p.causal = is_causal;
  p.dropout_p = dropout_p;
  if (dropout_p > 0) {
    // The same counters the math path's rand() of the [..., L, S] weights would reserve.
    auto [seed, offset] = detail::philox_reserve(gen, (uint64_t(s.batch * s.L * s.S) + 3) / 4);
    p.seed = seed;
    p.offset = offset;
  }
  Tensor out = detail::make_empty({s.batch, s.L, s.Ev}, q.dtype(), q.device());
  Tensor lse = detail::make_empty({s.batch, s.L}, acc, q.device());
  auto mask_view = [mask_shape](const Tensor& t) {
    return t.defined() ? detail::view_as(t, mask_shape) : detail::null_view(DType::boolean);
  };
  if (out.numel())
    detail::backend(q.device())
        .sdpa_forward(p, detail::view_of(out), detail::view_of(lse), detail::view_of(q3), detail::view_of(k3),
                      detail::view_of(v3), mask_view(m));
  Shape out_shape = s.lead;
  out_shape.push_back(s.L);
  out_shape.push_back(s.Ev);
  Tensor result = out.reshape(out_shape);
  if (autograd::needs_grad({&q, &k, &v})) {
    SavedTensor sq(q3), sk(k3), sv(v3), so(out), sl(lse), sm(m);
    Shape qs = q.sizes(), ks = k.sizes(), vs = v.sizes();
    autograd::record("scaled_dot_product_attention", {q, k, v}, {result}, [=](const std::vector<Tensor>& g) {
      const char* name = "scaled_dot_product_attention";
      Tensor qv = sq.unpack(name), kv = sk.unpack(name), vv = sv.unpack(name), ov = so.unpack(name);
      Tensor go = detail::cast(g[0].detach(), qv.dtype()).reshape({p.batch, p.tq, p.dv}).contiguous();
      Tensor gq = detail::make_empty(qv.sizes(), qv.dtype(), qv.device());
      Tensor gk = detail::make_empty(kv.sizes(), kv.dtype(), kv.device());
      Tensor gv = detail::make_empty(vv.sizes(), vv.dtype(), vv.device());
      if (go.numel() && gk.numel())
        detail::backend(qv.device())
            .sdpa_backward(p, detail::view_of(gq), detail::view_of(gk), detail::view_of(gv), detail::view_of(go),
                           detail::view_of(qv), detail::view_of(kv), detail::view_of(vv), detail::view_of(ov),
                           detail::view_of(sl.unpack(name)), mask_view(sm.unpack(name)));
      else {
        gq.zero_();
        gk.zero_();
        gv.zero_();
      }
      return std::vector<Tensor>{gq.reshape(qs), gk.reshape(ks), gv.reshape(vs)};
    });
  }
  return result;
}

}  // namespace

void set_sdpa_backend(SdpaBackend backend) { tls_backend = backend; }
SdpaBackend sdpa_backend() { return tls_backend; }

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    double dropout_p, bool is_causal, std::optional<double> scale, Generator* gen) {
  if (autocast::wants_low({&q, &k, &v}))
    return scaled_dot_product_attention(autocast::to_low(q), autocast::to_low(k), autocast::to_low(v), attn_mask,
                                        dropout_p, is_causal, scale, gen);
  const Shapes s = check(q, k, v, attn_mask, dropout_p, is_causal);
  const double sc = scale ? *scale : 1.0 / std::sqrt(double(std::max<int64_t>(s.E, 1)));
  const bool fits = fused_fits(s, q.device());
  if (tls_backend == SdpaBackend::fused)
    KILN_CHECK(fits, "scaled_dot_product_attention: the fused CUDA kernel takes head dims up to ", kCudaMaxHeadDim,
               ", got E=", s.E, " and Ev=", s.Ev, "; use SdpaBackend::math or automatic");
  if (tls_backend == SdpaBackend::math || !fits) return math_path(q, k, v, attn_mask, dropout_p, is_causal, sc, gen);
  return fused_path(q, k, v, attn_mask, dropout_p, is_causal, sc, gen, s);
}

}  // namespace kiln
