// The Adam/AdamW update of f32 parameters, a vector of elements at a time (simd_kernels.h): one
// pass that reads the parameter, its gradient and the two moments and writes them back (7 words
// per element, 8 with amsgrad). The options are tested once per call, outside the loop, so each
// combination runs a loop of plain vector arithmetic; sqrt and division are the correctly rounded
// vector instructions and the operations keep optim.cpp's order, without fused multiply-adds, so
// the result equals the scalar loop's bit for bit.
#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu::KILN_SIMD_NS {
namespace {

using namespace simd;
constexpr int L = kLanes;

template <bool kDecay, bool kDecoupled, bool kAmsgrad, bool kMaximize>
void adam_loop(const AdamF32& a, float* w, const float* g, float* m, float* v, float* vmax, int64_t n) {
  const V lr = set1(a.lr), one = set1(1.f), b1 = set1(a.beta1), b2 = set1(a.beta2), eps = set1(a.eps);
  const V wd = set1(a.weight_decay), step_size = set1(a.step_size), bc2 = set1(a.bias_correction2_sqrt);
  const V decay = sub(one, mul(lr, wd)), keep1 = sub(one, b1), keep2 = sub(one, b2);
  for (int64_t i = 0; i < n; i += L) {
    const int k = int(min64(L, n - i));
    V gi = load_n(g + i, k);
    if constexpr (kMaximize) gi = neg(gi);
    V wi = load_n(w + i, k);
    if constexpr (kDecay) {
      if constexpr (kDecoupled)
        wi = mul(wi, decay);
      else
        gi = add(gi, mul(wd, wi));
    }
    V mi = load_n(m + i, k);
    mi = add(mi, mul(sub(gi, mi), keep1));
    const V vi = add(mul(load_n(v + i, k), b2), mul(mul(keep2, gi), gi));
    V vv = vi;
    if constexpr (kAmsgrad) {
      vv = max_of(load_n(vmax + i, k), vi);
      store_n(vmax + i, vv, k);
    }
    const V denom = add(div(sqrt(vv), bc2), eps);
    wi = sub(wi, mul(step_size, div(mi, denom)));
    store_n(m + i, mi, k);
    store_n(v + i, vi, k);
    store_n(w + i, wi, k);
  }
}

template <bool kDecay, bool kDecoupled, bool kAmsgrad>
void pick_maximize(const AdamF32& a, float* w, const float* g, float* m, float* v, float* vmax, int64_t n) {
  if (a.maximize)
    adam_loop<kDecay, kDecoupled, kAmsgrad, true>(a, w, g, m, v, vmax, n);
  else
    adam_loop<kDecay, kDecoupled, kAmsgrad, false>(a, w, g, m, v, vmax, n);
}

template <bool kDecay, bool kDecoupled>
void pick_amsgrad(const AdamF32& a, float* w, const float* g, float* m, float* v, float* vmax, int64_t n) {
  if (a.amsgrad)
    pick_maximize<kDecay, kDecoupled, true>(a, w, g, m, v, vmax, n);
  else
    pick_maximize<kDecay, kDecoupled, false>(a, w, g, m, v, vmax, n);
}

}  // namespace

void adam_f32(const AdamF32& a, float* w, const float* g, float* m, float* v, float* vmax, int64_t n) {
  if (a.weight_decay == 0.f)
    pick_amsgrad<false, false>(a, w, g, m, v, vmax, n);
  else if (a.decoupled)
    pick_amsgrad<true, true>(a, w, g, m, v, vmax, n);
  else
    pick_amsgrad<true, false>(a, w, g, m, v, vmax, n);
}

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS
