// Every differentiable op against central finite differences in float64, including broadcasting
// and non-contiguous inputs.
#include "helpers.h"

using namespace kiln;

namespace {

Tensor rnd(Shape s, double lo = -1, double hi = 1) {
  static Generator gen(7);
  return rand(std::move(s), {.dtype = DType::f64}, &gen) * (hi - lo) + lo;
}

void expect_grad(const char* what, const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                 std::vector<Tensor> inputs) {
  auto r = gradcheck(fn, std::move(inputs));
  const std::string label = std::string(what) + ": " + r.message;
  INFO(label);
  CHECK(r.ok);
}

}  // namespace

TEST_CASE("gradcheck: elementwise arithmetic with broadcasting") {
  expect_grad("add", [](auto& in) { return add(in[0], in[1], 0.5); }, {rnd({3, 4}), rnd({4})});
  expect_grad("sub", [](auto& in) { return in[0] - in[1]; }, {rnd({3, 1}), rnd({1, 4})});
  expect_grad("mul", [](auto& in) { return in[0] * in[1]; }, {rnd({2, 3}), rnd({2, 1})});
  expect_grad("div", [](auto& in) { return in[0] / in[1]; }, {rnd({2, 3}), rnd({3}, 0.5, 2)});
  expect_grad("pow tensor", [](auto& in) { return pow(in[0], in[1]); }, {rnd({4}, 0.5, 2), rnd({4})});
  expect_grad("pow scalar", [](auto& in) { return pow(in[0], 3.0); }, {rnd({5})});
  expect_grad("scalar ops", [](auto& in) { return (2.0 - in[0]) / 3.0 + 1.0 / (in[0] + 3.0); }, {rnd({5})});
  expect_grad("maximum", [](auto& in) { return maximum(in[0], in[1]); }, {rnd({6}), rnd({6})});
  expect_grad("minimum", [](auto& in) { return minimum(in[0], in[1]); }, {rnd({6}), rnd({6})});
}

TEST_CASE("gradcheck: unary ops") {
  auto x = rnd({7});
  expect_grad("neg", [](auto& in) { return neg(in[0]); }, {x});
  expect_grad("abs", [](auto& in) { return abs(in[0]); }, {rnd({7}, 0.1, 1)});
  expect_grad("exp", [](auto& in) { return exp(in[0]); }, {x});
  expect_grad("log", [](auto& in) { return log(in[0]); }, {rnd({7}, 0.5, 2)});
  expect_grad("sqrt", [](auto& in) { return sqrt(in[0]); }, {rnd({7}, 0.5, 2)});
  expect_grad("rsqrt", [](auto& in) { return rsqrt(in[0]); }, {rnd({7}, 0.5, 2)});
  expect_grad("square", [](auto& in) { return square(in[0]); }, {x});
  expect_grad("relu", [](auto& in) { return relu(in[0]); },
              {rnd({7}, 0.1, 1) * tensor(std::vector<double>{1, -1, 1, -1, 1, -1, 1})});
  expect_grad("leaky_relu", [](auto& in) { return leaky_relu(in[0], 0.2); },
              {rnd({7}, 0.1, 1) * tensor(std::vector<double>{1, -1, 1, -1, 1, -1, 1})});
  expect_grad("gelu", [](auto& in) { return gelu(in[0]); }, {rnd({7}, -3, 3)});
  expect_grad("gelu tanh", [](auto& in) { return gelu(in[0], "tanh"); }, {rnd({7}, -3, 3)});
  expect_grad("sigmoid", [](auto& in) { return sigmoid(in[0]); }, {x});
  expect_grad("tanh", [](auto& in) { return tanh(in[0]); }, {x});
  expect_grad("clamp", [](auto& in) { return clamp(in[0], -0.5, 0.5); }, {rnd({7}, -0.45, 0.45) * 2});
  expect_grad("where", [](auto& in) { return where(gt(in[0], 0.0), in[0] * 2, in[1]); }, {rnd({6}), rnd({6})});
}

TEST_CASE("gradcheck: reductions") {
  auto x = rnd({3, 4, 2});
  expect_grad("sum", [](auto& in) { return sum(in[0], {1}); }, {x});
  expect_grad("sum keepdim", [](auto& in) { return sum(in[0], {0, 2}, true); }, {x});
  expect_grad("mean", [](auto& in) { return mean(in[0], {-1}); }, {x});
  expect_grad("var", [](auto& in) { return var(in[0], {0, 2}, 1, true); }, {x});
  expect_grad("std", [](auto& in) { return kiln::std(in[0], {1}); }, {x});
  expect_grad("amax", [](auto& in) { return amax(in[0], {1}); }, {x});
  expect_grad("max dim", [](auto& in) { return std::get<0>(max(in[0], 2)); }, {x});
  expect_grad("min dim", [](auto& in) { return std::get<0>(min(in[0], 0, true)); }, {x});
  expect_grad("norm", [](auto& in) { return norm(in[0]); }, {x});
}

TEST_CASE("gradcheck: views and non-contiguous inputs") {
  auto x = rnd({4, 3}).t();  // non-contiguous
  expect_grad("transpose", [](auto& in) { return in[0].transpose(0, 1) * 2; }, {x});
  expect_grad("permute", [](auto& in) { return in[0].permute({1, 0}).reshape({-1}); }, {x});
  expect_grad("slice", [](auto& in) { return in[0].slice(1, 1, 4, 2); }, {x});
  expect_grad("select", [](auto& in) { return in[0].select(0, 1); }, {x});
  expect_grad("expand", [](auto& in) { return in[0].unsqueeze(0).expand({2, 3, 4}); }, {x});
  expect_grad("cat", [](auto& in) { return cat({in[0], in[1]}, 1); }, {x, rnd({3, 2})});
  expect_grad("stack", [](auto& in) { return stack({in[0], in[1]}, 1); }, {rnd({3}), rnd({3})});
  expect_grad("index_select",
              [](auto& in) {
                return index_select(in[0], 1, tensor(std::vector<int64_t>{3, 0, 3}));
              },
              {x});
}

TEST_CASE("gradcheck: matmul family") {
  expect_grad("matmul 2d", [](auto& in) { return matmul(in[0], in[1]); }, {rnd({3, 4}), rnd({4, 2})});
  expect_grad("matmul batched broadcast", [](auto& in) { return matmul(in[0], in[1]); },
              {rnd({2, 1, 3, 4}), rnd({3, 4, 2})});
  expect_grad("matmul vec", [](auto& in) { return matmul(in[0], in[1]); }, {rnd({4}), rnd({4, 2})});
  expect_grad("matmul transposed", [](auto& in) { return matmul(in[0].t(), in[1]); }, {rnd({4, 3}), rnd({4, 2})});
  expect_grad("linear", [](auto& in) { return linear(in[0], in[1], in[2]); }, {rnd({2, 3, 4}), rnd({5, 4}), rnd({5})});
}

TEST_CASE("gradcheck: convolution and pooling") {
  expect_grad("conv2d",
              [](auto& in) {
                return conv2d(in[0], in[1], in[2], {1, 1}, {1, 1});
              },
              {rnd({2, 2, 5, 5}), rnd({3, 2, 3, 3}), rnd({3})});
  expect_grad("conv2d strided dilated grouped",
              [](auto& in) {
                return conv2d(in[0], in[1], in[2], {2, 1}, {1, 2}, {2, 1}, 2);
              },
              {rnd({1, 4, 6, 5}), rnd({2, 2, 2, 3}), rnd({2})});
  expect_grad("conv2d no bias, non-contiguous input", [](auto& in) { return conv2d(in[0].transpose(2, 3), in[1]); },
              {rnd({1, 1, 5, 4}), rnd({2, 1, 2, 2})});
  expect_grad("max_pool2d", [](auto& in) { return max_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}); }, {rnd({1, 2, 5, 5})});
  expect_grad("avg_pool2d",
              [](auto& in) {
                return avg_pool2d(in[0], {2, 2}, {1, 1}, {1, 1}, false);
              },
              {rnd({1, 2, 4, 4})});
  expect_grad("adaptive_avg_pool2d", [](auto& in) { return adaptive_avg_pool2d(in[0], {2, 3}); }, {rnd({1, 2, 5, 7})});
}

TEST_CASE("gradcheck: normalisation, softmax, losses, embedding") {
  expect_grad("batch_norm", [](auto& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); },
              {rnd({3, 2, 2, 2}), rnd({2}), rnd({2})});
  expect_grad("layer_norm", [](auto& in) { return layer_norm(in[0], {4}, in[1], in[2]); },
              {rnd({3, 4}), rnd({4}), rnd({4})});
  expect_grad("softmax", [](auto& in) { return softmax(in[0], 1); }, {rnd({2, 3, 2})});
  expect_grad("log_softmax", [](auto& in) { return log_softmax(in[0], -1); }, {rnd({3, 4})});
  auto t = tensor(std::vector<int64_t>{0, 2, 1, 2});
  expect_grad("cross_entropy", [&](auto& in) { return cross_entropy(in[0], t); }, {rnd({4, 3})});
  // Class weights are constants (PyTorch does not differentiate nll_loss by its weight either).
  auto cw = rnd({3}, 0.5, 1.5);
  expect_grad("cross_entropy weighted smoothed ignore",
              [&](auto& in) { return cross_entropy(in[0], t, cw, Reduction::mean, 1, 0.2); }, {rnd({4, 3})});
  expect_grad("cross_entropy spatial",
              [&](auto& in) {
                return cross_entropy(in[0], tensor(std::vector<int64_t>{0, 1, 2, 1}, {1, 2, 2}), {}, Reduction::none);
              },
              {rnd({1, 3, 2, 2})});
  expect_grad("nll_loss sum", [&](auto& in) { return nll_loss(in[0], t, {}, Reduction::sum); }, {rnd({4, 3})});
  expect_grad("mse_loss", [](auto& in) { return mse_loss(in[0], in[1]); }, {rnd({5}), rnd({5})});
  expect_grad("embedding",
              [](auto& in) {
                return embedding(tensor(std::vector<int64_t>{1, 1, 0}), in[0]);
              },
              {rnd({3, 2})});
  expect_grad("dropout (fixed mask)",
              [](auto& in) {
                Generator g(3);
                return dropout(in[0], 0.5, true, &g);
              },
              {rnd({8})});
}
