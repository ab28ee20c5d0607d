// The tape: accumulation, retain_graph, NoGrad, detach, hooks, version counters, pruning.
#include "helpers.h"

using namespace kiln;
using kiln::test::check_values;

TEST_CASE("backward accumulates into leaves and clears the tape") {
  autograd::clear_tape();
  auto x = tensor(std::vector<double>{1, 2, 3}, {3}, {.dtype = DType::f64, .requires_grad = true});
  auto y = (x * x).sum();
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  y.backward();
  check_values(x.grad(), {2, 4, 6});
  CHECK(autograd::tape_size() == 0);
  (x * 3).sum().backward();
  check_values(x.grad(), {5, 7, 9});
}

TEST_CASE("the second backward without retain_graph is a clear error") {
  auto x = ones({2}, {.requires_grad = true});
  auto y = (x * 2).sum();
  y.backward({}, true);
  y.backward();
  check_values(x.grad(), {4, 4});
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("second time"), Error);
}

TEST_CASE("backward needs grad and a scalar (or an explicit gradient)") {
  auto x = ones({2});
  CHECK_THROWS_WITH_AS((x * 2).sum().backward(), doctest::Contains("does not require grad"), Error);
  auto w = ones({2}, {.requires_grad = true});
  CHECK_THROWS_WITH_AS((w * 2).backward(), doctest::Contains("one-element"), Error);
  (w * 2).backward(tensor(std::vector<float>{1, 10}));
  check_values(w.grad(), {2, 20});
}

TEST_CASE("NoGradGuard, EnableGradGuard and detach stop recording") {
  auto w = ones({2}, {.requires_grad = true});
  {
    NoGradGuard g;
    auto y = w * 2;
    CHECK_FALSE(y.requires_grad());
    {
      EnableGradGuard e;
      CHECK((w * 2).requires_grad());
    }
  }
  CHECK_FALSE(w.detach().requires_grad());
  auto z = (w.detach() * 2 + w).sum();
  z.backward();
  check_values(w.grad(), {1, 1});
}

TEST_CASE("gradients flow through views, broadcasting and dtype casts") {
  auto x = arange(6, {.dtype = DType::f64}).reshape({2, 3}).requires_grad_(true);
  auto b = ones({3}, {.dtype = DType::f32, .requires_grad = true});
  auto y = (x.t() * 1.0).transpose(0, 1) + b;  // b broadcast over rows, cast to f64
  y.select(1, 2).sum().backward();
  check_values(x.grad(), {0, 0, 1, 0, 0, 1});
  CHECK(b.grad().dtype() == DType::f32);
  check_values(b.grad(), {0, 0, 2});
}

TEST_CASE("post-accumulate hooks fire once the leaf's gradient is final") {
  auto w = ones({2}, {.requires_grad = true});
  int calls = 0;
  Tensor seen;
  w.register_post_accumulate_grad_hook([&](Tensor& g) {
    ++calls;
    seen = g.clone();
  });
  auto y = (w * 2).sum() + (w * 3).sum();  // w used twice
  y.backward();
  CHECK(calls == 1);
  check_values(seen, {5, 5});
}

TEST_CASE("modifying a saved tensor in place is detected") {
  auto w = ones({3}, {.requires_grad = true});
  auto a = w * 2;
  auto b = a * a;  // saves a
  a.mul_(3.0);     // a is not a leaf: allowed, but b's gradient is now wrong
  CHECK_THROWS_WITH_AS(b.sum().backward(), doctest::Contains("modified by an in-place operation"), Error);
  autograd::clear_tape();
}

TEST_CASE("in-place ops on non-leaves are differentiable") {
  auto w = tensor(std::vector<float>{-1, 2}, {2}, {.requires_grad = true});
  auto a = w * 1.0;
  relu_(a);
  a.add_(1.0);
  a.sum().backward();
  check_values(w.grad(), {0, 1});
}

TEST_CASE("leaf gradients do not alias each other") {
  auto a = ones({2}, {.requires_grad = true});
  auto b = ones({2}, {.requires_grad = true});
  (a + b).sum().backward();
  {
    NoGradGuard g;
    a.grad().mul_(5.0);
  }
  check_values(b.grad(), {1, 1});
}

TEST_CASE("a forward pass that is never differentiated does not grow the tape forever") {
  autograd::clear_tape();
  auto w = ones({4}, {.requires_grad = true});
  for (int i = 0; i < 20000; ++i) { auto y = (w * 2).sum(); }
  CHECK(autograd::tape_size() < 10000);
  autograd::clear_tape();
}

TEST_CASE("max/min gradients go to the arg positions; ties share") {
  auto x = tensor(std::vector<double>{1, 3, 3, 0}, {4}, {.dtype = DType::f64, .requires_grad = true});
  max(x).backward();
  check_values(x.grad(), {0, 0.5, 0.5, 0});
  auto y = tensor(std::vector<double>{1, 5, 2, 7}, {2, 2}, {.dtype = DType::f64, .requires_grad = true});
  std::get<0>(max(y, 1)).sum().backward();
  check_values(y.grad(), {0, 1, 0, 1});
}

TEST_CASE("two graphs on one tape: backward of one leaves the other intact") {
  auto a = ones({2}, {.requires_grad = true});
  auto b = ones({2}, {.requires_grad = true});
  auto ya = (a * 2).sum();
  auto yb = (b * 3);  // recorded before ya's backward
  ya.backward();
  (yb * 1.0).sum().backward();
  check_values(a.grad(), {2, 2});
  REQUIRE(b.grad().defined());
  check_values(b.grad(), {3, 3});
}

TEST_CASE("a graph freed by an earlier backward is an error, not a silent zero gradient") {
  auto w = ones({2}, {.requires_grad = true});
  auto h = w * 2;
  (h * 1.0).sum().backward();  // frees h's node
  CHECK_THROWS_WITH_AS((h * 5.0).sum().backward(), doctest::Contains("already freed"), Error);
}
