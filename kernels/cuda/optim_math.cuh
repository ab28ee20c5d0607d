// The per-element optimizer updates, shared by the per-tensor kernels (optim.cu) and the
// multi-tensor ones (multi_tensor.cu) so both compute exactly the same thing. Arithmetic is f32
// for f32/f16/bf16 storage and f64 for f64.
#pragma once

#include <cmath>
#include <type_traits>

#include "kernels/backend.h"

namespace kiln::kernels::cuda {

// The arithmetic type of the optimizer math for storage type T.
template <class T>
using opt_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
struct AdamArgs {
  using C = opt_t<T>;
  C lr, b1, b2, eps, wd, bc2_sqrt, step_size;
  bool decoupled, amsgrad, maximize;
  const float* found_inf;  // null, or GradScaler's flag on the device: nonzero skips the step

  // The bias corrections for a step count read on the device (in f64 like the host's).
  __device__ void set_step(float step) {
    const double bc1 = 1.0 - pow(double(b1), double(step));
    bc2_sqrt = C(sqrt(1.0 - pow(double(b2), double(step))));
    step_size = C(double(lr) / bc1);
  }
};

// The step's constants, bias corrections included, computed once on the host in f64.
template <class T>
AdamArgs<T> make_adam_args(const AdamParams& p) {
  using C = opt_t<T>;
  AdamArgs<T> a;
  a.lr = C(p.lr);
  a.b1 = C(p.beta1);
  a.b2 = C(p.beta2);
  a.eps = C(p.eps);
  a.wd = C(p.weight_decay);
  const C bc1 = C(1) - C(std::pow(p.beta1, double(p.step)));
  a.bc2_sqrt = C(std::sqrt(1.0 - std::pow(p.beta2, double(p.step))));
  a.step_size = a.lr / bc1;
  a.decoupled = p.decoupled;
  a.amsgrad = p.amsgrad;
  a.maximize = p.maximize;
  a.found_inf = p.found_inf;
  return a;
}

// One element of the Adam/AdamW update, in the arithmetic type; vmax is touched only with amsgrad.
template <class C, class Args>
__device__ __forceinline__ void adam_update(const Args& a, C& wi, C gi, C& mi, C& vi, C* vmax) {
  if (a.maximize) gi = -gi;
  if (a.wd != C(0)) {
    if (a.decoupled)
      wi = wi * (C(1) - a.lr * a.wd);
    else
      gi = gi + a.wd * wi;
  }
  mi = mi + (gi - mi) * (C(1) - a.b1);
  vi = vi * a.b2 + (C(1) - a.b2) * gi * gi;
  C vv = vi;
  if (a.amsgrad) {
    vv = max(*vmax, vi);
    *vmax = vv;
  }
  const C denom = sqrt(vv) / a.bc2_sqrt + a.eps;
  wi = wi - a.step_size * (mi / denom);
}

template <class C>
struct SgdArgs {
  C lr, mom, damp, wd;
  bool nesterov, maximize, first_step;
  const float* found_inf;  // as in AdamArgs
  __host__ __device__ explicit SgdArgs(const SgdParams& p)
      : lr(C(p.lr)),
        mom(C(p.momentum)),
        damp(C(p.dampening)),
        wd(C(p.weight_decay)),
        nesterov(p.nesterov),
        maximize(p.maximize),
        first_step(p.first_step),
        found_inf(p.found_inf) {}
};

// One element of the SGD update; bi is the momentum buffer (read unless first_step, written
// whenever there is momentum).
template <class C>
__device__ __forceinline__ void sgd_update(const SgdArgs<C>& a, C& wi, C gi, C& bi) {
  C d = a.maximize ? -gi : gi;
  if (a.wd != C(0)) d = d + a.wd * wi;
  if (a.mom != C(0)) {
    bi = a.first_step ? d : bi * a.mom + (C(1) - a.damp) * d;
    d = a.nesterov ? d + a.mom * bi : bi;
  }
  wi = wi - a.lr * d;
}

}  // namespace kiln::kernels::cuda
