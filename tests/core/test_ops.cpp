// Op forward values: hand-computed cases, PyTorch's reference values (golden/ops.safetensors),
// broadcasting and promotion rules, and the errors for misuse.
#include <cmath>
#include <limits>

#include "golden.h"

using namespace kiln;
using kiln::test::check_close;
using kiln::test::check_values;

TEST_CASE("arithmetic broadcasts and promotes like PyTorch") {
  auto a = tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  auto b = tensor(std::vector<float>{10, 20, 30});
  check_values(a + b, {11, 22, 33, 14, 25, 36});
  check_values(a - 1, {0, 1, 2, 3, 4, 5});
  check_values(2 * a, {2, 4, 6, 8, 10, 12});
  check_values(a / 2, {0.5, 1, 1.5, 2, 2.5, 3});
  check_values(1 / a.narrow(1, 0, 1), {1, 0.25});
  check_values(pow(a, 2.0), {1, 4, 9, 16, 25, 36});
  CHECK((a + b).dtype() == DType::f32);
  auto i = arange(3);
  CHECK((i + 1).dtype() == DType::i64);
  CHECK((i * 0.5).dtype() == DType::f32);
  CHECK((i / i.clamp_(1, 5)).dtype() == DType::f32);
  CHECK((a + i).dtype() == DType::f32);
  CHECK((a.to(DType::f64) + a).dtype() == DType::f64);
  CHECK((a + scalar_tensor(1.0, {.dtype = DType::f64})).dtype() == DType::f32);
  CHECK_THROWS_WITH_AS(a + zeros({2}), doctest::Contains("cannot be broadcast"), Error);
}

TEST_CASE("in-place ops write through and refuse leaves that need grad") {
  auto x = ones({3});
  x.add_(tensor(std::vector<float>{1, 2, 3}));
  check_values(x, {2, 3, 4});
  x.mul_(2.0);
  check_values(x, {4, 6, 8});
  auto w = ones({3}, {.requires_grad = true});
  CHECK_THROWS_WITH_AS(w.add_(1.0), doctest::Contains("leaf"), Error);
  {
    NoGradGuard g;
    w.add_(1.0);
  }
  check_values(w, {2, 2, 2});
  auto ii = arange(3);
  CHECK_THROWS_AS(ii.div_(2.0), Error);
}

TEST_CASE("unary ops") {
  auto x = tensor(std::vector<double>{-2, -0.5, 0, 0.5, 2});
  check_values(relu(x), {0, 0, 0, 0.5, 2});
  check_values(abs(x), {2, 0.5, 0, 0.5, 2});
  check_values(leaky_relu(x, 0.1), {-0.2, -0.05, 0, 0.5, 2});
  check_values(clamp(x, -1.0, 1.0), {-1, -0.5, 0, 0.5, 1});
  check_values(clamp(x, std::nullopt, 0.0), {-2, -0.5, 0, 0, 0});
  check_values(sigmoid(x), {1 / (1 + std::exp(2.0)), 1 / (1 + std::exp(0.5)), 0.5, 1 / (1 + std::exp(-0.5)),
                            1 / (1 + std::exp(-2.0))});
  check_values(tanh(x), {std::tanh(-2.0), std::tanh(-0.5), 0, std::tanh(0.5), std::tanh(2.0)});
  check_values(exp(x), {std::exp(-2.0), std::exp(-0.5), 1, std::exp(0.5), std::exp(2.0)});
  check_values(gelu(x, "tanh"),
               {-0.04540230591222642, -0.15428599017485423, 0, 0.34571400982514577, 1.9545976940877736});
  check_values(sqrt(tensor(std::vector<double>{4, 9})), {2, 3});
  check_values(rsqrt(tensor(std::vector<double>{4, 16})), {0.5, 0.25});
  check_values(log(tensor(std::vector<double>{1, std::exp(1.0)})), {0, 1});
  check_values(where(gt(x, 0.0), x, zeros_like(x)), {0, 0, 0, 0.5, 2});
  CHECK(eq(x, 0.0).dtype() == DType::boolean);
  check_values(ge(x, 0.0).to(DType::i64), {0, 0, 1, 1, 1});
  CHECK_THROWS_AS(exp(arange(3)), Error);
  CHECK_THROWS_AS(where(x, x, x), Error);
}

TEST_CASE("reductions with dims and keepdim") {
  auto x = arange(24, {.dtype = DType::f64}).reshape({2, 3, 4});
  check_values(sum(x), {276});
  CHECK(sum(x, {1}).sizes() == Shape{2, 4});
  CHECK(sum(x, {1}, true).sizes() == Shape{2, 1, 4});
  check_values(sum(x, {0, 2}), {60, 92, 124});
  check_values(mean(x, {-1}).select(0, 0), {1.5, 5.5, 9.5});
  check_values(var(tensor(std::vector<double>{1, 2, 3, 4})), {5.0 / 3});
  check_values(var(tensor(std::vector<double>{1, 2, 3, 4}), {}, 0), {1.25});
  auto [v, i] = max(x, 1);
  check_values(v[0], {8, 9, 10, 11});
  check_values(i[0], {2, 2, 2, 2});
  check_values(argmax(tensor(std::vector<float>{1, 5, 5, 2}), 0), {1});
  check_values(argmin(tensor(std::vector<float>{3, 1, 1, 2}), 0), {1});
  check_values(amax(x, {0, 1}), {20, 21, 22, 23});
  CHECK(sum(arange(4)).dtype() == DType::i64);
  CHECK(max(tensor(std::vector<float>{1, NAN, 3})).item<float>() !=
        max(tensor(std::vector<float>{1, NAN, 3})).item<float>());
  // Non-contiguous input.
  check_values(sum(x.transpose(0, 2), {0}), sum(x, {2}).t().to_vector<double>());
  CHECK_THROWS_AS(sum(x, {3}), Error);
  CHECK_THROWS_AS(mean(arange(3)), Error);
}

TEST_CASE("matmul follows PyTorch's shapes") {
  auto a = arange(6, {.dtype = DType::f32}).reshape({2, 3});
  auto b = arange(6, {.dtype = DType::f32}).reshape({3, 2});
  check_values(matmul(a, b), {10, 13, 28, 40});
  check_values(matmul(a, a.t()), {5, 14, 14, 50});
  CHECK(matmul(zeros({5, 2, 3}), zeros({3, 4})).sizes() == Shape{5, 2, 4});
  CHECK(matmul(zeros({3}), zeros({3, 4})).sizes() == Shape{4});
  CHECK(matmul(zeros({2, 3}), zeros({3})).sizes() == Shape{2});
  CHECK(matmul(zeros({3}), zeros({3})).dim() == 0);
  CHECK(matmul(zeros({2, 1, 2, 3}), zeros({4, 3, 5})).sizes() == Shape{2, 4, 2, 5});
  check_values(linear(ones({1, 3}), a, tensor(std::vector<float>{1, -1})), {4, 11});
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({2, 3})), doctest::Contains("cannot be multiplied"), Error);
  check_values(matmul(a.to(DType::bf16), b.to(DType::bf16)), {10, 13, 28, 40});
}

TEST_CASE("cat, stack, one_hot, embedding") {
  auto a = ones({2, 2}), b = zeros({2, 1});
  check_values(cat({a, b}, 1), {1, 1, 0, 1, 1, 0});
  CHECK(stack({a, a, a}).sizes() == Shape{3, 2, 2});
  CHECK(stack({a, a}, 2).sizes() == Shape{2, 2, 2});
  check_values(one_hot(tensor(std::vector<int64_t>{0, 2}), 3), {1, 0, 0, 0, 0, 1});
  auto w = arange(6, {.dtype = DType::f32}).reshape({3, 2});
  check_values(embedding(tensor(std::vector<int64_t>{2, 0}), w), {4, 5, 0, 1});
  CHECK_THROWS_WITH_AS(embedding(tensor(std::vector<int64_t>{3}), w), doctest::Contains("out of range"), Error);
  CHECK_THROWS_AS(cat({a, zeros({3, 3})}, 1), Error);
}

TEST_CASE("conv2d and pooling errors name the shapes") {
  auto w = zeros({32, 3, 3, 3});
  CHECK_THROWS_WITH_AS(
      conv2d(zeros({8, 1, 32, 32}), w),
      doctest::Contains("expected input of shape [N, 3, H, W] for weight [32, 3, 3, 3], got [8, 1, 32, 32]"), Error);
  CHECK_THROWS_AS(max_pool2d(zeros({1, 1, 4}), {2, 2}), Error);
  CHECK_THROWS_AS(cross_entropy(zeros({2, 3}), tensor(std::vector<int64_t>{0, 3})), Error);
  CHECK_THROWS_AS(cross_entropy(zeros({2, 3}), tensor(std::vector<float>{0, 1})), Error);
}

TEST_CASE("losses") {
  auto logits = tensor(std::vector<double>{2, 1, 0.1, 0.5, 2.5, 0.3}, {2, 3});
  auto target = tensor(std::vector<int64_t>{0, 1});
  auto lsm = log_softmax(logits, 1);
  double expect = -(lsm[0][0].item<double>() + lsm[1][1].item<double>()) / 2;
  CHECK(cross_entropy(logits, target).item<double>() == doctest::Approx(expect));
  CHECK(cross_entropy(logits, target, {}, Reduction::sum).item<double>() == doctest::Approx(2 * expect));
  CHECK(cross_entropy(logits, tensor(std::vector<int64_t>{0, -100})).item<double>() ==
        doctest::Approx(-lsm[0][0].item<double>()));
  check_values(softmax(logits, 1).sum({1}), {1, 1});
  CHECK(mse_loss(ones({4}), zeros({4})).item<float>() == 1.0f);
}

// ---------------------------------------------------------------- golden values from PyTorch

namespace {

void check_golden_op(const std::string& name, int n_in, const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                     double tol = 1e-10) {
  kiln::test::Golden g("ops.safetensors");
  std::vector<Tensor> in;
  for (int j = 0; j < n_in; ++j) {
    Tensor t = g.get(name + ".in" + std::to_string(j));
    if (t.is_floating_point()) t.requires_grad_(true);
    in.push_back(t);
  }
  Tensor out = fn(in);
  INFO(name);
  check_close(out, g.get(name + ".out"), tol, tol);
  out.backward(g.get(name + ".gout"));
  for (int j = 0; j < n_in; ++j) {
    std::string key = name + ".gin" + std::to_string(j);
    if (!g.has(key)) continue;
    INFO(key);
    REQUIRE(in[size_t(j)].grad().defined());
    check_close(in[size_t(j)].grad(), g.get(key), tol, tol);
  }
}

}  // namespace

TEST_CASE("golden: convolutions, matmul, linear") {
  check_golden_op("conv2d_plain", 3, [](auto& in) { return conv2d(in[0], in[1], in[2], {1, 1}, {1, 1}); });
  check_golden_op("conv2d_groups", 3, [](auto& in) { return conv2d(in[0], in[1], in[2], {2, 2}, {1, 1}, {2, 2}, 2); });
  check_golden_op("linear", 3, [](auto& in) { return linear(in[0], in[1], in[2]); });
  check_golden_op("matmul_broadcast", 2, [](auto& in) { return matmul(in[0], in[1]); });
}

TEST_CASE("golden: pooling") {
  check_golden_op("max_pool2d", 1, [](auto& in) { return max_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}); });
  check_golden_op("avg_pool2d", 1, [](auto& in) { return avg_pool2d(in[0], {2, 2}); });
  check_golden_op("adaptive_avg_pool2d", 1, [](auto& in) { return adaptive_avg_pool2d(in[0], {3, 2}); });
}

TEST_CASE("golden: normalisation") {
  kiln::test::Golden g("ops.safetensors");
  const int64_t C = g.get("batch_norm_train.in1").size(0);
  auto rm = zeros({C}, {.dtype = DType::f64}), rv = ones({C}, {.dtype = DType::f64});
  check_golden_op("batch_norm_train", 3,
                  [&](auto& in) { return batch_norm(in[0], rm, rv, in[1], in[2], true, 0.1, 1e-5); });
  check_close(rm, g.get("batch_norm_train.running_mean_after"), 1e-10, 1e-10);
  check_close(rv, g.get("batch_norm_train.running_var_after"), 1e-10, 1e-10);
  check_golden_op("layer_norm", 3, [](auto& in) { return layer_norm(in[0], {5}, in[1], in[2], 1e-5); });
}

TEST_CASE("golden: softmax, gelu, cross-entropy, var") {
  check_golden_op("softmax", 1, [](auto& in) { return softmax(in[0], -1); });
  check_golden_op("log_softmax", 1, [](auto& in) { return log_softmax(in[0], 1); });
  check_golden_op("gelu", 1, [](auto& in) { return gelu(in[0]); });
  check_golden_op("cross_entropy_smooth", 2,
                  [](auto& in) { return cross_entropy(in[0], in[1], {}, Reduction::mean, 2, 0.1); });
  check_golden_op("cross_entropy_sum", 2, [](auto& in) { return cross_entropy(in[0], in[1], {}, Reduction::sum); });
  check_golden_op("var_keepdim", 1, [](auto& in) { return var(in[0], {0, 2}, 1, true); });
}

TEST_CASE("golden in float32: conv2d within 1e-4") {
  kiln::test::Golden g("ops.safetensors");
  auto x = g.get("conv2d_plain.in0").to(DType::f32), w = g.get("conv2d_plain.in1").to(DType::f32),
       b = g.get("conv2d_plain.in2").to(DType::f32);
  check_close(conv2d(x, w, b, {1, 1}, {1, 1}), g.get("conv2d_plain.out"), 1e-4, 1e-5);
}

TEST_CASE("max_pool2d 2x2/2: first maximum wins, NaN propagates, indices point at the winner") {
  auto x = tensor(std::vector<float>{1, 3, 5, 5, 3, 2, 0, 4, NAN, 7, 2, 2, 9, NAN, 2, 2}, {1, 1, 4, 4});
  auto [y, idx] = max_pool2d_with_indices(x, {2, 2});
  auto yv = y.to_vector<float>();
  CHECK(yv[0] == 3);
  CHECK(yv[1] == 5);
  CHECK(std::isnan(yv[2]));
  CHECK(yv[3] == 2);
  // Ties keep the first position in row-major window order; the first NaN is the one reported.
  CHECK(idx.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 8, 10});
}

TEST_CASE("gelu in f32 on dense tensors (the vectorised kernels) is within 2e-7 of float64, its negative tail too") {
  // 20,001 points over [-10, 10] (an odd count: the last ones go through the padded vector), the
  // forward and the gradient against the erf form in double: absolute error below 1, relative
  // above; and, where the forward is negative (down to x = -8, value -5e-15), relative error within
  // 5e-7 * (1 + x^2): the CDF comes from erfc there, so 1 + erf(x / sqrt 2) cannot cancel (in float
  // it would lose every digit by x = -5.5).
  auto x = linspace(-10.0, 10.0, 20001, {.requires_grad = true});
  auto y = gelu(x);
  y.sum().backward();
  const auto xs = x.detach().to_vector<float>();
  const auto ys = y.detach().to_vector<float>();
  const auto gs = x.grad().to_vector<float>();
  double worst_y = 0, worst_g = 0, worst_tail = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i];
    const double cdf = 0.5 * std::erfc(-v / std::sqrt(2.0));
    const double want_y = v * cdf;
    const double want_g = cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    worst_y = std::max(worst_y, std::abs(ys[i] - want_y) / std::max(std::abs(want_y), 1.0));
    worst_g = std::max(worst_g, std::abs(gs[i] - want_g) / std::max(std::abs(want_g), 1.0));
    if (v < 0 && v >= -8)  // float's rounding of x^2 / 2 alone costs a relative x^2 * 2^-24 here
      worst_tail = std::max(worst_tail, std::abs(ys[i] - want_y) / std::abs(want_y) / (1.0 + v * v));
  }
  MESSAGE("worst error: gelu ", worst_y, ", gradient ", worst_g, ", relative in the negative tail / (1 + x^2) ",
          worst_tail);
  CHECK(worst_y < 2e-7);
  CHECK(worst_g < 2e-7);
  CHECK(worst_tail < 5e-7);

  // What the erf form gives in double at the ends: GELU(inf) = inf, GELU(-inf) = -inf * 0 = NaN, the
  // gradient NaN at both infinities (inf * a density of 0), NaN in, NaN out.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto e = tensor(std::vector<float>{-inf, inf, nan, 0.f, -0.f, 20.f, -20.f});
  e.requires_grad_();
  auto ye = gelu(e);
  ye.backward(ones({7}));
  const auto yv = ye.detach().to_vector<float>(), gv = e.grad().to_vector<float>();
  CHECK(std::isnan(yv[0]));
  CHECK(yv[1] == inf);
  CHECK(std::isnan(yv[2]));
  CHECK(yv[3] == 0.f);
  CHECK(yv[4] == 0.f);
  CHECK(yv[5] == 20.f);
  CHECK(std::abs(yv[6]) < 1e-30f);
  CHECK(std::isnan(gv[0]));
  CHECK(std::isnan(gv[1]));
  CHECK(std::isnan(gv[2]));
  CHECK(std::abs(gv[3] - 0.5f) < 2e-7f);
  CHECK(gv[5] == 1.f);
  CHECK(gv[6] == 0.f);
}
