// CPU optimizer updates: PyTorch's Adam/AdamW and SGD rules element by element, in one pass over
// the parameter, gradient and state (no temporaries), threaded over large tensors.
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace kiln::kernels::cpu {
void CpuBackend::adam_step(const AdamParams& p, const View& param, const View& grad,
                           const View& exp_avg, const View& exp_avg_sq, const View& max_exp_avg_sq) {
  dispatch_floating(param.dtype, "adam", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const int64_t n = param.numel();
    T* w = param.ptr<T>();
    const T* g = grad.ptr<T>();
    T* m = exp_avg.ptr<T>();
    T* v = exp_avg_sq.ptr<T>();
    T* vmax = max_exp_avg_sq.ptr<T>();
    const C lr = C(p.lr), b1 = C(p.beta1), b2 = C(p.beta2), eps = C(p.eps), wd = C(p.weight_decay);
    const C bc1 = C(1) - C(std::pow(p.beta1, double(p.step)));
    const C bc2_sqrt = C(std::sqrt(1.0 - std::pow(p.beta2, double(p.step))));
    const C step_size = lr / bc1;
    const bool decoupled = p.decoupled, amsgrad = p.amsgrad, maximize = p.maximize;
    parallel_for(0, n, threads_for(n), [&](int64_t i) {
      C gi = maximize ? -C(g[i]) : C(g[i]);
      C wi = C(w[i]);
      if (wd != C(0)) {
        if (decoupled) wi = wi * (C(1) - lr * wd);
        else gi = gi + wd * wi;
      }
      C mi = C(m[i]);
      mi = mi + (gi - mi) * (C(1) - b1);
      C vi = C(v[i]) * b2 + (C(1) - b2) * gi * gi;
      C vv = vi;
      if (amsgrad) {
        vv = std::max(C(vmax[i]), vi);
        vmax[i] = T(vv);
      }
      const C denom = std::sqrt(vv) / bc2_sqrt + eps;
      wi = wi - step_size * (mi / denom);
      m[i] = T(mi);
      v[i] = T(vi);
      w[i] = T(wi);
    });
  });
}

void CpuBackend::sgd_step(const SgdParams& p, const View& param, const View& grad,
                          const View& momentum_buffer) {
  dispatch_floating(param.dtype, "sgd", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const int64_t n = param.numel();
    T* w = param.ptr<T>();
    const T* g = grad.ptr<T>();
    T* buf = momentum_buffer.ptr<T>();
    const C lr = C(p.lr), mom = C(p.momentum), damp = C(p.dampening), wd = C(p.weight_decay);
    parallel_for(0, n, threads_for(n), [&](int64_t i) {
      C d = p.maximize ? -C(g[i]) : C(g[i]);
      const C wi = C(w[i]);
      if (wd != C(0)) d = d + wd * wi;
      if (mom != C(0)) {
        C b = p.first_step ? d : C(buf[i]) * mom + (C(1) - damp) * d;
        buf[i] = T(b);
        d = p.nesterov ? d + mom * b : b;
      }
      w[i] = T(wi - lr * d);
    });
  });
}

}  // namespace kiln::kernels::cpu
