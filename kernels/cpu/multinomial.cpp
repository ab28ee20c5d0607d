// CPU multinomial sampling, one row per thread: with replacement a binary search in the row's
// running sums, without replacement a scan over the columns not drawn yet. Draws come from
// Philox (kernels/philox.h) with 53 random bits each, so the CUDA kernel draws the same numbers.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/philox.h"

namespace kiln::kernels::cpu {
namespace {

double draw(uint64_t seed, uint64_t counter) {
  Philox4 r = philox4x32_10(seed, counter);
  return double(((uint64_t(r.v[0]) << 32) | r.v[1]) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

void CpuBackend::multinomial(const View& out, const View& probs, int64_t k, bool replacement, uint64_t seed,
                             uint64_t offset) {
  const int64_t rows = probs.sizes[0], c = probs.sizes[1];
  dispatch_floating(probs.dtype, "multinomial", [&](auto tag) {
    using T = decltype(tag);
    const T* p = probs.ptr<T>();
    int64_t* o = out.ptr<int64_t>();
    parallel_for(0, rows, threads_for(rows * c * std::max<int64_t>(replacement ? 1 : k, 1)), [&](int64_t r) {
      const T* pr = p + r * c;
      int64_t* orow = o + r * k;
      std::vector<double> w(static_cast<size_t>(c));
      for (int64_t j = 0; j < c; ++j) w[size_t(j)] = double(compute_t<T>(pr[j]));
      if (replacement) {
        std::vector<double> cum(static_cast<size_t>(c));
        double s = 0;
        int64_t last_positive = 0;
        for (int64_t j = 0; j < c; ++j) {
          s += w[size_t(j)];
          cum[size_t(j)] = s;
          if (w[size_t(j)] > 0) last_positive = j;
        }
        for (int64_t i = 0; i < k; ++i) {
          const double target = draw(seed, offset + uint64_t(r * k + i)) * s;
          auto it = std::upper_bound(cum.begin(), cum.end(), target);
          orow[i] = std::min<int64_t>(it - cum.begin(), last_positive);
        }
        return;
      }
      for (int64_t i = 0; i < k; ++i) {
        double s = 0;
        for (double v : w) s += v;
        const double target = draw(seed, offset + uint64_t(r * k + i)) * s;
        double acc = 0;
        int64_t pick = -1;
        for (int64_t j = 0; j < c; ++j) {
          if (w[size_t(j)] <= 0) continue;
          pick = j;  // the last positive column, should rounding carry the target past the end
          acc += w[size_t(j)];
          if (acc > target) break;
        }
        orow[i] = pick;
        w[size_t(pick)] = 0;
      }
    });
  });
}

}  // namespace kiln::kernels::cpu
