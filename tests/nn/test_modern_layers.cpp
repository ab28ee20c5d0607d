// ModuleList and ModuleDict, Conv1d, GroupNorm, RMSNorm and SiLU, and weight tying by assignment
// (the nanoGPT idiom head->weight = wte->weight): one tensor, one gradient, listed once for the
// optimizer, both names in state_dict as PyTorch keeps them.
#include <sstream>

#include "helpers.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace kiln;
namespace nn = kiln::nn;

namespace {

struct TinyLM : nn::Module {
  std::shared_ptr<nn::Embedding> wte = register_module("wte", std::make_shared<nn::Embedding>(11, 4));
  std::shared_ptr<nn::Linear> head = register_module("lm_head", std::make_shared<nn::Linear>(4, 11, false));
  TinyLM() { head->weight = wte->weight; }  // tied, as in nanoGPT
  Tensor forward(const Tensor& idx) override { return head->forward(wte->forward(idx)); }
};

}  // namespace

TEST_CASE("ModuleList and ModuleDict register their modules under positions and keys") {
  auto list = std::make_shared<nn::ModuleList>();
  list->push_back(std::make_shared<nn::Linear>(2, 3)).push_back(std::make_shared<nn::ReLU>());
  list->extend({std::make_shared<nn::Linear>(3, 1)});
  CHECK(list->size() == 3);
  CHECK(list->named_parameters().keys() == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK((*list)[-1] == (*list)[2]);
  CHECK(list->at<nn::Linear>(0)->out_features == 3);
  CHECK_THROWS_WITH_AS((*list)[3], doctest::Contains("out of range"), Error);
  CHECK_THROWS_WITH_AS(list->at<nn::Linear>(1), doctest::Contains("is a ReLU"), Error);
  CHECK_THROWS_WITH_AS(list->forward(ones({1})), doctest::Contains("does not implement forward"), Error);
  Tensor x = ones({5, 2});
  for (const auto& m : *list) x = m->forward(x);
  CHECK(x.sizes() == Shape{5, 1});

  nn::ModuleDict dict{{"enc", std::make_shared<nn::Linear>(2, 2)}, {"act", std::make_shared<nn::SiLU>()}};
  dict.insert("dec", std::make_shared<nn::Linear>(2, 1));
  CHECK(dict.keys() == std::vector<std::string>{"enc", "act", "dec"});
  CHECK(dict.contains("act"));
  CHECK(dict.state_dict().keys() == std::vector<std::string>{"enc.weight", "enc.bias", "dec.weight", "dec.bias"});
  CHECK_THROWS_WITH_AS(dict["nope"], doctest::Contains("no module under key 'nope'"), Error);
  CHECK_THROWS_WITH_AS(dict.insert("enc", std::make_shared<nn::ReLU>()), doctest::Contains("already"), Error);
  int n = 0;
  for (const auto& [key, m] : dict) n += key.size() == 3 && m != nullptr;
  CHECK(n == 3);
}

TEST_CASE("Conv1d, GroupNorm, RMSNorm and SiLU match their functional forms") {
  manual_seed(4);
  nn::Conv1d conv(4, 6, 3, {.padding = 1, .groups = 2});
  CHECK(conv.weight.sizes() == Shape{6, 2, 3});
  const double bound = 1.0 / std::sqrt(2.0 * 3.0);
  CHECK(amax(abs(conv.weight)).item() <= bound);
  CHECK(amax(abs(conv.bias)).item() <= bound);
  auto x = randn({2, 4, 10});
  test::check_close(conv.forward(x), conv1d(x, conv.weight, conv.bias, 1, 1, 1, 2));
  std::ostringstream os;
  os << conv;
  CHECK(os.str() == "Conv1d(4, 6, kernel_size=(3,), stride=(1,), padding=(1,), groups=2)");

  nn::GroupNorm gn(2, 4);
  CHECK(gn.named_parameters().keys() == std::vector<std::string>{"weight", "bias"});
  test::check_close(gn.forward(x), group_norm(x, 2, gn.weight, gn.bias));
  CHECK_THROWS_WITH_AS(nn::GroupNorm(3, 4), doctest::Contains("divisible"), Error);
  CHECK_THROWS_WITH_AS(gn.forward(ones({2, 3})), doctest::Contains("[N, 4, ...]"), Error);

  nn::RMSNorm rms(Shape{10}, 1e-6);
  test::check_close(rms.forward(x), rms_norm(x, {10}, rms.weight, 1e-6));
  CHECK(nn::RMSNorm(Shape{10}, std::nullopt, false).parameters().empty());

  nn::SiLU act;
  test::check_close(act.forward(x), x * sigmoid(x));
}

TEST_CASE("Weight tying: head->weight = wte->weight shares one tensor and one gradient") {
  manual_seed(0);
  TinyLM m;
  CHECK(m.head->weight.is_same(m.wte->weight));
  // parameters(): the tensor once, under its first name; state_dict(): both names, one storage.
  CHECK(m.named_parameters().keys() == std::vector<std::string>{"wte.weight"});
  auto sd = m.state_dict();
  CHECK(sd.keys() == std::vector<std::string>{"wte.weight", "lm_head.weight"});
  CHECK(sd["wte.weight"].raw_data() == sd["lm_head.weight"].raw_data());

  // One gradient: the sum of the embedding's and the head's contributions.
  Tensor idx = tensor({{1, 2, 3}});
  Tensor tgt = tensor({{2, 3, 4}});
  auto loss = cross_entropy(m.forward(idx).reshape({-1, 11}), tgt.reshape({-1}));
  loss.backward();
  Tensor g_tied = m.wte->weight.grad().clone();
  {
    // The same model untied, with equal values: the gradients of the two copies add up to the tied one.
    TinyLM u;
    u.head->weight = u.wte->weight.detach().clone().requires_grad_();
    {
      NoGradGuard ng;
      u.wte->weight.copy_(m.wte->weight);
      u.head->weight.copy_(m.wte->weight);
    }
    CHECK(u.parameters().size() == 2);
    cross_entropy(u.forward(idx).reshape({-1, 11}), tgt.reshape({-1})).backward();
    test::check_close(g_tied, u.wte->weight.grad() + u.head->weight.grad(), 1e-5, 1e-6);
  }

  // The optimizer sees one parameter and updates both uses at once.
  optim::AdamW opt(m.parameters(), 1e-2);
  opt.step();
  CHECK(m.head->weight.is_same(m.wte->weight));
  CHECK(equal(m.state_dict()["lm_head.weight"], m.state_dict()["wte.weight"]));

  // Loading writes both names into the one tensor; moving the model keeps the tie.
  TinyLM other;
  other.load_state_dict(m.state_dict());
  CHECK(equal(other.wte->weight, m.wte->weight));
  CHECK(other.head->weight.is_same(other.wte->weight));
  other.to(DType::f64);
  CHECK(other.head->weight.is_same(other.wte->weight));
  CHECK(other.head->weight.dtype() == DType::f64);
}

TEST_CASE("Assigning a layer's parameter replaces it in the module; undefined removes it") {
  nn::Linear fc(3, 2);
  Tensor w = zeros({2, 3}, {.requires_grad = true});
  fc.weight = w;
  CHECK(fc.parameters()[0].is_same(w));
  fc.bias = Tensor();  // PyTorch's fc.bias = None
  CHECK(fc.named_parameters().keys() == std::vector<std::string>{"weight"});
  CHECK(fc.state_dict().keys() == std::vector<std::string>{"weight"});
  CHECK(fc.forward(ones({1, 3})).sizes() == Shape{1, 2});
  nn::Linear nb(3, 2, false);
  nb.bias = ones({2}, {.requires_grad = true});  // a bias given later is registered under "bias"
  CHECK(nb.named_parameters().keys() == std::vector<std::string>{"weight", "bias"});
}
