// A small GPT in the shape of nanoGPT's: token and position embeddings, pre-LayerNorm blocks of
// causal multi-head self-attention (through scaled_dot_product_attention) and a GELU MLP, a final
// LayerNorm and an lm_head tied to the token embedding. Names match nanoGPT's modules
// (transformer.wte, transformer.h.0.attn.c_attn, lm_head, ...), so its state_dicts load either way.
//   auto gpt = std::make_shared<CharGPT>(GPTConfig{.vocab_size = 65});
//   auto logits = gpt->forward(idx);                 // idx [B, T] int64 -> [B, T, vocab]
//   auto loss = gpt->loss(logits, targets);
#pragma once

#include <cmath>
#include <vector>

#include "nn/nn.h"
#include "optim/optim.h"

struct GPTConfig {
  int64_t vocab_size = 65;
  int64_t block_size = 64;  // the longest context
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_embd = 128;
  double dropout = 0.0;
  bool bias = true;
};

class CausalSelfAttention : public kiln::nn::Module {
 public:
  explicit CausalSelfAttention(const GPTConfig& c) : n_head(c.n_head), dropout(c.dropout) {
    KILN_CHECK(c.n_embd % c.n_head == 0, "CausalSelfAttention: n_embd (", c.n_embd, ") must be a multiple of n_head (",
               c.n_head, ")");
    c_attn = register_module("c_attn", std::make_shared<kiln::nn::Linear>(c.n_embd, 3 * c.n_embd, c.bias));
    c_proj = register_module("c_proj", std::make_shared<kiln::nn::Linear>(c.n_embd, c.n_embd, c.bias));
    resid_dropout = register_module("resid_dropout", std::make_shared<kiln::nn::Dropout>(c.dropout));
  }

  kiln::Tensor forward(const kiln::Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
    auto qkv = c_attn->forward(x).split(C, 2);
    // [B, T, C] -> [B, n_head, T, head_dim]
    auto heads = [&](const kiln::Tensor& t) { return t.view(B, T, n_head, C / n_head).transpose(1, 2); };
    auto y = kiln::scaled_dot_product_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), {},
                                                is_training() ? dropout : 0.0, /*is_causal=*/true);
    y = y.transpose(1, 2).contiguous().view(B, T, C);
    return resid_dropout->forward(c_proj->forward(y));
  }

  int64_t n_head;
  double dropout;
  std::shared_ptr<kiln::nn::Linear> c_attn, c_proj;
  std::shared_ptr<kiln::nn::Dropout> resid_dropout;
};

class MLP : public kiln::nn::Module {
 public:
  explicit MLP(const GPTConfig& c) {
    c_fc = register_module("c_fc", std::make_shared<kiln::nn::Linear>(c.n_embd, 4 * c.n_embd, c.bias));
    gelu = register_module("gelu", std::make_shared<kiln::nn::GELU>());
    c_proj = register_module("c_proj", std::make_shared<kiln::nn::Linear>(4 * c.n_embd, c.n_embd, c.bias));
    dropout = register_module("dropout", std::make_shared<kiln::nn::Dropout>(c.dropout));
  }
  kiln::Tensor forward(const kiln::Tensor& x) override {
    return dropout->forward(c_proj->forward(gelu->forward(c_fc->forward(x))));
  }

  std::shared_ptr<kiln::nn::Linear> c_fc, c_proj;
  std::shared_ptr<kiln::nn::GELU> gelu;
  std::shared_ptr<kiln::nn::Dropout> dropout;
};

class Block : public kiln::nn::Module {
 public:
  explicit Block(const GPTConfig& c) {
    ln_1 = register_module("ln_1", std::make_shared<kiln::nn::LayerNorm>(kiln::Shape{c.n_embd}, 1e-5, true, c.bias));
    attn = register_module("attn", std::make_shared<CausalSelfAttention>(c));
    ln_2 = register_module("ln_2", std::make_shared<kiln::nn::LayerNorm>(kiln::Shape{c.n_embd}, 1e-5, true, c.bias));
    mlp = register_module("mlp", std::make_shared<MLP>(c));
  }
  kiln::Tensor forward(const kiln::Tensor& x) override {
    auto h = x + attn->forward(ln_1->forward(x));
    return h + mlp->forward(ln_2->forward(h));
  }

  std::shared_ptr<kiln::nn::LayerNorm> ln_1, ln_2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
};

class CharGPT : public kiln::nn::Module {
 public:
  explicit CharGPT(const GPTConfig& c) : config(c) {
    namespace nn = kiln::nn;
    transformer = register_module("transformer", std::make_shared<nn::ModuleDict>());
    wte = std::make_shared<nn::Embedding>(c.vocab_size, c.n_embd);
    wpe = std::make_shared<nn::Embedding>(c.block_size, c.n_embd);
    h = std::make_shared<nn::ModuleList>();
    for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(std::make_shared<Block>(c));
    ln_f = std::make_shared<nn::LayerNorm>(kiln::Shape{c.n_embd}, 1e-5, true, c.bias);
    transformer->insert("wte", wte)
        .insert("wpe", wpe)
        .insert("drop", std::make_shared<nn::Dropout>(c.dropout))
        .insert("h", h)
        .insert("ln_f", ln_f);
    lm_head = register_module("lm_head", std::make_shared<nn::Linear>(c.n_embd, c.vocab_size, false));
    lm_head->weight = wte->weight;  // weight tying: one tensor, trained through both uses
    init_weights();
  }

  // idx [B, T] int64 (T <= block_size) -> logits [B, T, vocab_size].
  kiln::Tensor forward(const kiln::Tensor& idx) override {
    const int64_t T = idx.size(1);
    KILN_CHECK(T <= config.block_size, "CharGPT: a sequence of ", T, " tokens is longer than block_size ",
               config.block_size);
    auto pos = kiln::arange(double(T), {.dtype = kiln::DType::i64, .device = idx.device()});
    auto x = (*transformer)["drop"]->forward(wte->forward(idx) + wpe->forward(pos));
    for (const auto& block : *h) x = block->forward(x);
    return lm_head->forward(ln_f->forward(x));
  }

  static kiln::Tensor loss(const kiln::Tensor& logits, const kiln::Tensor& targets) {
    return kiln::cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1));
  }

  // nanoGPT's initialisation: N(0, 0.02) for linear and embedding weights, zero biases, and the
  // residual projections scaled by 1/sqrt(2 * n_layer).
  void init_weights() {
    namespace nn = kiln::nn;
    for (const auto& [name, m] : named_modules()) {
      if (auto lin = std::dynamic_pointer_cast<nn::Linear>(m)) {
        const bool residual = name.size() >= 6 && name.compare(name.size() - 6, 6, "c_proj") == 0;
        nn::init::normal_(lin->weight, 0.0, residual ? 0.02 / std::sqrt(2.0 * double(config.n_layer)) : 0.02);
        if (lin->bias.defined()) nn::init::zeros_(lin->bias);
      } else if (auto emb = std::dynamic_pointer_cast<nn::Embedding>(m)) {
        nn::init::normal_(emb->weight, 0.0, 0.02);
      }
    }
  }

  GPTConfig config;
  std::shared_ptr<kiln::nn::ModuleDict> transformer;
  std::shared_ptr<kiln::nn::Embedding> wte, wpe;
  std::shared_ptr<kiln::nn::ModuleList> h;
  std::shared_ptr<kiln::nn::LayerNorm> ln_f;
  std::shared_ptr<kiln::nn::Linear> lm_head;
};

// nanoGPT's optimizer groups: weight decay for matrices (2 or more dims), none for biases,
// LayerNorm weights and (here) nothing else.
inline std::vector<kiln::optim::ParamGroup> gpt_param_groups(const kiln::nn::Module& model, double weight_decay) {
  kiln::optim::ParamGroup decay, no_decay;
  for (const auto& [name, p] : model.named_parameters()) (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  decay.options = {{"weight_decay", weight_decay}};
  no_decay.options = {{"weight_decay", 0.0}};
  return {decay, no_decay};
}
