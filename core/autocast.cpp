#include "core/autocast.h"

#include <unordered_map>

namespace kiln {
namespace {

struct State {
  bool enabled[2] = {false, false};
  DType dtype[2] = {DType::bf16, DType::f16};  // PyTorch's defaults: bf16 on CPU, f16 on CUDA
  int depth = 0;
  // Casts of leaf tensors (weights) made in the current outermost scope.
  std::unordered_map<const TensorImpl*, std::pair<std::weak_ptr<TensorImpl>, Tensor>> cache;
};

State& state() {
  thread_local State s;
  return s;
}

int slot(DeviceType d) { return d == DeviceType::cpu ? 0 : 1; }
bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

}  // namespace

AutocastGuard::AutocastGuard(DeviceType device, DType dtype, bool enabled) : device_(device) {
  KILN_CHECK(dtype == DType::bf16 || dtype == DType::f16,
             "autocast: the low precision must be "
             "bfloat16 or float16, got ",
             dtype);
  State& s = state();
  for (int i = 0; i < 2; ++i) {
    prev_enabled_[i] = s.enabled[i];
    prev_dtype_[i] = s.dtype[i];
  }
  s.enabled[slot(device)] = enabled;
  s.dtype[slot(device)] = dtype;
  ++s.depth;
}

AutocastGuard::~AutocastGuard() {
  State& s = state();
  for (int i = 0; i < 2; ++i) {
    s.enabled[i] = prev_enabled_[i];
    s.dtype[i] = prev_dtype_[i];
  }
  if (--s.depth == 0) s.cache.clear();
}

namespace autocast {

bool is_enabled(DeviceType device) { return state().enabled[slot(device)]; }
DType dtype(DeviceType device) { return state().dtype[slot(device)]; }

bool wants_low(std::initializer_list<const Tensor*> ts) {
  const State& s = state();
  if (!s.enabled[0] && !s.enabled[1]) return false;
  for (const Tensor* t : ts) {
    if (!t || !t->defined() || !t->is_floating_point()) continue;
    int k = slot(t->device().type);
    if (s.enabled[k] && t->dtype() != s.dtype[k] && t->dtype() != DType::f64) return true;
  }
  return false;
}

bool wants_f32(std::initializer_list<const Tensor*> ts) {
  const State& s = state();
  if (!s.enabled[0] && !s.enabled[1]) return false;
  for (const Tensor* t : ts) {
    if (t && t->defined() && is_half(t->dtype()) && s.enabled[slot(t->device().type)]) return true;
  }
  return false;
}

Tensor to_low(const Tensor& t) {
  if (!t.defined() || !t.is_floating_point() || t.dtype() == DType::f64) return t;
  State& s = state();
  const int k = slot(t.device().type);
  if (!s.enabled[k] || t.dtype() == s.dtype[k]) return t;
  const bool cacheable = t.is_leaf() && t.requires_grad();
  if (cacheable) {
    auto it = s.cache.find(t.impl());
    if (it != s.cache.end() && !it->second.first.expired() && it->second.second.dtype() == s.dtype[k])
      return it->second.second;
  }
  Tensor low = t.to(s.dtype[k]);
  if (cacheable) s.cache[t.impl()] = {t.impl_ptr(), low};
  return low;
}

Tensor to_f32(const Tensor& t) {
  if (!t.defined() || !is_half(t.dtype()) || !state().enabled[slot(t.device().type)]) return t;
  return t.to(DType::f32);
}

void clear_cache() { state().cache.clear(); }

}  // namespace autocast
}  // namespace kiln
