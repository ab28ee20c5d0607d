// Dynamic loss scaling for float16 training (Fabric's "16-mixed"), with PyTorch's GradScaler rules:
// the loss is multiplied by the scale before backward; gradients are unscaled in one pass that also
// looks for inf/NaN; a step with non-finite gradients is skipped and the scale halves; after
// growth_interval clean steps in a row it doubles. As in PyTorch the scale is a one-element f32
// tensor on the losses' device. On a GPU nothing of this reaches the host: the inf flag stays on
// the device, the optimizer skips on the device (Optimizer::step_unless_found_inf) and update()
// adjusts the scale there, so a step under 16-mixed has no host synchronisation and can be
// captured in a CUDA graph; get_scale() and state_dict() read the scale back when asked.
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
  Tensor scale(const Tensor& loss);
  // Divides the optimizer's gradients by the scale in place and records whether any is inf/NaN.
  // At most once per step (a second call before update() is an error, as in PyTorch).
  void unscale_(Optimizer& optimizer);
  // Unscales if needed, then runs the optimizer's step unless a gradient was inf/NaN. Returns
  // false when the step was skipped. Where the optimizer decides on the device (CUDA parameters)
  // the host does not wait to know: step() returns true and the update applies unless found_inf()
  // is set.
  bool step(Optimizer& optimizer);
  // Adjusts the scale from what the last step saw.
  void update();

  double get_scale() const;  // reads the device's value back (a synchronisation on a GPU)
  int64_t growth_tracker() const;
  // The current scale and its reciprocal as tensors on the losses' device (no synchronisation).
  const Tensor& scale_tensor() const { return scale_; }
  bool is_enabled() const { return options_.enabled; }
  const GradScalerOptions& options() const { return options_; }
  // The inf/NaN flag of the last unscale_ of `optimizer` (one f32; undefined before).
  Tensor found_inf(const Optimizer& optimizer) const;

  // {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}.
  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 private:
  struct PerOptimizer {
    bool unscaled = false;
    bool stepped = false;
    Tensor found_inf;  // one f32 on the gradients' device
  };
  PerOptimizer& state_of(const Optimizer& opt) { return per_optimizer_[&opt]; }
  void move_to(Device device);

  GradScalerOptions options_;
  Tensor scale_, inv_scale_, tracker_;  // f32, f32, i32; one element each, on one device
  std::unordered_map<const Optimizer*, PerOptimizer> per_optimizer_;
};

}  // namespace kiln::optim
