// Gradient clipping with PyTorch's semantics. clip_grad_norm_ scales every gradient by
// min(1, max_norm / (total_norm + 1e-6)) on the device and returns the total norm as a 0-d
// tensor: no device-to-host sync unless error_if_nonfinite asks for one.
//   auto norm = kiln::optim::clip_grad_norm_(model->parameters(), 1.0);
#pragma once

#include <limits>
#include <vector>

#include "core/tensor.h"

namespace kiln::optim {

// norm_type: any p > 0, or infinity for the max-norm. Parameters without a gradient are skipped.
Tensor clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
// Clamps every gradient element into [-clip_value, clip_value].
void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value);

}  // namespace kiln::optim
