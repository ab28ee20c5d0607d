// Fabric's set-up objects on a GPU: under "16-mixed" the seed's loop written literally (the model
// called without an autocast scope, optimizer->step()) trains exactly as the explicit form with
// the GradScaler's calls spelled out; bf16-mixed likewise; a bare loss.backward() is refused.
#include <doctest/doctest.h>

#include "gpu_helpers.h"
#include "kiln.h"

using namespace kiln;
using namespace kiln::gpu_test;

namespace {

struct Net : nn::Module {
  std::shared_ptr<nn::Conv2d> conv =
      register_module("conv", std::make_shared<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1}));
  std::shared_ptr<nn::MaxPool2d> pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2, 2));
  std::shared_ptr<nn::Linear> fc = register_module("fc", std::make_shared<nn::Linear>(8 * 8 * 8, 10));
  Tensor forward(const Tensor& x) override { return fc->forward(flatten(pool->forward(relu(conv->forward(x))), 1)); }
};

void train_both(const std::string& precision) {
  Generator g(3);
  std::vector<Tensor> xs, ys;
  for (int i = 0; i < 4; ++i) {
    xs.push_back(randn({16, 3, 16, 16}, {}, &g).to(kGpu));
    ys.push_back(randint(0, 10, {16}, {.dtype = DType::i64}, &g).to(kGpu));
  }
  const DType low = precision == "16-mixed" ? DType::f16 : DType::bf16;

  Fabric fabric({.accelerator = "gpu", .devices = "1", .precision = precision});
  manual_seed(5);
  auto model = std::make_shared<Net>();
  auto optimizer = std::make_shared<optim::SGD>(model->parameters(), 0.1);
  std::tie(model, optimizer) = fabric.setup(model, optimizer);
  for (size_t i = 0; i < xs.size(); ++i) {
    optimizer->zero_grad();
    auto out = model->forward(xs[i]);
    CHECK(out.dtype() == DType::f32);
    fabric.backward(cross_entropy(out, ys[i]));
    optimizer->step();
  }

  manual_seed(5);
  auto ref = std::make_shared<Net>();
  ref->to(kGpu);
  auto ref_opt = std::make_shared<optim::SGD>(ref->parameters(), 0.1);
  optim::GradScaler scaler;
  for (size_t i = 0; i < xs.size(); ++i) {
    ref_opt->zero_grad();
    Tensor loss;
    {
      AutocastGuard ac(DeviceType::cuda, low);
      loss = cross_entropy(ref->forward(xs[i]), ys[i]);
    }
    if (precision == "16-mixed") {
      scaler.scale(loss).backward();
      scaler.step(*ref_opt);
      scaler.update();
    } else {
      loss.backward();
      ref_opt->step();
    }
  }
  auto pm = model->named_parameters(), pr = ref->named_parameters();
  // The same computation; only cuDNN's choice of algorithm (which may sum in another order) differs.
  for (const auto& [name, p] : pm) expect_close(p, *pr.find(name), 1e-3, 1e-4, precision + " " + name);
  if (precision == "16-mixed") {
    CHECK(fabric.grad_scaler()->get_scale() == scaler.get_scale());
    optimizer->zero_grad();
    auto loss = cross_entropy(model->forward(xs[0]), ys[0]);
    CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("fabric.backward(loss)"), Error);
  }
}

}  // namespace

TEST_CASE("Fabric on a GPU: the literal loop equals the explicit form under 16-mixed" * doctest::skip(gpu_missing())) {
  train_both("16-mixed");
}

TEST_CASE("Fabric on a GPU: the literal loop equals the explicit form under bf16-mixed" *
          doctest::skip(gpu_missing())) {
  train_both("bf16-mixed");
}
