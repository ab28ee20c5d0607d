// CPU softmax / log-softmax over the middle dim of [outer, dim, inner] (max-subtracted, f32 or
// wider accumulation), and the gather/scatter pair behind nll_loss and cross_entropy.
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/vmath.h"

namespace kiln::kernels::cpu {
void CpuBackend::softmax_forward(const View& out, const View& in, int64_t outer, int64_t dim, int64_t inner, bool log) {
  dispatch_floating(in.dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* x = in.ptr<T>();
    T* y = out.ptr<T>();
    parallel_for(0, outer * inner, threads_for(outer * dim * inner), [&](int64_t oi) {
      const int64_t o = oi / inner, in_ = oi % inner;
      {
        const T* xp = x + o * dim * inner + in_;
        T* yp = y + o * dim * inner + in_;
        A mx = -std::numeric_limits<A>::infinity();
        for (int64_t d = 0; d < dim; ++d) mx = std::max(mx, A(xp[d * inner]));
        if constexpr (std::is_same_v<T, float>) {
          if (inner == 1) {  // a contiguous row: the exponentials a vector at a time, into y first
            exp_shifted_f32(yp, xp, mx, dim);
            float s = 0;
            for (int64_t d = 0; d < dim; ++d) s += yp[d];
            if (log) {
              const float lse = mx + std::log(s);
              for (int64_t d = 0; d < dim; ++d) yp[d] = xp[d] - lse;
            } else {
              const float inv = 1.f / s;
              for (int64_t d = 0; d < dim; ++d) yp[d] *= inv;
            }
            return;
          }
        }
        A s = 0;
        for (int64_t d = 0; d < dim; ++d) s += std::exp(A(xp[d * inner]) - mx);
        if (log) {
          const A lse = mx + std::log(s);
          for (int64_t d = 0; d < dim; ++d) yp[d * inner] = T(A(xp[d * inner]) - lse);
        } else {
          const A inv = A(1) / s;
          for (int64_t d = 0; d < dim; ++d) yp[d * inner] = T(std::exp(A(xp[d * inner]) - mx) * inv);
        }
      }
    });
  });
}

void CpuBackend::softmax_backward(const View& grad_in, const View& grad_out, const View& out, int64_t outer,
                                  int64_t dim, int64_t inner, bool log) {
  dispatch_floating(out.dtype, "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* gy = grad_out.ptr<T>();
    const T* y = out.ptr<T>();
    T* gx = grad_in.ptr<T>();
    parallel_for(0, outer * inner, threads_for(outer * dim * inner), [&](int64_t oi) {
      const int64_t o = oi / inner, in_ = oi % inner;
      {
        const int64_t base = o * dim * inner + in_;
        A s = 0;
        if (log) {
          for (int64_t d = 0; d < dim; ++d) s += A(gy[base + d * inner]);
          if constexpr (std::is_same_v<T, float>) {
            if (inner == 1 && gx + base != gy + base) {  // exp(log p) a vector at a time, into gx first
              exp_shifted_f32(gx + base, y + base, 0.f, dim);
              for (int64_t d = 0; d < dim; ++d) gx[base + d] = gy[base + d] - gx[base + d] * s;
              return;
            }
          }
          for (int64_t d = 0; d < dim; ++d) {
            const int64_t i = base + d * inner;
            gx[i] = T(A(gy[i]) - std::exp(A(y[i])) * s);
          }
        } else {
          for (int64_t d = 0; d < dim; ++d) s += A(gy[base + d * inner]) * A(y[base + d * inner]);
          for (int64_t d = 0; d < dim; ++d) {
            const int64_t i = base + d * inner;
            gx[i] = T(A(y[i]) * (A(gy[i]) - s));
          }
        }
      }
    });
  });
}

void CpuBackend::nll_forward(const View& loss, const View& weight_out, const View& logp, const View& target,
                             const View& weight, int64_t ignore_index) {
  dispatch_floating(logp.dtype, "nll_loss", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = logp.sizes[0], c = logp.sizes[1];
    const T* lp = logp.ptr<T>();
    const int64_t* t = target.ptr<int64_t>();
    const T* w = weight.ptr<T>();
    T* l = loss.ptr<T>();
    T* wo = weight_out.ptr<T>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = t[i];
      if (k == ignore_index) {
        l[i] = T(0);
        if (wo) wo[i] = T(0);
        continue;
      }
      const double wi = w ? double(w[k]) : 1.0;
      l[i] = T(-wi * double(lp[i * c + k]));
      if (wo) wo[i] = T(wi);
    }
  });
}

void CpuBackend::nll_backward(const View& grad_logp, const View& grad_loss, const View& target, const View& weight,
                              int64_t ignore_index) {
  dispatch_floating(grad_logp.dtype, "nll_loss backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = grad_logp.sizes[0], c = grad_logp.sizes[1];
    T* g = grad_logp.ptr<T>();
    const T* gl = grad_loss.ptr<T>();
    const int64_t* t = target.ptr<int64_t>();
    const T* w = weight.ptr<T>();
    for (int64_t i = 0; i < n * c; ++i) g[i] = T(0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = t[i];
      if (k == ignore_index) continue;
      const double wi = w ? double(w[k]) : 1.0;
      g[i * c + k] = T(-wi * double(gl[i * grad_loss.strides[0]]));
    }
  });
}

int64_t CpuBackend::index_select_rows(const View& out, const View& weight, const View& index) {
  const int64_t n = index.numel(), v = weight.sizes[0];
  const int64_t d = weight.numel() / std::max<int64_t>(v, 1);
  const int64_t* idx = index.ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= v) return idx[i];
  const size_t row_bytes = size_t(d) * element_size(weight.dtype);
  const char* w = static_cast<const char*>(weight.data);
  char* o = static_cast<char*>(out.data);
  parallel_for(0, n, threads_for(n * d),
               [&](int64_t i) { std::memcpy(o + size_t(i) * row_bytes, w + size_t(idx[i]) * row_bytes, row_bytes); });
  return -1;
}

void CpuBackend::index_add_rows(const View& grad_weight, const View& grad_out, const View& index) {
  dispatch_floating(grad_weight.dtype, "embedding backward", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const int64_t n = index.numel(), v = grad_weight.sizes[0];
    const int64_t d = grad_weight.numel() / std::max<int64_t>(v, 1);
    const int64_t* idx = index.ptr<int64_t>();
    T* gw = grad_weight.ptr<T>();
    const T* go = grad_out.ptr<T>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) gw[idx[i] * d + j] = T(C(gw[idx[i] * d + j]) + C(go[i * d + j]));
  });
}

}  // namespace kiln::kernels::cpu
