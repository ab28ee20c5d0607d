#include "optim/grad_scaler.h"

#include <cmath>
#include <cstdint>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/json.h"
#include "core/ops.h"

namespace kiln::optim {
namespace {

// Gradients all dense on one CUDA device: one multi-tensor pass that multiplies them by `inv`
// (a one-element f32 there) and raises a one-element f32 flag on any inf/NaN, returned.
// Otherwise nothing is done and the result is undefined.
Tensor unscale_on_cuda(std::vector<Tensor>& grads, const Tensor& inv) {
  if (grads.empty() || !grads[0].is_cuda() || inv.device() != grads[0].device()) return {};
  const Device device = grads[0].device();
  std::vector<kernels::View> views;
  for (const Tensor& g : grads) {
    if (g.device() != device || !g.is_contiguous() || !g.is_floating_point()) return {};
    views.push_back(detail::view_of(g));
  }
  Tensor found = zeros({}, {.dtype = DType::f32, .device = device});
  detail::backend(device).scale_and_check_multi(views, 1.0, detail::view_of(inv), detail::view_of(found));
  for (Tensor& g : grads) g.bump_version();
  return found;
}

}  // namespace

GradScaler::GradScaler(GradScalerOptions o) : options_(o) {
  KILN_CHECK(o.init_scale > 0 && std::isfinite(o.init_scale) && o.init_scale < 3.4e38, "GradScaler: init_scale "
             "must be a positive finite float32 number, got ", o.init_scale);
  KILN_CHECK(o.growth_factor > 1, "GradScaler: growth_factor must be > 1, got ", o.growth_factor);
  KILN_CHECK(o.backoff_factor > 0 && o.backoff_factor < 1, "GradScaler: backoff_factor must be in "
             "(0, 1), got ", o.backoff_factor);
  KILN_CHECK(o.growth_interval > 0 && o.growth_interval <= INT32_MAX, "GradScaler: growth_interval must be "
             "a positive 32-bit count, got ", o.growth_interval);
  scale_ = full({}, o.init_scale, {.dtype = DType::f32});
  inv_scale_ = full({}, 1.0 / double(scale_.item<float>()), {.dtype = DType::f32});
  tracker_ = zeros({}, {.dtype = DType::i32});
}

void GradScaler::move_to(Device device) {
  if (scale_.device() == device) return;
  scale_ = scale_.to(device);
  inv_scale_ = inv_scale_.to(device);
  tracker_ = tracker_.to(device);
}

Tensor GradScaler::scale(const Tensor& loss) {
  if (!options_.enabled) return loss;
  move_to(loss.device());  // the scale follows the losses (once, when they first reach a GPU)
  return mul(loss, scale_);
}

void GradScaler::unscale_(Optimizer& optimizer) {
  if (!options_.enabled) return;
  PerOptimizer& st = state_of(optimizer);
  KILN_CHECK(!st.unscaled, "GradScaler.unscale_: already called for this optimizer since the last "
             "update(); call it once per step");
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (Tensor& p : optimizer.parameters())
    if (p.grad().defined()) grads.push_back(p.grad());
  if (Tensor found = unscale_on_cuda(grads, inv_scale_); found.defined()) {
    st.found_inf = found;
  } else {
    Tensor all_finite;
    for (Tensor& g : grads) {
      g.mul_(inv_scale_.to(g.device()));
      Tensor finite = isfinite_all(g).to(scale_.device());
      all_finite = all_finite.defined() ? mul(all_finite, finite) : finite;
    }
    st.found_inf = all_finite.defined() ? logical_not(all_finite).to(DType::f32) : Tensor();
  }
  st.unscaled = true;
}

bool GradScaler::step(Optimizer& optimizer) {
  if (!options_.enabled) {
    optimizer.step();
    return true;
  }
  PerOptimizer& st = state_of(optimizer);
  KILN_CHECK(!st.stepped, "GradScaler.step: already called for this optimizer since the last "
             "update()");
  if (!st.unscaled) unscale_(optimizer);
  st.stepped = true;
  if (!st.found_inf.defined()) {  // no gradients at all
    optimizer.step();
    return true;
  }
  if (optimizer.step_unless_found_inf(st.found_inf)) return true;
  if (st.found_inf.item<float>() != 0.0f) return false;
  optimizer.step();
  return true;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  Tensor found;
  for (auto& [opt, st] : per_optimizer_) {
    if (!st.unscaled || !st.found_inf.defined()) continue;
    Tensor f = st.found_inf.to(scale_.device());
    found = found.defined() ? add(found, f) : f.clone();
  }
  if (found.defined()) {
    NoGradGuard no_grad;
    detail::backend(scale_.device()).update_scale(detail::view_of(scale_), detail::view_of(inv_scale_),
                                                  detail::view_of(tracker_), detail::view_of(found),
                                                  options_.growth_factor, options_.backoff_factor,
                                                  options_.growth_interval);
    scale_.bump_version();
    inv_scale_.bump_version();
    tracker_.bump_version();
  }
  per_optimizer_.clear();
}

double GradScaler::get_scale() const { return scale_.item<double>(); }
int64_t GradScaler::growth_tracker() const { return tracker_.item<int64_t>(); }

Tensor GradScaler::found_inf(const Optimizer& optimizer) const {
  auto it = per_optimizer_.find(&optimizer);
  return it == per_optimizer_.end() ? Tensor() : it->second.found_inf;
}

nlohmann::json GradScaler::state_dict() const {
  return {{"scale", get_scale()},
          {"growth_factor", options_.growth_factor},
          {"backoff_factor", options_.backoff_factor},
          {"growth_interval", options_.growth_interval},
          {"_growth_tracker", growth_tracker()}};
}

void GradScaler::load_state_dict(const nlohmann::json& s) {
  const detail::JsonIn in(s, "GradScaler.load_state_dict", "expected the object state_dict() writes");
  auto positive = [&](const char* key) {
    const double v = in[key].as_double();
    if (!(v > 0 && std::isfinite(v))) in[key].fail("must be a positive finite number");
    return v;
  };
  const double scale = positive("scale"), growth = positive("growth_factor");
  const double backoff = positive("backoff_factor");
  const int64_t interval = in["growth_interval"].as_int(1);
  const int64_t tracker = in["_growth_tracker"].as_int(0);
  options_.growth_factor = growth;
  options_.backoff_factor = backoff;
  options_.growth_interval = interval;
  NoGradGuard no_grad;
  scale_.fill_(scale);
  inv_scale_.fill_(1.0 / double(float(scale)));
  tracker_.fill_(double(tracker));
}

}  // namespace kiln::optim
