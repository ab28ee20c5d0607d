// Autocast policy: output dtypes per op, cast caching, nesting/disabling, NoGrad, gradients.
#include "helpers.h"

using namespace kiln;

TEST_CASE("autocast runs conv/matmul/linear low and reductions/losses in f32") {
  manual_seed(0);
  auto x = randn({2, 3, 8, 8});
  auto w = randn({4, 3, 3, 3}, {.requires_grad = true});
  auto fw = randn({5, 16}, {.requires_grad = true});
  auto y = tensor(std::vector<int64_t>{1, 4});
  AutocastGuard ac(DeviceType::cpu, DType::bf16);
  auto c = conv2d(x, w, {}, {1, 1}, {1, 1});
  CHECK(c.dtype() == DType::bf16);
  auto h = relu(c);
  CHECK(h.dtype() == DType::bf16);  // other ops keep/promote
  auto pooled = max_pool2d(h, {2, 2});
  CHECK(pooled.dtype() == DType::bf16);
  auto logits = linear(pooled.flatten(1).narrow(1, 0, 16), fw);
  CHECK(logits.dtype() == DType::bf16);
  CHECK(matmul(randn({2, 3}), randn({3, 2})).dtype() == DType::bf16);
  CHECK(softmax(logits, 1).dtype() == DType::f32);
  CHECK(log_softmax(logits, 1).dtype() == DType::f32);
  CHECK(sum(logits).dtype() == DType::f32);
  CHECK(mean(logits).dtype() == DType::f32);
  CHECK(exp(logits).dtype() == DType::f32);
  CHECK((logits + randn({2, 5})).dtype() == DType::f32);  // promotion to the widest input
  auto loss = cross_entropy(logits, y);
  CHECK(loss.dtype() == DType::f32);
  loss.backward();
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::f32);  // f32 leaves get f32 gradients
  CHECK(fw.grad().dtype() == DType::f32);
}

TEST_CASE("autocast gives results close to f32") {
  manual_seed(1);
  auto x = randn({4, 3, 8, 8});
  auto w = randn({6, 3, 3, 3}) * 0.2;
  auto ref = conv2d(x, w, {}, {1, 1}, {1, 1});
  Tensor low;
  {
    AutocastGuard ac(DeviceType::cpu);
    low = conv2d(x, w, {}, {1, 1}, {1, 1});
  }
  // bf16 has 8 significant bits: inputs and the output are rounded once each.
  auto err = max(abs(low.to(DType::f32) - ref)).item<float>();
  auto scale = max(abs(ref)).item<float>();
  CHECK(err < 0.02f * scale);
}

TEST_CASE("a weight used twice in one scope is cast once") {
  auto w = randn({4, 4}, {.requires_grad = true});
  AutocastGuard ac(DeviceType::cpu);
  auto x = randn({2, 4});
  // The first matmul records the weight's cast; the second reuses it and records one node less.
  size_t t0 = autograd::tape_size();
  auto y = matmul(x, w);
  size_t t1 = autograd::tape_size();
  auto z = matmul(x, w);
  size_t t2 = autograd::tape_size();
  CHECK(t2 - t1 == t1 - t0 - 1);
  CHECK(autocast::to_low(w).is_same(autocast::to_low(w)));
  (y.sum() + z.sum()).backward();
  CHECK(w.grad().dtype() == DType::f32);
}

TEST_CASE("nested scopes restore the outer state; enabled=false turns autocast off") {
  CHECK_FALSE(autocast::is_enabled(DeviceType::cpu));
  {
    AutocastGuard outer(DeviceType::cpu, DType::bf16);
    CHECK(autocast::is_enabled(DeviceType::cpu));
    {
      AutocastGuard inner(DeviceType::cpu, DType::bf16, false);
      CHECK_FALSE(autocast::is_enabled(DeviceType::cpu));
      CHECK(matmul(randn({2, 2}), randn({2, 2})).dtype() == DType::f32);
    }
    CHECK(autocast::is_enabled(DeviceType::cpu));
    {
      AutocastGuard inner(DeviceType::cpu, DType::f16);
      CHECK(matmul(randn({2, 2}), randn({2, 2})).dtype() == DType::f16);
    }
    CHECK(autocast::dtype(DeviceType::cpu) == DType::bf16);
  }
  CHECK_FALSE(autocast::is_enabled(DeviceType::cpu));
  CHECK_FALSE(autocast::is_enabled(DeviceType::cuda));
  CHECK_THROWS_AS(AutocastGuard(DeviceType::cpu, DType::f32), Error);
}

TEST_CASE("autocast under NoGradGuard casts without recording") {
  auto w = randn({3, 3}, {.requires_grad = true});
  NoGradGuard ng;
  AutocastGuard ac(DeviceType::cpu);
  auto y = matmul(randn({2, 3}), w);
  CHECK(y.dtype() == DType::bf16);
  CHECK_FALSE(y.requires_grad());
}

TEST_CASE("f64 tensors are left alone") {
  AutocastGuard ac(DeviceType::cpu);
  auto a = randn({2, 2}, {.dtype = DType::f64});
  CHECK(matmul(a, a).dtype() == DType::f64);
}
