// softmax/log_softmax over the middle dim of dense [outer, dim, inner] tensors, and their
// backward. With inner == 1 and rows of up to 1024 elements a warp owns a row and keeps it in
// registers (all of a lane's loads in flight at once, max and sum by shuffles, one exp per
// element), so the input is read once and the output written once; longer rows get a block each
// (one read for an online max and sum, one read to write). With inner > 1 a thread owns one
// (outer, inner) column and neighbouring threads read neighbouring addresses.
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

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
  template <class A>
  __device__ A operator()(A a, A b) const {
    return a + b;
  }
};

// inner == 1, dim <= 32 * E: a warp per row, E elements per lane held in registers.
template <class T, int E>
__global__ void __launch_bounds__(128)
    softmax_rows_warp(T* __restrict__ y, const T* __restrict__ x, int64_t rows, int dim, bool log) {
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
__global__ void softmax_bwd_cols(T* gx, const T* gy, const T* y, int64_t outer, int64_t dim, int64_t inner, bool log) {
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

}  // namespace

namespace {
int row_threads(int64_t dim) { return dim <= 32 ? 32 : (dim <= 256 ? 64 : (dim <= 2048 ? 256 : 512)); }
}  // namespace

void CudaBackend::softmax_forward(const View& out, const View& in, int64_t outer, int64_t dim, int64_t inner,
                                  bool log) {
  dispatch_float(in.dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    if (outer * dim * inner == 0) return;
    cudaStream_t s = current_stream();
    if (inner == 1 && dim <= 1024) {
      constexpr int kWarps = 4;
      const unsigned blocks = unsigned(std::min<int64_t>((outer + kWarps - 1) / kWarps, int64_t(sm_count()) * 64));
      auto launch = [&](auto e) {
        softmax_rows_warp<T, decltype(e)::value>
            <<<blocks, 32 * kWarps, 0, s>>>(out.ptr<T>(), in.ptr<T>(), outer, int(dim), log);
      };
      if (dim <= 32)
        launch(std::integral_constant<int, 1>{});
      else if (dim <= 128)
        launch(std::integral_constant<int, 4>{});
      else if (dim <= 256)
        launch(std::integral_constant<int, 8>{});
      else if (dim <= 512)
        launch(std::integral_constant<int, 16>{});
      else
        launch(std::integral_constant<int, 32>{});
    } else if (inner == 1) {
      const unsigned blocks = unsigned(std::min<int64_t>(outer, int64_t(sm_count()) * 32));
      softmax_rows<T><<<blocks, row_threads(dim), 0, s>>>(out.ptr<T>(), in.ptr<T>(), outer, dim, log);
    } else {
      softmax_cols<T><<<grid_for(outer * inner), kThreads, 0, s>>>(out.ptr<T>(), in.ptr<T>(), outer, dim, inner, log);
    }
    KILN_LAUNCH_CHECK("softmax");
  });
}

void CudaBackend::softmax_backward(const View& grad_in, const View& grad_out, const View& out, int64_t outer,
                                   int64_t dim, int64_t inner, bool log) {
  dispatch_float(out.dtype, "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    if (outer * dim * inner == 0) return;
    cudaStream_t s = current_stream();
    if (inner == 1) {
      const unsigned blocks = unsigned(std::min<int64_t>(outer, int64_t(sm_count()) * 32));
      softmax_bwd_rows<T>
          <<<blocks, row_threads(dim), 0, s>>>(grad_in.ptr<T>(), grad_out.ptr<T>(), out.ptr<T>(), outer, dim, log);
    } else {
      softmax_bwd_cols<T><<<grid_for(outer * inner), kThreads, 0, s>>>(grad_in.ptr<T>(), grad_out.ptr<T>(),
                                                                       out.ptr<T>(), outer, dim, inner, log);
    }
    KILN_LAUNCH_CHECK("softmax backward");
  });
}

}  // namespace kiln::kernels::cuda
