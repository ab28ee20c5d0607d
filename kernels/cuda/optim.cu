// Per-tensor Adam/AdamW and SGD: one fused pass reading param, grad and state once and writing
// them once (the element updates are optim_math.cuh's, shared with the multi-tensor kernels).
// Arithmetic is f32 (f64 for f64 tensors) whatever the storage type.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optim_math.cuh"

namespace kiln::kernels::cuda {
namespace {

template <class T>
__global__ void adam_kernel(AdamArgs<T> a, T* __restrict__ w, const T* __restrict__ g, T* __restrict__ m,
                            T* __restrict__ v, T* __restrict__ vmax, int64_t n) {
  using C = typename AdamArgs<T>::C;
  KILN_GRID_LOOP(i, n) {
    C wi = C(load_c(w[i])), mi = C(load_c(m[i])), vi = C(load_c(v[i]));
    C vm = a.amsgrad ? C(load_c(vmax[i])) : C(0);
    adam_update(a, wi, C(load_c(g[i])), mi, vi, &vm);
    if (a.amsgrad) vmax[i] = store_c<T>(vm);
    m[i] = store_c<T>(mi);
    v[i] = store_c<T>(vi);
    w[i] = store_c<T>(wi);
  }
}

// f32 with every pointer 16-byte aligned: four elements per 16-byte load and store of each
// tensor (param, grad, m, v in flight together), the n % 4 tail element by element.
__global__ void adam_kernel_f32x4(AdamArgs<float> a, float* __restrict__ w, const float* __restrict__ g,
                                  float* __restrict__ m, float* __restrict__ v, float* __restrict__ vmax, int64_t n) {
  using P = Pack<float, 4>;
  const int64_t n4 = n / 4;
  KILN_GRID_LOOP(i, n4) {
    P wp = reinterpret_cast<const P*>(w)[i];
    const P gp = reinterpret_cast<const P*>(g)[i];
    P mp = reinterpret_cast<const P*>(m)[i];
    P vp = reinterpret_cast<const P*>(v)[i];
    P xp{};
    if (a.amsgrad) xp = reinterpret_cast<const P*>(vmax)[i];
#pragma unroll
    for (int e = 0; e < 4; ++e) adam_update(a, wp.v[e], gp.v[e], mp.v[e], vp.v[e], &xp.v[e]);
    if (a.amsgrad) reinterpret_cast<P*>(vmax)[i] = xp;
    reinterpret_cast<P*>(m)[i] = mp;
    reinterpret_cast<P*>(v)[i] = vp;
    reinterpret_cast<P*>(w)[i] = wp;
  }
  KILN_GRID_LOOP(j, n - n4 * 4) {
    const int64_t i = n4 * 4 + j;
    float x = a.amsgrad ? vmax[i] : 0.0f;
    adam_update(a, w[i], g[i], m[i], v[i], &x);
    if (a.amsgrad) vmax[i] = x;
  }
}

template <class T>
__global__ void sgd_kernel(SgdParams p, T* __restrict__ w, const T* __restrict__ g, T* __restrict__ buf, int64_t n) {
  using C = opt_t<T>;
  const SgdArgs<C> a(p);
  KILN_GRID_LOOP(i, n) {
    C wi = C(load_c(w[i]));
    C bi = a.mom != C(0) && !a.first_step ? C(load_c(buf[i])) : C(0);
    sgd_update(a, wi, C(load_c(g[i])), bi);
    if (a.mom != C(0)) buf[i] = store_c<T>(bi);
    w[i] = store_c<T>(wi);
  }
}

}  // namespace

void CudaBackend::adam_step(const AdamParams& p, const View& param, const View& grad, const View& exp_avg,
                            const View& exp_avg_sq, const View& max_exp_avg_sq) {
  dispatch_float(param.dtype, "adam", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = param.numel();
    if (!n) return;
    const AdamArgs<T> a = make_adam_args<T>(p);
    T *w = param.ptr<T>(), *m = exp_avg.ptr<T>(), *v = exp_avg_sq.ptr<T>(), *vmax = max_exp_avg_sq.ptr<T>();
    const T* g = grad.ptr<T>();
    if constexpr (std::is_same_v<T, float>) {
      if (aligned16(w) && aligned16(g) && aligned16(m) && aligned16(v) && (!p.amsgrad || aligned16(vmax))) {
        adam_kernel_f32x4<<<grid_for(std::max<int64_t>(n / 4, 1)), kThreads, 0, current_stream()>>>(a, w, g, m, v, vmax,
                                                                                                    n);
        KILN_LAUNCH_CHECK("adam (f32x4)");
        return;
      }
    }
    adam_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(a, w, g, m, v, vmax, n);
    KILN_LAUNCH_CHECK("adam");
  });
}

void CudaBackend::sgd_step(const SgdParams& p, const View& param, const View& grad, const View& momentum_buffer) {
  dispatch_float(param.dtype, "sgd", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = param.numel();
    if (!n) return;
    sgd_kernel<T>
        <<<grid_for(n), kThreads, 0, current_stream()>>>(p, param.ptr<T>(), grad.ptr<T>(), momentum_buffer.ptr<T>(), n);
    KILN_LAUNCH_CHECK("sgd");
  });
}

}  // namespace kiln::kernels::cuda
