// CUDA kernels for the network layers and optimizers on dense tensors:
// - max/avg pooling NCHW, one thread per output; backward zero-fills grad_in and scatters with
//   atomicAdd (windows may overlap);
// - softmax/log_softmax over the middle dim of [outer, dim, inner]: with inner == 1 a block owns a
//   row (three passes: max, sum of exp, write; warp shuffles), otherwise a thread owns one
//   (outer, inner) column and neighbouring threads read neighbouring addresses;
// - nll forward/backward (one thread per sample), embedding gather/scatter (one thread per element,
//   atomicAdd for repeated indices);
// - Adam/AdamW and SGD: one fused pass reading param, grad and state once and writing them once.
// Arithmetic is f32 (f64 for f64 tensors) whatever the storage type.
#include <cmath>

#include "kernels/cuda/common.cuh"

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
struct Max {
  template <class A> __device__ A operator()(A a, A b) const { return a > b ? a : b; }
};

// inner == 1: block per row.
template <class T>
__global__ void softmax_rows(T* y, const T* x, int64_t rows, int64_t dim, bool log) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    A mx = -INFINITY;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) mx = max(mx, A(load_c(xr[d])));
    mx = block_all_reduce(mx, Max{});
    A s = 0;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) s += exp(A(load_c(xr[d])) - mx);
    s = block_all_reduce(s, Add{});
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

template <class T>
__global__ void nll_fwd(T* loss, T* wout, const T* logp, const int64_t* target, const T* w,
                        int64_t n, int64_t c, int64_t ignore) {
  KILN_GRID_LOOP(i, n) {
    const int64_t k = target[i];
    if (k == ignore) {
      loss[i] = store_c<T>(0.0);
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
    if (k == ignore) continue;
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
struct AdamArgs {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  C lr, b1, b2, eps, wd, bc2_sqrt, step_size;
  bool decoupled, amsgrad, maximize;
};

template <class T>
__global__ void adam_kernel(AdamArgs<T> a, T* __restrict__ w, const T* __restrict__ g,
                            T* __restrict__ m, T* __restrict__ v, T* __restrict__ vmax, int64_t n) {
  using C = typename AdamArgs<T>::C;
  KILN_GRID_LOOP(i, n) {
    C gi = C(load_c(g[i]));
    if (a.maximize) gi = -gi;
    C wi = C(load_c(w[i]));
    if (a.wd != C(0)) {
      if (a.decoupled) wi = wi * (C(1) - a.lr * a.wd);
      else gi = gi + a.wd * wi;
    }
    C mi = C(load_c(m[i]));
    mi = mi + (gi - mi) * (C(1) - a.b1);
    const C vi = C(load_c(v[i])) * a.b2 + (C(1) - a.b2) * gi * gi;
    C vv = vi;
    if (a.amsgrad) {
      vv = max(C(load_c(vmax[i])), vi);
      vmax[i] = store_c<T>(vv);
    }
    const C denom = sqrt(vv) / a.bc2_sqrt + a.eps;
    wi = wi - a.step_size * (mi / denom);
    m[i] = store_c<T>(mi);
    v[i] = store_c<T>(vi);
    w[i] = store_c<T>(wi);
  }
}

template <class T>
__global__ void sgd_kernel(SgdParams p, T* __restrict__ w, const T* __restrict__ g, T* __restrict__ buf,
                           int64_t n) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const C lr = C(p.lr), mom = C(p.momentum), damp = C(p.dampening), wd = C(p.weight_decay);
  KILN_GRID_LOOP(i, n) {
    C d = C(load_c(g[i]));
    if (p.maximize) d = -d;
    const C wi = C(load_c(w[i]));
    if (wd != C(0)) d = d + wd * wi;
    if (mom != C(0)) {
      const C b = p.first_step ? d : C(load_c(buf[i])) * mom + (C(1) - damp) * d;
      buf[i] = store_c<T>(b);
      d = p.nesterov ? d + mom * b : b;
    }
    w[i] = store_c<T>(wi - lr * d);
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
    if (inner == 1) {
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
    nll_fwd<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        loss.ptr<T>(), weight_out.ptr<T>(), logp.ptr<T>(), target.ptr<int64_t>(), weight.ptr<T>(), n,
        c, ignore_index);
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
    using C = typename AdamArgs<T>::C;
    const int64_t n = param.numel();
    if (!n) return;
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
    adam_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        a, param.ptr<T>(), grad.ptr<T>(), exp_avg.ptr<T>(), exp_avg_sq.ptr<T>(), max_exp_avg_sq.ptr<T>(), n);
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
