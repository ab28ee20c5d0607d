// Max and average 2-D pooling on dense NCHW tensors: one thread per output element. The
// backward zero-fills grad_in and scatters into it with atomicAdd, since windows may overlap.
// Arithmetic is f32 (f64 for f64 tensors) whatever the storage type.
#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

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

}  // namespace

void CudaBackend::max_pool2d_forward(const Pool2dParams& p, const View& out, const View& indices, const View& in) {
  dispatch_float(in.dtype, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = p.n * p.c * p.h_out * p.w_out;
    if (!total) return;
    max_pool_fwd<T>
        <<<grid_for(total), kThreads, 0, current_stream()>>>(p, out.ptr<T>(), indices.ptr<int64_t>(), in.ptr<T>());
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
    max_pool_bwd<T><<<grid_for(total), kThreads, 0, current_stream()>>>(p, grad_in.ptr<T>(), grad_out.ptr<T>(),
                                                                        indices.ptr<int64_t>());
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
    avg_pool_bwd<T><<<grid_for(total), kThreads, 0, current_stream()>>>(p, grad_in.ptr<T>(), grad_out.ptr<T>());
    KILN_LAUNCH_CHECK("avg_pool_bwd");
  });
}

}  // namespace kiln::kernels::cuda
