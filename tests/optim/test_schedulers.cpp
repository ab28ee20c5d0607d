// LR schedulers against PyTorch's sequences (optim.safetensors), SequentialLR by hand, state.
#include <cmath>
#include <functional>
#include <numbers>

#include "golden.h"
#include "optim/optim.h"

using namespace kiln;

namespace {

// The lr each step sees, stepping the scheduler after each, as the golden file records it.
void check_lrs(const std::string& key,
               const std::function<std::unique_ptr<optim::LRScheduler>(optim::Optimizer&)>& make) {
  test::Golden g("optim.safetensors");
  Tensor expected = g.get(key);
  Tensor p = zeros({1}).requires_grad_();
  optim::SGD opt({p}, 0.1);
  auto sched = make(opt);
  std::vector<double> seen;
  for (int64_t i = 0; i < expected.size(0); ++i) {
    seen.push_back(opt.lr());
    CHECK(sched->get_last_lr()[0] == opt.lr());
    sched->step();
  }
  INFO(key);
  test::check_close(tensor(seen, {int64_t(seen.size())}), expected, 1e-10, 1e-14);
}

}  // namespace

TEST_CASE("LR schedulers follow PyTorch's sequences") {
  using namespace optim;
  check_lrs("lr.cosine_T20", [](Optimizer& o) { return std::make_unique<CosineAnnealingLR>(o, 20); });
  check_lrs("lr.cosine_T20_min", [](Optimizer& o) { return std::make_unique<CosineAnnealingLR>(o, 20, 0.01); });
  check_lrs("lr.step_7_half", [](Optimizer& o) { return std::make_unique<StepLR>(o, 7, 0.5); });
  check_lrs("lr.multistep", [](Optimizer& o) {
    return std::make_unique<MultiStepLR>(o, std::vector<int64_t>{5, 12}, 0.1);
  });
  check_lrs("lr.linear_warmup", [](Optimizer& o) { return std::make_unique<LinearLR>(o, 0.1, 1.0, 5); });
  check_lrs("lr.onecycle",
            [](Optimizer& o) { return std::make_unique<OneCycleLR>(o, 1.0, OneCycleOptions{.total_steps = 30}); });
}

TEST_CASE("OneCycleLR cycles momentum and beta1, and checks its arguments") {
  using namespace optim;
  Tensor p = zeros({1}).requires_grad_();
  AdamW adam({p}, 1e-3);
  OneCycleLR sched(adam, 0.01, {.epochs = 2, .steps_per_epoch = 5, .anneal_strategy = "linear"});
  CHECK(adam.param_groups()[0].options["betas"][0] == doctest::Approx(0.95));
  CHECK(adam.lr() == doctest::Approx(0.01 / 25));
  for (int i = 0; i < 2; ++i) sched.step();  // end of warm-up: step pct_start*10 - 1 = 2
  CHECK(adam.lr() == doctest::Approx(0.01));
  CHECK(adam.param_groups()[0].options["betas"][0] == doctest::Approx(0.85));
  CHECK_THROWS_WITH_AS(OneCycleLR(adam, 0.01, {}), doctest::Contains("total_steps OR (epochs AND steps_per_epoch)"),
                       Error);
  CHECK_THROWS_WITH_AS(OneCycleLR(adam, 0.01, {.total_steps = 5, .pct_start = 1.5}), doctest::Contains("pct_start"),
                       Error);
  CHECK_THROWS_WITH_AS(OneCycleLR(adam, 0.01, {.total_steps = 5, .anneal_strategy = "exp"}),
                       doctest::Contains("anneal_strategy"), Error);
  OneCycleLR short_sched(adam, 0.01, {.total_steps = 2});
  short_sched.step();
  short_sched.step();
  CHECK_THROWS_WITH_AS(short_sched.step(), doctest::Contains("total steps is 2"), Error);
}

TEST_CASE("SequentialLR: linear warm-up then cosine, switching at the milestone") {
  using namespace optim;
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, 1.0);
  auto warm = std::make_shared<LinearLR>(opt, 0.25, 1.0, 3);
  auto cosine = std::make_shared<CosineAnnealingLR>(opt, 4);
  SequentialLR sched(opt, {warm, cosine}, {3});
  std::vector<double> seen;
  for (int i = 0; i < 8; ++i) {
    seen.push_back(opt.lr());
    sched.step();
  }
  auto cos_at = [](int e) { return (1 + std::cos(std::numbers::pi * e / 4)) / 2; };
  const std::vector<double> expected = {0.25, 0.5, 0.75, cos_at(0), cos_at(1), cos_at(2), cos_at(3), cos_at(4)};
  for (size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == doctest::Approx(expected[i]).epsilon(1e-12));
  CHECK(sched.last_epoch() == 8);
  CHECK_THROWS_WITH_AS(SequentialLR(opt, {warm, cosine}, {}), doctest::Contains("one more scheduler"), Error);
  SGD other({zeros({1}).requires_grad_()}, 1.0);
  auto foreign = std::make_shared<StepLR>(other, 2);
  CHECK_THROWS_WITH_AS(SequentialLR(opt, {warm, foreign}, {2}), doctest::Contains("same optimizer"), Error);
}

TEST_CASE("LR schedulers: state round trip and argument checks") {
  using namespace optim;
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, 0.1);
  StepLR a(opt, 2, 0.5);
  for (int i = 0; i < 5; ++i) a.step();
  auto state = nlohmann::json::parse(a.state_dict().dump());
  CHECK(state["last_epoch"] == 5);

  Tensor q = zeros({1}).requires_grad_();
  SGD opt2({q}, 0.1);
  StepLR b(opt2, 2, 0.5);
  b.load_state_dict(state);
  CHECK(b.last_epoch() == 5);
  a.step();
  b.step();
  CHECK(a.get_last_lr() == b.get_last_lr());
  CHECK(opt2.lr() == doctest::Approx(0.1 * 0.125));
  CHECK_THROWS_WITH_AS(CosineAnnealingLR(opt, 0), doctest::Contains("T_max must be positive"), Error);
  CHECK_THROWS_WITH_AS(LinearLR(opt, 0.0), doctest::Contains("Starting multiplicative factor"), Error);
  CHECK_THROWS_WITH_AS(StepLR(opt, 0), doctest::Contains("step_size must be positive"), Error);
  CosineAnnealingLR c(opt, 10);
  CHECK_THROWS_WITH_AS(c.load_state_dict(state), doctest::Contains("belongs to \"StepLR\""), Error);
}
