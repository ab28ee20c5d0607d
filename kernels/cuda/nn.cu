// CUDA kernels for the network layers and optimizers on dense tensors:
// - max/avg pooling NCHW, one thread per output; backward zero-fills grad_in and scatters with
//   atomicAdd (windows may overlap);
// - softmax/log_softmax over the middle dim of [outer, dim, inner]: with inner == 1 and rows of
//   up to 1024 elements a warp owns a row and keeps it in registers (all of a lane's loads in
//   flight at once, max and sum by shuffles, one exp per element), so the input is read once and
//   the output written once; longer rows get a block each (one read for an online max and sum,
//   one read to write). With inner > 1 a thread owns one (outer, inner) column and neighbouring
//   threads read neighbouring addresses;
// - nll forward/backward (one thread per sample), embedding gather/scatter (one thread per element,
//   atomicAdd for repeated indices);
// - Adam/AdamW and SGD: one fused pass reading param, grad and state once and writing them once.
// Arithmetic is f32 (f64 for f64 tensors) whatever the storage type.
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optim_math.cuh"

namespace kiln::kernels::cuda {
namespace {

template <class T>
__device__ __forceinline__ void atomic_add(T* p, acc_t<T> v) {
  if constexpr (is_half_v<T>) atomicAdd(p, store_c<T>(v));
  else atomicAdd(p, v);
}

#define KILN_GRID_LOOP(i, n)                                                           \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);            \
       i += int64_t(gridDim.x) * blockDim.x)

template <class T>
__global__ void max_pool_fwd(Pool2dParams p, T* y, int64_t* idx, const T* x) {
  using C = acc_t<T>;
  const int64_t total = p.n * p.c * p.h_out * p.w_out;
  KILN_GRID_LOOP(o, total) {
    const int64_t ow = o % p.w_out, oh = (o / p.w_out) % p.h_out, plane = o / (p.w_out * p.h_out);
    const T* xp = x + plane * p.h_in * p.w_in;
    const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
    const int64_t hs = max(h0, int64_t(0)), he = min(h0 + p.kh, p.h_in);
    const int64_t ws = max(w0, int64_t(0)), we = min(w0 + p.kw, p.w_in);
    C best = -INFINITY;
    int64_t best_i = hs * p.w_in + ws;
    bool done = false;
    for (int64_t ih = hs; ih < he && !done; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) {
        const C v = load_c(xp[ih * p.w_in + iw]);
        if (v > best || v != v) {
          best = v;
          best_i = ih * p.w_in + iw;
        }
        if (v != v) {
          done = true;
          break;
        }
      }
    y[o] = store_c<T>(best);
    if (idx) idx[o] = best_i;
  }
}

template <class T>
__global__ void max_pool_bwd(Pool2dParams p, T* gx, const T* gy, const int64_t* idx) {
  const int64_t total = p.n * p.c * p.h_out * p.w_out;
  KILN_GRID_LOOP(o, total) {
    const int64_t plane = o / (p.w_out * p.h_out);
    atomic_add(gx + plane * p.h_in * p.w_in + idx[o], load_c(gy[o]));
  }
}

template <class T>
__global__ void avg_pool_fwd(Pool2dParams p, T* y, const T* x) {
  using C = acc_t<T>;
  const int64_t total = p.n * p.c * p.h_out * p.w_out;
  KILN_GRID_LOOP(o, total) {
    const int64_t ow = o % p.w_out, oh = (o / p.w_out) % p.h_out, plane = o / (p.w_out * p.h_out);
    const T* xp = x + plane * p.h_in * p.w_in;
    const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
    const int64_t hs = max(h0, int64_t(0)), he = min(h0 + p.kh, p.h_in);
    const int64_t ws = max(w0, int64_t(0)), we = min(w0 + p.kw, p.w_in);
    const int64_t hp = min(h0 + p.kh, p.h_in + p.pad_h) - h0, wp = min(w0 + p.kw, p.w_in + p.pad_w) - w0;
    C s = 0;
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) s += load_c(xp[ih * p.w_in + iw]);
    const int64_t count = p.count_include_pad ? hp * wp : (he - hs) * (we - ws);
    y[o] = store_c<T>(s / C(count));
  }
}

template <class T>
__global__ void avg_pool_bwd(Pool2dParams p, T* gx, const T* gy) {
  using C = acc_t<T>;
  const int64_t total = p.n * p.c * p.h_out * p.w_out;
  KILN_GRID_LOOP(o, total) {
    const int64_t ow = o % p.w_out, oh = (o / p.w_out) % p.h_out, plane = o / (p.w_out * p.h_out);
    T* gxp = gx + plane * p.h_in * p.w_in;
    const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
    const int64_t hs = max(h0, int64_t(0)), he = min(h0 + p.kh, p.h_in);
    const int64_t ws = max(w0, int64_t(0)), we = min(w0 + p.kw, p.w_in);
    const int64_t hp = min(h0 + p.kh, p.h_in + p.pad_h) - h0, wp = min(w0 + p.kw, p.w_in + p.pad_w) - w0;
    const int64_t count = p.count_include_pad ? hp * wp : (he - hs) * (we - ws);
    const C g = load_c(gy[o]) / C(count);
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) atomic_add(gxp + ih * p.w_in + iw, g);
  }
}

template <class A, class Op>
__device__ A block_all_reduce(A v, Op op) {
  __shared__ A partial[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  if (warps == 1) return v;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = partial[0];
  for (int i = 1; i < warps; ++i) v = op(v, partial[i]);
  return v;
}

struct Add {
  template <class A> __device__ A operator()(A a, A b) const { return a + b; }
};

// inner == 1, dim <= 32 * E: a warp per row, E elements per lane held in registers.
template <class T, int E>
__global__ void __launch_bounds__(128) softmax_rows_warp(T* __restrict__ y, const T* __restrict__ x,
                                                         int64_t rows, int dim, bool log) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    A v[E];
#pragma unroll
    for (int j = 0; j < E; ++j) {
      const int d = lane + 32 * j;
      v[j] = d < dim ? A(load_c(xr[d])) : A(-INFINITY);
    }
    A mx = v[0];
#pragma unroll
    for (int j = 1; j < E; ++j) mx = max(mx, v[j]);
    mx = warp_max(mx);
    A s = 0;
    if (log) {
#pragma unroll
      for (int j = 0; j < E; ++j)
        if (lane + 32 * j < dim) s += exp(v[j] - mx);
      s = warp_sum(s);
      const A lse = mx + ::log(s);
#pragma unroll
      for (int j = 0; j < E; ++j) {
        const int d = lane + 32 * j;
        if (d < dim) yr[d] = store_c<T>(v[j] - lse);
      }
    } else {
#pragma unroll
      for (int j = 0; j < E; ++j) {
        v[j] = lane + 32 * j < dim ? exp(v[j] - mx) : A(0);
        s += v[j];
      }
      s = warp_sum(s);
      const A inv = A(1) / s;
#pragma unroll
      for (int j = 0; j < E; ++j) {
        const int d = lane + 32 * j;
        if (d < dim) yr[d] = store_c<T>(v[j] * inv);
      }
    }
  }
}

// Folds (m2, s2) into a running (max, sum of exp(x - max)); -inf maxima contribute nothing.
template <class A>
__device__ __forceinline__ void online_merge(A& m, A& s, A m2, A s2) {
  if (m2 == A(-INFINITY)) return;
  if (m == A(-INFINITY)) {
    m = m2;
    s = s2;
    return;
  }
  const A nm = max(m, m2);
  s = s * exp(m - nm) + s2 * exp(m2 - nm);
  m = nm;
}

// inner == 1, long rows: block per row; one read computes max and sum together.
template <class T>
__global__ void softmax_rows(T* y, const T* x, int64_t rows, int64_t dim, bool log) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  __shared__ A sm[32], ss[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    A mx = -INFINITY, s = 0;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      const A xv = A(load_c(xr[d]));
      if (xv > mx) {
        s = s * exp(mx - xv) + A(1);
        mx = xv;
      } else if (xv != A(-INFINITY)) {  // exp(-inf - -inf) would be NaN; -inf adds nothing
        s += exp(xv - mx);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const A m2 = __shfl_xor_sync(0xffffffffu, mx, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
      online_merge(mx, s, m2, s2);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();  // sm/ss may still be read for the previous row
    if (lane == 0) {
      sm[warp] = mx;
      ss[warp] = s;
    }
    __syncthreads();
    mx = sm[0];
    s = ss[0];
    for (int i = 1; i < nw; ++i) online_merge(mx, s, sm[i], ss[i]);
    if (log) {
      const A lse = mx + ::log(s);
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) yr[d] = store_c<T>(A(load_c(xr[d])) - lse);
    } else {
      const A inv = A(1) / s;
      for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) yr[d] = store_c<T>(exp(A(load_c(xr[d])) - mx) * inv);
    }
  }
}

template <class T>
__global__ void softmax_cols(T* y, const T* x, int64_t outer, int64_t dim, int64_t inner, bool log) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  KILN_GRID_LOOP(c, outer * inner) {
    const int64_t base = (c / inner) * dim * inner + c % inner;
    A mx = -INFINITY;
    for (int64_t d = 0; d < dim; ++d) mx = max(mx, A(load_c(x[base + d * inner])));
    A s = 0;
    for (int64_t d = 0; d < dim; ++d) s += exp(A(load_c(x[base + d * inner])) - mx);
    if (log) {
      const A lse = mx + ::log(s);
      for (int64_t d = 0; d < dim; ++d) y[base + d * inner] = store_c<T>(A(load_c(x[base + d * inner])) - lse);
    } else {
      const A inv = A(1) / s;
      for (int64_t d = 0; d < dim; ++d)
        y[base + d * inner] = store_c<T>(exp(A(load_c(x[base + d * inner])) - mx) * inv);
    }
  }
}

template <class T>
__global__ void softmax_bwd_rows(T* gx, const T* gy, const T* y, int64_t rows, int64_t dim, bool log) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r * dim;
    A s = 0;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x)
      s += log ? A(load_c(gy[b + d])) : A(load_c(gy[b + d])) * A(load_c(y[b + d]));
    s = block_all_reduce(s, Add{});
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      const A g = load_c(gy[b + d]), v = load_c(y[b + d]);
      gx[b + d] = store_c<T>(log ? g - exp(v) * s : v * (g - s));
    }
  }
}

template <class T>
__global__ void softmax_bwd_cols(T* gx, const T* gy, const T* y, int64_t outer, int64_t dim,
                                 int64_t inner, bool log) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  KILN_GRID_LOOP(c, outer * inner) {
    const int64_t base = (c / inner) * dim * inner + c % inner;
    A s = 0;
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t i = base + d * inner;
      s += log ? A(load_c(gy[i])) : A(load_c(gy[i])) * A(load_c(y[i]));
    }
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t i = base + d * inner;
      const A g = load_c(gy[i]), v = load_c(y[i]);
      gx[i] = store_c<T>(log ? g - exp(v) * s : v * (g - s));
    }
  }
}

// An out-of-range target is recorded in `err` (the first one wins; the host reports it at its
// next synchronisation) and gives a NaN loss instead of reading outside the row.
template <class T>
__global__ void nll_fwd(T* loss, T* wout, const T* logp, const int64_t* target, const T* w,
                        int64_t n, int64_t c, int64_t ignore, DeviceError* err) {
  KILN_GRID_LOOP(i, n) {
    const int64_t k = target[i];
    if (k == ignore) {
      loss[i] = store_c<T>(0.0);
      if (wout) wout[i] = store_c<T>(0.0);
      continue;
    }
    if (k < 0 || k >= c) {
      if (atomicCAS(&err->code, int(kNoDeviceError), int(kNllTargetOutOfRange)) == int(kNoDeviceError)) {
        err->value = k;
        err->bound = c;
        __threadfence_system();
      }
      loss[i] = store_c<T>(__longlong_as_double(0x7ff8000000000000LL));
      if (wout) wout[i] = store_c<T>(0.0);
      continue;
    }
    const double wi = w ? double(load_c(w[k])) : 1.0;
    loss[i] = store_c<T>(-wi * double(load_c(logp[i * c + k])));
    if (wout) wout[i] = store_c<T>(wi);
  }
}

template <class T>
__global__ void nll_bwd(T* g, const T* gl, int64_t gl_stride, const int64_t* target, const T* w,
                        int64_t n, int64_t c, int64_t ignore) {
  KILN_GRID_LOOP(i, n) {
    const int64_t k = target[i];
    if (k == ignore || k < 0 || k >= c) continue;  // out of range: reported by the forward
    const double wi = w ? double(load_c(w[k])) : 1.0;
    g[i * c + k] = store_c<T>(-wi * double(load_c(gl[i * gl_stride])));
  }
}

__global__ void first_bad_index(const int64_t* idx, int64_t n, int64_t v, unsigned long long* first) {
  KILN_GRID_LOOP(i, n) {
    if (idx[i] < 0 || idx[i] >= v) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

template <class T>
__global__ void gather_rows(T* out, const T* w, const int64_t* idx, int64_t n, int64_t d) {
  KILN_GRID_LOOP(i, n * d) { out[i] = w[idx[i / d] * d + i % d]; }
}

template <class T>
__global__ void scatter_add_rows(T* gw, const T* go, const int64_t* idx, int64_t n, int64_t d) {
  KILN_GRID_LOOP(i, n * d) { atomic_add(gw + idx[i / d] * d + i % d, load_c(go[i])); }
}

template <class T>
__global__ void adam_kernel(AdamArgs<T> a, T* __restrict__ w, const T* __restrict__ g,
                            T* __restrict__ m, T* __restrict__ v, T* __restrict__ vmax, int64_t n) {
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
                                  float* __restrict__ m, float* __restrict__ v, float* __restrict__ vmax,
                                  int64_t n) {
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
__global__ void sgd_kernel(SgdParams p, T* __restrict__ w, const T* __restrict__ g, T* __restrict__ buf,
                           int64_t n) {
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

void CudaBackend::max_pool2d_forward(const Pool2dParams& p, const View& out, const View& indices,
                                     const View& in) {
  dispatch_float(in.dtype, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = p.n * p.c * p.h_out * p.w_out;
    if (!total) return;
    max_pool_fwd<T><<<grid_for(total), kThreads, 0, current_stream()>>>(p, out.ptr<T>(),
                                                                         indices.ptr<int64_t>(), in.ptr<T>());
    KILN_LAUNCH_CHECK("max_pool_fwd");
  });
}

void CudaBackend::max_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out,
                                      const View& indices) {
  dispatch_float(grad_out.dtype, "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    fill(grad_in, 0.0);
    const int64_t total = p.n * p.c * p.h_out * p.w_out;
    if (!total) return;
    max_pool_bwd<T><<<grid_for(total), kThreads, 0, current_stream()>>>(
        p, grad_in.ptr<T>(), grad_out.ptr<T>(), indices.ptr<int64_t>());
    KILN_LAUNCH_CHECK("max_pool_bwd");
  });
}

void CudaBackend::avg_pool2d_forward(const Pool2dParams& p, const View& out, const View& in) {
  dispatch_float(in.dtype, "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = p.n * p.c * p.h_out * p.w_out;
    if (!total) return;
    avg_pool_fwd<T><<<grid_for(total), kThreads, 0, current_stream()>>>(p, out.ptr<T>(), in.ptr<T>());
    KILN_LAUNCH_CHECK("avg_pool_fwd");
  });
}

void CudaBackend::avg_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out) {
  dispatch_float(grad_out.dtype, "avg_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    fill(grad_in, 0.0);
    const int64_t total = p.n * p.c * p.h_out * p.w_out;
    if (!total) return;
    avg_pool_bwd<T><<<grid_for(total), kThreads, 0, current_stream()>>>(p, grad_in.ptr<T>(),
                                                                        grad_out.ptr<T>());
    KILN_LAUNCH_CHECK("avg_pool_bwd");
  });
}

namespace {
int row_threads(int64_t dim) { return dim <= 32 ? 32 : (dim <= 256 ? 64 : (dim <= 2048 ? 256 : 512)); }
}  // namespace

void CudaBackend::softmax_forward(const View& out, const View& in, int64_t outer, int64_t dim,
                                  int64_t inner, bool log) {
  dispatch_float(in.dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    if (outer * dim * inner == 0) return;
    cudaStream_t s = current_stream();
    if (inner == 1 && dim <= 1024) {
      constexpr int kWarps = 4;
      const unsigned blocks = unsigned(std::min<int64_t>((outer + kWarps - 1) / kWarps, int64_t(sm_count()) * 64));
      auto launch = [&](auto e) {
        softmax_rows_warp<T, decltype(e)::value><<<blocks, 32 * kWarps, 0, s>>>(out.ptr<T>(), in.ptr<T>(), outer,
                                                                                int(dim), log);
      };
      if (dim <= 32) launch(std::integral_constant<int, 1>{});
      else if (dim <= 128) launch(std::integral_constant<int, 4>{});
      else if (dim <= 256) launch(std::integral_constant<int, 8>{});
      else if (dim <= 512) launch(std::integral_constant<int, 16>{});
      else launch(std::integral_constant<int, 32>{});
    } else if (inner == 1) {
      const unsigned blocks = unsigned(std::min<int64_t>(outer, int64_t(sm_count()) * 32));
      softmax_rows<T><<<blocks, row_threads(dim), 0, s>>>(out.ptr<T>(), in.ptr<T>(), outer, dim, log);
    } else {
      softmax_cols<T><<<grid_for(outer * inner), kThreads, 0, s>>>(out.ptr<T>(), in.ptr<T>(), outer,
                                                                   dim, inner, log);
    }
    KILN_LAUNCH_CHECK("softmax");
  });
}

void CudaBackend::softmax_backward(const View& grad_in, const View& grad_out, const View& out,
                                   int64_t outer, int64_t dim, int64_t inner, bool log) {
  dispatch_float(out.dtype, "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    if (outer * dim * inner == 0) return;
    cudaStream_t s = current_stream();
    if (inner == 1) {
      const unsigned blocks = unsigned(std::min<int64_t>(outer, int64_t(sm_count()) * 32));
      softmax_bwd_rows<T><<<blocks, row_threads(dim), 0, s>>>(grad_in.ptr<T>(), grad_out.ptr<T>(),
                                                              out.ptr<T>(), outer, dim, log);
    } else {
      softmax_bwd_cols<T><<<grid_for(outer * inner), kThreads, 0, s>>>(
          grad_in.ptr<T>(), grad_out.ptr<T>(), out.ptr<T>(), outer, dim, inner, log);
    }
    KILN_LAUNCH_CHECK("softmax backward");
  });
}

void CudaBackend::nll_forward(const View& loss, const View& weight_out, const View& logp,
                              const View& target, const View& weight, int64_t ignore_index) {
  dispatch_float(logp.dtype, "nll_loss", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = logp.sizes[0], c = logp.sizes[1];
    if (!n) return;
    check_device_errors();  // one recorded by an earlier call (a host read, no synchronisation)
    nll_fwd<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        loss.ptr<T>(), weight_out.ptr<T>(), logp.ptr<T>(), target.ptr<int64_t>(), weight.ptr<T>(), n,
        c, ignore_index, device_error_slot());
    KILN_LAUNCH_CHECK("nll_fwd");
  });
}

void CudaBackend::nll_backward(const View& grad_logp, const View& grad_loss, const View& target,
                               const View& weight, int64_t ignore_index) {
  dispatch_float(grad_logp.dtype, "nll_loss backward", [&](auto tag) {
    using T = decltype(tag);
    fill(grad_logp, 0.0);
    const int64_t n = grad_logp.sizes[0], c = grad_logp.sizes[1];
    if (!n) return;
    nll_bwd<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        grad_logp.ptr<T>(), grad_loss.ptr<T>(), grad_loss.ndim > 0 ? grad_loss.strides[0] : 0,
        target.ptr<int64_t>(), weight.ptr<T>(), n, c, ignore_index);
    KILN_LAUNCH_CHECK("nll_bwd");
  });
}

int64_t CudaBackend::index_select_rows(const View& out, const View& weight, const View& index) {
  const int64_t n = index.numel(), v = weight.sizes[0];
  const int64_t d = weight.numel() / std::max<int64_t>(v, 1);
  if (n == 0) return -1;
  cudaStream_t s = current_stream();
  // Validate on the device; one 8-byte read back (a sync) tells whether any index is bad.
  Workspace flag(sizeof(unsigned long long));
  KILN_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0xff, sizeof(unsigned long long), s));
  first_bad_index<<<grid_for(n), kThreads, 0, s>>>(index.ptr<int64_t>(), n, v,
                                                    flag.as<unsigned long long>());
  KILN_LAUNCH_CHECK("first_bad_index");
  unsigned long long first = 0;
  copy_to_host(&first, flag.get(), sizeof(first));
  if (first != ~0ull) {
    int64_t bad = 0;
    copy_to_host(&bad, index.ptr<int64_t>() + first, sizeof(bad));
    return bad;
  }
  if (n * d == 0) return -1;
  const size_t es = element_size(weight.dtype);
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    gather_rows<T><<<grid_for(n * d), kThreads, 0, s>>>(out.ptr<T>(), weight.ptr<T>(),
                                                        index.ptr<int64_t>(), n, d);
    KILN_LAUNCH_CHECK("gather_rows");
  };
  // Rows are moved as raw bytes: the dtype only sets the element width.
  if (es == 8) launch(int64_t{});
  else if (es == 4) launch(int32_t{});
  else if (es == 2) launch(int16_t{});
  else launch(int8_t{});
  return -1;
}

void CudaBackend::index_add_rows(const View& grad_weight, const View& grad_out, const View& index) {
  dispatch_float(grad_weight.dtype, "embedding backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = index.numel(), v = grad_weight.sizes[0];
    const int64_t d = grad_weight.numel() / std::max<int64_t>(v, 1);
    if (n * d == 0) return;
    scatter_add_rows<T><<<grid_for(n * d), kThreads, 0, current_stream()>>>(
        grad_weight.ptr<T>(), grad_out.ptr<T>(), index.ptr<int64_t>(), n, d);
    KILN_LAUNCH_CHECK("scatter_add_rows");
  });
}

void CudaBackend::adam_step(const AdamParams& p, const View& param, const View& grad,
                            const View& exp_avg, const View& exp_avg_sq, const View& max_exp_avg_sq) {
  dispatch_float(param.dtype, "adam", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = param.numel();
    if (!n) return;
    const AdamArgs<T> a = make_adam_args<T>(p);
    T *w = param.ptr<T>(), *m = exp_avg.ptr<T>(), *v = exp_avg_sq.ptr<T>(), *vmax = max_exp_avg_sq.ptr<T>();
    const T* g = grad.ptr<T>();
    if constexpr (std::is_same_v<T, float>) {
      if (aligned16(w) && aligned16(g) && aligned16(m) && aligned16(v) && (!p.amsgrad || aligned16(vmax))) {
        adam_kernel_f32x4<<<grid_for(std::max<int64_t>(n / 4, 1)), kThreads, 0, current_stream()>>>(
            a, w, g, m, v, vmax, n);
        KILN_LAUNCH_CHECK("adam (f32x4)");
        return;
      }
    }
    adam_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(a, w, g, m, v, vmax, n);
    KILN_LAUNCH_CHECK("adam");
  });
}

void CudaBackend::sgd_step(const SgdParams& p, const View& param, const View& grad,
                           const View& momentum_buffer) {
  dispatch_float(param.dtype, "sgd", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = param.numel();
    if (!n) return;
    sgd_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(p, param.ptr<T>(), grad.ptr<T>(),
                                                                   momentum_buffer.ptr<T>(), n);
    KILN_LAUNCH_CHECK("sgd");
  });
}

}  // namespace kiln::kernels::cuda
