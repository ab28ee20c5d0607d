// Strided iteration for CPU kernels: operands share one shape; dims are coalesced where every
// operand is contiguous across them, so dense tensors run as one flat, vectorisable loop, and
// rows are spread over kiln's CPU threads (parallel.h) once there is enough work to pay for them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"

namespace kiln::kernels::cpu {

// The type arithmetic is done in: f32 for the 16-bit floats, the type itself otherwise.
template <class T>
using compute_t = std::conditional_t<std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, float, T>;

// Calls f(T{}) for the floating dtypes (f32, f64, f16, bf16); anything else is an error naming op.
template <class F>
void dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(Half{});
    case DType::bf16: return f(BFloat16{});
    default: break;
  }
  fail(op, ": expected a floating-point tensor, got ", dtype_name(t));
}

template <int K>
struct Geometry {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};
};

// Shape from views[0]; every view must have the same sizes.
template <int K>
Geometry<K> coalesce(const View* const (&views)[K]) {
  Geometry<K> g;
  const View& v0 = *views[0];
  // Drop size-1 dims, then merge neighbours that are contiguous for every operand.
  for (int d = 0; d < v0.ndim; ++d) {
    if (v0.sizes[d] == 1) continue;
    int n = g.ndim;
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
  }
  if (g.ndim == 0) {  // a single element
    g.ndim = 1;
    g.sizes[0] = 1;
    for (int k = 0; k < K; ++k) g.strides[k][0] = 1;
  }
  return g;
}

// Calls body(offsets[K], n, inner_strides[K]) for runs along the innermost dim, in parallel.
template <int K, class Body>
void for_each_run(const Geometry<K>& g, Body&& body) {
  const int inner = g.ndim - 1;
  const int64_t n_inner = g.sizes[inner];
  int64_t rows = 1;
  for (int d = 0; d < inner; ++d) rows *= g.sizes[d];
  int64_t inner_strides[K];
  for (int k = 0; k < K; ++k) inner_strides[k] = g.strides[k][inner];
  const int64_t total = rows * n_inner;
  const int threads = threads_for(total);

  if (rows == 1) {  // one long run: split it into chunks
    parallel_chunks(n_inner, threads, [&](int64_t b, int64_t e) {
      int64_t off[K];
      for (int k = 0; k < K; ++k) off[k] = b * inner_strides[k];
      body(off, e - b, inner_strides);
    });
    return;
  }
  parallel_for(0, rows, threads, [&](int64_t r) {
    int64_t off[K] = {};
    int64_t rem = r;
    for (int d = inner - 1; d >= 0; --d) {
      int64_t idx = rem % g.sizes[d];
      rem /= g.sizes[d];
      for (int k = 0; k < K; ++k) off[k] += idx * g.strides[k][d];
    }
    body(off, n_inner, inner_strides);
  });
}

}  // namespace kiln::kernels::cpu
