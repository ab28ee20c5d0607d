// Module bookkeeping: registration order and names, modes, conversion in place, state_dict.
#include <sstream>

#include "examples/simple_cnn.h"
#include "helpers.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace kiln;
namespace nn = kiln::nn;

namespace {

struct Block : nn::Module {
  std::shared_ptr<nn::Linear> fc = register_module("fc", std::make_shared<nn::Linear>(4, 3));
  std::shared_ptr<nn::BatchNorm2d> bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(2));
  Tensor scale = register_parameter("scale", ones({3}));
  Tensor counter = register_buffer("counter", zeros({1}), /*persistent=*/false);
};

std::vector<std::string> keys_of(const nn::StateDict& d) { return d.keys(); }

}  // namespace

TEST_CASE("Module: parameters, buffers and children keep registration order and dotted names") {
  Block b;
  CHECK(b.named_parameters().keys() ==
        std::vector<std::string>{"scale", "fc.weight", "fc.bias", "bn.weight", "bn.bias"});
  CHECK(b.named_buffers().keys() ==
        std::vector<std::string>{"counter", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"});
  CHECK(b.named_children().keys() == std::vector<std::string>{"fc", "bn"});
  CHECK(b.modules().size() == 2);
  nn::Sequential outer;
  outer.push_back("block", std::make_shared<Block>());
  CHECK(outer.named_modules().keys() == std::vector<std::string>{"block", "block.fc", "block.bn"});
  for (const auto& p : b.parameters()) {
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
  }
  // Non-persistent buffers stay out of the state dict.
  CHECK(keys_of(b.state_dict()) == std::vector<std::string>{"scale", "fc.weight", "fc.bias", "bn.weight", "bn.bias",
                                                            "bn.running_mean", "bn.running_var",
                                                            "bn.num_batches_tracked"});
  CHECK(b.state_dict()["bn.num_batches_tracked"].dtype() == DType::i64);
  CHECK(b.state_dict()["bn.num_batches_tracked"].dim() == 0);
}

TEST_CASE("Module: registration errors name the problem") {
  Block b;
  CHECK_THROWS_WITH_AS(b.register_parameter("scale", ones({1})), doctest::Contains("already registered"), Error);
  CHECK_THROWS_WITH_AS(b.register_buffer("a.b", ones({1})), doctest::Contains("contain no '.'"), Error);
  CHECK_THROWS_WITH_AS(b.register_module("m", std::shared_ptr<nn::Linear>()), doctest::Contains("is null"), Error);
  nn::Module plain;
  CHECK_THROWS_WITH_AS(plain.forward(ones({1})), doctest::Contains("does not implement forward"), Error);
}

TEST_CASE("Module: shared parameters are listed once") {
  nn::Sequential seq;
  auto fc = std::make_shared<nn::Linear>(3, 3);
  seq.push_back(fc).push_back(fc);
  CHECK(seq.parameters().size() == 2);
  CHECK(seq.state_dict().size() == 4);  // the state dict names every path, as PyTorch's does
}

TEST_CASE("Module: train/eval reach every submodule") {
  SimpleCNN m;
  CHECK(m.is_training());
  m.eval();
  for (const auto& c : m.modules()) CHECK_FALSE(c->is_training());
  m.train();
  CHECK(m.dropout->is_training());
}

TEST_CASE("Module: to(dtype) converts floating tensors in place and keeps their identity") {
  Block b;
  Tensor w = b.fc->weight;
  const TensorImpl* impl = w.impl();
  auto opt = optim::SGD(b.parameters(), 0.1);
  b.fc->forward(ones({2, 4})).sum().backward();
  b.to(DType::f64);
  CHECK(w.impl() == impl);
  CHECK(b.fc->weight.dtype() == DType::f64);
  CHECK(b.fc->weight.grad().dtype() == DType::f64);
  CHECK(b.bn->running_var.dtype() == DType::f64);
  CHECK(b.bn->num_batches_tracked.dtype() == DType::i64);
  CHECK(opt.param_groups()[0].params[1].dtype() == DType::f64);  // the optimizer sees the change
  opt.step();                                                    // and can still update it
  b.fc->forward(ones({2, 4}, {.dtype = DType::f64})).sum().backward();
  CHECK(w.grad().dtype() == DType::f64);
}

TEST_CASE("Module: zero_grad drops or zeroes gradients") {
  nn::Linear fc(2, 2);
  fc.forward(ones({1, 2})).sum().backward();
  fc.zero_grad(false);
  CHECK(fc.weight.grad().defined());
  CHECK(fc.weight.grad().abs().sum().item<double>() == 0.0);
  fc.zero_grad();
  CHECK_FALSE(fc.weight.grad().defined());
}

TEST_CASE("Module: state_dict round trip and strict loading") {
  Block a, b;
  a.bn->running_mean.fill_(0.5);
  auto r = b.load_state_dict(a.state_dict());
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  CHECK(equal(b.fc->weight, a.fc->weight));
  CHECK(equal(b.bn->running_mean, a.bn->running_mean));
  CHECK_FALSE(b.fc->weight.is_same(a.fc->weight));  // values copied, tensors stay separate

  nn::StateDict partial = a.state_dict();
  nn::StateDict smaller;
  for (const auto& [k, v] : partial)
    if (k != "fc.bias") smaller.insert(k, v);
  smaller.insert("extra.weight", ones({1}));
  CHECK_THROWS_WITH_AS(b.load_state_dict(smaller),
                       doctest::Contains("missing key(s): \"fc.bias\". unexpected key(s): \"extra.weight\""), Error);
  auto lenient = b.load_state_dict(smaller, /*strict=*/false);
  CHECK(lenient.missing_keys == std::vector<std::string>{"fc.bias"});
  CHECK(lenient.unexpected_keys == std::vector<std::string>{"extra.weight"});

  nn::StateDict bad = a.state_dict();
  bad.insert_or_assign("fc.weight", zeros({4, 4}));
  b.scale.detach().fill_(7.0);
  CHECK_THROWS_WITH_AS(b.load_state_dict(bad), doctest::Contains("size mismatch for fc.weight"), Error);
  CHECK(b.scale.detach().sum().item<double>() == 21.0);  // nothing was written before the error
  bad.insert_or_assign("fc.weight", zeros({3, 4}, {.dtype = DType::f64}));
  CHECK_THROWS_WITH_AS(b.load_state_dict(bad), doctest::Contains("dtype mismatch for fc.weight"), Error);
}

TEST_CASE("SimpleCNN: state_dict keys and shapes equal PyTorch's") {
  SimpleCNN m;
  const std::vector<std::pair<std::string, Shape>> expected = {
      {"conv1.weight", {32, 3, 3, 3}},   {"conv1.bias", {32}},  {"conv2.weight", {64, 32, 3, 3}}, {"conv2.bias", {64}},
      {"conv3.weight", {128, 64, 3, 3}}, {"conv3.bias", {128}}, {"fc1.weight", {256, 2048}},      {"fc1.bias", {256}},
      {"fc2.weight", {10, 256}},         {"fc2.bias", {10}}};
  auto sd = m.state_dict();
  REQUIRE(sd.size() == expected.size());
  size_t i = 0;
  for (const auto& [k, t] : sd) {
    CHECK(k == expected[i].first);
    CHECK(t.sizes() == expected[i].second);
    ++i;
  }
  SimpleCNN gray(1, 5);
  CHECK(gray.conv1->weight.sizes() == Shape{32, 1, 3, 3});
  CHECK(gray.fc2->bias.sizes() == Shape{5});
  std::ostringstream os;
  os << m;
  CHECK(os.str().find("(conv1): Conv2d(3, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))") !=
        std::string::npos);
}

namespace {

// A model of one's own: its forward() calls its layers through forward() (as SimpleCNN does).
struct TwoLayer : nn::Module {
  std::shared_ptr<nn::Linear> fc1 = register_module("fc1", std::make_shared<nn::Linear>(3, 4));
  std::shared_ptr<nn::Linear> fc2 = register_module("fc2", std::make_shared<nn::Linear>(4, 2));
  Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x))); }
};

}  // namespace

TEST_CASE("Module: forward hooks run through operator() and kiln layers' forward(), once per call") {
  auto net = std::make_shared<TwoLayer>();
  std::vector<std::string> calls;
  auto trace = [&](const std::string& tag) {
    return [&calls, tag](nn::Module& m, const Tensor& x, const nn::Module::ForwardFn& next) {
      calls.push_back(tag + ">" + (dynamic_cast<nn::Linear*>(&m) ? "Linear" : "TwoLayer"));
      Tensor out = next(x);
      calls.push_back(tag + "<");
      return out;
    };
  };
  auto h_net = net->register_forward_wrapper(trace("net"));
  auto h_fc1 = net->fc1->register_forward_wrapper(trace("fc1"));
  Tensor x = randn({2, 3});
  // The model of one's own runs its hooks when called; its layers run theirs from forward().
  Tensor a = (*net)(x);
  CHECK(calls == std::vector<std::string>{"net>TwoLayer", "fc1>Linear", "fc1<", "net<"});
  calls.clear();
  Tensor b = net->forward(x);
  CHECK(calls == std::vector<std::string>{"fc1>Linear", "fc1<"});
  CHECK(equal(a, b));
  // A kiln layer called either way runs its hooks exactly once.
  calls.clear();
  (*net->fc1)(x);
  net->fc1->forward(x);
  CHECK(calls == std::vector<std::string>{"fc1>Linear", "fc1<", "fc1>Linear", "fc1<"});

  // Pre hooks replace the input, forward hooks the output; registration order is nesting order.
  calls.clear();
  h_net.remove();
  h_fc1.remove();
  h_fc1.remove();  // a second remove does nothing
  auto fc = std::make_shared<nn::Linear>(3, 2);
  auto pre = fc->register_forward_pre_hook([&](nn::Module&, const Tensor& in) -> std::optional<Tensor> {
    calls.push_back("pre");
    return in * 0.0;
  });
  Tensor seen;
  fc->register_forward_hook([&](nn::Module&, const Tensor& in, const Tensor& out) -> std::optional<Tensor> {
    calls.push_back("post");
    seen = in;
    return out + 1.0;
  });
  Tensor y = fc->forward(x);
  CHECK(calls == std::vector<std::string>{"pre", "post"});
  CHECK(equal(seen, zeros({2, 3})));  // the pre hook's input
  CHECK(allclose(y, fc->bias.detach().unsqueeze(0).expand({2, 2}) + 1.0));
  pre.remove();
  CHECK(allclose((*fc)(x), linear(x, fc->weight, fc->bias).detach() + 1.0));
  calls.clear();
  (*net)(x);
  CHECK(calls.empty());
  // A sequence runs its own hooks and each of its modules' once.
  auto seq = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(3, 3), std::make_shared<nn::ReLU>()});
  int seq_calls = 0, relu_calls = 0;
  seq->register_forward_hook([&](nn::Module&, const Tensor&, const Tensor&) {
    ++seq_calls;
    return std::nullopt;
  });
  (*seq)[1]->register_forward_hook([&](nn::Module&, const Tensor&, const Tensor&) {
    ++relu_calls;
    return std::nullopt;
  });
  seq->forward(x);
  (*seq)(x);
  CHECK(seq_calls == 2);
  CHECK(relu_calls == 2);
  CHECK_THROWS_AS(fc->register_forward_wrapper(nullptr), Error);
}

TEST_CASE("ModuleInitGuard: modules built in its scope are created on its device and dtype") {
  {
    nn::ModuleInitGuard guard(Device::cpu(), DType::f64);
    auto bn = std::make_shared<nn::BatchNorm2d>(3);
    auto net = std::make_shared<TwoLayer>();
    CHECK(net->fc1->weight.dtype() == DType::f64);
    CHECK(net->fc1->weight.requires_grad());
    CHECK(net->fc1->weight.is_leaf());
    CHECK(bn->running_mean.dtype() == DType::f64);
    CHECK(bn->num_batches_tracked.dtype() == DType::i64);  // integers keep their type
    CHECK(net->forward(randn({2, 3}, {.dtype = DType::f64})).dtype() == DType::f64);
    {
      nn::ModuleInitGuard inner(Device::cpu());  // the innermost counts
      CHECK(nn::Linear(2, 2).weight.dtype() == DType::f32);
    }
    CHECK(nn::Linear(2, 2).weight.dtype() == DType::f64);
  }
  CHECK(nn::Linear(2, 2).weight.dtype() == DType::f32);
  CHECK_THROWS_AS(nn::ModuleInitGuard(Device::cpu(), DType::i64), Error);
}
