// Shared test helpers: approximate comparison against expected values, golden-file access.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "kiln.h"

namespace kiln::test {

// Element-wise |a - b| <= atol + rtol * |b|; reports the first mismatches.
inline void check_close(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-6) {
  REQUIRE(a.sizes() == b.sizes());
  auto av = a.to_vector<double>();
  auto bv = b.to_vector<double>();
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    double err = std::abs(av[i] - bv[i]);
    double tol = atol + rtol * std::abs(bv[i]);
    if (!(err <= tol)) {
      worst = std::max(worst, err);
      if (bad++ < 5) MESSAGE("element " << i << ": got " << av[i] << ", expected " << bv[i]);
    }
  }
  CHECK_MESSAGE(bad == 0, bad << " of " << av.size() << " elements differ (worst " << worst << ")");
}

inline void check_values(const Tensor& a, const std::vector<double>& expected, double tol = 1e-6) {
  check_close(a, tensor(expected, a.sizes(), {.dtype = DType::f64}), tol, tol);
}

inline std::string golden_dir() {
  // The values live in the repository (tests/golden, written by tests/golden/make_golden.py);
  // meson test sets both variables.
  if (const char* d = std::getenv("KILN_GOLDEN_DIR")) return d;
  const char* root = std::getenv("KILN_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/tests/golden";
}

}  // namespace kiln::test
