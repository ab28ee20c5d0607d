// examples/resnet_cifar.h against PyTorch in float64 (golden/resnet_cifar.safetensors): the same
// state_dict names, the training-mode forward, loss and every gradient, three steps of nesterov
// SGD with a no-decay group under OneCycleLR (parameters and BatchNorm statistics after them), and
// the evaluation-mode forward with the running statistics.
#include "examples/golden_model.h"
#include "examples/resnet_cifar.h"

using namespace kiln;

TEST_CASE("resnet_cifar: forward, loss, gradients and three optimizer steps equal PyTorch's (float64)") {
  test::Golden g("resnet_cifar.safetensors");
  ResNet model(ResNetConfig{.in_channels = 1, .num_classes = 10, .widths = {4, 8, 16}, .blocks = {1, 2, 1}});
  model.to(DType::f64);
  const auto names = model.state_dict().keys();
  CHECK(names.size() == g.keys("param.").size());
  model.load_state_dict(test::golden_state(g, names, "param."));

  Tensor x = g.get("input"), y = g.get("target");
  model.train();
  Tensor logits = model.forward(x);
  Tensor loss = cross_entropy(logits, y);
  test::check_close(logits, g.get("logits"), 1e-10, 1e-10);
  test::check_close(loss, g.get("loss"), 1e-10, 1e-10);
  loss.backward();
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("grad of " << name);
    test::check_close(p.grad(), g.get("grad." + name), 1e-9, 1e-10);
  }

  optim::SGD opt(decay_groups(model, 5e-4), {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  optim::OneCycleLR sched(opt, 0.2, {.total_steps = 10});
  opt.step();  // the first step's gradients are already there
  sched.step();
  for (int step = 2; step <= 3; ++step) {
    opt.zero_grad();
    cross_entropy(model.forward(x), y).backward();
    opt.step();
    sched.step();
  }
  test::check_state(model.state_dict(), g, "after_step3.", 1e-9);
  model.eval();
  test::check_close(model.forward(x), g.get("eval_logits"), 1e-9, 1e-9);
}

TEST_CASE("resnet_cifar: ResNet-20 shapes, the 1x1 stride-2 shortcuts, and the decay groups") {
  ResNet model;
  CHECK(model.forward(randn({2, 3, 32, 32})).sizes() == Shape{2, 10});
  auto sd = model.state_dict();
  CHECK(sd.contains("layer2.0.shortcut.0.weight"));
  CHECK(sd["layer2.0.shortcut.0.weight"].sizes() == Shape{32, 16, 1, 1});
  CHECK(!sd.contains("layer1.0.shortcut.0.weight"));  // same shape: the identity
  CHECK(sd["layer3.2.bn2.running_var"].sizes() == Shape{64});
  auto groups = decay_groups(model, 5e-4);
  size_t params = 0;
  for (const auto& grp : groups) params += grp.params.size();
  CHECK(params == model.parameters().size());
  for (const auto& p : groups[1].params) CHECK(p.dim() == 1);  // BatchNorm weights and biases, the linear bias
}
