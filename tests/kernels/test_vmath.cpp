// The vector exp of kernels/cpu/vmath.h (the softmax rows of the fused attention) against float64:
// every length from 0 to 40 (vector bodies and padded tails), arguments across the range a softmax
// sees, masked scores (-inf) giving exactly 0, NaN staying NaN. meson test repeats this under each
// KILN_CPU_ISA cap. (GELU's kernels are held to float64 in tests/core/test_ops.cpp.)
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/vmath.h"

TEST_CASE("vmath: exp_shifted_f32 is within 3e-7 of float64, 0 for -inf, NaN for NaN, at every length") {
  const float inf = std::numeric_limits<float>::infinity();
  double worst = 0;
  for (int n = 0; n <= 40; ++n) {
    std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n), -1.f);
    for (int i = 0; i < n; ++i) x[size_t(i)] = -87.f + 90.f * float(i) / 41.f + 0.37f * float(n);
    kiln::kernels::cpu::exp_shifted_f32(y.data(), x.data(), 3.f, n);
    for (int i = 0; i < n; ++i) {
      const double want = std::exp(double(x[size_t(i)] - 3.f));  // the float difference is the argument
      if (want > 1e-37) worst = std::max(worst, std::abs(double(y[size_t(i)]) - want) / want);
    }
  }
  // Dense over the range a softmax row sees after its maximum is taken off: [-30, 0].
  std::vector<float> x(30001), y(30001);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -30.f + 0.001f * float(i);
  kiln::kernels::cpu::exp_shifted_f32(y.data(), x.data(), 0.f, int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(double(x[i]));
    worst = std::max(worst, std::abs(double(y[i]) - want) / want);
  }
  MESSAGE("worst relative error ", worst);
  CHECK(worst < 3e-7);

  std::vector<float> special{-inf, std::numeric_limits<float>::quiet_NaN(), 0.f, -200.f, 1.f};
  std::vector<float> out(special.size());
  kiln::kernels::cpu::exp_shifted_f32(out.data(), special.data(), 1.f, int64_t(special.size()));
  CHECK(out[0] == 0.f);
  CHECK(std::isnan(out[1]));
  CHECK(std::abs(out[2] - std::exp(-1.f)) <= 1e-7f);
  CHECK(out[3] == 0.f);
  CHECK(out[4] == 1.f);
  // In place, as the attention kernels call it.
  std::vector<float> inplace{0.f, -1.f, -2.f};
  kiln::kernels::cpu::exp_shifted_f32(inplace.data(), inplace.data(), 0.f, 3);
  CHECK(inplace[0] == 1.f);
  CHECK(std::abs(inplace[2] - float(std::exp(-2.0))) <= 1e-7f);
}
