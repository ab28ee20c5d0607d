// Layers: default initialisation ranges, forward values against the core ops, mode-dependent
// behaviour (dropout, batch norm running stats), init functions and functional spellings.
#include <cmath>

#include "helpers.h"
#include "nn/nn.h"

using namespace kiln;
using kiln::test::check_close;
namespace nn = kiln::nn;
namespace F = kiln::nn::functional;

TEST_CASE("Linear and Conv2d: PyTorch's default initialisation bounds") {
  manual_seed(1);
  nn::Linear fc(50, 20);
  const double bound = 1.0 / std::sqrt(50.0);
  CHECK(fc.weight.abs().max().item<double>() <= bound);
  CHECK(fc.weight.abs().max().item<double>() > 0.9 * bound);  // uses the whole range
  CHECK(fc.bias.abs().max().item<double>() <= bound);
  nn::Conv2d conv(8, 6, {3, 2}, {.groups = 2, .bias = false});
  CHECK(conv.weight.sizes() == Shape{6, 4, 3, 2});
  CHECK_FALSE(conv.bias.defined());
  CHECK(conv.parameters().size() == 1);
  CHECK(conv.weight.abs().max().item<double>() <= 1.0 / std::sqrt(4.0 * 6.0));
  CHECK_THROWS_WITH_AS(nn::Conv2d(3, 4, 3, {.groups = 2}), doctest::Contains("divisible by groups"), Error);
  CHECK_THROWS_WITH_AS(nn::Linear(0, 3), doctest::Contains("must be positive"), Error);
}

TEST_CASE("Layers forward through the core ops") {
  manual_seed(2);
  Tensor x = randn({2, 3, 8, 8});
  nn::Conv2d conv(3, 4, 3, {.stride = 2, .padding = 1});
  check_close(conv.forward(x), kiln::conv2d(x, conv.weight, conv.bias, {2, 2}, {1, 1}));
  CHECK(nn::MaxPool2d(2).forward(x).sizes() == Shape{2, 3, 4, 4});
  CHECK(nn::AvgPool2d(2, 1).forward(x).sizes() == Shape{2, 3, 7, 7});
  CHECK(nn::AdaptiveAvgPool2d({1, 2}).forward(x).sizes() == Shape{2, 3, 1, 2});
  CHECK(nn::Flatten().forward(x).sizes() == Shape{2, 192});
  check_close(nn::ReLU().forward(x), kiln::relu(x));
  check_close(nn::GELU("tanh").forward(x), kiln::gelu(x, "tanh"));
  CHECK_THROWS_WITH_AS(nn::MaxPool2d(2, 2, 2), doctest::Contains("at most half"), Error);

  auto seq = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(4, 8), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(8, 2)});
  CHECK(seq->named_parameters().keys() == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  Tensor v = randn({5, 4});
  auto l0 = seq->at<nn::Linear>(0), l2 = seq->at<nn::Linear>(2);
  check_close(seq->forward(v), kiln::linear(kiln::relu(kiln::linear(v, l0->weight, l0->bias)), l2->weight, l2->bias));
  CHECK_THROWS_AS(seq->at<nn::Linear>(1), Error);
  CHECK_THROWS_AS((*seq)[3], Error);
}

TEST_CASE("BatchNorm2d: running statistics, counter and evaluation mode") {
  manual_seed(3);
  nn::BatchNorm2d bn(3);
  Tensor x = randn({4, 3, 5, 5}) * 2.0 + 1.0;
  Tensor y = bn.forward(x);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  Tensor batch_mean = x.mean({0, 2, 3});
  check_close(bn.running_mean, batch_mean * 0.1, 1e-5, 1e-6);
  check_close(bn.running_var, 0.9 + 0.1 * var(x, {0, 2, 3}), 1e-5, 1e-6);
  check_close(y.mean({0, 2, 3}), zeros({3}), 0, 1e-5);
  bn.eval();
  Tensor z = bn.forward(x);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  Tensor expect = (x - bn.running_mean.reshape({1, 3, 1, 1})) / sqrt(bn.running_var.reshape({1, 3, 1, 1}) + 1e-5);
  check_close(z, expect, 1e-5, 1e-5);

  nn::BatchNorm2d cumulative(3, {.momentum = std::nullopt});
  cumulative.forward(x);
  Tensor x2 = randn({4, 3, 5, 5});
  cumulative.forward(x2);
  check_close(cumulative.running_mean, (batch_mean + x2.mean({0, 2, 3})) / 2.0, 1e-5, 1e-6);

  nn::BatchNorm2d stateless(3, {.affine = false, .track_running_stats = false});
  CHECK(stateless.state_dict().empty());
  stateless.eval();
  check_close(stateless.forward(x).mean({0, 2, 3}), zeros({3}), 0, 1e-5);  // batch stats still
  CHECK_THROWS_WITH_AS(bn.forward(randn({3, 5})), doctest::Contains("expected 4D input"), Error);
}

TEST_CASE("LayerNorm, Dropout and Embedding") {
  manual_seed(4);
  nn::LayerNorm ln(Shape{6});
  Tensor x = randn({2, 6});
  Tensor m = x.mean({1}, true);
  check_close(ln.forward(x), (x - m) / sqrt(var(x, {1}, 0, true) + 1e-5), 1e-5, 1e-5);

  nn::Dropout drop(0.5);
  Tensor ones_in = ones({1000});
  Tensor d = drop.forward(ones_in);
  const double kept = gt(d, 0.0).to(DType::f32).sum().item<double>();
  CHECK(kept > 400);
  CHECK(kept < 600);
  check_close(d.max(), scalar_tensor(2.0));
  drop.eval();
  CHECK(equal(drop.forward(ones_in), ones_in));
  CHECK_THROWS_WITH_AS(nn::Dropout(1.5), doctest::Contains("between 0 and 1, but got 1.5"), Error);

  nn::Embedding emb(10, 3, /*padding_idx=*/0);
  CHECK(emb.weight.select(0, 0).abs().sum().item<double>() == 0.0);
  Tensor idx = tensor<int64_t>({0, 2, 2}, {3});
  Tensor out = emb.forward(idx);
  CHECK(out.sizes() == Shape{3, 3});
  check_close(out.select(0, 1), emb.weight.select(0, 2));
  out.sum().backward();
  CHECK(emb.weight.grad().select(0, 0).abs().sum().item<double>() == 0.0);
  check_close(emb.weight.grad().select(0, 2), full({3}, 2.0));
}

TEST_CASE("nn::init: fans, gains and distributions") {
  Tensor w = empty({64, 32, 3, 3});
  auto [fan_in, fan_out] = nn::init::calculate_fan_in_and_fan_out(w);
  CHECK(fan_in == 32 * 9);
  CHECK(fan_out == 64 * 9);
  CHECK_THROWS_WITH_AS(nn::init::calculate_fan_in_and_fan_out(empty({5})), doctest::Contains("fewer than 2 dimensions"),
                       Error);
  CHECK(nn::init::calculate_gain("relu") == doctest::Approx(std::sqrt(2.0)));
  CHECK(nn::init::calculate_gain("tanh") == doctest::Approx(5.0 / 3.0));
  CHECK_THROWS_AS(nn::init::calculate_gain("swish"), Error);

  Generator gen(7);
  nn::init::kaiming_normal_(w, 0.0, "fan_out", "relu", &gen);
  CHECK(kiln::std(w).item<double>() == doctest::Approx(std::sqrt(2.0 / (64 * 9))).epsilon(0.03));
  nn::init::xavier_uniform_(w, 1.0, &gen);
  CHECK(w.abs().max().item<double>() <= std::sqrt(6.0 / (32 * 9 + 64 * 9)));
  nn::init::xavier_normal_(w, 2.0, &gen);
  CHECK(kiln::std(w).item<double>() == doctest::Approx(2.0 * std::sqrt(2.0 / (32 * 9 + 64 * 9))).epsilon(0.03));
  nn::init::kaiming_uniform_(w, 0.0, "fan_in", "relu", &gen);
  CHECK(w.abs().max().item<double>() <= std::sqrt(6.0 / (32 * 9)));
  CHECK_THROWS_WITH_AS(nn::init::kaiming_uniform_(w, 0.0, "fan_avg"), doctest::Contains("mode must be"), Error);
  // The same generator state gives the same values.
  Generator g1(9), g2(9);
  Tensor a = empty({4, 4}), b = empty({4, 4});
  nn::init::normal_(a, 0.0, 1.0, &g1);
  nn::init::normal_(b, 0.0, 1.0, &g2);
  CHECK(equal(a, b));
  nn::init::eye_(a);
  CHECK(a.sum().item<double>() == 4.0);
  nn::init::constant_(a, 0.5);
  CHECK(a.sum().item<double>() == 8.0);
}

TEST_CASE("nn::functional: string reductions and options") {
  Tensor logits = tensor<double>({1, 2, 3, 1, 0, -1}, {2, 3});
  Tensor y = tensor<int64_t>({2, 0}, {2});
  Tensor none = F::cross_entropy(logits, y, {.reduction = "none"});
  CHECK(none.sizes() == Shape{2});
  check_close(F::cross_entropy(logits, y), none.mean());
  check_close(F::cross_entropy(logits, y, {.reduction = "sum"}), none.sum());
  CHECK_THROWS_WITH_AS(F::cross_entropy(logits, y, {.reduction = "avg"}), doctest::Contains("\"avg\""), Error);
  check_close(F::l1_loss(logits, zeros_like(logits)), scalar_tensor(8.0 / 6.0, {.dtype = DType::f64}));
  check_close(F::mse_loss(logits, zeros_like(logits), "sum"), scalar_tensor(16.0, {.dtype = DType::f64}));
  CHECK_THROWS_WITH_AS(F::dropout(logits, -0.1), doctest::Contains("between 0 and 1"), Error);
}
