#include "optim/grad_scaler.h"

#include <cmath>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"

namespace kiln::optim {
namespace {

// Gradients all dense on one CUDA device: one multi-tensor pass that unscales them and raises a
// 0-d f32 flag on any inf/NaN, returned. Otherwise nothing is done and the result is undefined.
Tensor unscale_on_cuda(std::vector<Tensor>& grads, double inv) {
  if (grads.empty() || !grads[0].is_cuda()) return {};
  const Device device = grads[0].device();
  std::vector<kernels::View> views;
  for (const Tensor& g : grads) {
    if (g.device() != device || !g.is_contiguous() || !g.is_floating_point()) return {};
    views.push_back(detail::view_of(g));
  }
  Tensor found = zeros({}, {.dtype = DType::f32, .device = device});
  detail::backend(device).scale_and_check_multi(views, inv, detail::null_view(), detail::view_of(found));
  for (Tensor& g : grads) g.bump_version();
  return found;
}

}  // namespace

GradScaler::GradScaler(GradScalerOptions o) : options_(o), scale_(o.init_scale) {
  KILN_CHECK(o.init_scale > 0 && std::isfinite(o.init_scale), "GradScaler: init_scale must be a "
             "positive finite number, got ", o.init_scale);
  KILN_CHECK(o.growth_factor > 1, "GradScaler: growth_factor must be > 1, got ", o.growth_factor);
  KILN_CHECK(o.backoff_factor > 0 && o.backoff_factor < 1, "GradScaler: backoff_factor must be in "
             "(0, 1), got ", o.backoff_factor);
  KILN_CHECK(o.growth_interval > 0, "GradScaler: growth_interval must be positive, got ",
             o.growth_interval);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!options_.enabled) return loss;
  return mul(loss, scale_);
}

void GradScaler::unscale_(Optimizer& optimizer) {
  if (!options_.enabled) return;
  PerOptimizer& st = state_of(optimizer);
  KILN_CHECK(!st.unscaled, "GradScaler.unscale_: already called for this optimizer since the last "
             "update(); call it once per step");
  NoGradGuard no_grad;
  const double inv = 1.0 / scale_;
  std::vector<Tensor> grads;
  for (Tensor& p : optimizer.parameters())
    if (p.grad().defined()) grads.push_back(p.grad());
  if (Tensor found = unscale_on_cuda(grads, inv); found.defined()) {
    st.found_inf = found;
  } else {
    Tensor all_finite;
    for (Tensor& g : grads) {
      g.mul_(inv);
      Tensor finite = isfinite_all(g);
      all_finite = all_finite.defined() ? mul(all_finite, finite) : finite;
    }
    st.found_inf = all_finite.defined() ? logical_not(all_finite) : Tensor();
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
  const bool skip = st.found_inf.defined() && st.found_inf.item<bool>();
  st.host_found_inf = skip ? 1 : 0;
  if (!skip) optimizer.step();
  return !skip;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  bool found_inf = false, any = false;
  for (auto& [opt, st] : per_optimizer_) {
    if (!st.unscaled) continue;
    any = true;
    const bool inf = st.host_found_inf >= 0 ? st.host_found_inf == 1
                                            : st.found_inf.defined() && st.found_inf.item<bool>();
    if (inf) found_inf = true;
  }
  if (any) {
    if (found_inf) {
      scale_ *= options_.backoff_factor;
      growth_tracker_ = 0;
    } else if (++growth_tracker_ == options_.growth_interval) {
      scale_ *= options_.growth_factor;
      growth_tracker_ = 0;
    }
  }
  per_optimizer_.clear();
}

nlohmann::json GradScaler::state_dict() const {
  return {{"scale", scale_},
          {"growth_factor", options_.growth_factor},
          {"backoff_factor", options_.backoff_factor},
          {"growth_interval", options_.growth_interval},
          {"_growth_tracker", growth_tracker_}};
}

void GradScaler::load_state_dict(const nlohmann::json& s) {
  for (const char* k : {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"})
    KILN_CHECK(s.contains(k), "GradScaler.load_state_dict: missing \"", k, "\" in ", s.dump());
  scale_ = s["scale"].get<double>();
  options_.growth_factor = s["growth_factor"].get<double>();
  options_.backoff_factor = s["backoff_factor"].get<double>();
  options_.growth_interval = s["growth_interval"].get<int64_t>();
  growth_tracker_ = s["_growth_tracker"].get<int64_t>();
}

}  // namespace kiln::optim
