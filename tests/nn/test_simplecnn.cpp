// The reference CNN end to end: PyTorch's logits, loss, gradients and AdamW steps in float64 from
// the same weights, and a short SGD run that fits a small separable problem.
#include "examples/simple_cnn.h"
#include "golden.h"
#include "optim/optim.h"

using namespace kiln;
namespace F = kiln::nn::functional;

namespace {

std::shared_ptr<SimpleCNN> golden_model(const test::Golden& g) {
  auto model = std::make_shared<SimpleCNN>();
  model->to(DType::f64);
  nn::StateDict sd;
  for (const auto& [name, t] : model->state_dict()) sd.insert(name, g.get("param." + name));
  model->load_state_dict(sd);
  model->eval();  // the reference ran in eval mode: dropout off
  return model;
}

}  // namespace

TEST_CASE("SimpleCNN matches PyTorch: logits, loss and every gradient (float64)") {
  test::Golden g("simplecnn.safetensors");
  auto model = golden_model(g);
  Tensor logits = model->forward(g.get("input"));
  test::check_close(logits, g.get("logits"), 1e-10, 1e-12);
  Tensor loss = F::cross_entropy(logits, g.get("target"));
  test::check_close(loss, g.get("loss"), 1e-10, 1e-12);
  loss.backward();
  for (const auto& [name, p] : model->named_parameters()) {
    INFO("grad of " << name);
    test::check_close(p.grad(), g.get("grad." + name), 1e-9, 1e-12);
  }
}

TEST_CASE("SimpleCNN + AdamW matches PyTorch after 1 and 3 steps (float64)") {
  test::Golden g("simplecnn.safetensors");
  auto model = golden_model(g);
  optim::AdamW opt(model->parameters(), {.lr = 3e-4, .weight_decay = 1e-2});
  Tensor x = g.get("input"), y = g.get("target");
  for (int step = 1; step <= 3; ++step) {
    opt.zero_grad();
    F::cross_entropy(model->forward(x), y).backward();
    opt.step();
    if (step == 2) continue;
    for (const auto& [name, t] : model->state_dict()) {
      INFO("after step " << step << ": " << name);
      test::check_close(t, g.get("after_step" + std::to_string(step) + "." + name), 1e-9, 1e-12);
    }
  }
  auto st = opt.state_tensors();
  CHECK(st.size() == 30);  // step, exp_avg, exp_avg_sq for each of the 10 parameters
  CHECK(st.at("state.9.step").item<double>() == 3.0);
}

TEST_CASE("SimpleCNN: a few hundred SGD steps fit a small separable problem") {
  manual_seed(11);
  const int64_t n = 16, classes = 4;
  // Each class is a fixed random pattern; the samples are that pattern plus noise.
  Tensor patterns = randn({classes, 3, 32, 32});
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back(i % classes);
  Tensor y = tensor(labels, {n});
  Tensor x = add(index_select(patterns, 0, y), mul(randn({n, 3, 32, 32}), 0.5));

  auto model = std::make_shared<SimpleCNN>();
  optim::SGD opt(model->parameters(), {.lr = 0.02, .momentum = 0.9});
  double first = 0, last = 0;
  int steps = 0;
  for (; steps < 300; ++steps) {
    opt.zero_grad();
    Tensor loss = F::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
    last = loss.item<double>();
    if (steps == 0) first = last;
    if (last < 1e-3) break;
  }
  MESSAGE("loss " << first << " -> " << last << " after " << steps + 1 << " steps");
  CHECK(first > 1.0);
  CHECK(last < 0.01);
  model->eval();
  NoGradGuard no_grad;
  CHECK(equal(argmax(model->forward(x), 1), y));
}

TEST_CASE("SimpleCNN under bf16 autocast: loss and every gradient close to float32") {
  manual_seed(21);
  SimpleCNN model;
  model.eval();  // dropout off, so both passes compute the same function
  Tensor x = randn({8, 3, 32, 32}), y = randint(0, 10, {8});
  Tensor loss32 = F::cross_entropy(model.forward(x), y);
  loss32.backward();
  std::map<std::string, Tensor> grads32;
  for (const auto& [name, p] : model.named_parameters()) grads32[name] = p.grad().clone();
  model.zero_grad();
  Tensor loss16;
  {
    AutocastGuard ac(DeviceType::cpu, DType::bf16);
    loss16 = F::cross_entropy(model.forward(x), y);
  }
  loss16.backward();
  CHECK(loss16.dtype() == DType::f32);
  CHECK(std::abs(loss16.item<double>() - loss32.item<double>()) < 0.005 * loss32.item<double>());
  // bf16 keeps 8 significant bits, and an untrained network's weight gradients are sums that
  // cancel heavily, so the early layers' gradients differ from f32's by 5-15% in norm while
  // pointing the same way. PyTorch's CPU autocast does the same on this model and batch (seeds
  // 0-2: conv1.weight 0.13-0.16, fc1.weight 0.03-0.05, fc2.weight 0.005 relative error).
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("grad of " << name);
    REQUIRE(p.grad().dtype() == DType::f32);
    const Tensor& ref = grads32.at(name);
    const double rel = norm(p.grad() - ref).item<double>() / norm(ref).item<double>();
    const double cosine = sum(p.grad() * ref).item<double>() / (norm(p.grad()) * norm(ref)).item<double>();
    CHECK(rel < (name.rfind("fc2", 0) == 0 ? 0.02 : 0.25));
    CHECK(cosine > 0.97);
  }
}
