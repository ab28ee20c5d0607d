// kiln_bench --mode attention|gpt|resnet: the workloads of the ports in examples/.
//   attention  scaled_dot_product_attention forward + backward on random q, k, v [B, H, T, D],
//              the fused kernel against the math path (matmul, softmax, matmul), in one run
//   gpt        the small character GPT's training step (examples/char_gpt.h: forward, loss,
//              backward, clipping, AdamW) on random tokens
//   resnet     ResNet-20's training step (examples/resnet_cifar.h: nesterov SGD, two groups)
// --compete N starts N processes that spin on a core each for the whole timed run (a busy
// neighbour), to see how the step degrades when the machine is not kiln's alone. Warm-up steps
// are excluded; each figure is the median over the timed steps. The last line is one JSON object.
//   kiln_bench --mode attention --device cpu --batch-size 4 --heads 4 --seq 256 --head-dim 64 --causal 1
//   kiln_bench --mode gpt --threads 1 --batch-size 32 --seq 64
//   kiln_bench --mode resnet --threads 2 --batch-size 128 --compete 1
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench.h"
#include "examples/char_gpt.h"
#include "examples/resnet_cifar.h"
#include "kiln.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Busy processes for the lifetime of this object (children of a fork that spin, killed after).
class CompetingLoad {
 public:
  explicit CompetingLoad(int n) {
    for (int i = 0; i < n; ++i) {
      const pid_t pid = fork();
      if (pid < 0) fail("kiln_bench: could not start a competing process");
      if (pid == 0) {
        volatile double x = 1.0;
        for (;;) x = x * 1.0000001 + 1e-9;
      }
      pids_.push_back(pid);
    }
  }
  ~CompetingLoad() {
    for (pid_t p : pids_) kill(p, SIGKILL);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
  }
  CompetingLoad(const CompetingLoad&) = delete;
  CompetingLoad& operator=(const CompetingLoad&) = delete;

 private:
  std::vector<pid_t> pids_;
};

// Runs step() warmup + steps times and returns the seconds of each timed one (device synchronised).
std::vector<double> time_steps(const Args& a, Device device, const std::function<void()>& step) {
  std::vector<double> t;
  for (int s = 0; s < a.warmup + a.steps; ++s) {
    const auto t0 = Clock::now();
    step();
    if (device.is_cuda()) kiln::cuda::synchronize();
    if (s >= a.warmup) t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return t;
}

Device device_of(const Args& a) {
  const Device d = Device::parse(a.device);
  if (d.is_cuda() && !kiln::cuda::is_available())
    fail("kiln_bench: --device ", a.device, " asked for, but no CUDA GPU is available here");
  if (a.batch_size <= 0 || a.steps <= 0) fail("kiln_bench: --batch-size and --steps must be positive");
  return d;
}

std::string common_json(const Args& a, Device d) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "\"device\": \"%s\", \"threads\": %d, \"batch_size\": %d, \"compete\": %d",
                d.str().c_str(), kiln::get_num_threads(), a.batch_size, a.compete);
  return buf;
}

}  // namespace

int run_attention(const Args& a) {
  const Device d = device_of(a);
  const DType t = a.precision == "bf16-true" ? DType::bf16 : a.precision == "16-true" ? DType::f16 : DType::f32;
  const int64_t T = a.seq, H = a.heads, D = a.head_dim, B = a.batch_size;
  manual_seed(0);
  auto make = [&] { return randn({B, H, T, D}, {.dtype = t, .device = d}).requires_grad_(); };
  Tensor q = make(), k = make(), v = make();
  Tensor go = randn({B, H, T, D}, {.dtype = t, .device = d});
  CompetingLoad load(a.compete);
  double ms[2];
  for (int path = 0; path < 2; ++path) {
    set_sdpa_backend(path == 0 ? SdpaBackend::fused : SdpaBackend::math);
    const auto times = time_steps(a, d, [&] {
      q.set_grad({});
      k.set_grad({});
      v.set_grad({});
      scaled_dot_product_attention(q, k, v, {}, 0.0, a.causal).backward(go);
    });
    ms[path] = 1e3 * median(times);
  }
  set_sdpa_backend(SdpaBackend::automatic);
  std::printf("{\"bench\": \"sdpa_forward_backward\", %s, \"dtype\": \"%s\", \"heads\": %lld, \"seq\": %lld, "
              "\"head_dim\": %lld, \"causal\": %s, \"fused_ms\": %.3f, \"math_ms\": %.3f, \"speedup\": %.2f}\n",
              common_json(a, d).c_str(), std::string(dtype_name(t)).c_str(), (long long)H, (long long)T, (long long)D,
              a.causal ? "true" : "false", ms[0], ms[1], ms[1] / ms[0]);
  return 0;
}

int run_gpt(const Args& a) {
  const Device d = device_of(a);
  manual_seed(0);
  const GPTConfig cfg{.vocab_size = 65,
                      .block_size = a.seq,
                      .n_layer = a.n_layer,
                      .n_head = a.heads,
                      .n_embd = a.n_embd,
                      .dropout = 0.0};
  CharGPT model(cfg);
  model.to(d);
  optim::AdamW opt(gpt_param_groups(model, 0.1), {.lr = 1e-3, .betas = {0.9, 0.99}});
  Tensor x = randint(0, cfg.vocab_size, {a.batch_size, a.seq}).to(d);
  Tensor y = randint(0, cfg.vocab_size, {a.batch_size, a.seq}).to(d);
  CompetingLoad load(a.compete);
  const auto times = time_steps(a, d, [&] {
    auto loss = CharGPT::loss(model.forward(x), y);
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm_(model.parameters(), 1.0);
    opt.step();
  });
  const double step = median(times);
  std::printf("{\"bench\": \"gpt_train_step\", %s, \"seq\": %lld, \"n_layer\": %lld, \"n_head\": %d, \"n_embd\": %lld, "
              "\"step_ms\": %.3f, \"tokens_per_second\": %.0f}\n",
              common_json(a, d).c_str(), (long long)a.seq, (long long)a.n_layer, a.heads, (long long)a.n_embd,
              1e3 * step, double(a.batch_size) * double(a.seq) / step);
  return 0;
}

int run_resnet(const Args& a) {
  const Device d = device_of(a);
  manual_seed(0);
  ResNet model;  // ResNet-20, 3 channels, 10 classes
  model.to(d);
  model.train();
  optim::SGD opt(decay_groups(model, 5e-4), {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  Tensor x = randn({a.batch_size, 3, 32, 32}).to(d);
  Tensor y = randint(0, 10, {a.batch_size}).to(d);
  CompetingLoad load(a.compete);
  const auto times = time_steps(a, d, [&] {
    auto loss = cross_entropy(model.forward(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
  });
  const double step = median(times);
  const auto [lo, hi] = std::minmax_element(times.begin(), times.end());
  std::printf("{\"bench\": \"resnet20_train_step\", %s, \"step_ms\": %.3f, \"min_ms\": %.3f, \"max_ms\": %.3f, "
              "\"images_per_second\": %.1f}\n",
              common_json(a, d).c_str(), 1e3 * step, 1e3 * *lo, 1e3 * *hi, double(a.batch_size) / step);
  return 0;
}

}  // namespace kiln::bench
