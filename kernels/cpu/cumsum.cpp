// CPU inclusive prefix sums along the middle dim of [outer, n, inner]: one thread per (outer,
// inner) column range, accumulating in f64 for floating types (int64 for integers), so a long
// f32 scan does not drift.
#include <type_traits>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace kiln::kernels::cpu {

void CpuBackend::cumsum(const View& out, const View& in, int64_t outer, int64_t n, int64_t inner) {
  KILN_DISPATCH_ALL(in.dtype, "cumsum", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      fail("cumsum: bool tensors are summed as int64; convert first");
    } else {
      using Acc = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
      const T* x = in.ptr<T>();
      T* y = out.ptr<T>();
      parallel_for(0, outer, threads_for(outer * n * inner), [&](int64_t o) {
        const T* xp = x + o * n * inner;
        T* yp = y + o * n * inner;
        for (int64_t c = 0; c < inner; ++c) {
          Acc acc = 0;
          for (int64_t i = 0; i < n; ++i) {
            acc += Acc(compute_t<T>(xp[i * inner + c]));
            yp[i * inner + c] = T(compute_t<T>(acc));
          }
        }
      });
    }
  });
}

}  // namespace kiln::kernels::cpu
