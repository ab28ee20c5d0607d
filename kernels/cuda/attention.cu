// CUDA fused scaled dot-product attention (flash-attention style), forward and backward.
//
// Layout: q [batch, tq, d], k [batch, tk, d], v [batch, tk, dv], dense. A block of 4 warps owns
// kRows = 16 rows (queries, or keys in the dK/dV pass), 4 per warp, and streams tiles of 32 rows of
// the other side through shared memory. Within a tile, lane l owns row l of the tile for the scores
// (a dot product over d read from shared memory: the warp's own row by broadcast, the tile's row l
// from a padded, bank-conflict-free layout), and lane l owns output columns l, l + 32, ... for
// the products with the tile (each tile row's weight handed round by warp shuffles).
//   forward:  online softmax over key tiles; out = O / l, lse = m + log l. Never a [tq, tk] matrix.
//   backward: delta_i = dO_i . O_i first; then one pass per query tile for dQ and one per key tile
//             for dK and dV, each recomputing P = exp(S - lse) tile by tile (no atomics).
// Arithmetic in f32 for f32/f16/bf16 (f64 for f64); head dims up to 256 (8 columns per lane).
// Masks arrive as bool or as the arithmetic type (core casts floating masks), read through their
// broadcast strides; dropout redraws the forward's Philox lanes (SdpaParams).
#include <cmath>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"

namespace kiln::kernels::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kRows = kWarps * kRowsPerWarp;  // rows a block owns
constexpr int kTile = 32;                     // rows of the other side per tile

// Where the mask element (b, i, j) lives: the offset of batch entry b (its lead dims unravelled)
// plus i * sq + j * sk. kind 0: no mask, 1: bool (false hides), 2: additive, in the arithmetic type.
struct MaskRef {
  const void* data = nullptr;
  int kind = 0;
  int lead = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  int64_t sq = 0, sk = 0;

  __device__ __forceinline__ int64_t base(int64_t b) const {
    int64_t off = 0;
    for (int d = lead - 1; d >= 0; --d) {
      off += (b % sizes[d]) * strides[d];
      b /= sizes[d];
    }
    return off;
  }
  // Adds the mask to a score (or hides it with -inf).
  template <class A>
  __device__ __forceinline__ A apply(A s, int64_t base_off, int64_t i, int64_t j) const {
    if (kind == 0) return s;
    const int64_t off = base_off + i * sq + j * sk;
    if (kind == 1) return static_cast<const bool*>(data)[off] ? s : A(-INFINITY);
    return s + static_cast<const A*>(data)[off];
  }
};

MaskRef mask_ref(const View& mask, DType acc) {
  MaskRef m;
  if (!mask.data) return m;
  KILN_CHECK(mask.dtype == DType::boolean || mask.dtype == acc,
             "scaled_dot_product_attention: the CUDA kernel "
             "takes bool masks or masks of the arithmetic type ",
             dtype_name(acc), ", got ", dtype_name(mask.dtype));
  m.data = mask.data;
  m.kind = mask.dtype == DType::boolean ? 1 : 2;
  m.lead = mask.ndim - 2;
  for (int d = 0; d < m.lead; ++d) {
    m.sizes[d] = mask.sizes[d];
    m.strides[d] = mask.strides[d];
  }
  m.sq = mask.strides[mask.ndim - 2];
  m.sk = mask.strides[mask.ndim - 1];
  return m;
}

struct Dims {
  int64_t batch, tq, tk, d, dv;
  double scale, dropout_p, keep_scale;
  bool causal;
  uint64_t seed, offset;
};

Dims dims_of(const SdpaParams& p) {
  return {p.batch,  p.tq,   p.tk,    p.d, p.dv, p.scale, p.dropout_p, p.dropout_p > 0 ? 1.0 / (1.0 - p.dropout_p) : 1.0,
          p.causal, p.seed, p.offset};
}

__device__ __forceinline__ bool kept(const Dims& p, int64_t b, int64_t i, int64_t j) {
  if (p.dropout_p <= 0) return true;
  return double(philox_uniform(p.seed, p.offset, uint64_t((b * p.tq + i) * p.tk + j))) >= p.dropout_p;
}

// Copies rows [r0, r0 + n) of a [t, width] matrix (n <= kTile) into shared memory with row
// stride `ld`, as the arithmetic type; rows past the end become zeros.
template <class T, class A>
__device__ __forceinline__ void load_tile(A* dst, int ld, const T* src, int64_t r0, int64_t t, int64_t width) {
  for (int64_t x = threadIdx.x; x < int64_t(kTile) * width; x += blockDim.x) {
    const int64_t r = x / width, c = x % width;
    dst[r * ld + c] = r0 + r < t ? A(load_c(src[(r0 + r) * width + c])) : A(0);
  }
}

// a . b over n elements, a in shared memory (lane-dependent row), b broadcast to the warp.
template <class A>
__device__ __forceinline__ A dot(const A* a, const A* b, int64_t n) {
  A s = 0;
  for (int64_t e = 0; e < n; ++e) s += a[e] * b[e];
  return s;
}

template <class A>
__device__ __forceinline__ A warp_max_a(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <class A>
__device__ __forceinline__ A warp_sum_a(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---------------------------------------------------------------- forward
// Shared memory: Q rows [kRows][d], K tile [kTile][d + 1], V tile [kTile][dv].
template <class T, class A, int E>
__global__ void sdpa_fwd(Dims p, MaskRef mask, T* out, A* lse, const T* q, const T* k, const T* v) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sq = reinterpret_cast<A*>(smem_raw);
  A* sk = sq + kRows * p.d;
  A* sv = sk + kTile * (p.d + 1);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t tiles = (p.tq + kRows - 1) / kRows;
  const int64_t b = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * kRows;
  const T* qb = q + b * p.tq * p.d;
  const T* kb = k + b * p.tk * p.d;
  const T* vb = v + b * p.tk * p.dv;
  const int64_t mbase = mask.kind ? mask.base(b) : 0;
  for (int64_t x = threadIdx.x; x < int64_t(kRows) * p.d; x += blockDim.x) {
    const int64_t r = x / p.d;
    sq[x] = i0 + r < p.tq ? A(load_c(qb[(i0 + r) * p.d + x % p.d])) : A(0);
  }
  A o[kRowsPerWarp][E], m[kRowsPerWarp], l[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = A(-INFINITY);
    l[r] = 0;
#pragma unroll
    for (int e = 0; e < E; ++e) o[r][e] = 0;
  }
  const int64_t jend = p.causal ? min(p.tk, i0 + kRows) : p.tk;
  for (int64_t j0 = 0; j0 < jend; j0 += kTile) {
    __syncthreads();
    load_tile<T, A>(sk, int(p.d + 1), kb, j0, p.tk, p.d);
    load_tile<T, A>(sv, int(p.dv), vb, j0, p.tk, p.dv);
    __syncthreads();
    const int64_t j = j0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t row = warp * kRowsPerWarp + r, i = i0 + row;
      if (i >= p.tq) continue;  // uniform across the warp
      A s = dot(sk + lane * (p.d + 1), sq + row * p.d, p.d) * A(p.scale);
      if (j >= p.tk || (p.causal && j > i))
        s = A(-INFINITY);
      else
        s = mask.apply(s, mbase, i, j);
      const A mx = max(m[r], warp_max_a(s));
      if (mx == A(-INFINITY)) continue;  // nothing visible yet
      const A alpha = exp(m[r] - mx);
      const A pv = exp(s - mx);
      l[r] = l[r] * alpha + warp_sum_a(pv);
      m[r] = mx;
      const A pd = j < p.tk && kept(p, b, i, j) ? pv * A(p.keep_scale) : A(0);
#pragma unroll
      for (int e = 0; e < E; ++e) o[r][e] *= alpha;
      for (int jj = 0; jj < kTile; ++jj) {
        const A w = __shfl_sync(0xffffffffu, pd, jj);
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int64_t c = int64_t(e) * 32 + lane;
          if (c < p.dv) o[r][e] += w * sv[jj * p.dv + c];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t i = i0 + warp * kRowsPerWarp + r;
    if (i >= p.tq) continue;
    const A inv = l[r] > A(0) ? A(1) / l[r] : A(0);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int64_t c = int64_t(e) * 32 + lane;
      if (c < p.dv) out[(b * p.tq + i) * p.dv + c] = store_c<T>(o[r][e] * inv);
    }
    if (lane == 0) lse[b * p.tq + i] = l[r] > A(0) ? m[r] + log(l[r]) : A(-INFINITY);
  }
}

// ---------------------------------------------------------------- backward
// delta_i = dO_i . O_i, one warp per row.
template <class T, class A>
__global__ void sdpa_delta(Dims p, A* delta, const T* go, const T* o) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = p.batch * p.tq;
  for (int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; row < rows;
       row += int64_t(gridDim.x) * blockDim.x / 32) {
    A s = 0;
    for (int64_t c = lane; c < p.dv; c += 32) s += A(load_c(go[row * p.dv + c])) * A(load_c(o[row * p.dv + c]));
    s = warp_sum_a(s);
    if (lane == 0) delta[row] = s;
  }
}

// dQ: like the forward, per query row; shared memory Q rows [kRows][d], dO rows [kRows][dv],
// K tile [kTile][d + 1], V tile [kTile][dv + 1].
template <class T, class A, int E>
__global__ void sdpa_bwd_dq(Dims p, MaskRef mask, T* gq, const T* go, const T* q, const T* k, const T* v, const A* lse,
                            const A* delta) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sq = reinterpret_cast<A*>(smem_raw);
  A* sgo = sq + kRows * p.d;
  A* sk = sgo + kRows * p.dv;
  A* sv = sk + kTile * (p.d + 1);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t tiles = (p.tq + kRows - 1) / kRows;
  const int64_t b = blockIdx.x / tiles, i0 = (blockIdx.x % tiles) * kRows;
  const int64_t mbase = mask.kind ? mask.base(b) : 0;
  for (int64_t x = threadIdx.x; x < int64_t(kRows) * p.d; x += blockDim.x) {
    const int64_t r = x / p.d;
    sq[x] = i0 + r < p.tq ? A(load_c(q[(b * p.tq + i0 + r) * p.d + x % p.d])) : A(0);
  }
  for (int64_t x = threadIdx.x; x < int64_t(kRows) * p.dv; x += blockDim.x) {
    const int64_t r = x / p.dv;
    sgo[x] = i0 + r < p.tq ? A(load_c(go[(b * p.tq + i0 + r) * p.dv + x % p.dv])) : A(0);
  }
  A dq[kRowsPerWarp][E];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int e = 0; e < E; ++e) dq[r][e] = 0;
  const int64_t jend = p.causal ? min(p.tk, i0 + kRows) : p.tk;
  for (int64_t j0 = 0; j0 < jend; j0 += kTile) {
    __syncthreads();
    load_tile<T, A>(sk, int(p.d + 1), k + b * p.tk * p.d, j0, p.tk, p.d);
    load_tile<T, A>(sv, int(p.dv + 1), v + b * p.tk * p.dv, j0, p.tk, p.dv);
    __syncthreads();
    const int64_t j = j0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t row = warp * kRowsPerWarp + r, i = i0 + row;
      if (i >= p.tq) continue;
      const A li = lse[b * p.tq + i];
      A ds = 0;
      if (j < p.tk && !(p.causal && j > i) && li != A(-INFINITY)) {
        const A s = mask.apply(dot(sk + lane * (p.d + 1), sq + row * p.d, p.d) * A(p.scale), mbase, i, j);
        const A pv = exp(s - li);
        const A dp = kept(p, b, i, j) ? dot(sv + lane * (p.dv + 1), sgo + row * p.dv, p.dv) * A(p.keep_scale) : A(0);
        ds = pv * (dp - delta[b * p.tq + i]);
      }
      for (int jj = 0; jj < kTile; ++jj) {
        const A w = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int64_t c = int64_t(e) * 32 + lane;
          if (c < p.d) dq[r][e] += w * sk[jj * (p.d + 1) + c];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t i = i0 + warp * kRowsPerWarp + r;
    if (i >= p.tq) continue;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int64_t c = int64_t(e) * 32 + lane;
      if (c < p.d) gq[(b * p.tq + i) * p.d + c] = store_c<T>(dq[r][e] * A(p.scale));
    }
  }
}

// dK, dV: per key row; shared memory K rows [kRows][d], V rows [kRows][dv], Q tile
// [kTile][d + 1], dO tile [kTile][dv + 1], lse and delta of the tile [kTile] each.
template <class T, class A, int E>
__global__ void sdpa_bwd_dkdv(Dims p, MaskRef mask, T* gk, T* gv, const T* go, const T* q, const T* k, const T* v,
                              const A* lse, const A* delta) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sk = reinterpret_cast<A*>(smem_raw);
  A* sv = sk + kRows * p.d;
  A* sq = sv + kRows * p.dv;
  A* sgo = sq + kTile * (p.d + 1);
  A* slse = sgo + kTile * (p.dv + 1);
  A* sdelta = slse + kTile;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t tiles = (p.tk + kRows - 1) / kRows;
  const int64_t b = blockIdx.x / tiles, j0 = (blockIdx.x % tiles) * kRows;
  const int64_t mbase = mask.kind ? mask.base(b) : 0;
  for (int64_t x = threadIdx.x; x < int64_t(kRows) * p.d; x += blockDim.x) {
    const int64_t r = x / p.d;
    sk[x] = j0 + r < p.tk ? A(load_c(k[(b * p.tk + j0 + r) * p.d + x % p.d])) : A(0);
  }
  for (int64_t x = threadIdx.x; x < int64_t(kRows) * p.dv; x += blockDim.x) {
    const int64_t r = x / p.dv;
    sv[x] = j0 + r < p.tk ? A(load_c(v[(b * p.tk + j0 + r) * p.dv + x % p.dv])) : A(0);
  }
  A dk[kRowsPerWarp][E], dv[kRowsPerWarp][E];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int e = 0; e < E; ++e) dk[r][e] = dv[r][e] = 0;
  // Under causality, queries before the block's first key see none of its keys.
  const int64_t ibegin = p.causal ? min(p.tq, j0) / kTile * kTile : 0;
  for (int64_t t0 = ibegin; t0 < p.tq; t0 += kTile) {
    __syncthreads();
    load_tile<T, A>(sq, int(p.d + 1), q + b * p.tq * p.d, t0, p.tq, p.d);
    load_tile<T, A>(sgo, int(p.dv + 1), go + b * p.tq * p.dv, t0, p.tq, p.dv);
    if (threadIdx.x < kTile) {
      const int64_t i = t0 + threadIdx.x;
      slse[threadIdx.x] = i < p.tq ? lse[b * p.tq + i] : A(-INFINITY);
      sdelta[threadIdx.x] = i < p.tq ? delta[b * p.tq + i] : A(0);
    }
    __syncthreads();
    const int64_t i = t0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t row = warp * kRowsPerWarp + r, j = j0 + row;
      if (j >= p.tk) continue;
      A pd = 0, ds = 0;
      const A li = slse[lane];
      if (i < p.tq && !(p.causal && j > i) && li != A(-INFINITY)) {
        const A s = mask.apply(dot(sq + lane * (p.d + 1), sk + row * p.d, p.d) * A(p.scale), mbase, i, j);
        const A pv = exp(s - li);
        const bool keep = kept(p, b, i, j);
        pd = keep ? pv * A(p.keep_scale) : A(0);
        const A dp = keep ? dot(sgo + lane * (p.dv + 1), sv + row * p.dv, p.dv) * A(p.keep_scale) : A(0);
        ds = pv * (dp - sdelta[lane]);
      }
      for (int ii = 0; ii < kTile; ++ii) {
        const A wp = __shfl_sync(0xffffffffu, pd, ii);
        const A ws = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int64_t c = int64_t(e) * 32 + lane;
          if (c < p.dv) dv[r][e] += wp * sgo[ii * (p.dv + 1) + c];
          if (c < p.d) dk[r][e] += ws * sq[ii * (p.d + 1) + c];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t j = j0 + warp * kRowsPerWarp + r;
    if (j >= p.tk) continue;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int64_t c = int64_t(e) * 32 + lane;
      if (c < p.d) gk[(b * p.tk + j) * p.d + c] = store_c<T>(dk[r][e] * A(p.scale));
      if (c < p.dv) gv[(b * p.tk + j) * p.dv + c] = store_c<T>(dv[r][e]);
    }
  }
}

// Launches kernel<E> with E = the columns per lane that d and dv need (1, 2, 4 or 8).
template <class F>
void with_columns(int64_t d, int64_t dv, F&& f) {
  const int64_t widest = std::max(d, dv);
  KILN_CHECK(widest <= 256, "scaled_dot_product_attention: the CUDA kernel takes head dims up to 256, got ", widest);
  if (widest <= 32) return f(std::integral_constant<int, 1>{});
  if (widest <= 64) return f(std::integral_constant<int, 2>{});
  if (widest <= 128) return f(std::integral_constant<int, 4>{});
  return f(std::integral_constant<int, 8>{});
}

// Opts a kernel into more than 48 KiB of dynamic shared memory when it needs it.
template <class K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    KILN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace

void CudaBackend::sdpa_forward(const SdpaParams& sp, const View& out, const View& lse, const View& q, const View& k,
                               const View& v, const View& mask) {
  dispatch_float(q.dtype, "scaled_dot_product_attention", [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const Dims p = dims_of(sp);
    const MaskRef m = mask_ref(mask, std::is_same_v<A, double> ? DType::f64 : DType::f32);
    const unsigned grid = unsigned((p.tq + kRows - 1) / kRows * p.batch);  // (batch entry, row tile)
    const size_t smem = sizeof(A) * size_t(kRows * p.d + kTile * (p.d + 1) + kTile * p.dv);
    with_columns(p.d, p.dv, [&](auto cols) {
      constexpr int E = decltype(cols)::value;
      allow_smem(sdpa_fwd<T, A, E>, smem);
      sdpa_fwd<T, A, E><<<grid, kWarps * 32, smem, current_stream()>>>(p, m, out.ptr<T>(), lse.ptr<A>(), q.ptr<T>(),
                                                                       k.ptr<T>(), v.ptr<T>());
      KILN_LAUNCH_CHECK("sdpa_fwd");
    });
  });
}

void CudaBackend::sdpa_backward(const SdpaParams& sp, const View& grad_q, const View& grad_k, const View& grad_v,
                                const View& grad_out, const View& q, const View& k, const View& v, const View& out,
                                const View& lse, const View& mask) {
  dispatch_float(q.dtype, "scaled_dot_product_attention backward", [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const Dims p = dims_of(sp);
    const MaskRef m = mask_ref(mask, std::is_same_v<A, double> ? DType::f64 : DType::f32);
    cudaStream_t s = current_stream();
    Workspace delta(sizeof(A) * size_t(std::max<int64_t>(p.batch * p.tq, 1)));
    sdpa_delta<T, A>
        <<<grid_for(p.batch * p.tq * 32), kThreads, 0, s>>>(p, delta.as<A>(), grad_out.ptr<T>(), out.ptr<T>());
    KILN_LAUNCH_CHECK("sdpa_delta");
    with_columns(p.d, p.dv, [&](auto cols) {
      constexpr int E = decltype(cols)::value;
      const size_t smem_q = sizeof(A) * size_t(kRows * (p.d + p.dv) + kTile * (p.d + 1) + kTile * (p.dv + 1));
      allow_smem(sdpa_bwd_dq<T, A, E>, smem_q);
      sdpa_bwd_dq<T, A, E><<<unsigned((p.tq + kRows - 1) / kRows * p.batch), kWarps * 32, smem_q, s>>>(
          p, m, grad_q.ptr<T>(), grad_out.ptr<T>(), q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), lse.ptr<A>(), delta.as<A>());
      KILN_LAUNCH_CHECK("sdpa_bwd_dq");
      const size_t smem_k =
          sizeof(A) * size_t(kRows * (p.d + p.dv) + kTile * (p.d + 1) + kTile * (p.dv + 1) + 2 * kTile);
      allow_smem(sdpa_bwd_dkdv<T, A, E>, smem_k);
      sdpa_bwd_dkdv<T, A, E><<<unsigned((p.tk + kRows - 1) / kRows * p.batch), kWarps * 32, smem_k, s>>>(
          p, m, grad_k.ptr<T>(), grad_v.ptr<T>(), grad_out.ptr<T>(), q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), lse.ptr<A>(),
          delta.as<A>());
      KILN_LAUNCH_CHECK("sdpa_bwd_dkdv");
    });
  });
}

}  // namespace kiln::kernels::cuda
