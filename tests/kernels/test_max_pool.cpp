// The f32 2x2/2 max-pooling kernels (kernels/cpu/max_pool_2x2.cpp) against the scalar loop that
// float64 runs: the same maxima, positions and gradients, bit for bit, with ties, NaNs and row
// tails shorter and longer than a vector, rows packed several to a vector. meson test repeats this
// under each KILN_CPU_ISA cap.
#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"

using namespace kiln;

TEST_CASE("max_pool2d 2x2/2 in f32 equals the float64 loop: maxima, indices, gradients, ties and NaN") {
  manual_seed(12);
  for (int64_t w : {2, 4, 5, 8, 16, 17, 32, 33, 40, 70}) {
    for (int64_t h : {2, 7, 16}) {
      INFO(h << "x" << w);
      // Coarse values make ties common; a few NaNs land in some windows.
      Tensor v = randint(-4, 5, {2, 3, h, w}).to(DType::f32);
      Tensor nan_mask = lt(rand({2, 3, h, w}), 0.03);
      v = where(nan_mask, full({}, NAN), v);
      Tensor x32 = v.clone().requires_grad_(), x64 = v.to(DType::f64).detach().requires_grad_();
      auto [y32, i32] = max_pool2d_with_indices(x32, {2, 2});
      auto [y64, i64] = max_pool2d_with_indices(x64, {2, 2});
      const auto a = y32.to_vector<double>(), b = y64.to_vector<double>();
      REQUIRE(a.size() == b.size());
      int bad = 0;
      for (size_t i = 0; i < a.size(); ++i) bad += !(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])));
      CHECK(bad == 0);
      CHECK(i32.to_vector<int64_t>() == i64.to_vector<int64_t>());
      Tensor g = randn(y32.sizes());
      y32.backward(g);
      y64.backward(g.to(DType::f64));
      CHECK(x32.grad().to_vector<double>() == x64.grad().to_vector<double>());
    }
  }
}
