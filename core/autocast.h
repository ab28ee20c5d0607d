// Autocast: a thread-local mixed-precision policy, as in PyTorch. Inside a scope, conv2d, matmul,
// mm, bmm and linear run in the low precision (bf16 or f16); softmax, log_softmax, the losses,
// sum/mean/var/norm, batch/layer norm and exp/log/pow run in f32; other ops promote as usual.
// A leaf weight used twice in one scope is cast once.
//   { kiln::AutocastGuard ac(kiln::DeviceType::cpu, kiln::DType::bf16);
//     auto loss = kiln::cross_entropy(model(x), y); }   // logits bf16, loss f32
//   loss.backward();                                   // f32 leaves get f32 gradients
#pragma once

#include "core/tensor.h"

namespace kiln {

class AutocastGuard {
 public:
  // Enables (or, with enabled=false, disables) autocast for tensors on `device` in this scope.
  explicit AutocastGuard(DeviceType device, DType dtype = DType::bf16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_[2];
  DType prev_dtype_[2];
  DeviceType device_;
};

namespace autocast {

bool is_enabled(DeviceType device);
DType dtype(DeviceType device);  // the low precision of the device's scope
// Policy helpers for op front-ends.
// True when autocast is on for any of the tensors' devices and one of them is a floating tensor
// not already in the low precision.
bool wants_low(std::initializer_list<const Tensor*> ts);
// True when autocast is on for a tensor that is f16/bf16 (an f32-policy op must widen it).
bool wants_f32(std::initializer_list<const Tensor*> ts);
Tensor to_low(const Tensor& t);  // floating t -> the low precision (cached for leaves)
Tensor to_f32(const Tensor& t);  // f16/bf16 t -> f32
void clear_cache();

}  // namespace autocast
}  // namespace kiln
