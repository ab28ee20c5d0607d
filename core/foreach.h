// Multi-tensor ("foreach") operations, PyTorch's torch._foreach_* / _fused_* / _amp_* family: one
// call for a whole list of tensors on one device. On a GPU each is one launch for up to a few
// hundred tensors (kernels/cuda/multi_tensor.cu) and reads nothing back to the host; on the CPU a
// loop. The optimizers, gradient clipping and GradScaler are written with these.
//   kiln::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
//   kiln::_fused_adam_(params, grads, exp_avgs, exp_avg_sqs, {}, steps, {.lr = 1e-3, ...}, found_inf);
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace kiln {

struct FusedAdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = false;  // AdamW: weight decay applied to the parameter
  bool amsgrad = false;
  bool maximize = false;
};

struct FusedSgdOptions {
  double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false, maximize = false;
  bool first_step = false;  // the momentum buffers are set to the gradients (their first step)
};

// One Adam/AdamW step of params[i] with grads[i], its moments and (amsgrad) max_exp_avg_sqs[i],
// every tensor dense and on one device, each entry's tensors of one floating dtype. steps[i] is
// the entry's step count (one f32 on that device, PyTorch's layout): incremented, then used for
// the bias corrections. With found_inf (one f32 there) nonzero nothing changes, steps included:
// a skipped step decided where the tensors are, without reading the flag on the host.
void _fused_adam_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                  const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                  const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<Tensor>& steps,
                  const FusedAdamOptions& options, const Tensor& found_inf = {});

// One SGD step (momentum_buffers empty without momentum); found_inf as above.
void _fused_sgd_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& momentum_buffers, const FusedSgdOptions& options,
                 const Tensor& found_inf = {});

// tensors[i] *= inv_scale (one f32 on their device) in place; found_inf (one f32 there) is set to 1
// when any element was inf or NaN before scaling, and otherwise left as it was.
void _amp_foreach_non_finite_check_and_unscale_(const std::vector<Tensor>& tensors, const Tensor& found_inf,
                                                const Tensor& inv_scale);

// GradScaler's update of scale, inv_scale (f32) and growth_tracker (i32) from found_inf, on their
// device: backoff on inf/NaN, growth after growth_interval clean steps; found_inf is cleared.
void _amp_update_scale_(const Tensor& scale, const Tensor& inv_scale, const Tensor& growth_tracker,
                        const Tensor& found_inf, double growth_factor, double backoff_factor, int64_t growth_interval);

// The norm of order 2 or infinity of all elements of all tensors together (one element, f64 when
// every tensor is f64, else f32; NaN anywhere gives NaN). Other orders: the caller's own loop.
Tensor _foreach_total_norm(const std::vector<Tensor>& tensors, double order);

// Whether any element of any tensor is inf or NaN, as one f32 (0 or 1) on their device.
Tensor _foreach_non_finite(const std::vector<Tensor>& tensors);

// tensors[i] *= factor (one element on their device) in place.
void _foreach_mul_(const std::vector<Tensor>& tensors, const Tensor& factor);

// Whether the multi-tensor forms apply: every tensor defined, dense, floating and on one device.
bool _foreach_supported(const std::vector<Tensor>& tensors);

}  // namespace kiln
