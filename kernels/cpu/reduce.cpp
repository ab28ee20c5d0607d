// CPU reductions. Each output element reduces a strided sub-space of the input (the dims split and
// merged as kernels/reduce_plan.h says, as on the GPU); float sums accumulate in double, so f32
// results match a float64 reference to f32 rounding. Threads split the outputs, or the reduced
// range when there are few outputs (a full sum). Contiguous outputs (column sums) are reduced a
// row at a time.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/reduce_plan.h"

namespace kiln::kernels::cpu {
namespace {

inline int64_t offset_of(int64_t linear, int n, const int64_t* sizes, const int64_t* strides) {
  int64_t off = 0;
  for (int d = n - 1; d >= 0; --d) {
    off += (linear % sizes[d]) * strides[d];
    linear /= sizes[d];
  }
  return off;
}

template <class T>
constexpr bool is_float_v = std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// The identity of max (for_min = false) or min: +-inf for floating types, else the type's limits.
template <class C>
C extreme_init(bool for_min) {
  if constexpr (std::is_floating_point_v<C>)
    return for_min ? std::numeric_limits<C>::infinity() : -std::numeric_limits<C>::infinity();
  else
    return for_min ? std::numeric_limits<C>::max() : std::numeric_limits<C>::lowest();
}

template <class T, class Acc, class Op>
void reduce_impl(const View& out, const View& in, Acc init, Op op, bool mean_of = false) {
  (void)mean_of;
  const ReducePlan s = plan_reduction(out, in);
  const T* src = in.ptr<T>();
  T* dst = out.ptr<T>();
  const int64_t inner_n = s.nr ? s.rsizes[s.nr - 1] : 1;
  const int64_t inner_st = s.nr ? s.rstrides[s.nr - 1] : 0;
  const int64_t outer_n = s.red_numel / inner_n;

  // Contiguous runs go through kLanes accumulators that take every kLanes-th element, combined
  // pairwise at the end: the adds no longer wait on one another (a single chain of double adds
  // runs at one element per add latency; these run at the load rate). Every op here is associative
  // and commutative (sums and products in double or int64, maxima, minima, any, all), so only the
  // rounding of a double sum can move, far below what the float result keeps.
  constexpr int kLanes = 8;
  auto reduce_range = [&](int64_t base, int64_t r0, int64_t r1) {
    Acc acc = init;
    Acc lane[kLanes];
    for (Acc& l : lane) l = init;
    for (int64_t r = r0; r < r1; ++r) {
      const T* p = src + base + offset_of(r, s.nr - 1, s.rsizes, s.rstrides);
      if (inner_st == 1) {
        int64_t i = 0;
        for (; i + kLanes <= inner_n; i += kLanes)
          for (int j = 0; j < kLanes; ++j) lane[j] = op(lane[j], Acc(compute_t<T>(p[i + j])));
        for (; i < inner_n; ++i) acc = op(acc, Acc(compute_t<T>(p[i])));
      } else {
        for (int64_t i = 0; i < inner_n; ++i) acc = op(acc, Acc(compute_t<T>(p[i * inner_st])));
      }
    }
    for (int w = kLanes / 2; w >= 1; w /= 2)
      for (int j = 0; j < w; ++j) lane[j] = op(lane[j], lane[j + w]);
    return op(lane[0], acc);
  };

  const int64_t total = s.kept_numel * s.red_numel;
  const int threads = threads_for(total);
  const bool per_output = s.kept_numel >= threads || outer_n < threads;
  // Kept elements contiguous (a bias gradient: the sum over the rows of [rows, n]): one pass over
  // the reduced range, a row at a time into a block of accumulators, instead of a strided walk per
  // output. Each output still takes its inputs in the same order, so the results are the bits of
  // the per-output loop below.
  if (per_output && s.nk == 1 && s.kstrides[0] == 1 && s.kept_numel >= 8) {
    constexpr int64_t kBlock = 256;
    parallel_chunks(s.kept_numel, threads, [&](int64_t c0, int64_t c1) {
      Acc acc[kBlock];
      for (int64_t b0 = c0; b0 < c1; b0 += kBlock) {
        const int64_t nb = std::min(kBlock, c1 - b0);
        for (int64_t j = 0; j < nb; ++j) acc[j] = init;
        for (int64_t r = 0; r < s.red_numel; ++r) {
          const T* p = src + offset_of(r, s.nr, s.rsizes, s.rstrides) + b0;
          for (int64_t j = 0; j < nb; ++j) acc[j] = op(acc[j], Acc(compute_t<T>(p[j])));
        }
        for (int64_t j = 0; j < nb; ++j) dst[b0 + j] = T(compute_t<T>(acc[j]));
      }
    });
    return;
  }
  if (per_output) {
    parallel_for(0, s.kept_numel, threads, [&](int64_t k) {
      int64_t base = offset_of(k, s.nk, s.ksizes, s.kstrides);
      dst[k] = T(compute_t<T>(reduce_range(base, 0, outer_n)));
    });
    return;
  }
  // Few outputs, much to reduce: split the reduced range and combine the partial results.
  for (int64_t k = 0; k < s.kept_numel; ++k) {
    int64_t base = offset_of(k, s.nk, s.ksizes, s.kstrides);
    std::vector<Acc> partial(size_t(threads), init);
    parallel_region(threads, [&](int t, int nt) {
      int64_t r0, r1;
      static_range(outer_n, t, nt, r0, r1);
      partial[size_t(t)] = reduce_range(base, r0, r1);
    });
    Acc acc = init;
    for (Acc v : partial) acc = op(acc, v);
    dst[k] = T(compute_t<T>(acc));
  }
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const View& out, const View& in) {
  KILN_DISPATCH_ALL(in.dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      if (op == ReduceOp::any) return reduce_impl<bool, bool>(out, in, false, [](bool a, bool b) { return a || b; });
      if (op == ReduceOp::all) return reduce_impl<bool, bool>(out, in, true, [](bool a, bool b) { return a && b; });
      if (op == ReduceOp::sum) fail("reduce: sum of bool tensors: convert to an integer dtype first");
      fail("reduce: op ", int(op), " is not defined for bool");
    } else {
      using Acc = std::conditional_t<is_float_v<T>, double, int64_t>;
      switch (op) {
        case ReduceOp::sum: return reduce_impl<T, Acc>(out, in, Acc(0), [](Acc a, Acc b) { return a + b; });
        case ReduceOp::prod: return reduce_impl<T, Acc>(out, in, Acc(1), [](Acc a, Acc b) { return a * b; });
        case ReduceOp::max:
          // Floating maxima start at -inf, so a slice of -inf reduces to -inf (not -DBL_MAX).
          return reduce_impl<T, C>(out, in, extreme_init<C>(false), [](C a, C b) {
            if constexpr (is_float_v<T>) {
              if (a != a || b != b) return std::numeric_limits<C>::quiet_NaN();
            }
            return a > b ? a : b;
          });
        case ReduceOp::min:
          return reduce_impl<T, C>(out, in, extreme_init<C>(true), [](C a, C b) {
            if constexpr (is_float_v<T>) {
              if (a != a || b != b) return std::numeric_limits<C>::quiet_NaN();
            }
            return a < b ? a : b;
          });
        default: break;
      }
      fail("reduce: op ", int(op), " is not defined for ", dtype_name(in.dtype));
    }
  });
}

namespace {

template <class T>
void reduce_index_typed(bool want_max, const View& values, const View& indices, const View& in, int dim) {
  using C = compute_t<T>;
  const int64_t n = in.sizes[dim], st = in.strides[dim];
  int64_t outer = 1;
  int64_t osizes[kMaxDims], ostrides[kMaxDims];
  int no = 0;
  for (int d = 0; d < in.ndim; ++d) {
    if (d == dim) continue;
    osizes[no] = in.sizes[d];
    ostrides[no] = in.strides[d];
    outer *= in.sizes[d];
    ++no;
  }
  const T* src = in.ptr<T>();
  T* vals = values.ptr<T>();
  int64_t* idx = indices.ptr<int64_t>();
  parallel_for(0, outer, threads_for(outer * n), [&](int64_t o) {
    const T* p = src + offset_of(o, no, osizes, ostrides);
    C best = C(p[0]);
    int64_t best_i = 0;
    for (int64_t i = 1; i < n; ++i) {
      C v = C(p[i * st]);
      if constexpr (is_float_v<T>) {
        if (best != best) break;  // NaN wins and stays
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
    if (vals) vals[o] = T(best);
    if (idx) idx[o] = best_i;
  });
}

}  // namespace

void CpuBackend::reduce_index(ReduceOp op, const View& values, const View& indices, const View& in, int dim) {
  const bool want_max = op == ReduceOp::max || op == ReduceOp::argmax;
  KILN_DISPATCH_ALL(in.dtype, "reduce_index", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      fail("max/min/argmax/argmin: not defined for bool tensors");
    } else {
      reduce_index_typed<T>(want_max, values, indices, in, dim);
    }
  });
}

}  // namespace kiln::kernels::cpu
