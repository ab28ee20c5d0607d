// Tensors: factories, views sharing storage, conversions, printing, RNG reproducibility, errors.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "helpers.h"

using namespace kiln;
using kiln::test::check_values;

TEST_CASE("factories give the requested shape, dtype and values") {
  auto z = zeros({2, 3});
  CHECK(z.sizes() == Shape{2, 3});
  CHECK(z.dtype() == DType::f32);
  CHECK(z.device() == Device::cpu());
  CHECK(z.numel() == 6);
  check_values(z, {0, 0, 0, 0, 0, 0});
  check_values(ones({2}, {.dtype = DType::f64}), {1, 1});
  check_values(full({3}, 2.5), {2.5, 2.5, 2.5});
  auto a = arange(5);
  CHECK(a.dtype() == DType::i64);
  check_values(a, {0, 1, 2, 3, 4});
  check_values(arange(1, 2, 0.25, {.dtype = DType::f32}), {1, 1.25, 1.5, 1.75});
  check_values(linspace(0, 1, 5), {0, 0.25, 0.5, 0.75, 1});
  auto t = tensor(std::vector<float>{1, 2, 3, 4}, {2, 2});
  CHECK(t[1][0].item<float>() == 3.0f);
  CHECK(zeros_like(t).sizes() == t.sizes());
}

TEST_CASE("from_blob wraps memory without copying; from_buffer copies") {
  float data[4] = {1, 2, 3, 4};
  auto w = from_blob(data, {4}, DType::f32);
  data[2] = 9;
  CHECK(w[2].item<float>() == 9);
  auto c = from_buffer(data, {4}, DType::f32);
  data[2] = 5;
  CHECK(c[2].item<float>() == 9);
}

TEST_CASE("views share storage and have PyTorch's strides") {
  auto x = arange(24, {.dtype = DType::f32}).reshape({2, 3, 4});
  CHECK(x.strides() == Shape{12, 4, 1});
  auto p = x.permute({2, 0, 1});
  CHECK(p.sizes() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK_FALSE(p.is_contiguous());
  CHECK(p.contiguous().is_contiguous());
  CHECK(x.transpose(0, 2).sizes() == Shape{4, 3, 2});
  auto s = x.select(1, 2);
  CHECK(s.sizes() == Shape{2, 4});
  check_values(s[0], {8, 9, 10, 11});
  auto n = x.narrow(2, 1, 2);
  CHECK(n.sizes() == Shape{2, 3, 2});
  check_values(n[0][0], {1, 2});
  auto sl = x.slice(2, 0, 4, 2);
  check_values(sl[0][1], {4, 6});
  CHECK(x.unsqueeze(0).sizes() == Shape{1, 2, 3, 4});
  CHECK(x.unsqueeze(-1).sizes() == Shape{2, 3, 4, 1});
  CHECK(x.unsqueeze(0).squeeze(0).sizes() == Shape{2, 3, 4});
  CHECK(x.flatten().sizes() == Shape{24});
  CHECK(x.flatten(1).sizes() == Shape{2, 12});
  CHECK(x.view({-1, 4}).sizes() == Shape{6, 4});
  auto e = tensor(std::vector<float>{1, 2, 3}).expand({2, 3});
  CHECK(e.strides() == Shape{0, 1});
  check_values(e, {1, 2, 3, 1, 2, 3});
  // Writing through a view changes the base.
  {
    auto v = x.select(0, 1);
    v.fill_(7);
  }
  CHECK(x[1][2][3].item<float>() == 7);
  CHECK(x[0][2][3].item<float>() == 11);
  // A transposed tensor cannot be viewed flat, but reshape copies.
  CHECK_THROWS_AS(x.transpose(0, 1).view({24}).sizes(), Error);
}

TEST_CASE("reshape and view error on a wrong element count") {
  auto x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(x.reshape({4, 2}), doctest::Contains("invalid for a tensor of 6 elements"), Error);
  CHECK_THROWS_AS(x.reshape({-1, -1}), Error);
  CHECK_THROWS_AS(x.select(0, 2), Error);
  CHECK_THROWS_AS(x.permute({0, 0}), Error);
  CHECK_THROWS_AS(x.size(2), Error);
}

TEST_CASE("dtype conversions round like PyTorch") {
  auto x = tensor(std::vector<float>{1.5f, -2.7f, 3.0f, 1e-8f});
  check_values(x.to(DType::i64), {1, -2, 3, 0});
  auto h = x.to(DType::f16);
  CHECK(h.dtype() == DType::f16);
  CHECK(h[1].item<float>() == doctest::Approx(-2.7).epsilon(1e-3));
  auto b = x.to(DType::bf16);
  CHECK(b[0].item<float>() == 1.5f);
  CHECK(Half(65504.f) == 65504.f);
  CHECK(std::isinf(float(Half(1e6f))));
  CHECK(float(BFloat16(1.0f + 1.0f / 256)) == 1.0f);  // ties to even
  CHECK(x.to(DType::boolean).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 1});
}

TEST_CASE("copy_ broadcasts and converts; clone is independent") {
  auto x = zeros({2, 3});
  x.copy_(tensor(std::vector<double>{1, 2, 3}));
  check_values(x, {1, 2, 3, 1, 2, 3});
  auto c = x.clone();
  c.fill_(0);
  CHECK(x[0][0].item<float>() == 1);
  CHECK_THROWS_AS(x.copy_(zeros({4})), Error);
}

TEST_CASE("printing shows values, shape, dtype and device") {
  std::ostringstream os;
  os << tensor(std::vector<float>{1, 2, 3, 4}, {2, 2});
  CHECK(os.str() == "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], shape=[2, 2], dtype=float32, device=cpu)");
  std::ostringstream big;
  big << arange(100);
  CHECK(big.str().find("...") != std::string::npos);
}

TEST_CASE("random numbers are bit-identical for the same seed") {
  manual_seed(42);
  auto a = randn({1000});
  auto u = rand({7});
  manual_seed(42);
  auto b = randn({1000});
  auto v = rand({7});
  CHECK(equal(a, b));
  CHECK(equal(u, v));
  manual_seed(43);
  CHECK_FALSE(equal(a, randn({1000})));
  // Moments of a large sample.
  manual_seed(0);
  auto big = randn({200000}, {.dtype = DType::f64});
  CHECK(std::abs(mean(big).item<double>()) < 0.01);
  CHECK(std::abs(kiln::std(big).item<double>() - 1) < 0.01);
  auto r = rand({100000}, {.dtype = DType::f64});
  CHECK(min(r).item<double>() >= 0);
  CHECK(max(r).item<double>() < 1);
  auto ri = randint(3, 7, {1000});
  CHECK(min(ri).item<int64_t>() == 3);
  CHECK(max(ri).item<int64_t>() == 6);
  auto p = randperm(10);
  auto pv = p.to_vector<int64_t>();
  std::sort(pv.begin(), pv.end());
  for (int i = 0; i < 10; ++i) CHECK(pv[size_t(i)] == i);
  Generator g1(5), g2(5);
  CHECK(equal(rand({16}, {}, &g1), rand({16}, {}, &g2)));
}

TEST_CASE("CUDA devices are values; using one without the backend is a clear error") {
  CHECK(Device::parse("cuda:1") == Device::cuda(1));
  CHECK(Device::parse("cpu").is_cpu());
  CHECK_THROWS_AS(Device::parse("tpu"), Error);
  if (!cuda::is_available()) {
    CHECK_THROWS_WITH_AS(zeros({2}, {.device = Device::cuda(0)}), doctest::Contains("cuda:0"), Error);
  }
}

TEST_CASE("an undefined tensor is an error, not a crash") {
  Tensor t;
  CHECK_FALSE(t.defined());
  CHECK_THROWS_AS(t.sizes(), Error);
  CHECK_THROWS_AS(t + t, Error);
}
