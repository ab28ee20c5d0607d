// bf16 convolution and matrix products on the CPU (bf16 operands, f32 accumulation) against the
// same ops in f32 on the same bf16-rounded inputs: they may differ only by the order of the f32
// additions and the one rounding of each bf16 result.
#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"

using namespace kiln;

namespace {

Tensor rounded(const Tensor& t) { return t.to(DType::bf16).to(DType::f32); }

// |a - b| <= 2^-7 |b| + 2^-7 max|b|: one bf16 rounding of the result, and sums whose terms cancel.
void check_bf16(const Tensor& got, const Tensor& ref) {
  REQUIRE(got.dtype() == DType::bf16);
  const double scale = max(abs(ref)).item<double>();
  test::check_close(got.to(DType::f32), ref, 1.0 / 128, scale / 128);
}

struct ConvCase {
  int64_t n, cin, h, w, cout, k, stride, pad, dil, groups;
};

}  // namespace

TEST_CASE("conv2d in bf16 matches f32: forward, input, weight and bias gradients") {
  manual_seed(5);
  const ConvCase cases[] = {
      {2, 3, 9, 7, 6, 3, 1, 1, 1, 1},  // the reference CNN's shape of layer, odd sizes
      {3, 8, 8, 8, 16, 3, 1, 1, 1, 1},
      {2, 6, 11, 10, 4, 3, 2, 0, 1, 2},  // strided, grouped, no padding
      {2, 5, 6, 7, 33, 1, 1, 0, 1, 1},   // pointwise
      {1, 4, 12, 12, 5, 3, 1, 2, 2, 1},  // dilated
      // "same" convolutions on rows narrower than 32 (several output rows per vector)
      {2, 3, 15, 16, 4, 3, 1, 1, 1, 1},
      {1, 2, 8, 8, 3, 3, 1, 2, 2, 1},
      {2, 3, 4, 4, 5, 5, 1, 2, 1, 1},
      {2, 4, 8, 8, 6, 3, 1, 1, 1, 2},
  };
  for (const auto& c : cases) {
    INFO("n=" << c.n << " cin=" << c.cin << " " << c.h << "x" << c.w << " cout=" << c.cout << " k=" << c.k
              << " stride=" << c.stride << " pad=" << c.pad << " dil=" << c.dil << " groups=" << c.groups);
    Tensor x = rounded(randn({c.n, c.cin, c.h, c.w}));
    Tensor w = rounded(randn({c.cout, c.cin / c.groups, c.k, c.k}));
    Tensor b = rounded(randn({c.cout}));
    auto run = [&](DType dt) {
      auto leaf = [&](const Tensor& t) { return t.to(dt).detach().requires_grad_(); };
      Tensor xl = leaf(x), wl = leaf(w), bl = leaf(b);
      Tensor y = conv2d(xl, wl, bl, {c.stride, c.stride}, {c.pad, c.pad}, {c.dil, c.dil}, c.groups);
      Tensor go = rounded(randn(y.sizes()));
      return std::make_tuple(y, xl, wl, bl, go);
    };
    manual_seed(9);
    auto [y32, x32, w32, b32, go32] = run(DType::f32);
    manual_seed(9);
    auto [y16, x16, w16, b16, go16] = run(DType::bf16);
    check_bf16(y16, y32);
    y32.backward(go32);
    y16.backward(go16.to(DType::bf16));
    check_bf16(x16.grad(), x32.grad());
    check_bf16(w16.grad(), w32.grad());
    check_bf16(b16.grad(), b32.grad());
  }
}

TEST_CASE("linear and matmul in bf16 match f32, with gradients") {
  manual_seed(6);
  Tensor x = rounded(randn({37, 65})), w = rounded(randn({19, 65})), b = rounded(randn({19}));
  Tensor x32 = x.clone().requires_grad_(), w32 = w.clone().requires_grad_(), b32 = b.clone().requires_grad_();
  Tensor x16 = x.to(DType::bf16).requires_grad_(), w16 = w.to(DType::bf16).requires_grad_(),
         b16 = b.to(DType::bf16).requires_grad_();
  Tensor y32 = linear(x32, w32, b32), y16 = linear(x16, w16, b16);
  check_bf16(y16, y32);
  Tensor go = rounded(randn({37, 19}));
  y32.backward(go);
  y16.backward(go.to(DType::bf16));
  check_bf16(x16.grad(), x32.grad());
  check_bf16(w16.grad(), w32.grad());
  check_bf16(b16.grad(), b32.grad());

  // Batched products with column-major, transposed and broadcast operands.
  Tensor a = rounded(randn({3, 17, 33})), m = rounded(randn({33, 5}));
  Tensor a_cols = a.to(DType::bf16).transpose(1, 2).contiguous().transpose(1, 2);
  check_bf16(matmul(a_cols, m.to(DType::bf16)), matmul(a, m));
  check_bf16(matmul(m.to(DType::bf16).t(), a.to(DType::bf16).transpose(1, 2)), matmul(m.t(), a.transpose(1, 2)));
}

TEST_CASE("max_pool2d on bf16 picks the same maxima and positions as on f32, NaN and ties included") {
  auto x = tensor(std::vector<float>{1, 3, 5, 5, 3, 2, 0, 4, NAN, 7, 2, 2, 9, NAN, 2, 2}, {1, 1, 4, 4}).to(DType::bf16);
  auto [y, idx] = max_pool2d_with_indices(x, {2, 2});
  auto yv = y.to_vector<float>();
  CHECK(yv[0] == 3);
  CHECK(yv[1] == 5);
  CHECK(std::isnan(yv[2]));
  CHECK(yv[3] == 2);
  CHECK(idx.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 8, 10});

  manual_seed(8);
  for (int64_t w : {4, 9, 16, 40}) {  // row tails shorter and longer than one vector, odd sizes
    INFO("width " << w);
    Tensor r = rounded(randn({2, 3, w % 2 ? 7 : 6, w}));
    Tensor r32 = r.clone().requires_grad_(), r16 = r.to(DType::bf16).detach().requires_grad_();
    auto [y32, i32] = max_pool2d_with_indices(r32, {2, 2});
    auto [y16, i16] = max_pool2d_with_indices(r16, {2, 2});
    CHECK(y16.to(DType::f32).to_vector<float>() == y32.to_vector<float>());
    CHECK(i16.to_vector<int64_t>() == i32.to_vector<int64_t>());
    Tensor g = rounded(randn(y32.sizes()));
    y32.backward(g);
    y16.backward(g.to(DType::bf16));
    CHECK(r16.grad().to(DType::f32).to_vector<float>() == r32.grad().to_vector<float>());
  }
}

TEST_CASE("relu and its gradient on bf16 equal the f32 results exactly (zeros, infinities, NaN, tails)") {
  std::vector<float> v = {1.5f, -2.f, 0.f, -0.f, INFINITY, -INFINITY, NAN, 1e-38f, -1e-38f, 3.f};
  manual_seed(4);
  for (int64_t n : {10, 37, 1000}) {
    INFO("n = " << n);
    std::vector<float> data(v.begin(), v.begin() + std::min<int64_t>(n, int64_t(v.size())));
    for (float r : rounded(randn({n - int64_t(data.size())})).to_vector<float>()) data.push_back(r);
    Tensor x32 = tensor(data, {n}).requires_grad_();
    Tensor x16 = tensor(data, {n}).to(DType::bf16).detach().requires_grad_();
    Tensor g = rounded(randn({n}));
    Tensor y32 = relu(x32), y16 = relu(x16);
    y32.backward(g);
    y16.backward(g.to(DType::bf16));
    auto bits = [](const Tensor& t) { return t.to(DType::bf16).to(DType::f32).to_vector<float>(); };
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      for (size_t i = 0; i < a.size(); ++i)
        if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
      return true;
    };
    CHECK(same(bits(y16), bits(y32)));
    CHECK(same(bits(x16.grad()), bits(x32.grad())));
  }
}
