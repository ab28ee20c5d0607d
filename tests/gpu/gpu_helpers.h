// Shared by the gpu suite's newer files: the skip decorator's condition, a CPU-vs-GPU comparison
// with a tol + |ref| * rtol tolerance that prints the first mismatches, and random inputs.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kiln.h"

namespace kiln::gpu_test {

inline const Device kGpu = Device::cuda(0);
inline const Device kCpu = Device::cpu();

// Evaluated when the cases register: without a GPU, doctest reports the cases as skipped.
inline bool gpu_missing() { return !cuda::is_available(); }

// |got - want| <= atol + rtol * |want| elementwise (NaN matches NaN); prints the first mismatches.
inline void expect_close(const Tensor& got_any, const Tensor& want_any, double rtol, double atol,
                         const std::string& what) {
  Tensor got = got_any.detach().to(kCpu).to(DType::f64).contiguous();
  Tensor want = want_any.detach().to(kCpu).to(DType::f64).contiguous();
  REQUIRE_MESSAGE(got.sizes() == want.sizes(), what << ": shape " << got.sizes() << " vs " << want.sizes());
  auto g = got.to_vector<double>();
  auto w = want.to_vector<double>();
  int64_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(g[i] - w[i]);
    const bool same_special = (std::isnan(g[i]) && std::isnan(w[i])) || (std::isinf(g[i]) && g[i] == w[i]);
    if (!same_special && !(err <= atol + rtol * std::abs(w[i]))) {
      worst = std::max(worst, err);
      if (bad++ < 4) MESSAGE(what << ": element " << i << " got " << g[i] << " want " << w[i]);
    }
  }
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << g.size() << " differ (worst abs " << worst << ")");
}

// Largest |x| of a tensor. An updated value that came out of a cancellation (a small parameter
// after a step, a moving average of gradients of both signs) carries the rounding of the larger
// terms it was computed from, so the absolute part of a tolerance scales with the tensor's range.
inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.detach().to(kCpu).to(DType::f64).contiguous().to_vector<double>())
    if (std::isfinite(v)) m = std::max(m, std::abs(v));
  return m;
}

inline Tensor rnd(Shape s, DType t = DType::f32) { return randn(std::move(s)).to(t); }

// Relative tolerance of one rounding to `t`, with room for a few f32 operations before it.
inline double tol_of(DType t) {
  switch (t) {
    case DType::f16: return 2e-3;
    case DType::bf16: return 1.6e-2;
    case DType::f64: return 1e-12;
    default: return 1e-5;
  }
}

}  // namespace kiln::gpu_test
