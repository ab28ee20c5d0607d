// Dynamic loss scaling for float16 training (Fabric's "16-mixed"), with PyTorch's GradScaler rules:
// the loss is multiplied by the scale before backward; gradients are unscaled in one pass that also
// looks for inf/NaN; a step with non-finite gradients is skipped and the scale halves; after
// growth_interval clean steps in a row it doubles. The inf flag stays on the device until step().
//   kiln::optim::GradScaler scaler;
//   scaler.scale(loss).backward();
//   scaler.step(optimizer);   // unscales (unless unscale_ ran), skips on inf/NaN
//   scaler.update();
#pragma once

#include <nlohmann/json.hpp>
#include <unordered_map>

#include "optim/optimizer.h"

namespace kiln::optim {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  // loss * scale (the loss itself when disabled).
  Tensor scale(const Tensor& loss) const;
  // Divides the optimizer's gradients by the scale in place and records whether any is inf/NaN.
  // At most once per step (a second call before update() is an error, as in PyTorch).
  void unscale_(Optimizer& optimizer);
  // Unscales if needed, then runs optimizer.step() unless a gradient was inf/NaN. Returns whether
  // the step ran. This is the one host-device synchronisation of the step.
  bool step(Optimizer& optimizer);
  // Adjusts the scale from what the last step saw.
  void update();

  double get_scale() const { return scale_; }
  bool is_enabled() const { return options_.enabled; }
  int64_t growth_tracker() const { return growth_tracker_; }
  const GradScalerOptions& options() const { return options_; }

  // {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}.
  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 private:
  struct PerOptimizer {
    bool unscaled = false;
    bool stepped = false;
    Tensor found_inf;  // 0-d bool on the gradients' device
    int host_found_inf = -1;  // read back once by step(); -1 until then
  };
  PerOptimizer& state_of(const Optimizer& opt) { return per_optimizer_[&opt]; }

  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  std::unordered_map<const Optimizer*, PerOptimizer> per_optimizer_;
};

}  // namespace kiln::optim
