// Device-side building blocks shared by the CUDA kernels: the device type behind each kiln dtype
// (kiln::Half -> __half), the arithmetic type (f32 for 16-bit floats), conversions with the CPU
// backend's rounding, dtype dispatch, strided offset calculation over coalesced dims, and the
// launch shape for grid-stride loops.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_backend.h"

namespace kiln::kernels::cuda {

// Storage type on the device for each kiln element type.
template <class T>
struct dev_type {
  using type = T;
};
template <>
struct dev_type<Half> {
  using type = __half;
};
template <>
struct dev_type<BFloat16> {
  using type = __nv_bfloat16;
};
template <class T>
using dev_t = typename dev_type<T>::type;

template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;
template <class T>
inline constexpr bool is_float_v = std::is_floating_point_v<T> || is_half_v<T>;
// Arithmetic type: f32 for the 16-bit floats, the type itself otherwise.
template <class T>
using acc_t = std::conditional_t<is_half_v<T>, float, T>;

template <class T>
__device__ __forceinline__ acc_t<T> load_c(const T& v) {
  if constexpr (std::is_same_v<T, __half>)
    return __half2float(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(v);
  else
    return v;
}
// Converts any arithmetic value to storage type O like the CPU backend's copy(): bool is
// "!= 0", the 16-bit floats round from f32 to nearest even.
template <class O, class V>
__device__ __forceinline__ O store_c(V v) {
  if constexpr (std::is_same_v<O, bool>)
    return v != V(0);
  else if constexpr (std::is_same_v<O, __half>)
    return __float2half_rn(float(v));
  else if constexpr (std::is_same_v<O, __nv_bfloat16>)
    return __float2bfloat16_rn(float(v));
  else
    return O(v);
}

// Calls f(T{}) with the device storage type for dtype t.
template <class F>
void dispatch_all(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(__half{});
    case DType::bf16: return f(__nv_bfloat16{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    case DType::boolean: return f(bool{});
  }
  fail(op, ": unsupported dtype ", t);
}
template <class F>
void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(__half{});
    case DType::bf16: return f(__nv_bfloat16{});
    default: fail(op, ": expected a floating-point tensor, got ", dtype_name(t));
  }
}

// K operands over one coalesced shape: sizes innermost-last, strides per operand (elements).
template <int K>
struct Strided {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};
  int64_t numel = 1;

  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&off)[K]) const {
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t idx = linear % sizes[d];
      linear /= sizes[d];
#pragma unroll
      for (int k = 0; k < K; ++k) off[k] += idx * strides[k][d];
    }
  }
};

// Shape from views[0] (all views share its sizes); size-1 dims dropped, neighbours merged where
// every operand is contiguous across them. True in `dense` when every operand is one flat run.
template <int K>
Strided<K> coalesce(const View* const (&views)[K], bool* dense = nullptr) {
  Strided<K> g;
  const View& v0 = *views[0];
  for (int d = 0; d < v0.ndim; ++d) {
    if (v0.sizes[d] == 1) continue;
    const int n = g.ndim;
    bool merge = n > 0;
    for (int k = 0; k < K && merge; ++k) merge = g.strides[k][n - 1] == views[k]->strides[d] * v0.sizes[d];
    if (merge) {
      g.sizes[n - 1] *= v0.sizes[d];
      for (int k = 0; k < K; ++k) g.strides[k][n - 1] = views[k]->strides[d];
    } else {
      g.sizes[n] = v0.sizes[d];
      for (int k = 0; k < K; ++k) g.strides[k][n] = views[k]->strides[d];
      g.ndim = n + 1;
    }
    g.numel *= v0.sizes[d];
  }
  if (g.ndim == 0) {
    g.ndim = 1;
    g.sizes[0] = 1;
    for (int k = 0; k < K; ++k) g.strides[k][0] = 1;
  }
  if (dense) {
    *dense = g.ndim == 1;
    for (int k = 0; k < K && *dense; ++k) *dense = g.strides[k][0] == 1 || g.numel == 1;
  }
  return g;
}

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items (each thread `per_thread` of them): enough to fill
// the GPU several times over, never more than needed.
inline unsigned grid_for(int64_t n, int per_thread = 1) {
  const int64_t want = (n + int64_t(kThreads) * per_thread - 1) / (int64_t(kThreads) * per_thread);
  const int64_t cap = int64_t(sm_count()) * 8;
  return unsigned(want < 1 ? 1 : (want < cap ? want : cap));
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// N values of T in one 16-byte (or narrower) memory transaction.
template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// atomicAdd in the storage type, the value given in the arithmetic type.
template <class T>
__device__ __forceinline__ void atomic_add(T* p, acc_t<T> v) {
  if constexpr (is_half_v<T>)
    atomicAdd(p, store_c<T>(v));
  else
    atomicAdd(p, v);
}

#define KILN_GRID_LOOP(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

}  // namespace kiln::kernels::cuda
