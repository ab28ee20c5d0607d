// examples/char_gpt.h against PyTorch in float64 (golden/char_gpt.safetensors): nanoGPT's names
// with the tied head under both of them, the forward, loss and every gradient through the fused
// causal attention, and three AdamW steps with gradient clipping (the clipped norms and the
// parameters after them).
#include "examples/char_gpt.h"
#include "examples/golden_model.h"

using namespace kiln;

namespace {

GPTConfig tiny() { return {.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 8, .dropout = 0.0}; }

}  // namespace

TEST_CASE("char_gpt: forward, loss, gradients and three clipped AdamW steps equal PyTorch's (float64)") {
  test::Golden g("char_gpt.safetensors");
  CharGPT model(tiny());
  model.to(DType::f64);
  const auto names = model.state_dict().keys();
  CHECK(names.size() == g.keys("param.").size());
  CHECK(names.front() == "transformer.wte.weight");
  CHECK(names.back() == "lm_head.weight");
  model.load_state_dict(test::golden_state(g, names, "param."));
  CHECK(model.lm_head->weight.is_same(model.wte->weight));  // loading kept the tie

  Tensor idx = g.get("idx"), targets = g.get("targets");
  Tensor logits = model.forward(idx);
  Tensor loss = CharGPT::loss(logits, targets);
  test::check_close(logits, g.get("logits"), 1e-10, 1e-10);
  test::check_close(loss, g.get("loss"), 1e-10, 1e-10);
  loss.backward();
  CHECK(model.named_parameters().size() == g.keys("grad.").size());
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("grad of " << name);
    test::check_close(p.grad(), g.get("grad." + name), 1e-9, 1e-11);
  }

  optim::AdamW opt(gpt_param_groups(model, 0.1), {.lr = 3e-2, .betas = {0.9, 0.95}});
  for (int step = 1; step <= 3; ++step) {
    if (step > 1) {
      opt.zero_grad();
      CharGPT::loss(model.forward(idx), targets).backward();
    }
    Tensor norm = optim::clip_grad_norm_(model.parameters(), 0.5);
    test::check_close(norm, g.get("grad_norm_step" + std::to_string(step)), 1e-10, 1e-12);
    opt.step();
  }
  test::check_state(model.state_dict(), g, "after_step3.", 1e-9);
}

TEST_CASE("char_gpt: shapes, the context limit, and dropout only in training") {
  manual_seed(0);
  CharGPT model({.vocab_size = 20, .block_size = 16, .n_layer = 1, .n_head = 4, .n_embd = 16, .dropout = 0.5});
  Tensor idx = randint(0, 20, {3, 16});
  CHECK(model.forward(idx).sizes() == Shape{3, 16, 20});
  CHECK_THROWS_WITH_AS(model.forward(randint(0, 20, {1, 17})), doctest::Contains("longer than block_size"), Error);
  model.eval();
  CHECK(equal(model.forward(idx), model.forward(idx)));
  model.train();
  CHECK(!equal(model.forward(idx), model.forward(idx)));
}
