// Fabric::setup puts the precision and the strategy into the user's own objects: the model computes
// under the precision however it is called, optimizer->step() goes through the loss scaler, and a
// bare loss.backward() is reported where fabric.backward(loss) is needed. The seed's loop, written
// literally, trains exactly as the explicit form (autocast scope, GradScaler calls) does.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <functional>

#include "fabric/fabric.h"
#include "helpers.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace kiln;

namespace {

// A model of one's own, written as SimpleCNN is (its forward calls its layers' forward()).
struct SmallCnn : nn::Module {
  std::shared_ptr<nn::Conv2d> conv =
      register_module("conv", std::make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions{.padding = 1}));
  std::shared_ptr<nn::MaxPool2d> pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2, 2));
  std::shared_ptr<nn::Linear> fc = register_module("fc", std::make_shared<nn::Linear>(4 * 4 * 4, 10));
  Tensor forward(const Tensor& x) override {
    auto h = pool->forward(relu(conv->forward(x)));
    return fc->forward(flatten(h, 1));
  }
};

struct Batches {
  std::vector<Tensor> x, y;
  explicit Batches(int n) {
    Generator g(7);
    for (int i = 0; i < n; ++i) {
      x.push_back(randn({8, 3, 8, 8}, {}, &g));
      y.push_back(randint(0, 10, {8}, {.dtype = DType::i64}, &g));
    }
  }
};

void check_same_parameters(nn::Module& a, nn::Module& b, double tol) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (const auto& [name, t] : pa) {
    CAPTURE(name);
    test::check_close(t.detach().to(DType::f64), pb.find(name)->detach().to(DType::f64), tol, tol);
  }
}

// Today's explicit form without Fabric: an autocast scope around forward and loss, the scaler's
// calls spelled out (16-mixed).
void train_explicit(SmallCnn& model, optim::Optimizer& opt, const Batches& data, std::optional<DType> low,
                    optim::GradScaler* scaler) {
  for (size_t i = 0; i < data.x.size(); ++i) {
    opt.zero_grad();
    Tensor loss;
    {
      AutocastGuard ac(DeviceType::cpu, low.value_or(DType::bf16), low.has_value());
      loss = cross_entropy(model.forward(data.x[i]), data.y[i]);
    }
    if (scaler) {
      scaler->scale(loss).backward();
      scaler->step(opt);
      scaler->update();
    } else {
      loss.backward();
      opt.step();
    }
  }
}

}  // namespace

TEST_CASE("setup: the seed's loop written literally trains as the explicit form (32-true, bf16-mixed)") {
  const Batches data(3);
  for (const char* precision : {"32-true", "bf16-mixed"}) {
    for (bool call_operator : {false, true}) {
      CAPTURE(precision);
      CAPTURE(call_operator);
      const bool mixed = std::string(precision) == "bf16-mixed";
      manual_seed(1);
      auto ref = std::make_shared<SmallCnn>();
      auto ref_opt = std::make_shared<optim::AdamW>(ref->parameters(), 1e-2);
      train_explicit(*ref, *ref_opt, data, mixed ? std::optional(DType::bf16) : std::nullopt, nullptr);

      Fabric fabric({.accelerator = "cpu", .precision = precision});
      manual_seed(1);
      auto model = std::make_shared<SmallCnn>();
      auto optimizer = std::make_shared<optim::AdamW>(model->parameters(), 1e-2);
      std::tie(model, optimizer) = fabric.setup(model, optimizer);
      // What the layers compute inside (a hook registered after setup sits inside Fabric's).
      DType conv_out = DType::f64;
      model->conv->register_forward_hook([&](nn::Module&, const Tensor&, const Tensor& out) {
        conv_out = out.dtype();
        return std::nullopt;
      });
      for (size_t i = 0; i < data.x.size(); ++i) {
        optimizer->zero_grad();
        Tensor output = call_operator ? (*model)(data.x[i]) : model->forward(data.x[i]);
        CHECK(output.dtype() == DType::f32);
        auto loss = cross_entropy(output, data.y[i]);
        fabric.backward(loss);
        optimizer->step();
      }
      CHECK(conv_out == (mixed ? DType::bf16 : DType::f32));
      check_same_parameters(*model, *ref, 0.0);
    }
  }
  // The explicit form keeps working on a set-up model: fabric.autocast() and fabric.step().
  Fabric fabric({.accelerator = "cpu", .precision = "bf16-mixed"});
  manual_seed(1);
  auto model = std::make_shared<SmallCnn>();
  auto optimizer = std::make_shared<optim::AdamW>(model->parameters(), 1e-2);
  std::tie(model, optimizer) = fabric.setup(model, optimizer);
  for (size_t i = 0; i < data.x.size(); ++i) {
    optimizer->zero_grad();
    Tensor loss;
    {
      auto ac = fabric.autocast();
      loss = cross_entropy(model->forward(data.x[i]), data.y[i]);
    }
    fabric.backward(loss);
    CHECK(fabric.step(optimizer));
  }
  manual_seed(1);
  auto ref = std::make_shared<SmallCnn>();
  auto ref_opt = std::make_shared<optim::AdamW>(ref->parameters(), 1e-2);
  train_explicit(*ref, *ref_opt, data, DType::bf16, nullptr);
  check_same_parameters(*model, *ref, 0.0);
}

TEST_CASE("setup: 16-mixed through a Precision plugin on the CPU: optimizer->step() is the scaler's step") {
  const Batches data(3);
  auto fp16 = std::make_shared<Precision>("16-mixed", Device::cpu(), optim::GradScalerOptions{.init_scale = 1024.0});
  Fabric fabric({.accelerator = "cpu", .plugins = {fp16}});
  CHECK(fabric.precision() == "16-mixed");
  REQUIRE(fabric.grad_scaler());
  CHECK(fabric.grad_scaler() == fp16->scaler());
  manual_seed(2);
  auto model = std::make_shared<SmallCnn>();
  auto optimizer = std::make_shared<optim::SGD>(model->parameters(), 0.1);
  std::tie(model, optimizer) = fabric.setup(model, optimizer);
  for (size_t i = 0; i < data.x.size(); ++i) {
    optimizer->zero_grad();
    auto loss = cross_entropy(model->forward(data.x[i]), data.y[i]);
    fabric.backward(loss);
    optimizer->step();
  }
  manual_seed(2);
  auto ref = std::make_shared<SmallCnn>();
  auto ref_opt = std::make_shared<optim::SGD>(ref->parameters(), 0.1);
  optim::GradScaler scaler({.init_scale = 1024.0});
  train_explicit(*ref, *ref_opt, data, DType::f16, &scaler);
  check_same_parameters(*model, *ref, 0.0);
  CHECK(fabric.grad_scaler()->get_scale() == scaler.get_scale());

  // clip_gradients unscales; the step after it does not unscale again.
  optimizer->zero_grad();
  ref_opt->zero_grad();
  fabric.backward(cross_entropy((*model)(data.x[0]), data.y[0]));
  Tensor norm = fabric.clip_gradients(model, optimizer, std::nullopt, 0.5);
  optimizer->step();
  {
    AutocastGuard ac(DeviceType::cpu, DType::f16);
    scaler.scale(cross_entropy(ref->forward(data.x[0]), data.y[0])).backward();
  }
  scaler.unscale_(*ref_opt);
  Tensor ref_norm = optim::clip_grad_norm_(ref->parameters(), 0.5);
  scaler.step(*ref_opt);
  scaler.update();
  CHECK(norm.item<double>() == ref_norm.item<double>());
  check_same_parameters(*model, *ref, 0.0);

  // An overflow: the step is skipped and the scale backs off.
  optimizer->zero_grad();
  std::vector<Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  const double scale = fabric.grad_scaler()->get_scale();
  fabric.backward(cross_entropy(model->forward(data.x[1]), data.y[1]) * 1e30);
  CHECK_FALSE(fabric.step(optimizer));
  CHECK(fabric.grad_scaler()->get_scale() == scale * 0.5);
  auto after = model->parameters();
  for (size_t k = 0; k < before.size(); ++k) CHECK(equal(after[k].detach(), before[k]));

  // A bare loss.backward() is an error at that backward, before any gradient reaches a weight.
  optimizer->zero_grad();
  auto loss = cross_entropy(model->forward(data.x[2]), data.y[2]);
  CHECK_THROWS_WITH_AS(loss.backward(),
                       doctest::Contains("requires you to call fabric.backward(loss) instead of loss.backward()"),
                       Error);
  for (const auto& p : model->parameters()) CHECK_FALSE(p.grad().defined());
  // ... and a step without fabric.backward is refused.
  CHECK_THROWS_WITH_AS(optimizer->step(), doctest::Contains("no fabric.backward(loss) ran"), Error);
  // The model still trains afterwards.
  fabric.backward(cross_entropy(model->forward(data.x[2]), data.y[2]));
  CHECK(fabric.step(optimizer));
}

TEST_CASE("setup: bf16-mixed and 32-true accept loss.backward(); -true precisions convert inputs") {
  for (const char* precision : {"32-true", "bf16-mixed"}) {
    Fabric fabric({.accelerator = "cpu", .precision = precision});
    auto model = fabric.setup(std::make_shared<SmallCnn>());
    cross_entropy(model->forward(randn({2, 3, 8, 8})), randint(0, 10, {2})).backward();
    CHECK(model->fc->weight.grad().defined());
  }
  Fabric fabric({.accelerator = "cpu", .precision = "64-true"});
  auto model = fabric.setup(std::make_shared<SmallCnn>());
  CHECK(model->fc->weight.dtype() == DType::f64);
  // A float32 input is converted; outputs stay in float64 (64-true keeps its precision).
  CHECK((*model)(randn({2, 3, 8, 8})).dtype() == DType::f64);
  CHECK(model->forward(randn({2, 3, 8, 8})).dtype() == DType::f64);
  Fabric half({.accelerator = "cpu", .precision = "bf16-true"});
  auto m16 = half.setup(std::make_shared<SmallCnn>());
  CHECK(m16->fc->weight.dtype() == DType::bf16);
  CHECK((*m16)(randn({2, 3, 8, 8})).dtype() == DType::f32);
}

TEST_CASE("setup: models, optimizers and a scheduler; each object once") {
  Fabric fabric({.accelerator = "cpu"});
  auto model = std::make_shared<SmallCnn>();
  auto a = std::make_shared<optim::SGD>(model->conv->parameters(), 0.1);
  auto b = std::make_shared<optim::AdamW>(model->fc->parameters(), 1e-3);
  auto sched = std::make_shared<optim::CosineAnnealingLR>(*b, 10);
  auto [m, oa, ob, s] = fabric.setup(model, a, b, sched);
  CHECK(m == model);
  CHECK(oa == a);
  CHECK(ob == b);
  CHECK(s == sched);
  CHECK_THROWS_WITH_AS(fabric.setup(model), doctest::Contains("already set up"), Error);
  CHECK_THROWS_WITH_AS(fabric.setup_optimizers(a), doctest::Contains("already set up"), Error);
  auto other = std::make_shared<SmallCnn>();
  auto c = std::make_shared<optim::SGD>(other->parameters(), 0.1);
  auto d = std::make_shared<optim::SGD>(other->parameters(), 0.2);
  auto [oc, od] = fabric.setup_optimizers(c, d);
  CHECK((oc == c && od == d));
  CHECK(fabric.setup_module(other) == other);
}

TEST_CASE("Fabric: precision aliases, plugins and the launcher's LT_* variables") {
  CHECK(Fabric({.accelerator = "cpu", .precision = "32"}).precision() == "32-true");
  CHECK(Fabric({.accelerator = "cpu", .precision = "64"}).precision() == "64-true");
  CHECK(Fabric({.accelerator = "cpu", .precision = "bf16"}).precision() == "bf16-mixed");
  if (!cuda::is_available()) {
    // "16" is "16-mixed", which stays an error on a CPU.
    CHECK_THROWS_WITH_AS(Fabric({.accelerator = "cpu", .precision = "16"}),
                         doctest::Contains("use \"bf16-mixed\" or \"32-true\""), Error);
  }
  auto plugin = std::make_shared<Precision>("bf16-mixed");
  CHECK_THROWS_WITH_AS(Fabric({.accelerator = "cpu", .precision = "64-true", .plugins = {plugin}}),
                       doctest::Contains("choose one"), Error);
  CHECK_THROWS_WITH_AS(Precision("fp8"), doctest::Contains("unknown precision \"fp8\""), Error);
  CHECK_THROWS_AS(Fabric({.accelerator = "cpu", .timeout = std::chrono::milliseconds(0)}), Error);

  ::setenv("LT_PRECISION", "bf16-mixed", 1);
  ::setenv("LT_ACCELERATOR", "cpu", 1);
  ::setenv("LT_DEVICES", "1", 1);
  ::setenv("LT_STRATEGY", "single_device", 1);
  ::setenv("LT_NUM_NODES", "1", 1);
  {
    Fabric f;  // every option from the launcher
    CHECK(f.precision() == "bf16-mixed");
    CHECK(f.device() == Device::cpu());
    CHECK(f.strategy() == "single_device");
    // The same value in the program is no conflict; another one is.
    CHECK(Fabric({.precision = "bf16-mixed"}).precision() == "bf16-mixed");
    CHECK_THROWS_WITH_AS(Fabric({.precision = "64-true"}),
                         doctest::Contains("the program sets precision \"64-true\", but the launcher asks for "
                                           "\"bf16-mixed\" (LT_PRECISION"),
                         Error);
    ::setenv("LT_NUM_NODES", "two", 1);
    CHECK_THROWS_WITH_AS(Fabric(), doctest::Contains("LT_NUM_NODES must be a positive whole number"), Error);
  }
  for (const char* v : {"LT_PRECISION", "LT_ACCELERATOR", "LT_DEVICES", "LT_STRATEGY", "LT_NUM_NODES"}) ::unsetenv(v);
}
