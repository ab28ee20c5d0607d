// Gradient clipping. Norms are reduced on the gradients' device; the clip coefficient is applied
// as a 0-d tensor, so the host never waits for the norm's value.
#include "optim/clip_grad.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace kiln::optim {

Tensor clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  KILN_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be positive (or infinity), got ", norm_type);
  KILN_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be non-negative, got ", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const auto& p : parameters)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return zeros({});
  const Device device = grads[0].device();
  // Accumulate in f64 when every gradient is f64, else in f32 (f16/bf16 norms would overflow).
  DType acc = DType::f64;
  for (const auto& g : grads)
    if (g.dtype() != DType::f64) acc = DType::f32;
  const bool inf = std::isinf(norm_type);
  std::vector<Tensor> parts;
  for (const auto& g : grads) {
    Tensor a = abs(g.to(device, acc));
    if (inf) parts.push_back(amax(a));
    else if (norm_type == 2.0) parts.push_back(sum(mul(a, a)));
    else parts.push_back(sum(pow(a, norm_type)));
  }
  Tensor stacked = stack(parts);
  Tensor total = inf ? amax(stacked) : pow(sum(stacked), 1.0 / norm_type);
  if (error_if_nonfinite) {
    KILN_CHECK(isfinite_all(total).item<bool>(), "clip_grad_norm_: the total norm of order ",
               norm_type, " for gradients from `parameters` is non-finite, so it cannot be clipped; "
               "pass error_if_nonfinite=false to clip anyway");
  }
  Tensor coef = clamp(div(full({}, max_norm, {.dtype = acc, .device = device}), add(total, 1e-6)),
                      std::nullopt, 1.0);
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
