// Optimizers against PyTorch's trajectories (optim.safetensors), option checks, param groups,
// state round trips and gradient clipping.
#include <cmath>
#include <functional>

#include "golden.h"
#include "optim/optim.h"

using namespace kiln;

namespace {

// Runs `make`'s optimizer over the golden gradient sequence and compares every step.
void check_trajectory(const std::string& name, const std::function<std::unique_ptr<optim::Optimizer>(Tensor)>& make) {
  test::Golden g("optim.safetensors");
  Tensor p = g.get("param0").clone().requires_grad_();
  Tensor grads = g.get("grads"), traj = g.get(name + ".trajectory");
  auto opt = make(p);
  for (int64_t k = 0; k < grads.size(0); ++k) {
    p.set_grad(grads.select(0, k).clone());
    opt->step();
    INFO(name << " step " << k + 1);
    test::check_close(p.detach(), traj.select(0, k), 1e-10, 1e-12);
  }
}

}  // namespace

TEST_CASE("SGD, Adam and AdamW follow PyTorch's trajectories (float64)") {
  check_trajectory("sgd_momentum_nesterov_wd", [](Tensor p) {
    return std::make_unique<optim::SGD>(
        std::vector<Tensor>{p}, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  });
  check_trajectory("sgd_momentum_dampening", [](Tensor p) {
    return std::make_unique<optim::SGD>(std::vector<Tensor>{p},
                                        optim::SGDOptions{.lr = 0.05, .momentum = 0.8, .dampening = 0.3});
  });
  check_trajectory("adam", [](Tensor p) {
    return std::make_unique<optim::Adam>(
        std::vector<Tensor>{p}, optim::AdamOptions{.lr = 0.01, .betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = 0.1});
  });
  check_trajectory("adamw", [](Tensor p) {
    return std::make_unique<optim::AdamW>(std::vector<Tensor>{p},
                                          optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.05});
  });
  check_trajectory("adamw_amsgrad", [](Tensor p) {
    return std::make_unique<optim::AdamW>(std::vector<Tensor>{p},
                                          optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.05, .amsgrad = true});
  });
}

TEST_CASE("Optimizers: hand-computed steps, maximize and float32") {
  Tensor w = tensor<float>({1.0f, -2.0f}, {2}).requires_grad_();
  optim::SGD sgd({w}, {.lr = 0.5, .maximize = true});
  w.set_grad(tensor<float>({0.2f, 0.4f}, {2}));
  sgd.step();
  test::check_values(w.detach(), {1.1, -1.8});
  // Adam's first step moves each element by lr (m / sqrt(v) = sign(g) after bias correction).
  Tensor a = tensor<float>({1.0f, 1.0f}, {2}).requires_grad_();
  optim::Adam adam({a}, 0.1);
  a.set_grad(tensor<float>({3.0f, -0.5f}, {2}));
  adam.step();
  test::check_values(a.detach(), {0.9, 1.1}, 1e-5);
  // Parameters without a gradient are left alone and get no state.
  Tensor idle = ones({3}).requires_grad_();
  optim::Adam adam2({idle}, 0.1);
  adam2.step();
  CHECK(adam2.state_tensors().empty());
  CHECK(idle.detach().sum().item<double>() == 3.0);
}

TEST_CASE("Optimizers: every invalid option is an error with PyTorch's wording") {
  Tensor p = ones({2}).requires_grad_();
  using optim::SGD, optim::Adam, optim::AdamW;
  CHECK_THROWS_WITH_AS(SGD({p}, -0.1), doctest::Contains("Invalid learning rate: -0.1"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, {.momentum = -1}), doctest::Contains("Invalid momentum value: -1"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, {.weight_decay = -0.5}), doctest::Contains("Invalid weight_decay value: -0.5"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, {.nesterov = true}),
                       doctest::Contains("Nesterov momentum requires a momentum and zero dampening"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                       doctest::Contains("zero dampening"), Error);
  CHECK_THROWS_WITH_AS(Adam({p}, -1.0), doctest::Contains("Adam: Invalid learning rate: -1"), Error);
  CHECK_THROWS_WITH_AS(Adam({p}, {.eps = -1e-8}), doctest::Contains("Invalid epsilon value: -1e-08"), Error);
  CHECK_THROWS_WITH_AS(Adam({p}, {.betas = {1.0, 0.999}}), doctest::Contains("Invalid beta parameter at index 0: 1"),
                       Error);
  CHECK_THROWS_WITH_AS(Adam({p}, {.betas = {0.9, -0.1}}), doctest::Contains("Invalid beta parameter at index 1: -0.1"),
                       Error);
  CHECK_THROWS_WITH_AS(AdamW({p}, {.weight_decay = -1}), doctest::Contains("AdamW: Invalid weight_decay value: -1"),
                       Error);
  CHECK_THROWS_WITH_AS(SGD(std::vector<Tensor>{}, 0.1), doctest::Contains("empty parameter list"), Error);
  CHECK_THROWS_WITH_AS(SGD({p, p}, 0.1), doctest::Contains("more than once"), Error);
  CHECK_THROWS_WITH_AS(SGD({p * 2.0}, 0.1), doctest::Contains("non-leaf"), Error);
  CHECK_THROWS_WITH_AS(SGD({ones({2}, {.dtype = DType::i64})}, 0.1), doctest::Contains("floating-point"), Error);
  CHECK_THROWS_WITH_AS(SGD(std::vector<optim::ParamGroup>{{{p}, {{"lrr", 0.1}}}}),
                       doctest::Contains("unknown option \"lrr\""), Error);
  CHECK_THROWS_WITH_AS(SGD(std::vector<optim::ParamGroup>{{{p}, {{"lr", -2.0}}}}),
                       doctest::Contains("Invalid learning rate: -2"), Error);
}

TEST_CASE("Optimizers: param groups override the defaults") {
  Tensor a = ones({2}).requires_grad_(), b = ones({2}).requires_grad_();
  optim::SGD opt({{{a}, {{"lr", 0.1}}}, {{b}}}, {.lr = 0.01, .momentum = 0.9});
  CHECK(opt.lr(0) == 0.1);
  CHECK(opt.lr(1) == 0.01);
  CHECK(opt.param_groups()[0].options["momentum"] == 0.9);
  a.set_grad(ones({2}));
  b.set_grad(ones({2}));
  opt.step();
  test::check_values(a.detach(), {0.9, 0.9});
  test::check_values(b.detach(), {0.99, 0.99});
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  Tensor c = ones({1}).requires_grad_();
  opt.add_param_group({{c}, {{"lr", 1.0}}});
  CHECK(opt.param_groups().size() == 3);
  CHECK_THROWS_WITH_AS(opt.add_param_group({{a}}), doctest::Contains("more than one param group"), Error);
}

TEST_CASE("Optimizers: state round trip resumes the same trajectory") {
  auto run = [](optim::Optimizer& opt, Tensor& p, int from, int to) {
    for (int k = from; k < to; ++k) {
      p.set_grad(full(p.sizes(), std::sin(double(k)), {.dtype = DType::f64}));
      opt.step();
    }
  };
  auto make = [](Tensor p) {
    return std::make_unique<optim::AdamW>(std::vector<Tensor>{p}, optim::AdamWOptions{.lr = 0.05, .amsgrad = true});
  };
  Tensor p1 = linspace(-1, 1, 4, {.dtype = DType::f64}).requires_grad_();
  auto o1 = make(p1);
  run(*o1, p1, 0, 3);
  auto saved = o1->state_dict();
  CHECK(saved.tensors.count("state.0.exp_avg"));
  CHECK(saved.tensors.count("state.0.max_exp_avg_sq"));
  CHECK(saved.tensors.at("state.0.step").dim() == 0);
  CHECK(saved.meta["optimizer"] == "AdamW");
  CHECK(saved.meta["param_groups"][0]["params"] == nlohmann::json::array({0}));
  // Through JSON text, as a checkpoint writer stores it.
  auto meta = nlohmann::json::parse(saved.meta.dump());
  std::map<std::string, Tensor> tensors;
  for (const auto& [k, t] : saved.tensors) tensors[k] = t.clone();

  Tensor p2 = p1.detach().clone().requires_grad_();
  auto o2 = make(p2);
  o2->load(tensors, meta);
  run(*o1, p1, 3, 6);
  run(*o2, p2, 3, 6);
  CHECK(equal(p1.detach(), p2.detach()));

  optim::SGD sgd({p2}, {.lr = 0.1, .momentum = 0.5});
  CHECK_THROWS_WITH_AS(sgd.load(tensors, meta), doctest::Contains("saved by \"AdamW\""), Error);
  meta["param_groups"][0]["lr"] = -1.0;
  CHECK_THROWS_WITH_AS(o2->load(tensors, meta), doctest::Contains("Invalid learning rate"), Error);
  meta["param_groups"][0]["lr"] = 0.05;
  tensors["state.3.exp_avg"] = zeros({4}, {.dtype = DType::f64});
  CHECK_THROWS_WITH_AS(o2->load(tensors, meta), doctest::Contains("names parameter 3"), Error);

  // SGD keeps only momentum_buffer, like PyTorch.
  p2.set_grad(ones({4}, {.dtype = DType::f64}));
  sgd.step();
  auto st = sgd.state_tensors();
  CHECK(st.size() == 1);
  CHECK(st.count("state.0.momentum_buffer"));
}

TEST_CASE("clip_grad_norm_ and clip_grad_value_") {
  Tensor a = zeros({2}, {.dtype = DType::f64}).requires_grad_(), b = zeros({1}, {.dtype = DType::f64}).requires_grad_();
  a.set_grad(tensor<double>({3.0, 0.0}, {2}));
  b.set_grad(tensor<double>({4.0}, {1}));
  Tensor total = optim::clip_grad_norm_({a, b}, 1.0);
  CHECK(total.item<double>() == doctest::Approx(5.0));
  const double coef = 1.0 / (5.0 + 1e-6);
  test::check_values(a.grad(), {3.0 * coef, 0.0}, 1e-12);
  test::check_values(b.grad(), {4.0 * coef}, 1e-12);
  // Below the limit nothing changes; the inf-norm is the largest magnitude.
  a.set_grad(tensor<double>({0.1, -0.2}, {2}));
  CHECK(optim::clip_grad_norm_({a, b}, 10.0, INFINITY).item<double>() == doctest::Approx(4.0 * coef));
  test::check_values(a.grad(), {0.1, -0.2}, 1e-12);
  CHECK(optim::clip_grad_norm_({a}, 10.0, 1.0).item<double>() == doctest::Approx(0.3));
  a.set_grad(tensor<double>({NAN, 1.0}, {2}));
  CHECK_THROWS_WITH_AS(optim::clip_grad_norm_({a}, 1.0, 2.0, true), doctest::Contains("non-finite"), Error);
  a.set_grad(tensor<double>({-3.0, 0.5}, {2}));
  optim::clip_grad_value_({a, b}, 1.0);
  test::check_values(a.grad(), {-1.0, 0.5});
  test::check_values(b.grad(), {4.0 * coef}, 1e-12);  // already inside the range
  CHECK_THROWS_AS(optim::clip_grad_norm_({a}, 1.0, -2.0), Error);
}

TEST_CASE("Optimizer: step hooks run around the update; a wrapper decides whether it runs") {
  Tensor p = ones({2}).requires_grad_();
  optim::SGD opt({p}, 0.5);
  std::vector<std::string> calls;
  auto step_with_grad = [&] {
    p.set_grad(ones({2}));
    opt.step();
  };
  auto pre = opt.register_step_pre_hook([&](optim::Optimizer&) { calls.push_back("pre"); });
  opt.register_step_post_hook([&](optim::Optimizer& o) { calls.push_back("post " + o.name()); });
  step_with_grad();
  CHECK(calls == std::vector<std::string>{"pre", "post SGD"});
  test::check_values(p.detach(), {0.5, 0.5});

  // A wrapper that skips: neither the update nor the hooks after it run.
  calls.clear();
  pre.remove();
  bool skip = true;
  auto gate = opt.register_step_wrapper([&](optim::Optimizer&, const optim::Optimizer::StepFn& next) {
    calls.push_back("gate");
    if (!skip) next();
  });
  step_with_grad();
  CHECK(calls == std::vector<std::string>{"gate", "post SGD"});  // the post hook is outermost
  test::check_values(p.detach(), {0.5, 0.5});
  calls.clear();
  skip = true;
  gate.remove();
  // A step() called from inside a wrapper (as GradScaler::step does) continues its chain once.
  auto reenter = opt.register_step_wrapper([&](optim::Optimizer& o, const optim::Optimizer::StepFn&) {
    calls.push_back("wrapper");
    o.step();
  });
  step_with_grad();
  CHECK(calls == std::vector<std::string>{"wrapper", "post SGD"});
  test::check_values(p.detach(), {0.0, 0.0});
  reenter.remove();
  // A GradScaler stepping from inside a wrapper: unscaled, stepped, no recursion.
  optim::GradScaler scaler({.init_scale = 4.0});
  opt.register_step_wrapper([&](optim::Optimizer& o, const optim::Optimizer::StepFn&) {
    CHECK(scaler.step(o));
    scaler.update();
  });
  p.set_grad(full({2}, 4.0));  // a gradient scaled by 4
  opt.step();
  test::check_values(p.detach(), {-0.5, -0.5});
  CHECK_THROWS_AS(opt.register_step_wrapper(nullptr), Error);
}
