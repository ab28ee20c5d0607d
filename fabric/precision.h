// Precision plugins, as Lightning Fabric's: what a precision setting does to a set-up model's
// forward (autocast, input and output conversion), to the loss before backward (scaling) and to
// the optimizer step (through the loss scaler). Fabric makes one from FabricOptions::precision;
// pass one in FabricOptions::plugins to choose its device or scaler yourself, for instance
// "16-mixed" on a CPU, which the precision string refuses.
//   auto fp16 = std::make_shared<kiln::Precision>("16-mixed", kiln::Device::cpu());
//   kiln::Fabric fabric({.accelerator = "cpu", .plugins = {fp16}});
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "core/autocast.h"
#include "optim/grad_scaler.h"

namespace kiln {

// What FabricOptions::plugins holds; Precision is the one kind so far.
class Plugin {
 public:
  virtual ~Plugin() = default;
};

class Precision : public Plugin {
 public:
  // `precision`: "32-true", "64-true", "bf16-true", "16-true", "bf16-mixed" or "16-mixed";
  // `device`: where the model computes (autocast's device). "16-mixed" gets a GradScaler with
  // `scaler` options.
  explicit Precision(const std::string& precision, Device device = Device::cpu(), optim::GradScalerOptions scaler = {});

  const std::string& precision() const { return precision_; }
  Device device() const { return device_; }
  // The parameters' dtype under the "-true" precisions (64-true: f64; 32-true: none, they stay f32).
  std::optional<DType> param_dtype() const { return param_dtype_; }
  // The low precision of the "-mixed" precisions' autocast.
  std::optional<DType> autocast_dtype() const { return autocast_dtype_; }
  // Whether the plugin changes a set-up model's forward at all (every precision but 32-true).
  bool changes_forward() const { return param_dtype_ || autocast_dtype_; }

  // The scope a set-up model's forward runs in: autocast for the "-mixed" precisions, nothing
  // (null) otherwise.
  std::unique_ptr<AutocastGuard> forward_context() const;
  // Floating-point inputs to the parameters' dtype ("-true"); others unchanged.
  Tensor convert_input(const Tensor& t) const;
  // f16/bf16 outputs to f32 (every precision but 32-true, which leaves outputs alone), as
  // Lightning returns them; f64 stays f64.
  Tensor convert_output(const Tensor& t) const;

  // The loss backward runs on: loss * scale under "16-mixed", the loss itself otherwise.
  Tensor pre_backward(const Tensor& loss) const;
  // The loss scaler of "16-mixed" (null otherwise).
  const std::shared_ptr<optim::GradScaler>& scaler() const { return scaler_; }

 private:
  std::string precision_;
  Device device_;
  std::optional<DType> param_dtype_, autocast_dtype_;
  std::shared_ptr<optim::GradScaler> scaler_;
};

}  // namespace kiln
