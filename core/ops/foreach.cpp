// The multi-tensor front-ends of core/foreach.h: argument checks, then one backend call with the
// lists' views (the CUDA backend packs them into few launches; the CPU backend's defaults loop),
// or, where a backend has no multi-tensor form, the same result from per-tensor ops.
#include "core/foreach.h"

#include <cmath>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"

namespace kiln {
namespace {

std::vector<kernels::View> views(const std::vector<Tensor>& ts) {
  std::vector<kernels::View> v;
  v.reserve(ts.size());
  for (const Tensor& t : ts) v.push_back(detail::view_of(t));
  return v;
}

// Every list as long as the first, every tensor dense and on `device`.
void check_lists(const char* op, Device device, std::initializer_list<const std::vector<Tensor>*> lists) {
  const size_t n = (*lists.begin())->size();
  for (const auto* l : lists) {
    KILN_CHECK(l->size() == n, op, ": the tensor lists differ in length (", n, " and ", l->size(), ")");
    for (const Tensor& t : *l) {
      KILN_CHECK(t.defined(), op, ": a tensor of the lists is undefined");
      KILN_CHECK(t.device() == device, op, ": tensors on ", t.device(), " and ", device, "; one call takes one device");
      KILN_CHECK(t.is_contiguous(), op, ": tensors must be dense, got one of shape ", t.sizes(), " with strides ",
                 t.strides());
    }
  }
}

void check_flag(const char* op, const char* what, const Tensor& t, Device device) {
  KILN_CHECK(t.defined() && t.numel() == 1 && t.dtype() == DType::f32 && t.device() == device, op, ": ", what,
             " must be one float32 on ", device);
}

void bump(const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts) const_cast<Tensor&>(t).bump_version();
}

}  // namespace

bool _foreach_supported(const std::vector<Tensor>& tensors) {
  if (tensors.empty() || !tensors[0].defined()) return false;
  for (const Tensor& t : tensors)
    if (!t.defined() || t.device() != tensors[0].device() || !t.is_contiguous() || !t.is_floating_point()) return false;
  return true;
}

void _fused_adam_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                  const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                  const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<Tensor>& steps,
                  const FusedAdamOptions& o, const Tensor& found_inf) {
  const char* op = "_fused_adam_";
  if (params.empty()) return;
  const Device device = params[0].device();
  check_lists(op, device, {&params, &grads, &exp_avgs, &exp_avg_sqs, &steps});
  if (o.amsgrad) check_lists(op, device, {&params, &max_exp_avg_sqs});
  for (const Tensor& s : steps) check_flag(op, "each step count", s, device);
  if (found_inf.defined()) check_flag(op, "found_inf", found_inf, device);
  NoGradGuard no_grad;
  kernels::AdamParams p{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, /*step=*/0, o.decoupled, o.amsgrad, o.maximize};
  if (found_inf.defined()) p.found_inf = found_inf.data_ptr<float>();
  detail::backend(device).adam_step_multi(p, views(params), views(grads), views(exp_avgs), views(exp_avg_sqs),
                                          o.amsgrad ? views(max_exp_avg_sqs) : std::vector<kernels::View>{},
                                          views(steps));
  for (const auto* l : {&params, &exp_avgs, &exp_avg_sqs, &steps}) bump(*l);
  if (o.amsgrad) bump(max_exp_avg_sqs);
}

void _fused_sgd_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& momentum_buffers, const FusedSgdOptions& o, const Tensor& found_inf) {
  const char* op = "_fused_sgd_";
  if (params.empty()) return;
  const Device device = params[0].device();
  check_lists(op, device, {&params, &grads});
  if (o.momentum != 0.0) check_lists(op, device, {&params, &momentum_buffers});
  if (found_inf.defined()) check_flag(op, "found_inf", found_inf, device);
  NoGradGuard no_grad;
  kernels::SgdParams p{o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov, o.maximize, o.first_step};
  if (found_inf.defined()) p.found_inf = found_inf.data_ptr<float>();
  detail::backend(device).sgd_step_multi(p, views(params), views(grads),
                                         o.momentum != 0.0 ? views(momentum_buffers) : std::vector<kernels::View>{});
  bump(params);
  if (o.momentum != 0.0) bump(momentum_buffers);
}

void _amp_foreach_non_finite_check_and_unscale_(const std::vector<Tensor>& tensors, const Tensor& found_inf,
                                                const Tensor& inv_scale) {
  const char* op = "_amp_foreach_non_finite_check_and_unscale_";
  if (tensors.empty()) return;
  const Device device = tensors[0].device();
  check_lists(op, device, {&tensors});
  check_flag(op, "found_inf", found_inf, device);
  check_flag(op, "inv_scale", inv_scale, device);
  NoGradGuard no_grad;
  if (device.is_cuda()) {
    detail::backend(device).scale_and_check_multi(views(tensors), 1.0, detail::view_of(inv_scale),
                                                  detail::view_of(found_inf));
    bump(tensors);
    return;
  }
  for (const Tensor& t : tensors) {
    Tensor bad = logical_not(isfinite_all(t)).to(DType::f32);
    const_cast<Tensor&>(found_inf).copy_(maximum(found_inf, bad));
    const_cast<Tensor&>(t).mul_(inv_scale.to(t.dtype()));
  }
}

void _amp_update_scale_(const Tensor& scale, const Tensor& inv_scale, const Tensor& growth_tracker,
                        const Tensor& found_inf, double growth_factor, double backoff_factor, int64_t growth_interval) {
  const char* op = "_amp_update_scale_";
  const Device device = scale.device();
  check_flag(op, "scale", scale, device);
  check_flag(op, "inv_scale", inv_scale, device);
  check_flag(op, "found_inf", found_inf, device);
  KILN_CHECK(growth_tracker.defined() && growth_tracker.numel() == 1 && growth_tracker.dtype() == DType::i32 &&
                 growth_tracker.device() == device,
             op, ": growth_tracker must be one int32 on ", device);
  detail::backend(device).update_scale(detail::view_of(scale), detail::view_of(inv_scale),
                                       detail::view_of(growth_tracker), detail::view_of(found_inf), growth_factor,
                                       backoff_factor, growth_interval);
  for (const Tensor* t : {&scale, &inv_scale, &growth_tracker, &found_inf}) const_cast<Tensor&>(*t).bump_version();
}

Tensor _foreach_total_norm(const std::vector<Tensor>& tensors, double order) {
  const char* op = "_foreach_total_norm";
  const bool inf = std::isinf(order) && order > 0;
  KILN_CHECK(inf || order == 2.0, op, ": order must be 2 or infinity, got ", order);
  NoGradGuard no_grad;
  if (tensors.empty()) return zeros({});
  const Device device = tensors[0].device();
  check_lists(op, device, {&tensors});
  DType acc = DType::f64;
  for (const Tensor& t : tensors)
    if (t.dtype() != DType::f64) acc = DType::f32;
  if (device.is_cuda()) {
    Tensor total = empty({}, {.dtype = acc, .device = device});
    detail::backend(device).norm_multi(views(tensors), order, detail::view_of(total));
    return total;
  }
  std::vector<Tensor> parts;
  for (const Tensor& t : tensors) {
    Tensor a = abs(t.to(acc));
    parts.push_back(inf ? amax(a) : sum(mul(a, a)));
  }
  Tensor stacked = stack(parts);
  return inf ? amax(stacked) : sqrt(sum(stacked));
}

Tensor _foreach_non_finite(const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  if (tensors.empty()) return zeros({});
  const Device device = tensors[0].device();
  check_lists("_foreach_non_finite", device, {&tensors});
  Tensor found = zeros({}, {.dtype = DType::f32, .device = device});
  if (device.is_cuda()) {
    detail::backend(device).scale_and_check_multi(views(tensors), 1.0, detail::null_view(), detail::view_of(found));
    return found;
  }
  for (const Tensor& t : tensors) found = maximum(found, logical_not(isfinite_all(t)).to(DType::f32));
  return found;
}

void _foreach_mul_(const std::vector<Tensor>& tensors, const Tensor& factor) {
  const char* op = "_foreach_mul_";
  if (tensors.empty()) return;
  const Device device = tensors[0].device();
  check_lists(op, device, {&tensors});
  KILN_CHECK(factor.defined() && factor.numel() == 1 && factor.device() == device, op,
             ": the factor must be one element on ", device);
  NoGradGuard no_grad;
  if (device.is_cuda() && (factor.dtype() == DType::f32 || factor.dtype() == DType::f64)) {
    detail::backend(device).scale_and_check_multi(views(tensors), 1.0, detail::view_of(factor), detail::null_view());
    bump(tensors);
    return;
  }
  for (const Tensor& t : tensors) const_cast<Tensor&>(t).mul_(factor.to(t.dtype()));
}

}  // namespace kiln
