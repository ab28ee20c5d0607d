// CPU optimizer updates: PyTorch's Adam/AdamW and SGD rules element by element, in one pass over
// the parameter, gradient and state (no temporaries), threaded over large tensors. f32 Adam runs
// the same rule a vector at a time where the CPU has AVX2 or AVX-512 (adam.cpp).
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu {
void CpuBackend::adam_step(const AdamParams& p, const View& param, const View& grad, const View& exp_avg,
                           const View& exp_avg_sq, const View& max_exp_avg_sq) {
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
    if constexpr (std::is_same_v<T, float>) {
      if (const SimdKernels* k = simd_kernels()) {  // the same rule, a vector at a time (adam.cpp)
        const AdamF32 a{lr, b1, b2, eps, wd, step_size, bc2_sqrt, decoupled, amsgrad, maximize};
        const int64_t chunk = std::max<int64_t>(4096, (n / (4 * max_threads()) + 63) / 64 * 64);
        const int64_t chunks = (n + chunk - 1) / chunk;
        parallel_for(0, chunks, threads_for(n), [&](int64_t c) {
          const int64_t i = c * chunk;
          k->adam_f32(a, w + i, g + i, m + i, v + i, vmax ? vmax + i : nullptr, std::min(chunk, n - i));
        });
        return;
      }
    }
    parallel_for(0, n, threads_for(n), [&](int64_t i) {
      C gi = maximize ? -C(g[i]) : C(g[i]);
      C wi = C(w[i]);
      if (wd != C(0)) {
        if (decoupled)
          wi = wi * (C(1) - lr * wd);
        else
          gi = gi + wd * wi;
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

void CpuBackend::sgd_step(const SgdParams& p, const View& param, const View& grad, const View& momentum_buffer) {
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
