// Precision plugins: the per-precision rules a set-up model and optimizer follow.
#include "fabric/precision.h"

#include "core/autograd.h"

namespace kiln {

Precision::Precision(const std::string& precision, Device device, optim::GradScalerOptions scaler)
    : precision_(precision), device_(device) {
  if (precision == "64-true")
    param_dtype_ = DType::f64;
  else if (precision == "bf16-true")
    param_dtype_ = DType::bf16;
  else if (precision == "16-true")
    param_dtype_ = DType::f16;
  else if (precision == "bf16-mixed")
    autocast_dtype_ = DType::bf16;
  else if (precision == "16-mixed")
    autocast_dtype_ = DType::f16;
  else
    KILN_CHECK(precision == "32-true", "Precision: unknown precision \"", precision,
               "\"; use one of "
               "\"32-true\", \"64-true\", \"bf16-mixed\", \"bf16-true\", \"16-mixed\", \"16-true\"");
  if (precision == "16-mixed") scaler_ = std::make_shared<optim::GradScaler>(scaler);
}

std::unique_ptr<AutocastGuard> Precision::forward_context() const {
  if (!autocast_dtype_) return nullptr;
  return std::make_unique<AutocastGuard>(device_.type, *autocast_dtype_);
}

Tensor Precision::convert_input(const Tensor& t) const {
  if (!param_dtype_ || !t.defined() || !t.is_floating_point() || t.dtype() == *param_dtype_) return t;
  return t.to(*param_dtype_);
}

Tensor Precision::convert_output(const Tensor& t) const {
  if (!changes_forward() || !t.defined()) return t;
  if (t.dtype() != DType::f16 && t.dtype() != DType::bf16) return t;
  return t.to(DType::f32);
}

Tensor Precision::pre_backward(const Tensor& loss) const { return scaler_ ? scaler_->scale(loss) : loss; }

}  // namespace kiln
