// A graph whose outputs are all gone is freed at once: forwards that are never backpropagated
// (outside NoGradGuard) keep the memory flat, measured through kiln's CPU allocation statistics.
#include "helpers.h"

using namespace kiln;

namespace {

struct Mlp {
  Tensor w1 = randn({64, 256}, {.requires_grad = true});
  Tensor w2 = randn({256, 10}, {.requires_grad = true});
  Tensor operator()(const Tensor& x) const { return log_softmax(relu(matmul(x, w1)).matmul(w2), -1); }
};

size_t allocated() { return cpu::memory_stats().allocated; }

}  // namespace

TEST_CASE("graph memory: forwards that are never backpropagated do not accumulate") {
  autograd::clear_tape();
  manual_seed(0);
  Mlp mlp;
  Tensor x = randn({128, 64});
  { Tensor warm = mlp(x).sum(); }
  const size_t base = allocated();
  size_t highest = 0;
  for (int i = 0; i < 300; ++i) {
    Tensor loss = mlp(x).sum();  // recorded: the weights require grad
    CHECK(loss.requires_grad());
    highest = std::max(highest, allocated());
  }
  // Each iteration's activations (128x256 and more) were freed as its loss went out of scope.
  CHECK(allocated() == base);
  CHECK(highest - base < size_t(1) << 20);
  CHECK(autograd::tape_size() < 300);  // node shells are dropped as the tape grows
}

TEST_CASE("graph memory: a graph lives as long as one of its outputs, and backward still works") {
  autograd::clear_tape();
  Mlp mlp;
  Tensor x = randn({128, 64});
  const size_t base = allocated();
  Tensor kept = mlp(x);
  Tensor dropped_sibling = mlp(x).sum();
  dropped_sibling = Tensor();
  const size_t with_graph = allocated();
  CHECK(with_graph > base + 128 * 256 * 4);  // the saved hidden activations stay
  kept.sum().backward();
  CHECK(mlp.w1.grad().defined());
  mlp.w1.set_grad({});
  mlp.w2.set_grad({});
  kept = Tensor();
  CHECK(allocated() == base);
}

TEST_CASE("graph memory: a long chain is released without deep recursion") {
  autograd::clear_tape();
  Tensor w = ones({4}, {.requires_grad = true});
  const size_t base = allocated();
  {
    Tensor y = w;
    for (int i = 0; i < 200000; ++i) y = y * 1.0;
  }  // 200000 nodes go at once
  CHECK(allocated() == base);
  CHECK(autograd::tape_size() > 0);
  Tensor z = (w * 2).sum();
  z.backward();
  CHECK(w.grad().to_vector<float>() == std::vector<float>{2, 2, 2, 2});
}

TEST_CASE("cpu::memory_stats counts allocations and the peak") {
  cpu::reset_peak_memory_stats();
  const auto before = cpu::memory_stats();
  {
    Tensor big = zeros({1 << 20});
    CHECK(cpu::memory_stats().allocated >= before.allocated + (size_t(4) << 20));
  }
  const auto after = cpu::memory_stats();
  CHECK(after.allocated == before.allocated);
  CHECK(after.peak_allocated >= before.allocated + (size_t(4) << 20));
  CHECK(after.num_allocs > before.num_allocs);
}
