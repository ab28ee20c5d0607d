// CUDA reductions over arbitrary dims. The input's dims are split into kept and reduced ones
// (each coalesced; kernels/reduce_plan.h, shared with the CPU backend). When the reduced range is contiguous, it is
// read with 16-byte packed loads (a scalar head up to the first aligned address, a scalar tail), four packs in flight
// per thread: the sum is memory-bound, and 64 bytes outstanding per thread at full occupancy keeps HBM busy. Rows of up
// to 4096 elements go one warp per row (no block barrier per row); longer rows one block per row; when few outputs face
// a long range (a full sum), the range is also split over blocks that write f32/f64 partials, and a second tiny pass
// combines them. Other reduced strides walk the range with 4 independent scalar loads per thread. When a kept dim is
// the contiguous one (column sums), one thread per output walks the reduced range, so a warp reads 32 neighbouring
// columns per step. Accumulation: f32 for f32/f16/bf16, f64 for f64, i64 for integers. reduce_index (max/argmax/...)
// walks one row per thread, first index wins ties, NaN wins over numbers (as on the CPU).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cuda/common.cuh"
#include "kernels/reduce_plan.h"

namespace kiln::kernels::cuda {
namespace {

__device__ __forceinline__ int64_t offset_of(int64_t linear, int n, const int64_t* sizes, const int64_t* strides) {
  if (n == 1) return linear * strides[0];
  int64_t off = 0;
  for (int d = n - 1; d >= 0; --d) {
    off += (linear % sizes[d]) * strides[d];
    linear /= sizes[d];
  }
  return off;
}

template <class A>
__device__ __forceinline__ bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>)
    return v != v;
  else
    return false;
}

struct SumOp {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a + b;
  }
};
struct ProdOp {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a * b;
  }
};
struct MaxOp {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    if (is_nan(a) || is_nan(b)) return is_nan(a) ? a : b;
    return a > b ? a : b;
  }
};
struct MinOp {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    if (is_nan(a) || is_nan(b)) return is_nan(a) ? a : b;
    return a < b ? a : b;
  }
};

template <class A, class Op>
__device__ __forceinline__ A warp_reduce(A v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, A(__shfl_xor_sync(0xffffffffu, v, o)));
  return v;
}

// Block-wide reduction; the result is valid in every thread.
template <class A, class Op>
__device__ A block_reduce(A v, Op op, A init) {
  __shared__ A partial[32];
  v = warp_reduce(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  if (warps == 1) return v;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : init;
  return warp_reduce(v, op);
}

struct ReduceGeom {
  int nk, nr;
  int64_t ksizes[kMaxDims], kstrides[kMaxDims], rsizes[kMaxDims], rstrides[kMaxDims];
  int64_t kept, red, chunk;  // chunk: reduced elements per split
  int splits;
};

// Reduces p[r0, r1) (stride 1) into one value per calling thread: t is the thread's index among
// nt cooperating threads. Packs of 16 bytes from the first aligned address; 4 packs in flight.
template <class T, class A, class Op>
__device__ __forceinline__ A contiguous_partial(const T* __restrict__ p, int64_t r0, int64_t r1, int t, int nt, Op op,
                                                A init) {
  constexpr int N = 16 / sizeof(T);
  using P = Pack<T, N>;
  A acc = init;
  const T* q = p + r0;
  const int64_t len = r1 - r0;
  if (len <= 0) return acc;
  const int64_t head = min(len, int64_t(((16 - (reinterpret_cast<uintptr_t>(q) & 15)) & 15) / sizeof(T)));
  if (t < head) acc = op(acc, A(load_c(q[t])));
  const int64_t nvec = (len - head) / N;
  const P* v = reinterpret_cast<const P*>(q + head);
  int64_t i = t;
  for (; i + 3 * nt < nvec; i += 4 * int64_t(nt)) {
    P a[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) a[u] = v[i + u * nt];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      A s = A(load_c(a[u].v[0]));
#pragma unroll
      for (int e = 1; e < N; ++e) s = op(s, A(load_c(a[u].v[e])));
      acc = op(acc, s);
    }
  }
  for (; i < nvec; i += nt) {
    const P a = v[i];
#pragma unroll
    for (int e = 0; e < N; ++e) acc = op(acc, A(load_c(a.v[e])));
  }
  for (int64_t r = head + nvec * N + t; r < len; r += nt) acc = op(acc, A(load_c(q[r])));
  return acc;
}

// One warp per output over a contiguous reduced range (rows up to a few thousand elements).
template <class T, class A, class Op>
__global__ void reduce_warps(const T* __restrict__ in, T* out, ReduceGeom g, Op op, A init) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t k = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); k < g.kept; k += warps) {
    const int64_t base = offset_of(k, g.nk, g.ksizes, g.kstrides);
    A acc = contiguous_partial<T, A>(in + base, 0, g.red, lane, 32, op, init);
    acc = warp_reduce(acc, op);
    if (lane == 0) out[k] = store_c<T>(acc);
  }
}

// Block (k, split): reduces in[base(k) + offset(r)] for r in the split's chunk.
// out_final: the T output (splits == 1); out_partial: A partials [kept, splits] otherwise.
template <class T, class A, class Op>
__global__ void reduce_blocks(const T* __restrict__ in, T* out_final, A* out_partial, ReduceGeom g, Op op, A init) {
  for (int64_t k = blockIdx.x; k < g.kept; k += gridDim.x) {
    const int64_t base = offset_of(k, g.nk, g.ksizes, g.kstrides);
    const int64_t r0 = int64_t(blockIdx.y) * g.chunk;
    const int64_t r1 = min(g.red, r0 + g.chunk);
    A acc = init;
    if (g.nr == 1 && g.rstrides[0] == 1) {
      acc = contiguous_partial<T, A>(in + base, r0, r1, threadIdx.x, blockDim.x, op, init);
    } else if (g.nr == 1) {
      const int64_t st = g.rstrides[0];
      const T* p = in + base;
      int64_t r = r0 + threadIdx.x;
      const int64_t step = blockDim.x;
      for (; r + 3 * step < r1; r += 4 * step) {  // four loads in flight per thread
        A v0 = A(load_c(p[r * st])), v1 = A(load_c(p[(r + step) * st]));
        A v2 = A(load_c(p[(r + 2 * step) * st])), v3 = A(load_c(p[(r + 3 * step) * st]));
        acc = op(acc, op(op(v0, v1), op(v2, v3)));
      }
      for (; r < r1; r += step) acc = op(acc, A(load_c(p[r * st])));
    } else {
      for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x)
        acc = op(acc, A(load_c(in[base + offset_of(r, g.nr, g.rsizes, g.rstrides)])));
    }
    acc = block_reduce(acc, op, init);
    if (threadIdx.x == 0) {
      if (out_partial)
        out_partial[k * g.splits + blockIdx.y] = acc;
      else
        out_final[k] = store_c<T>(acc);
    }
  }
}

template <class T, class A, class Op>
__global__ void combine_partials(const A* __restrict__ partial, T* out, int64_t kept, int splits, Op op, A init) {
  for (int64_t k = blockIdx.x; k < kept; k += gridDim.x) {
    A acc = init;
    for (int i = threadIdx.x; i < splits; i += blockDim.x) acc = op(acc, partial[k * splits + i]);
    acc = block_reduce(acc, op, init);
    if (threadIdx.x == 0) out[k] = store_c<T>(acc);
  }
}

// One thread per output; used when a kept dim is the contiguous one.
template <class T, class A, class Op>
__global__ void reduce_columns(const T* __restrict__ in, T* out, ReduceGeom g, Op op, A init) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < g.kept; k += stride) {
    const int64_t base = offset_of(k, g.nk, g.ksizes, g.kstrides);
    A acc = init;
    for (int64_t r = 0; r < g.red; ++r) acc = op(acc, A(load_c(in[base + offset_of(r, g.nr, g.rsizes, g.rstrides)])));
    out[k] = store_c<T>(acc);
  }
}

template <class T, class A, class Op>
void run_reduce(const View& out, const View& in, Op op, A init) {
  const ReducePlan s = plan_reduction(out, in);
  ReduceGeom g{};
  g.nk = s.nk;
  g.nr = s.nr;
  for (int i = 0; i < kMaxDims; ++i) {
    g.ksizes[i] = s.ksizes[i];
    g.kstrides[i] = s.kstrides[i];
    g.rsizes[i] = s.rsizes[i];
    g.rstrides[i] = s.rstrides[i];
  }
  g.kept = s.kept_numel;
  g.red = s.red_numel;
  if (g.nr == 0) {  // nothing to reduce over (all reduced dims have size 1): a cast-free copy
    g.nr = 1;
    g.rsizes[0] = 1;
    g.rstrides[0] = 0;
  }
  if (g.nk == 0) {
    g.nk = 1;
    g.ksizes[0] = 1;
    g.kstrides[0] = 0;
  }
  if (g.kept == 0) return;
  cudaStream_t stream = current_stream();
  const T* src = in.ptr<T>();
  T* dst = out.ptr<T>();
  const int sms = sm_count();
  const bool columns =
      s.nk > 0 && s.kstrides[s.nk - 1] == 1 && s.nr > 0 && s.rstrides[s.nr - 1] != 1 && g.kept >= int64_t(sms) * 32;
  if (columns) {
    reduce_columns<T, A><<<grid_for(g.kept), kThreads, 0, stream>>>(src, dst, g, op, init);
    KILN_LAUNCH_CHECK("reduce_columns");
    return;
  }
  const bool unit = g.nr == 1 && g.rstrides[0] == 1;
  const int64_t target_blocks = int64_t(sms) * 8;
  if (unit && g.red <= 4096 && g.kept >= target_blocks) {
    constexpr int kWarpsPerBlock = 8;
    const int64_t want = (g.kept + kWarpsPerBlock - 1) / kWarpsPerBlock;
    const unsigned blocks = unsigned(std::min<int64_t>(want, int64_t(sms) * 16));
    reduce_warps<T, A><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(src, dst, g, op, init);
    KILN_LAUNCH_CHECK("reduce_warps");
    return;
  }
  const int threads = g.red <= 64 ? 32 : (g.red <= 4096 ? 128 : 256);
  int64_t splits = 1;
  if (g.kept < target_blocks && g.red >= 16384) {
    splits = std::min<int64_t>((target_blocks + g.kept - 1) / g.kept, g.red / 8192);
    splits = std::max<int64_t>(std::min<int64_t>(splits, 65535), 1);
  }
  g.splits = int(splits);
  g.chunk = (g.red + splits - 1) / splits;
  // Chunks of whole 16-byte packs (kept 4 KiB-aligned), so splits of an aligned row stay aligned.
  if (splits > 1) g.chunk = (g.chunk + 1023) / 1024 * 1024;
  const unsigned gx = unsigned(std::min<int64_t>(g.kept, int64_t(sms) * 32));
  if (splits == 1) {
    reduce_blocks<T, A><<<dim3(gx, 1), threads, 0, stream>>>(src, dst, nullptr, g, op, init);
    KILN_LAUNCH_CHECK("reduce_blocks");
    return;
  }
  Workspace partial(size_t(g.kept * splits) * sizeof(A));
  reduce_blocks<T, A><<<dim3(gx, unsigned(splits)), threads, 0, stream>>>(src, dst, partial.as<A>(), g, op, init);
  KILN_LAUNCH_CHECK("reduce_blocks (split)");
  combine_partials<T, A><<<gx, 256, 0, stream>>>(partial.as<A>(), dst, g.kept, g.splits, op, init);
  KILN_LAUNCH_CHECK("combine_partials");
}

template <class T>
__global__ void reduce_index_kernel(const T* __restrict__ in, T* values, int64_t* indices, int64_t outer, int64_t n,
                                    int64_t st, int no, Strided<1> og, bool want_max) {
  using C = acc_t<T>;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < outer; o += stride) {
    int64_t off[1];
    og.offsets(o, off);
    const T* p = in + off[0];
    C best = load_c(p[0]);
    int64_t best_i = 0;
    for (int64_t i = 1; i < n; ++i) {
      C v = load_c(p[i * st]);
      if constexpr (is_float_v<T>) {
        if (best != best) break;
        if (v != v) {
          best = v;
          best_i = i;
          break;
        }
      }
      if (want_max ? v > best : v < best) {
        best = v;
        best_i = i;
      }
    }
    if (values) values[o] = store_c<T>(best);
    if (indices) indices[o] = best_i;
  }
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const View& out, const View& in) {
  dispatch_all(in.dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    using C = acc_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      // any/all as max/min over 0/1 in an int accumulator (shuffles do not take bool).
      if (op == ReduceOp::any) return run_reduce<bool, int>(out, in, MaxOp{}, 0);
      if (op == ReduceOp::all) return run_reduce<bool, int>(out, in, MinOp{}, 1);
      if (op == ReduceOp::sum) fail("reduce: sum of bool tensors: convert to an integer dtype first");
      fail("reduce: op ", int(op), " is not defined for bool");
    } else {
      using Acc = std::conditional_t<is_float_v<T>, C, int64_t>;
      switch (op) {
        case ReduceOp::sum: return run_reduce<T, Acc>(out, in, SumOp{}, Acc(0));
        case ReduceOp::prod: return run_reduce<T, Acc>(out, in, ProdOp{}, Acc(1));
        // Floating maxima start at -inf, so a slice of -inf reduces to -inf (not -FLT_MAX).
        case ReduceOp::max:
          return run_reduce<T, C>(
              out, in, MaxOp{}, is_float_v<T> ? -std::numeric_limits<C>::infinity() : std::numeric_limits<C>::lowest());
        case ReduceOp::min:
          return run_reduce<T, C>(out, in, MinOp{},
                                  is_float_v<T> ? std::numeric_limits<C>::infinity() : std::numeric_limits<C>::max());
        default: break;
      }
      fail("reduce: op ", int(op), " is not defined for ", dtype_name(in.dtype));
    }
  });
}

void CudaBackend::reduce_index(ReduceOp op, const View& values, const View& indices, const View& in, int dim) {
  const bool want_max = op == ReduceOp::max || op == ReduceOp::argmax;
  dispatch_all(in.dtype, "reduce_index", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      fail("max/min/argmax/argmin: not defined for bool tensors");
    } else {
      // The kept dims as a 1-operand strided geometry over the input.
      View rest;
      rest.dtype = in.dtype;
      for (int d = 0; d < in.ndim; ++d) {
        if (d == dim) continue;
        rest.sizes[rest.ndim] = in.sizes[d];
        rest.strides[rest.ndim] = in.strides[d];
        ++rest.ndim;
      }
      const View* vs[1] = {&rest};
      Strided<1> og = coalesce<1>(vs);
      const int64_t outer = rest.numel(), n = in.sizes[dim];
      if (outer == 0 || n == 0) return;
      reduce_index_kernel<T><<<grid_for(outer), kThreads, 0, current_stream()>>>(
          in.ptr<T>(), values.ptr<T>(), indices.ptr<int64_t>(), outer, n, in.strides[dim], 0, og, want_max);
      KILN_LAUNCH_CHECK("reduce_index");
    }
  });
}

}  // namespace kiln::kernels::cuda
