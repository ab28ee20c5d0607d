// Gradient clipping with PyTorch's semantics. clip_grad_norm_ scales every gradient by
// min(1, max_norm / (total_norm + 1e-6)) on the device and returns the total norm as a 0-d
// tensor: no device-to-host sync unless error_if_nonfinite asks for one. On a GPU the norm, the
// scaling and the non-finite check are one multi-tensor pass each.
//   auto norm = kiln::optim::clip_grad_norm_(model->parameters(), 1.0);
#pragma once

#include <limits>
#include <vector>

#include "core/tensor.h"

namespace kiln::optim {

// norm_type: any p > 0, or infinity for the max-norm. Parameters without a gradient are skipped.
Tensor clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
// The norm of order norm_type of all elements of `tensors` together, as a 0-d tensor on their
// device (f32, or f64 when all are f64), like torch.nn.utils.get_total_norm.
Tensor get_total_norm(const std::vector<Tensor>& tensors, double norm_type = 2.0, bool error_if_nonfinite = false);
// A 0-d bool tensor on the tensors' device: whether any element of any of them is inf or NaN.
Tensor any_non_finite(const std::vector<Tensor>& tensors);
// Clamps every gradient element into [-clip_value, clip_value].
void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value);

}  // namespace kiln::optim
