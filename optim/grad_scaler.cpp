#include "optim/grad_scaler.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace kiln::optim {

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
  Tensor all_finite;
  for (Tensor& p : optimizer.parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    g.mul_(inv);
    Tensor finite = isfinite_all(g);
    all_finite = all_finite.defined() ? mul(all_finite, finite) : finite;
  }
  st.found_inf = all_finite.defined() ? logical_not(all_finite) : Tensor();
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
