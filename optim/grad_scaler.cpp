#include "optim/grad_scaler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/autograd.h"
#include "core/foreach.h"
#include "core/json.h"
#include "core/ops.h"

namespace kiln::optim {

GradScaler::GradScaler(GradScalerOptions o) : options_(o) {
  KILN_CHECK(o.init_scale > 0 && std::isfinite(o.init_scale) && o.init_scale < 3.4e38,
             "GradScaler: init_scale "
             "must be a positive finite float32 number, got ",
             o.init_scale);
  KILN_CHECK(o.growth_factor > 1, "GradScaler: growth_factor must be > 1, got ", o.growth_factor);
  KILN_CHECK(o.backoff_factor > 0 && o.backoff_factor < 1,
             "GradScaler: backoff_factor must be in "
             "(0, 1), got ",
             o.backoff_factor);
  KILN_CHECK(o.growth_interval > 0 && o.growth_interval <= INT32_MAX,
             "GradScaler: growth_interval must be "
             "a positive 32-bit count, got ",
             o.growth_interval);
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
  // One multi-tensor pass per device: the gradients are multiplied by 1/scale and any inf/NaN
  // raises the device's flag, without the host reading anything.
  std::vector<std::pair<Device, std::vector<Tensor>>> by_device;
  for (Tensor& p : optimizer.parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    auto it = std::find_if(by_device.begin(), by_device.end(), [&](const auto& e) { return e.first == g.device(); });
    if (it == by_device.end()) it = by_device.insert(by_device.end(), {g.device(), {}});
    it->second.push_back(g.is_contiguous() ? g : Tensor());
    if (!g.is_contiguous()) {  // rare: unscaled on its own
      Tensor bad = logical_not(isfinite_all(g)).to(DType::f32);
      g.mul_(inv_scale_.to(g.device(), g.dtype()));
      st.found_inf = st.found_inf.defined() ? maximum(st.found_inf, bad.to(scale_.device())) : bad.to(scale_.device());
    }
  }
  for (auto& [device, grads] : by_device) {
    grads.erase(std::remove_if(grads.begin(), grads.end(), [](const Tensor& t) { return !t.defined(); }), grads.end());
    if (grads.empty()) continue;
    Tensor found = zeros({}, {.dtype = DType::f32, .device = device});
    _amp_foreach_non_finite_check_and_unscale_(grads, found, inv_scale_.to(device));
    found = found.to(scale_.device());
    st.found_inf = st.found_inf.defined() ? maximum(st.found_inf, found) : found;
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
  // On a GPU the optimizer skips by itself; reading the flag would stall the step. On the CPU the
  // value is right here, and step() can say whether the update ran.
  if (st.found_inf.is_cuda() && optimizer.step_unless_found_inf(st.found_inf)) return true;
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
    _amp_update_scale_(scale_, inv_scale_, tracker_, found, options_.growth_factor, options_.backoff_factor,
                       options_.growth_interval);
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
