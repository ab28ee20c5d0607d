// CPU sort of the rows of a dense [rows, n] tensor: a stable sort of the positions by value, rows
// spread over threads. NaN compares greater than every number, as in PyTorch, so it ends a row in
// ascending order and starts it in descending order.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace kiln::kernels::cpu {
namespace {

template <class C>
bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>)
    return v != v;
  else
    return false;
}

}  // namespace

void CpuBackend::sort(const View& values, const View& indices, const View& in, bool descending) {
  const int64_t rows = in.ndim ? in.numel() / std::max<int64_t>(in.sizes[in.ndim - 1], 1) : 1;
  const int64_t n = in.ndim ? in.sizes[in.ndim - 1] : 1;
  KILN_DISPATCH_ALL(in.dtype, "sort", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* x = in.ptr<T>();
    T* vals = values.ptr<T>();
    int64_t* idx = indices.ptr<int64_t>();
    parallel_for(0, rows, threads_for(rows * n), [&](int64_t r) {
      const T* xr = x + r * n;
      std::vector<int64_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), int64_t(0));
      auto less = [&](int64_t a, int64_t b) {  // NaN is the largest value
        const C va = C(xr[a]), vb = C(xr[b]);
        if (is_nan(vb)) return !is_nan(va);
        if (is_nan(va)) return false;
        return va < vb;
      };
      if (descending)
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return less(b, a); });
      else
        std::stable_sort(order.begin(), order.end(), less);
      for (int64_t i = 0; i < n; ++i) {
        if (vals) vals[r * n + i] = xr[order[size_t(i)]];
        idx[r * n + i] = order[size_t(i)];
      }
    });
  });
}

}  // namespace kiln::kernels::cpu
