// A character-level GPT trained on a small text (examples/data/kiln_verses.txt by default): the
// nanoGPT recipe in kiln. Windows of the text and the windows one character on are the (input,
// target) pairs of a Dataset, batched by a DataLoader; AdamW with a no-decay group and gradient
// clipping; validation loss on the text's last tenth; then a sample, drawn with temperature and
// top-k through topk, masked_fill, softmax and multinomial.
//   char_gpt                          # 600 steps of a 2-layer, 4-head, 64-wide model on the CPU
//   char_gpt --steps 2000 --n-layer 4 --n-embd 128 --device cuda
// The last line is a JSON summary (final train and validation loss, steps per second).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "examples/char_gpt.h"
#include "kiln.h"

#ifndef KILN_CHAR_GPT_TEXT
#define KILN_CHAR_GPT_TEXT "examples/data/kiln_verses.txt"
#endif

namespace {

struct Args {
  std::string text = KILN_CHAR_GPT_TEXT, device = "cpu";
  int64_t steps = 600, batch_size = 32, block_size = 64, n_layer = 2, n_head = 4, n_embd = 64;
  int64_t eval_interval = 100, sample = 300, seed = 1337, threads = 0;
  double lr = 1e-3, dropout = 0.1;
};

const char* kUsage = R"(usage: char_gpt [--text PATH] [--steps N] [--batch-size N] [--block-size N]
                [--n-layer N] [--n-head N] [--n-embd N] [--dropout X] [--lr X] [--eval-interval N]
                [--sample N] [--seed N] [--threads N] [--device cpu|cuda]
)";

// 0: go on; 1: --help was printed; 2: a bad flag (reported).
int parse(int argc, char** argv, Args& a) {
  std::map<std::string, int64_t*> ints{{"--steps", &a.steps},
                                       {"--batch-size", &a.batch_size},
                                       {"--block-size", &a.block_size},
                                       {"--n-layer", &a.n_layer},
                                       {"--n-head", &a.n_head},
                                       {"--n-embd", &a.n_embd},
                                       {"--eval-interval", &a.eval_interval},
                                       {"--sample", &a.sample},
                                       {"--seed", &a.seed},
                                       {"--threads", &a.threads}};
  std::map<std::string, double*> reals{{"--lr", &a.lr}, {"--dropout", &a.dropout}};
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") return std::cout << kUsage, 1;
    if (i + 1 >= argc) return std::cerr << f << " needs a value\n" << kUsage, 2;
    const std::string v = argv[++i];
    try {
      if (f == "--text")
        a.text = v;
      else if (f == "--device")
        a.device = v;
      else if (ints.count(f))
        *ints[f] = std::stoll(v);
      else if (reals.count(f))
        *reals[f] = std::stod(v);
      else
        return std::cerr << "unknown flag " << f << "\n" << kUsage, 2;
    } catch (const std::exception&) { return std::cerr << f << " expects a number, got '" << v << "'\n" << kUsage, 2; }
  }
  return 0;
}

// Windows of a token stream: example i is (tokens[i, i + t), tokens[i + 1, i + t + 1)).
class NextCharDataset : public kiln::data::Dataset {
 public:
  NextCharDataset(kiln::Tensor tokens, int64_t block) : tokens_(std::move(tokens)), block_(block) {}
  int64_t size() const override { return tokens_.size(0) - block_; }
  kiln::data::Example get(int64_t i) const override {
    check_index(i);
    return {tokens_.narrow(0, i, block_), tokens_.narrow(0, i + 1, block_)};
  }

 private:
  kiln::Tensor tokens_;
  int64_t block_;
};

// Mean loss over up to `batches` batches of `loader`, without gradients, in evaluation mode.
double evaluate(CharGPT& model, kiln::data::DataLoader& loader, kiln::Device device, int batches) {
  kiln::NoGradGuard no_grad;
  model.eval();
  double total = 0;
  int n = 0;
  for (auto& [x, y] : loader) {
    total += CharGPT::loss(model.forward(x.to(device)), y.to(device)).item();
    if (++n == batches) break;
  }
  model.train();
  return n ? total / n : 0.0;
}

// Continues `context` by n characters: the last block_size of them in, the next one drawn from the
// top_k most likely after dividing the logits by the temperature.
kiln::Tensor generate(CharGPT& model, kiln::Tensor idx, int64_t n, double temperature, int64_t top_k) {
  kiln::NoGradGuard no_grad;
  model.eval();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = idx.size(1), keep = std::min(t, model.config.block_size);
    auto logits = model.forward(idx.narrow(1, t - keep, keep)).select(1, keep - 1) / temperature;
    auto [top, unused] = logits.topk(std::min(top_k, logits.size(-1)));
    logits = logits.masked_fill(logits < top.narrow(1, top.size(1) - 1, 1), -INFINITY);
    idx = kiln::cat({idx, kiln::multinomial(logits.softmax(-1), 1)}, 1);
  }
  model.train();
  return idx;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (int status = parse(argc, argv, a)) return status == 1 ? 0 : 2;
  try {
    if (a.threads > 0) kiln::set_num_threads(int(a.threads));
    kiln::manual_seed(uint64_t(a.seed));
    const kiln::Device device = kiln::Device::parse(a.device);
    std::ifstream in(a.text, std::ios::binary);
    KILN_CHECK(in.good(), "char_gpt: cannot read ", a.text, "; pass a text file with --text");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::set<char> chars(text.begin(), text.end());
    std::map<char, int64_t> stoi;
    std::string itos;
    for (char c : chars) {
      stoi[c] = int64_t(itos.size());
      itos.push_back(c);
    }
    std::vector<int64_t> ids;
    for (char c : text) ids.push_back(stoi[c]);
    const int64_t n_train = int64_t(ids.size()) * 9 / 10;
    auto tokens = kiln::tensor(ids);
    KILN_CHECK(int64_t(ids.size()) - n_train > a.block_size + 1, "char_gpt: the text (", ids.size(),
               " characters) is too short for block_size ", a.block_size);
    auto train_set = std::make_shared<NextCharDataset>(tokens.narrow(0, 0, n_train), a.block_size);
    auto val_set = std::make_shared<NextCharDataset>(tokens.narrow(0, n_train, tokens.size(0) - n_train), a.block_size);
    kiln::data::DataLoader train(train_set,
                                 {.batch_size = a.batch_size, .shuffle = true, .drop_last = true, .num_workers = 1});
    kiln::data::DataLoader val(val_set, {.batch_size = a.batch_size, .shuffle = true});

    CharGPT model({.vocab_size = int64_t(itos.size()),
                   .block_size = a.block_size,
                   .n_layer = a.n_layer,
                   .n_head = a.n_head,
                   .n_embd = a.n_embd,
                   .dropout = a.dropout});
    model.to(device);
    kiln::optim::AdamW opt(gpt_param_groups(model, 0.1), {.lr = a.lr, .betas = {0.9, 0.99}});
    std::printf(
        "char_gpt: %zu characters, vocabulary %zu, %zu parameters, %s\n", text.size(), itos.size(),
        [&] {
          size_t n = 0;
          for (auto& p : model.parameters()) n += size_t(p.numel());
          return n;
        }(),
        device.str().c_str());

    const auto start = std::chrono::steady_clock::now();
    double train_loss = 0, val_loss = 0;
    int64_t step = 0;
    while (step < a.steps) {
      for (auto& [x, y] : train) {
        auto loss = CharGPT::loss(model.forward(x.to(device)), y.to(device));
        opt.zero_grad();
        loss.backward();
        kiln::optim::clip_grad_norm_(model.parameters(), 1.0);
        opt.step();
        ++step;
        if (step % a.eval_interval == 0 || step == a.steps) {
          train_loss = loss.item();
          val_loss = evaluate(model, val, device, 10);
          std::printf("step %lld: train loss %.4f, val loss %.4f\n", (long long)step, train_loss, val_loss);
        }
        if (step == a.steps) break;
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    if (a.sample > 0) {
      auto idx = generate(model, kiln::tensor({int64_t(stoi['\n'])}).view(1, 1).to(device), a.sample, 0.8, 10);
      std::string out;
      for (int64_t t : idx.to_vector<int64_t>()) out.push_back(itos[size_t(t)]);
      std::printf("---- sample ----%s\n----\n", out.c_str());
    }
    std::printf("{\"train_loss\": %.4f, \"val_loss\": %.4f, \"steps\": %lld, \"steps_per_second\": %.2f}\n", train_loss,
                val_loss, (long long)step, double(step) / seconds);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
