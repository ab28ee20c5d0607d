// Gradient clipping and norms. Norms are reduced on the gradients' device; the clip coefficient
// is applied as a 0-d tensor, so the host never waits for the norm's value. When every tensor is
// dense on one CUDA device, the norm (order 2 or infinity), the scaling and the non-finite check
// are each one multi-tensor pass (core/foreach.h); otherwise they go tensor by tensor.
#include "optim/clip_grad.h"

#include <cmath>
#include <optional>

#include "core/autograd.h"
#include "core/foreach.h"
#include "core/ops.h"

namespace kiln::optim {
namespace {

// Every tensor dense and floating on one CUDA device: the multi-tensor forms pay there.
bool on_one_gpu(const std::vector<Tensor>& ts) { return _foreach_supported(ts) && ts[0].is_cuda(); }

std::vector<Tensor> defined_only(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts)
    if (t.defined()) out.push_back(t);
  return out;
}

Tensor total_norm(const std::vector<Tensor>& tensors, double norm_type, bool error_if_nonfinite, const char* op) {
  KILN_CHECK(norm_type > 0, op, ": norm_type must be positive (or infinity), got ", norm_type);
  NoGradGuard no_grad;
  if (tensors.empty()) return zeros({});
  const Device device = tensors[0].device();
  // Accumulate in f64 when every tensor is f64, else in f32 (f16/bf16 norms would overflow).
  DType acc = DType::f64;
  for (const auto& g : tensors)
    if (g.dtype() != DType::f64) acc = DType::f32;
  const bool inf = std::isinf(norm_type);
  Tensor total;
  if (on_one_gpu(tensors) && (inf || norm_type == 2.0)) {
    total = _foreach_total_norm(tensors, norm_type);
  } else {
    std::vector<Tensor> parts;
    for (const auto& g : tensors) {
      Tensor a = abs(g.to(device, acc));
      if (inf)
        parts.push_back(amax(a));
      else if (norm_type == 2.0)
        parts.push_back(sum(mul(a, a)));
      else
        parts.push_back(sum(pow(a, norm_type)));
    }
    Tensor stacked = stack(parts);
    total = inf ? amax(stacked) : pow(sum(stacked), 1.0 / norm_type);
  }
  if (error_if_nonfinite) {
    KILN_CHECK(isfinite_all(total).item<bool>(), op, ": the total norm of order ", norm_type,
               " for gradients from `parameters` is non-finite, so it cannot be clipped; "
               "pass error_if_nonfinite=false to clip anyway");
  }
  return total;
}

}  // namespace

Tensor get_total_norm(const std::vector<Tensor>& tensors, double norm_type, bool error_if_nonfinite) {
  return total_norm(defined_only(tensors), norm_type, error_if_nonfinite, "get_total_norm");
}

Tensor any_non_finite(const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  std::vector<Tensor> ts = defined_only(tensors);
  if (ts.empty()) return zeros({}, {.dtype = DType::boolean});
  if (on_one_gpu(ts)) return _foreach_non_finite(ts).to(DType::boolean);
  Tensor all_finite;
  for (const Tensor& t : ts) {
    Tensor finite = isfinite_all(t).to(ts[0].device());
    all_finite = all_finite.defined() ? mul(all_finite, finite) : finite;
  }
  return logical_not(all_finite);
}

Tensor clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  KILN_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be non-negative, got ", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const auto& p : parameters)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  Tensor total = total_norm(grads, norm_type, error_if_nonfinite, "clip_grad_norm_");
  if (grads.empty()) return total;
  const Device device = grads[0].device();
  Tensor coef =
      clamp(div(full({}, max_norm, {.dtype = total.dtype(), .device = device}), add(total, 1e-6)), std::nullopt, 1.0);
  if (on_one_gpu(grads)) {
    _foreach_mul_(grads, coef);
    return total;
  }
  for (auto& g : grads) {
    Tensor c = coef.to(g.device(), g.dtype());
    mul_(g, c);
  }
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value) {
  KILN_CHECK(clip_value >= 0, "clip_grad_value_: clip_value must be non-negative, got ", clip_value);
  NoGradGuard no_grad;
  for (const auto& p : parameters) {
    if (!p.defined()) continue;
    Tensor g = p.grad();
    if (g.defined()) clamp_(g, -clip_value, clip_value);
  }
}

}  // namespace kiln::optim
