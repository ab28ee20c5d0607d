// Multi-tensor ("foreach") kernels: one launch works on many tensors, so an optimizer step, a
// GradScaler unscale or a gradient norm over a model's parameters costs a launch or two instead
// of one (or several) per parameter. The host packs into the kernel's arguments the addresses of
// up to max_tensors(D) tensors in D parallel lists (param, grad, state, ...) and a table of up to
// kMaxBlocks work items (the split is multi_tensor_plan.h); block b processes chunk
// block_chunk[b] of tensor block_tensor[b]. The arguments use the large parameter space of
// CUDA 12.1+ on Volta and newer (up to 32 KiB instead of 4 KiB), so a model of a few hundred
// parameters is one launch. The chunk adapts to the work: about kTargetBlocks chunks in all,
// between 2 Ki and 64 Ki elements, so a small model still spreads over every multiprocessor
// while a large one keeps long, efficient chunks. Within a chunk each thread moves 16 bytes of
// every list per iteration when the tensor's lists are all 16-byte aligned (8 halves, 4 floats,
// 2 doubles), element by element otherwise and for the tail. Arithmetic is f32 (f64 for f64
// tensors), as in the per-tensor kernels, whose element updates (optim_math.cuh) these share.
// Memory traffic per element: Adam reads param, grad, exp_avg, exp_avg_sq and writes all but grad
// (AMSGrad: + one read and one write); SGD with momentum reads 3 and writes 2; unscale reads 1 and
// writes 1 (a check alone only reads); the norm reads 1, then one f64 partial per chunk is summed
// in a fixed order (deterministic). Optimizer steps can read GradScaler's inf flag and their step
// counts from the device, so a skipped step and the bias correction never need the host.
#include <algorithm>
#include <array>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/multi_tensor_plan.h"
#include "kernels/cuda/optim_math.cuh"

namespace kiln::kernels::cuda {
namespace {

constexpr int64_t kMinChunk = 2048;  // a multiple of 8: chunk starts keep 16-byte alignment
constexpr int64_t kMaxChunk = 65536;
constexpr int64_t kTargetBlocks = 1024;  // ~4 resident blocks of 512 threads per SM, twice over
constexpr int kMtThreads = 512;
constexpr int kMaxBlocks = 1280;
// Tensors per launch for D lists, with the work-item table inside ~24 KiB of arguments.
constexpr int max_tensors(int depth) {
  return depth == 1 ? 440 : depth == 2 ? 256 : depth == 3 ? 192 : depth == 4 ? 144 : 120;
}

// The chunk for a list of tensors of `total` elements in all.
int64_t pick_chunk(int64_t total) {
  int64_t c = (total / kTargetBlocks + kMinChunk - 1) / kMinChunk * kMinChunk;
  return std::clamp(c, kMinChunk, kMaxChunk);
}

template <int D>
struct TensorLists {
  static constexpr int kMax = max_tensors(D);
  void* ptr[D][kMax];
  int64_t numel[kMax];
  float* step[kMax];  // optimizers' device step counts (null unless used)
  int64_t chunk;
  uint16_t block_tensor[kMaxBlocks];
  int block_chunk[kMaxBlocks];
};
static_assert(sizeof(TensorLists<1>) < 24576 && sizeof(TensorLists<2>) < 24576 && sizeof(TensorLists<3>) < 24576 &&
                  sizeof(TensorLists<4>) < 24576 && sizeof(TensorLists<5>) < 24576,
              "multi-tensor kernel arguments must leave room for the op under the 32 KiB limit");
static_assert(max_tensors(1) <= 65535, "block_tensor holds tensor numbers in 16 bits");

// Calls launch(lists, blocks, first) once per launch of the plan (multi_tensor_plan.h); `first`
// numbers the launch's first work item across all launches, starting at `first_item`. Returns the
// number after the last.
template <int D, class Launch>
int64_t for_each_launch(const std::vector<std::array<void*, D>>& ptrs, const std::vector<int64_t>& numel,
                        const std::vector<float*>& steps, int64_t chunk, int64_t first_item, Launch&& launch) {
  int64_t end = first_item;
  for (const MultiTensorLaunch& p : plan_multi_tensor(numel, TensorLists<D>::kMax, kMaxBlocks, chunk)) {
    TensorLists<D> l;
    l.chunk = chunk;
    for (size_t s = 0; s < p.tensors.size(); ++s) {
      const size_t i = size_t(p.tensors[s]);
      for (int d = 0; d < D; ++d) l.ptr[d][s] = ptrs[i][size_t(d)];
      l.numel[s] = numel[i];
      l.step[s] = steps.empty() ? nullptr : steps[i];
    }
    for (size_t b = 0; b < p.items.size(); ++b) {
      l.block_tensor[b] = static_cast<uint16_t>(p.items[b].slot);
      l.block_chunk[b] = static_cast<int>(p.items[b].chunk);
    }
    launch(l, int(p.items.size()), first_item + p.first_item);
    end = first_item + p.first_item + int64_t(p.items.size());
  }
  return end;
}

template <int D, class Op>
__global__ void __launch_bounds__(kMtThreads)
    multi_tensor_kernel(const __grid_constant__ TensorLists<D> l, Op op, int64_t first) {
  const int t = l.block_tensor[blockIdx.x];
  const int64_t start = int64_t(l.block_chunk[blockIdx.x]) * l.chunk;
  const int64_t left = l.numel[t] - start;
  op(l, t, start, left < l.chunk ? left : l.chunk, first + blockIdx.x);
}

__device__ __forceinline__ bool dev_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <class T, int D>
__device__ __forceinline__ T* list_ptr(const TensorLists<D>& l, int d, int t, int64_t start) {
  return static_cast<T*>(l.ptr[d][t]) + start;
}

// ---------------------------------------------------------------- optimizer steps

template <class T, bool Ams>
struct AdamOp {
  static constexpr int D = Ams ? 5 : 4;
  AdamArgs<T> args;
  __device__ void operator()(const TensorLists<D>& l, int t, int64_t start, int64_t len, int64_t) const {
    using C = opt_t<T>;
    if (args.found_inf && *args.found_inf != 0.0f) return;
    AdamArgs<T> a = args;
    if (l.step[t]) a.set_step(*l.step[t]);
    constexpr int N = 16 / sizeof(T);
    using P = Pack<T, N>;
    T* w = list_ptr<T>(l, 0, t, start);
    const T* g = list_ptr<T>(l, 1, t, start);
    T* m = list_ptr<T>(l, 2, t, start);
    T* v = list_ptr<T>(l, 3, t, start);
    T* x = Ams ? list_ptr<T>(l, D - 1, t, start) : nullptr;
    int64_t done = 0;
    if (dev_aligned16(w) && dev_aligned16(g) && dev_aligned16(m) && dev_aligned16(v) && (!Ams || dev_aligned16(x))) {
      const int64_t nvec = len / N;
      for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        P wp = reinterpret_cast<const P*>(w)[i];
        const P gp = reinterpret_cast<const P*>(g)[i];
        P mp = reinterpret_cast<const P*>(m)[i];
        P vp = reinterpret_cast<const P*>(v)[i];
        P xp{};
        if constexpr (Ams) xp = reinterpret_cast<const P*>(x)[i];
#pragma unroll
        for (int e = 0; e < N; ++e) {
          C wi = C(load_c(wp.v[e])), mi = C(load_c(mp.v[e])), vi = C(load_c(vp.v[e]));
          C xi = Ams ? C(load_c(xp.v[e])) : C(0);
          adam_update(a, wi, C(load_c(gp.v[e])), mi, vi, &xi);
          wp.v[e] = store_c<T>(wi);
          mp.v[e] = store_c<T>(mi);
          vp.v[e] = store_c<T>(vi);
          if constexpr (Ams) xp.v[e] = store_c<T>(xi);
        }
        reinterpret_cast<P*>(w)[i] = wp;
        reinterpret_cast<P*>(m)[i] = mp;
        reinterpret_cast<P*>(v)[i] = vp;
        if constexpr (Ams) reinterpret_cast<P*>(x)[i] = xp;
      }
      done = nvec * N;
    }
    for (int64_t i = done + threadIdx.x; i < len; i += blockDim.x) {
      C wi = C(load_c(w[i])), mi = C(load_c(m[i])), vi = C(load_c(v[i]));
      C xi = Ams ? C(load_c(x[i])) : C(0);
      adam_update(a, wi, C(load_c(g[i])), mi, vi, &xi);
      w[i] = store_c<T>(wi);
      m[i] = store_c<T>(mi);
      v[i] = store_c<T>(vi);
      if constexpr (Ams) x[i] = store_c<T>(xi);
    }
  }
};

template <class T, bool Mom>
struct SgdOp {
  static constexpr int D = Mom ? 3 : 2;
  SgdArgs<opt_t<T>> a;
  __device__ void operator()(const TensorLists<D>& l, int t, int64_t start, int64_t len, int64_t) const {
    using C = opt_t<T>;
    if (a.found_inf && *a.found_inf != 0.0f) return;
    constexpr int N = 16 / sizeof(T);
    using P = Pack<T, N>;
    T* w = list_ptr<T>(l, 0, t, start);
    const T* g = list_ptr<T>(l, 1, t, start);
    T* b = Mom ? list_ptr<T>(l, D - 1, t, start) : nullptr;
    const bool read_buf = Mom && !a.first_step;
    int64_t done = 0;
    if (dev_aligned16(w) && dev_aligned16(g) && (!Mom || dev_aligned16(b))) {
      const int64_t nvec = len / N;
      for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        P wp = reinterpret_cast<const P*>(w)[i];
        const P gp = reinterpret_cast<const P*>(g)[i];
        P bp{};
        if (read_buf) bp = reinterpret_cast<const P*>(b)[i];
#pragma unroll
        for (int e = 0; e < N; ++e) {
          C wi = C(load_c(wp.v[e]));
          C bi = read_buf ? C(load_c(bp.v[e])) : C(0);
          sgd_update(a, wi, C(load_c(gp.v[e])), bi);
          wp.v[e] = store_c<T>(wi);
          if constexpr (Mom) bp.v[e] = store_c<T>(bi);
        }
        reinterpret_cast<P*>(w)[i] = wp;
        if constexpr (Mom) reinterpret_cast<P*>(b)[i] = bp;
      }
      done = nvec * N;
    }
    for (int64_t i = done + threadIdx.x; i < len; i += blockDim.x) {
      C wi = C(load_c(w[i]));
      C bi = read_buf ? C(load_c(b[i])) : C(0);
      sgd_update(a, wi, C(load_c(g[i])), bi);
      w[i] = store_c<T>(wi);
      if constexpr (Mom) b[i] = store_c<T>(bi);
    }
  }
};

// Adds one to each tensor's device step count (one f32), unless GradScaler's flag is set.
struct StepCountOp {
  const float* found_inf;
  __device__ void operator()(const TensorLists<1>& l, int t, int64_t start, int64_t, int64_t) const {
    if (threadIdx.x != 0 || start != 0 || (found_inf && *found_inf != 0.0f)) return;
    *static_cast<float*>(l.ptr[0][t]) += 1.0f;
  }
};

// ---------------------------------------------------------------- scale + non-finite check

template <class T>
struct ScaleOp {
  opt_t<T> factor;
  const void* factor_ptr;  // one f32 or f64 on the device, or null: use `factor`
  bool factor_f64;
  float* found_inf;  // may be null
  bool write;
  __device__ void operator()(const TensorLists<1>& l, int t, int64_t start, int64_t len, int64_t) const {
    using C = opt_t<T>;
    constexpr int N = 16 / sizeof(T);
    using P = Pack<T, N>;
    C f = factor;
    if (factor_ptr)
      f = factor_f64 ? C(*static_cast<const double*>(factor_ptr)) : C(*static_cast<const float*>(factor_ptr));
    T* p = list_ptr<T>(l, 0, t, start);
    bool bad = false;
    int64_t done = 0;
    if (dev_aligned16(p)) {
      const int64_t nvec = len / N;
      for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        P pk = reinterpret_cast<const P*>(p)[i];
#pragma unroll
        for (int e = 0; e < N; ++e) {
          const C x = C(load_c(pk.v[e]));
          bad |= !isfinite(x);
          pk.v[e] = store_c<T>(x * f);
        }
        if (write) reinterpret_cast<P*>(p)[i] = pk;
      }
      done = nvec * N;
    }
    for (int64_t i = done + threadIdx.x; i < len; i += blockDim.x) {
      const C x = C(load_c(p[i]));
      bad |= !isfinite(x);
      if (write) p[i] = store_c<T>(x * f);
    }
    if (__syncthreads_or(bad) && threadIdx.x == 0 && found_inf) *found_inf = 1.0f;
  }
};

// ---------------------------------------------------------------- norms

// max that propagates NaN (fmax would drop it).
template <class A>
__device__ __forceinline__ A nan_max(A a, A b) {
  return (a != a || a > b) ? a : b;
}

template <bool Inf, class A>
__device__ __forceinline__ A combine(A a, A b) {
  if constexpr (Inf)
    return nan_max(a, b);
  else
    return a + b;
}

// The block's combined value in thread 0 (blockDim.x a multiple of 32, at most 1024).
template <bool Inf, class A>
__device__ A block_combine(A v) {
  __shared__ A part[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine<Inf>(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x >> 5) ? part[lane] : A(0);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = combine<Inf>(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  return v;
}

// Per chunk: the sum of squares (order 2) or the largest |x| (infinity), as one f64 partial.
template <class T, bool Inf>
struct NormOp {
  double* partial;
  __device__ void operator()(const TensorLists<1>& l, int t, int64_t start, int64_t len, int64_t item) const {
    using A = opt_t<T>;
    constexpr int N = 16 / sizeof(T);
    using P = Pack<T, N>;
    const T* p = list_ptr<T>(l, 0, t, start);
    A acc = A(0);
    auto add = [&](A x) {
      x = x < A(0) ? -x : x;
      acc = Inf ? nan_max(acc, x) : acc + x * x;
    };
    int64_t done = 0;
    if (dev_aligned16(p)) {
      const int64_t nvec = len / N;
      for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        const P pk = reinterpret_cast<const P*>(p)[i];
#pragma unroll
        for (int e = 0; e < N; ++e) add(A(load_c(pk.v[e])));
      }
      done = nvec * N;
    }
    for (int64_t i = done + threadIdx.x; i < len; i += blockDim.x) add(A(load_c(p[i])));
    acc = block_combine<Inf>(acc);
    if (threadIdx.x == 0) partial[item] = double(acc);
  }
};

template <class O, bool Inf>
__global__ void __launch_bounds__(1024) norm_finish(const double* __restrict__ partial, int64_t n, O* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = combine<Inf>(acc, partial[i]);
  acc = block_combine<Inf>(acc);
  if (threadIdx.x == 0) out[0] = store_c<O>(Inf ? acc : sqrt(acc));
}

// GradScaler's scale update (Backend::update_scale), one thread: the scale never leaves the device.
__global__ void update_scale_kernel(float* scale, float* inv_scale, int32_t* tracker, float* found_inf, double growth,
                                    double backoff, int64_t interval) {
  float s = *scale;
  if (*found_inf != 0.0f) {
    s = float(double(s) * backoff);
    *tracker = 0;
  } else if (++*tracker >= interval) {
    const double grown = double(s) * growth;
    if (grown < 3.4028234663852886e38) s = float(grown);
    *tracker = 0;
  }
  *scale = s;
  *inv_scale = 1.0f / s;
  *found_inf = 0.0f;
}

// ---------------------------------------------------------------- host side

// Indices of the views of each floating dtype, in a fixed dtype order.
std::vector<std::pair<DType, std::vector<size_t>>> by_dtype(std::span<const View> views, const char* op) {
  std::vector<std::pair<DType, std::vector<size_t>>> groups;
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < views.size(); ++i)
      if (views[i].dtype == dt) idx.push_back(i);
    if (!idx.empty()) groups.emplace_back(dt, std::move(idx));
  }
  size_t covered = 0;
  for (auto& [dt, idx] : groups) covered += idx.size();
  if (covered != views.size()) {
    for (const View& v : views)
      KILN_CHECK(is_floating(v.dtype), op, ": expected floating-point tensors, got one of dtype ", dtype_name(v.dtype));
  }
  return groups;
}

// The D lists' pointers and the sizes for the tensors `idx`, checked dense and alike.
template <int D>
void gather(const std::array<std::span<const View>, D>& lists, const std::vector<size_t>& idx, const char* op,
            std::vector<std::array<void*, D>>& ptrs, std::vector<int64_t>& numel) {
  ptrs.clear();
  numel.clear();
  for (size_t i : idx) {
    const View& first = lists[0][i];
    std::array<void*, D> row{};
    for (int d = 0; d < D; ++d) {
      const View& v = lists[size_t(d)][i];
      KILN_CHECK(v.numel() == first.numel() && v.dtype == first.dtype, op, ": tensor ", i, " of list ", d, " has ",
                 v.numel(), " elements of ", dtype_name(v.dtype), ", expected ", first.numel(), " of ",
                 dtype_name(first.dtype));
      KILN_CHECK(v.is_contiguous(), op, ": tensor ", i, " of list ", d, " is not dense");
      KILN_CHECK(v.data || v.numel() == 0, op, ": tensor ", i, " of list ", d, " has no data");
      row[size_t(d)] = v.data;
    }
    ptrs.push_back(row);
    numel.push_back(first.numel());
  }
}

int64_t total_numel(std::span<const View> views) {
  int64_t n = 0;
  for (const View& v : views) n += v.numel();
  return n;
}

// Runs `op` over the tensors `idx` of the lists in chunks of `chunk` elements (pick_chunk of
// the whole list's size unless given, so that every dtype group of one call and the norm's
// partial count agree); `steps`, when not empty, holds the step-count pointer of every tensor
// of the lists (indexed like them).
template <int D, class Op>
int64_t run(const std::array<std::span<const View>, D>& lists, const std::vector<size_t>& idx, const Op& op,
            const char* name, int64_t chunk, int64_t first_item = 0, std::span<const View> steps = {}) {
  std::vector<std::array<void*, D>> ptrs;
  std::vector<int64_t> numel;
  gather<D>(lists, idx, name, ptrs, numel);
  std::vector<float*> step_ptrs;
  for (size_t i : idx)
    if (!steps.empty()) step_ptrs.push_back(steps[i].ptr<float>());
  cudaStream_t s = current_stream();
  return for_each_launch<D>(ptrs, numel, step_ptrs, chunk, first_item,
                            [&](const TensorLists<D>& l, int blocks, int64_t first) {
                              multi_tensor_kernel<D, Op><<<blocks, kMtThreads, 0, s>>>(l, op, first);
                              KILN_LAUNCH_CHECK("multi_tensor_kernel");
                            });
}

// The device step counts: one f32 per parameter, checked, then incremented in one launch.
void increment_steps(std::span<const View> steps, size_t n, const float* found_inf, const char* op) {
  KILN_CHECK(steps.size() == n, op, ": ", steps.size(), " step counts for ", n, " tensors");
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) {
    KILN_CHECK(steps[i].numel() == 1 && steps[i].dtype == DType::f32 && steps[i].data, op, ": step count ", i,
               " must be one f32 on the device");
    all[i] = i;
  }
  run<1>({steps}, all, StepCountOp{found_inf}, op, kMinChunk);
}

void check_lengths(const char* op, size_t n, std::initializer_list<size_t> others) {
  for (size_t m : others) KILN_CHECK(m == n, op, ": the tensor lists differ in length (", n, " and ", m, ")");
}

}  // namespace

void CudaBackend::adam_step_multi(const AdamParams& p, std::span<const View> params, std::span<const View> grads,
                                  std::span<const View> exp_avgs, std::span<const View> exp_avg_sqs,
                                  std::span<const View> max_exp_avg_sqs, std::span<const View> steps) {
  const char* op = "adam (multi-tensor)";
  check_lengths(op, params.size(), {grads.size(), exp_avgs.size(), exp_avg_sqs.size()});
  if (p.amsgrad) check_lengths(op, params.size(), {max_exp_avg_sqs.size()});
  if (!steps.empty()) increment_steps(steps, params.size(), p.found_inf, op);
  const int64_t chunk = pick_chunk(total_numel(params));
  for (auto& [dt, idx] : by_dtype(params, op)) {
    dispatch_float(dt, op, [&](auto tag) {
      using T = decltype(tag);
      const AdamArgs<T> a = make_adam_args<T>(steps.empty() ? p : [&] {
        AdamParams q = p;
        q.step = 1;  // placeholder: each block sets its tensor's corrections from the device count
        return q;
      }());
      if (p.amsgrad)
        run<5>({params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs}, idx, AdamOp<T, true>{a}, op, chunk, 0, steps);
      else
        run<4>({params, grads, exp_avgs, exp_avg_sqs}, idx, AdamOp<T, false>{a}, op, chunk, 0, steps);
    });
  }
}

void CudaBackend::sgd_step_multi(const SgdParams& p, std::span<const View> params, std::span<const View> grads,
                                 std::span<const View> momentum_buffers) {
  const char* op = "sgd (multi-tensor)";
  check_lengths(op, params.size(), {grads.size()});
  const bool mom = p.momentum != 0;
  if (mom) check_lengths(op, params.size(), {momentum_buffers.size()});
  const int64_t chunk = pick_chunk(total_numel(params));
  for (auto& [dt, idx] : by_dtype(params, op)) {
    dispatch_float(dt, op, [&](auto tag) {
      using T = decltype(tag);
      const SgdArgs<opt_t<T>> a(p);
      if (mom)
        run<3>({params, grads, momentum_buffers}, idx, SgdOp<T, true>{a}, op, chunk);
      else
        run<2>({params, grads}, idx, SgdOp<T, false>{a}, op, chunk);
    });
  }
}

void CudaBackend::scale_and_check_multi(std::span<const View> tensors, double factor, const View& factor_tensor,
                                        const View& found_inf) {
  const char* op = "scale_and_check (multi-tensor)";
  KILN_CHECK(!factor_tensor.data || (factor_tensor.numel() == 1 &&
                                     (factor_tensor.dtype == DType::f32 || factor_tensor.dtype == DType::f64)),
             op, ": the factor tensor must hold one f32 or f64 value");
  KILN_CHECK(!found_inf.data || (found_inf.numel() == 1 && found_inf.dtype == DType::f32), op,
             ": found_inf must be a one-element f32 tensor");
  const bool write = factor_tensor.data || factor != 1.0;
  const int64_t chunk = pick_chunk(total_numel(tensors));
  for (auto& [dt, idx] : by_dtype(tensors, op)) {
    dispatch_float(dt, op, [&](auto tag) {
      using T = decltype(tag);
      ScaleOp<T> s{opt_t<T>(factor), factor_tensor.data, factor_tensor.dtype == DType::f64, found_inf.ptr<float>(),
                   write};
      run<1>({tensors}, idx, s, op, chunk);
    });
  }
}

void CudaBackend::norm_multi(std::span<const View> tensors, double order, const View& out) {
  const char* op = "norm (multi-tensor)";
  const bool inf = std::isinf(order) && order > 0;
  KILN_CHECK(inf || order == 2.0, op, ": order must be 2 or infinity, got ", order);
  KILN_CHECK(out.numel() == 1 && (out.dtype == DType::f32 || out.dtype == DType::f64), op,
             ": out must be a one-element f32 or f64 tensor");
  const int64_t chunk = pick_chunk(total_numel(tensors));
  int64_t items = 0;
  for (const View& v : tensors) items += (v.numel() + chunk - 1) / chunk;
  Workspace partial(size_t(std::max<int64_t>(items, 1)) * sizeof(double));
  int64_t first = 0;
  for (auto& [dt, idx] : by_dtype(tensors, op)) {
    dispatch_float(dt, op, [&](auto tag) {
      using T = decltype(tag);
      if (inf)
        first = run<1>({tensors}, idx, NormOp<T, true>{partial.as<double>()}, op, chunk, first);
      else
        first = run<1>({tensors}, idx, NormOp<T, false>{partial.as<double>()}, op, chunk, first);
    });
  }
  cudaStream_t s = current_stream();
  dispatch_float(out.dtype, op, [&](auto tag) {
    using O = decltype(tag);
    if constexpr (std::is_same_v<O, float> || std::is_same_v<O, double>) {
      if (inf)
        norm_finish<O, true><<<1, 1024, 0, s>>>(partial.as<double>(), first, out.ptr<O>());
      else
        norm_finish<O, false><<<1, 1024, 0, s>>>(partial.as<double>(), first, out.ptr<O>());
      KILN_LAUNCH_CHECK("norm_finish");
    }
  });
}

void CudaBackend::update_scale(const View& scale, const View& inv_scale, const View& growth_tracker,
                               const View& found_inf, double growth, double backoff, int64_t growth_interval) {
  for (const View* v : {&scale, &inv_scale, &found_inf})
    KILN_CHECK(v->numel() == 1 && v->dtype == DType::f32 && v->data,
               "update_scale: scale, inv_scale and found_inf must be one f32 each on the device");
  KILN_CHECK(growth_tracker.numel() == 1 && growth_tracker.dtype == DType::i32 && growth_tracker.data,
             "update_scale: growth_tracker must be one i32 on the device");
  update_scale_kernel<<<1, 1, 0, current_stream()>>>(scale.ptr<float>(), inv_scale.ptr<float>(),
                                                     growth_tracker.ptr<int32_t>(), found_inf.ptr<float>(), growth,
                                                     backoff, growth_interval);
  KILN_LAUNCH_CHECK("update_scale");
}

}  // namespace kiln::kernels::cuda
