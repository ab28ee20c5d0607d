// Neural-network ops: convolution, pooling, dropout, normalisation, softmax and the losses.
// Convolution, pooling, softmax and nll have kernels of their own in both directions; the
// normalisations are compositions of differentiable ops.
#include <cmath>

#include "core/autocast.h"
#include "core/ops/internal.h"

namespace kiln {

using kernels::Conv2dParams;
using kernels::Pool2dParams;

namespace {

int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

Tensor dense(const Tensor& t) { return t.detach().contiguous(); }

}  // namespace

// ---------------------------------------------------------------- conv2d

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, std::pair<int64_t, int64_t> stride,
              std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups) {
  if (autocast::wants_low({&x, &w, &b}))
    return conv2d(autocast::to_low(x), autocast::to_low(w), autocast::to_low(b), stride, padding, dilation, groups);
  detail::check_same_device("conv2d", x, w);
  KILN_CHECK(w.dim() == 4, "conv2d: weight must be [out_channels, in_channels/groups, kH, kW], got ", w.sizes());
  KILN_CHECK(groups >= 1 && w.size(0) % groups == 0, "conv2d: groups=", groups, " must divide the ", w.size(0),
             " output channels");
  const int64_t cin = w.size(1) * groups;
  KILN_CHECK(x.dim() == 4 && x.size(1) == cin, "conv2d: expected input of shape [N, ", cin, ", H, W] for weight ",
             w.sizes(), (groups > 1 ? " with groups=" + std::to_string(groups) : ""), ", got ", x.sizes());
  KILN_CHECK(x.dtype() == w.dtype(), "conv2d: input is ", x.dtype(), " but weight is ", w.dtype());
  KILN_CHECK(stride.first > 0 && stride.second > 0 && dilation.first > 0 && dilation.second > 0 && padding.first >= 0 &&
                 padding.second >= 0,
             "conv2d: stride and dilation must be "
             "positive and padding non-negative, got stride (",
             stride.first, ", ", stride.second, "), padding (", padding.first, ", ", padding.second, "), dilation (",
             dilation.first, ", ", dilation.second, ")");
  if (b.defined()) {
    detail::check_same_device("conv2d", x, b);
    KILN_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "conv2d: bias must be [", w.size(0), "], got ", b.sizes());
  }
  Conv2dParams p{};
  p.n = x.size(0);
  p.c_in = cin;
  p.h_in = x.size(2);
  p.w_in = x.size(3);
  p.c_out = w.size(0);
  p.kh = w.size(2);
  p.kw = w.size(3);
  p.stride_h = stride.first;
  p.stride_w = stride.second;
  p.pad_h = padding.first;
  p.pad_w = padding.second;
  p.dil_h = dilation.first;
  p.dil_w = dilation.second;
  p.groups = groups;
  p.h_out = conv_out(p.h_in, p.kh, p.stride_h, p.pad_h, p.dil_h);
  p.w_out = conv_out(p.w_in, p.kw, p.stride_w, p.pad_w, p.dil_w);
  KILN_CHECK(p.h_out > 0 && p.w_out > 0, "conv2d: input ", x.sizes(), " is smaller than the ", "(dilated) kernel ",
             w.sizes(), " with padding (", p.pad_h, ", ", p.pad_w, ")");
  // The CPU kernel takes f32, f64 and bf16 (bf16 operands, f32 accumulation): f16 is widened to
  // f32 there and rounded once on the way out.
  const DType kdt = x.device().is_cpu() && x.dtype() == DType::f16 ? DType::f32 : x.dtype();
  Tensor xc = detail::cast(dense(x), kdt), wc = detail::cast(dense(w), kdt);
  Tensor bc = b.defined() ? detail::cast(dense(b), kdt) : Tensor();
  Tensor out = detail::make_empty({p.n, p.c_out, p.h_out, p.w_out}, kdt, x.device());
  if (out.numel())
    detail::backend(x.device())
        .conv2d_forward(p, detail::view_of(out), detail::view_of(xc), detail::view_of(wc),
                        bc.defined() ? detail::view_of(bc) : detail::null_view(kdt));
  out = detail::cast(out, x.dtype());
  if (autograd::needs_grad({&x, &w, &b})) {
    SavedTensor sx(xc), sw(wc);
    const bool need_x = x.requires_grad(), need_w = w.requires_grad(), need_b = b.defined() && b.requires_grad();
    autograd::record("conv2d", {x, w, b}, {out}, [p, sx, sw, need_x, need_w, need_b](const std::vector<Tensor>& g) {
      Tensor xv = sx.unpack("conv2d"), wv = sw.unpack("conv2d");
      Tensor go = detail::cast(dense(g[0]), xv.dtype());  // the engine casts the grads back
      Tensor gx = need_x ? detail::make_empty(xv.sizes(), xv.dtype(), xv.device()) : Tensor();
      Tensor gw = need_w ? detail::make_empty(wv.sizes(), wv.dtype(), wv.device()) : Tensor();
      Tensor gb = need_b ? detail::make_empty({p.c_out}, wv.dtype(), wv.device()) : Tensor();
      auto v = [&](const Tensor& t) { return t.defined() ? detail::view_of(t) : detail::null_view(xv.dtype()); };
      detail::backend(xv.device())
          .conv2d_backward(p, v(gx), v(gw), v(gb), detail::view_of(go), detail::view_of(xv), detail::view_of(wv));
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return out;
}

// ---------------------------------------------------------------- pooling

namespace {

Pool2dParams pool_params(const char* op, const Tensor& x, std::pair<int64_t, int64_t> k, std::pair<int64_t, int64_t> s,
                         std::pair<int64_t, int64_t> pad) {
  KILN_CHECK(x.dim() == 4, op, ": expected a [N, C, H, W] input, got ", x.sizes());
  if (s.first == 0 && s.second == 0) s = k;
  KILN_CHECK(k.first > 0 && k.second > 0 && s.first > 0 && s.second > 0, op,
             ": kernel and stride must be positive, got kernel (", k.first, ", ", k.second, "), stride (", s.first,
             ", ", s.second, ")");
  KILN_CHECK(pad.first >= 0 && pad.second >= 0 && pad.first * 2 <= k.first && pad.second * 2 <= k.second, op,
             ": padding (", pad.first, ", ", pad.second, ") must be at most half the kernel (", k.first, ", ", k.second,
             ")");
  Pool2dParams p{};
  p.n = x.size(0);
  p.c = x.size(1);
  p.h_in = x.size(2);
  p.w_in = x.size(3);
  p.kh = k.first;
  p.kw = k.second;
  p.stride_h = s.first;
  p.stride_w = s.second;
  p.pad_h = pad.first;
  p.pad_w = pad.second;
  p.h_out = (p.h_in + 2 * p.pad_h - p.kh) / p.stride_h + 1;
  p.w_out = (p.w_in + 2 * p.pad_w - p.kw) / p.stride_w + 1;
  KILN_CHECK(p.h_out > 0 && p.w_out > 0, op, ": input ", x.sizes(), " is smaller than the kernel (", k.first, ", ",
             k.second, ")");
  return p;
}

}  // namespace

std::tuple<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, std::pair<int64_t, int64_t> kernel,
                                                   std::pair<int64_t, int64_t> stride,
                                                   std::pair<int64_t, int64_t> padding) {
  Pool2dParams p = pool_params("max_pool2d", x, kernel, stride, padding);
  Tensor xc = dense(x);
  Tensor out = detail::make_empty({p.n, p.c, p.h_out, p.w_out}, x.dtype(), x.device());
  Tensor idx = detail::make_empty(out.sizes(), DType::i64, x.device());
  if (out.numel())
    detail::backend(x.device()).max_pool2d_forward(p, detail::view_of(out), detail::view_of(idx), detail::view_of(xc));
  if (autograd::needs_grad({&x})) {
    SavedTensor si(idx);
    autograd::record("max_pool2d", {x}, {out}, [p, si](const std::vector<Tensor>& g) {
      Tensor go = dense(g[0]);
      Tensor gx = detail::make_empty({p.n, p.c, p.h_in, p.w_in}, go.dtype(), go.device());
      detail::backend(go.device())
          .max_pool2d_backward(p, detail::view_of(gx), detail::view_of(go), detail::view_of(si.unpack("max_pool2d")));
      return std::vector<Tensor>{gx};
    });
  }
  return {out, idx};
}

Tensor max_pool2d(const Tensor& x, std::pair<int64_t, int64_t> kernel, std::pair<int64_t, int64_t> stride,
                  std::pair<int64_t, int64_t> padding) {
  return std::get<0>(max_pool2d_with_indices(x, kernel, stride, padding));
}

Tensor avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> kernel, std::pair<int64_t, int64_t> stride,
                  std::pair<int64_t, int64_t> padding, bool count_include_pad) {
  Pool2dParams p = pool_params("avg_pool2d", x, kernel, stride, padding);
  p.count_include_pad = count_include_pad;
  Tensor xc = dense(x);
  Tensor out = detail::make_empty({p.n, p.c, p.h_out, p.w_out}, x.dtype(), x.device());
  if (out.numel()) detail::backend(x.device()).avg_pool2d_forward(p, detail::view_of(out), detail::view_of(xc));
  if (autograd::needs_grad({&x})) {
    autograd::record("avg_pool2d", {x}, {out}, [p](const std::vector<Tensor>& g) {
      Tensor go = dense(g[0]);
      Tensor gx = detail::make_empty({p.n, p.c, p.h_in, p.w_in}, go.dtype(), go.device());
      detail::backend(go.device()).avg_pool2d_backward(p, detail::view_of(gx), detail::view_of(go));
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> output_size) {
  KILN_CHECK(x.dim() == 4, "adaptive_avg_pool2d: expected a [N, C, H, W] input, got ", x.sizes());
  const int64_t H = x.size(2), W = x.size(3), oh = output_size.first, ow = output_size.second;
  KILN_CHECK(oh > 0 && ow > 0, "adaptive_avg_pool2d: output size must be positive, got (", oh, ", ", ow, ")");
  if (H % oh == 0 && W % ow == 0) return avg_pool2d(x, {H / oh, W / ow}, {H / oh, W / ow});
  // General case: PyTorch's bins [floor(i*H/oh), ceil((i+1)*H/oh)).
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < oh; ++i) {
    const int64_t h0 = (i * H) / oh, h1 = ((i + 1) * H + oh - 1) / oh;
    std::vector<Tensor> cols;
    for (int64_t j = 0; j < ow; ++j) {
      const int64_t w0 = (j * W) / ow, w1 = ((j + 1) * W + ow - 1) / ow;
      cols.push_back(mean(x.narrow(2, h0, h1 - h0).narrow(3, w0, w1 - w0), {2, 3}));
    }
    rows.push_back(stack(cols, -1));
  }
  return stack(rows, -2);
}

// ---------------------------------------------------------------- dropout and normalisation

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  KILN_CHECK(p >= 0 && p <= 1, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0) return x;
  if (p == 1) return mul(x, 0.0);
  Tensor mask = bernoulli(x.sizes(), 1.0 - p, {.dtype = x.dtype(), .device = x.device()}, gen);
  mask.mul_(1.0 / (1.0 - p));
  return mul(x, mask);
}

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  if (autocast::wants_f32({&x}))  // statistics in f32; the output follows the widest input
    return batch_norm(autocast::to_f32(x), running_mean, running_var, weight, bias, training, momentum, eps);
  KILN_CHECK(x.dim() >= 2, "batch_norm: expected [N, C, ...] input, got ", x.sizes());
  const int64_t C = x.size(1);
  auto check_vec = [&](const Tensor& t, const char* what) {
    if (t.defined())
      KILN_CHECK(t.dim() == 1 && t.size(0) == C, "batch_norm: ", what, " must have shape [", C, "] for input ",
                 x.sizes(), ", got ", t.sizes());
  };
  check_vec(running_mean, "running_mean");
  check_vec(running_var, "running_var");
  check_vec(weight, "weight");
  check_vec(bias, "bias");
  Shape bshape(size_t(x.dim()), 1);
  bshape[1] = C;
  Shape dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Tensor m, v;
  if (training) {
    const int64_t count = x.numel() / std::max<int64_t>(C, 1);
    KILN_CHECK(count > 1,
               "batch_norm: expected more than 1 value per channel when training, got "
               "input of shape ",
               x.sizes());
    m = mean(x, dims, true);
    v = var(x, dims, 0, true);
    if (running_mean.defined() && running_var.defined()) {
      NoGradGuard g;
      Tensor rm = running_mean, rv = running_var;
      rm.mul_(1.0 - momentum).add_(m.detach().reshape({C}).to(rm.dtype()), momentum);
      Tensor unbiased = mul(v.detach().reshape({C}), double(count) / double(count - 1));
      rv.mul_(1.0 - momentum).add_(unbiased.to(rv.dtype()), momentum);
    }
  } else {
    KILN_CHECK(running_mean.defined() && running_var.defined(), "batch_norm: evaluation needs "
                                                                "running_mean and running_var (or use training=true)");
    m = running_mean.reshape(bshape).to(x.dtype());
    v = running_var.reshape(bshape).to(x.dtype());
  }
  Tensor y = mul(sub(x, m), rsqrt(add(v, eps)));
  if (weight.defined()) y = mul(y, weight.reshape(bshape));
  if (bias.defined()) y = add(y, bias.reshape(bshape));
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  if (autocast::wants_f32({&x, &weight, &bias}))
    return layer_norm(autocast::to_f32(x), normalized_shape, autocast::to_f32(weight), autocast::to_f32(bias), eps);
  const int64_t k = int64_t(normalized_shape.size());
  KILN_CHECK(k >= 1 && k <= x.dim(), "layer_norm: normalized_shape ", normalized_shape, " does not fit input of shape ",
             x.sizes());
  for (int64_t i = 0; i < k; ++i)
    KILN_CHECK(x.sizes()[size_t(x.dim() - k + i)] == normalized_shape[size_t(i)], "layer_norm: input of shape ",
               x.sizes(), " does not end with normalized_shape ", normalized_shape);
  if (weight.defined())
    KILN_CHECK(weight.sizes() == normalized_shape, "layer_norm: weight of shape ", weight.sizes(),
               " must equal normalized_shape ", normalized_shape);
  if (bias.defined())
    KILN_CHECK(bias.sizes() == normalized_shape, "layer_norm: bias of shape ", bias.sizes(),
               " must equal normalized_shape ", normalized_shape);
  Shape dims;
  for (int64_t i = x.dim() - k; i < x.dim(); ++i) dims.push_back(i);
  Tensor m = mean(x, dims, true);
  Tensor v = var(x, dims, 0, true);
  Tensor y = mul(sub(x, m), rsqrt(add(v, eps)));
  if (weight.defined()) y = mul(y, weight);
  if (bias.defined()) y = add(y, bias);
  return y;
}

// ---------------------------------------------------------------- softmax

static Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  if (autocast::wants_f32({&x})) return softmax_impl(autocast::to_f32(x), dim, log);
  const char* name = log ? "log_softmax" : "softmax";
  KILN_CHECK(is_floating(x.dtype()), name, ": expected a floating-point tensor, got ", x.dtype());
  if (x.dim() == 0) return log ? zeros_like(x) : ones_like(x);
  const int64_t d = detail::wrap_dim(dim, x.dim(), name);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= x.size(i);
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= x.size(i);
  const int64_t n = x.size(d);
  Tensor xc = dense(x);
  Tensor out = detail::make_empty(x.sizes(), x.dtype(), x.device());
  if (out.numel())
    detail::backend(x.device()).softmax_forward(detail::view_of(out), detail::view_of(xc), outer, n, inner, log);
  if (autograd::needs_grad({&x})) {
    SavedTensor so(out);
    autograd::record(name, {x}, {out}, [so, outer, n, inner, log, name](const std::vector<Tensor>& g) {
      Tensor y = so.unpack(name);
      Tensor go = dense(g[0]);
      Tensor gx = detail::make_empty(y.sizes(), y.dtype(), y.device());
      detail::backend(y.device())
          .softmax_backward(detail::view_of(gx), detail::view_of(go), detail::view_of(y), outer, n, inner, log);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

// ---------------------------------------------------------------- losses

Reduction parse_reduction(const std::string& s) {
  if (s == "mean") return Reduction::mean;
  if (s == "sum") return Reduction::sum;
  if (s == "none") return Reduction::none;
  fail("reduction: expected \"mean\", \"sum\" or \"none\", got \"", s, "\"");
}

namespace {

// [N, C, d1, ...] -> [N*d1*..., C]; target [N, d1, ...] -> [N*d1*...].
std::pair<Tensor, Tensor> flatten_classes(const Tensor& input, const Tensor& target, const char* op) {
  KILN_CHECK(input.dim() >= 1, op, ": input must be [N, C] or [N, C, d...], got ", input.sizes());
  KILN_CHECK(target.dtype() == DType::i64, op, ": target must hold int64 class indices, got ", target.dtype(),
             "; convert with .to(kiln::DType::i64)");
  if (input.dim() == 1) {
    KILN_CHECK(target.dim() == 0, op, ": for an input of shape ", input.sizes(), " the target must be 0-d, got ",
               target.sizes());
    return {input.unsqueeze(0), target.reshape({1})};
  }
  Shape expect = input.sizes();
  expect.erase(expect.begin() + 1);
  KILN_CHECK(target.sizes() == expect, op, ": target of shape ", target.sizes(), " does not match input ",
             input.sizes(), " (expected ", expect, ")");
  if (input.dim() == 2) return {input, target};
  Shape perm{0};
  for (int64_t d = 2; d < input.dim(); ++d) perm.push_back(d);
  perm.push_back(1);
  return {input.permute(perm).reshape({-1, input.size(1)}), target.reshape({-1})};
}

Tensor reduce_loss(const Tensor& per_sample, Reduction r, const Tensor& weight_sum) {
  switch (r) {
    case Reduction::none: return per_sample;
    case Reduction::sum: return sum(per_sample);
    case Reduction::mean: return weight_sum.defined() ? div(sum(per_sample), weight_sum) : mean(per_sample);
  }
  return per_sample;
}

}  // namespace

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const Tensor& weight, Reduction reduction,
                int64_t ignore_index) {
  if (autocast::wants_f32({&log_probs, &weight}))
    return nll_loss(autocast::to_f32(log_probs), target, autocast::to_f32(weight), reduction, ignore_index);
  detail::check_same_device("nll_loss", log_probs, target);
  auto [lp, t] = flatten_classes(log_probs, target, "nll_loss");
  const int64_t n = lp.size(0), c = lp.size(1);
  if (weight.defined())
    KILN_CHECK(weight.dim() == 1 && weight.size(0) == c, "nll_loss: weight must have shape [", c, "], got ",
               weight.sizes());
  // On a GPU the kernel checks the targets itself and the error is reported at the next
  // synchronisation: reading a flag back here would stall every training step.
  if (!lp.is_cuda()) {
    NoGradGuard g;
    Tensor valid = logical_not(eq(t, double(ignore_index)));
    Tensor bad = mul(valid, logical_not(mul(ge(t, 0.0), lt(t, double(c)))));
    if (n > 0 && any(bad).item<bool>()) {
      auto tv = t.to_vector<int64_t>();
      for (int64_t v : tv)
        KILN_CHECK(v == ignore_index || (v >= 0 && v < c), "nll_loss: target ", v, " is out of bounds for ", c,
                   " classes (expected 0 to ", c - 1, " or ignore_index ", ignore_index, ")");
    }
  }
  Tensor lpc = dense(lp), tc = t.contiguous();
  Tensor wc = weight.defined() ? dense(weight).to(lp.dtype()) : Tensor();
  Tensor per = detail::make_empty({n}, lp.dtype(), lp.device());
  Tensor wout = detail::make_empty({n}, lp.dtype(), lp.device());
  if (n)
    detail::backend(lp.device())
        .nll_forward(detail::view_of(per), detail::view_of(wout), detail::view_of(lpc), detail::view_of(tc),
                     wc.defined() ? detail::view_of(wc) : detail::null_view(lp.dtype()), ignore_index);
  if (autograd::needs_grad({&lp})) {
    SavedTensor st(tc), sw(wc);
    autograd::record("nll_loss", {lp}, {per}, [st, sw, n, c, ignore_index](const std::vector<Tensor>& g) {
      Tensor go = dense(g[0]);
      Tensor w = sw.unpack("nll_loss");
      Tensor gl = detail::make_empty({n, c}, go.dtype(), go.device());
      if (n)
        detail::backend(go.device())
            .nll_backward(detail::view_of(gl), detail::view_of(go), detail::view_of(st.unpack("nll_loss")),
                          w.defined() ? detail::view_of(w) : detail::null_view(go.dtype()), ignore_index);
      return std::vector<Tensor>{gl};
    });
  }
  Shape out_shape = target.sizes();
  if (reduction == Reduction::none) return per.reshape(out_shape);
  // Mean divides by the summed weight of the non-ignored samples, as in PyTorch.
  return reduce_loss(per, reduction, reduction == Reduction::mean ? sum(wout) : Tensor());
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight, Reduction reduction,
                     int64_t ignore_index, double label_smoothing) {
  if (autocast::wants_f32({&input, &weight}))
    return cross_entropy(autocast::to_f32(input), target, autocast::to_f32(weight), reduction, ignore_index,
                         label_smoothing);
  KILN_CHECK(label_smoothing >= 0 && label_smoothing <= 1,
             "cross_entropy: label_smoothing must be "
             "in [0, 1], got ",
             label_smoothing);
  KILN_CHECK(input.dim() >= 1, "cross_entropy: input must be [N, C] logits, got ", input.sizes());
  Tensor lsm = log_softmax(input, input.dim() == 1 ? 0 : 1);
  Tensor nll = nll_loss(lsm, target, weight, reduction, ignore_index);
  if (label_smoothing == 0) return nll;
  // (1 - eps) * nll + eps * (mean over classes of -w_c * logp_c), with ignored samples zeroed.
  auto [lp, t] = flatten_classes(lsm, target, "cross_entropy");
  const int64_t c = lp.size(1);
  Tensor neg_lp = neg(lp);
  if (weight.defined()) neg_lp = mul(neg_lp, weight.to(lp.dtype()));
  Tensor smooth = sum(neg_lp, {1});
  Tensor valid = detail::cast(logical_not(eq(t, double(ignore_index))), lp.dtype());
  smooth = mul(smooth, valid);
  Tensor smooth_red;
  switch (reduction) {
    case Reduction::none: smooth_red = smooth.reshape(target.sizes()); break;
    case Reduction::sum: smooth_red = sum(smooth); break;
    case Reduction::mean: {
      // (Structured bindings captured by name: clang before 16 cannot capture them implicitly.)
      Tensor denom = [&, &t = t, &lp = lp] {  // a count of samples, not part of the graph
        NoGradGuard g;
        if (!weight.defined()) return sum(valid);
        Tensor safe_t = mul(t, detail::cast(valid, DType::i64));
        Tensor tw = embedding(safe_t, weight.detach().to(lp.dtype()).reshape({c, 1})).reshape({-1});
        return sum(mul(tw, valid));
      }();
      smooth_red = div(sum(smooth), denom);
      break;
    }
  }
  return add(mul(nll, 1.0 - label_smoothing), mul(smooth_red, label_smoothing / double(c)));
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  if (autocast::wants_f32({&input, &target}))
    return mse_loss(autocast::to_f32(input), autocast::to_f32(target), reduction);
  KILN_CHECK(broadcast_shapes(input.sizes(), target.sizes()) == input.sizes(), "mse_loss: target of shape ",
             target.sizes(), " does not match input ", input.sizes());
  Tensor d = sub(input, target);
  Tensor sq = mul(d, d);
  switch (reduction) {
    case Reduction::none: return sq;
    case Reduction::sum: return sum(sq);
    case Reduction::mean: return mean(sq);
  }
  return sq;
}

Tensor embedding(const Tensor& indices, const Tensor& weight) {
  detail::check_same_device("embedding", indices, weight);
  KILN_CHECK(indices.dtype() == DType::i64 || indices.dtype() == DType::i32,
             "embedding: indices must "
             "be int64 (or int32), got ",
             indices.dtype());
  KILN_CHECK(weight.dim() == 2, "embedding: weight must be [num_embeddings, dim], got ", weight.sizes());
  Tensor idx = detail::cast(indices, DType::i64).contiguous().reshape({-1});
  Tensor wc = dense(weight);
  const int64_t n = idx.numel(), dim = weight.size(1);
  Tensor out = detail::make_empty({n, dim}, weight.dtype(), weight.device());
  if (n) {
    int64_t bad = detail::backend(weight.device())
                      .index_select_rows(detail::view_of(out), detail::view_of(wc), detail::view_of(idx));
    KILN_CHECK(bad < 0, "embedding: index ", bad, " is out of range for ", weight.size(0),
               " embeddings (expected 0 to ", weight.size(0) - 1, ")");
  }
  Shape out_shape = indices.sizes();
  out_shape.push_back(dim);
  out = out.reshape(out_shape);
  if (autograd::needs_grad({&weight})) {
    SavedTensor si(idx);
    Shape ws = weight.sizes();
    autograd::record("embedding", {weight}, {out}, [si, ws, n, dim](const std::vector<Tensor>& g) {
      Tensor go = dense(g[0]).reshape({n, dim});
      Tensor gw = zeros(ws, go.options());
      if (n)
        detail::backend(go.device())
            .index_add_rows(detail::view_of(gw), detail::view_of(go), detail::view_of(si.unpack("embedding")));
      return std::vector<Tensor>{gw};
    });
  }
  return out;
}

Tensor one_hot(const Tensor& indices, int64_t num_classes) {
  KILN_CHECK(indices.dtype() == DType::i64, "one_hot: indices must be int64, got ", indices.dtype());
  NoGradGuard g;
  if (num_classes < 0) {
    KILN_CHECK(indices.numel() > 0, "one_hot: cannot infer num_classes from an empty tensor");
    num_classes = max(indices).item<int64_t>() + 1;
  }
  if (indices.numel()) {
    KILN_CHECK(min(indices).item<int64_t>() >= 0 && max(indices).item<int64_t>() < num_classes,
               "one_hot: indices must be in [0, ", num_classes, ")");
  }
  Tensor classes = arange(double(num_classes), {.dtype = DType::i64, .device = indices.device()});
  return detail::cast(eq(indices.unsqueeze(-1), classes), DType::i64);
}

}  // namespace kiln
