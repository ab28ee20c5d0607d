// kiln_bench --mode train|infer: the reference SimpleCNN of DESIGN.md (examples/simple_cnn.h) on random CIFAR-shaped
// input. train times the whole step (zero_grad, forward, cross-entropy, backward, AdamW step); infer times the forward
// pass under NoGradGuard in eval mode. Warm-up steps are excluded and the reported rate is the median over the timed
// steps. With KILN_BENCH_PROFILE=1 the step's phases and each layer's kernels (forward and backward, timed on their
// own) go to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "bench.h"
#include "core/dispatch.h"
#include "examples/simple_cnn.h"
#include "kernels/cpu/conv_fast.h"
#include "kiln.h"
#if KILN_WITH_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
bool profiling() {
  const char* e = std::getenv("KILN_BENCH_PROFILE");
  return e && *e && std::string(e) != "0";
}

// The precision of a run: "32-true", or a mixed mode (autocast to bf16/f16 around forward and
// loss; "16-mixed" also scales the loss with a GradScaler).
struct Precision {
  bool mixed = false;
  DType low = DType::bf16;
};

Precision check_args(const Args& a) {
  Device d = Device::parse(a.device);
  if (d.is_cuda() && !kiln::cuda::is_available())
    fail("kiln_bench: --device ", a.device, " asked for, but no CUDA GPU is available here");
  if (a.batch_size <= 0 || a.steps <= 0) fail("kiln_bench: --batch-size and --steps must be positive");
  if (a.precision == "32-true") return {};
  if (a.precision == "bf16-mixed") return {true, DType::bf16};
  if (a.precision == "16-mixed") {
    if (d.is_cpu()) fail("kiln_bench: 16-mixed needs a GPU; use bf16-mixed or 32-true on the CPU");
    return {true, DType::f16};
  }
  fail("kiln_bench: --precision ", a.precision, " is not one of 32-true, bf16-mixed, 16-mixed");
}

// Waits for queued GPU work so host timers see it finish.
void sync(Device d) {
  if (d.is_cuda()) kiln::cuda::synchronize();
}

void print_json(const char* bench, const Args& a, int batch, double img_s, double step_ms) {
  double peak_mb = -1;
#if KILN_WITH_CUDA
  if (Device::parse(a.device).is_cuda()) peak_mb = double(kernels::cuda::memory_stats().peak_allocated) / (1 << 20);
#endif
  std::printf("{\"bench\":\"%s\",\"device\":\"%s\",\"precision\":\"%s\",\"batch_size\":%d,"
              "\"threads\":%d,\"steps\":%d,\"median_step_ms\":%.3f,\"images_per_s\":%.1f",
              bench, a.device.c_str(), a.precision.c_str(), batch, kiln::get_num_threads(), a.steps, step_ms, img_s);
  if (peak_mb >= 0) std::printf(",\"peak_mem_mb\":%.1f", peak_mb);
  std::printf("}\n");
}

// Median time of f over `reps` calls after two warm-up calls, in milliseconds.
double time_ms(const std::function<void()>& f, int reps = 7) {
  f();
  f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(seconds_since(t0) * 1e3);
  }
  return median(t);
}

// Each layer's kernels timed on their own, in the dtype the step runs them in (bf16 under
// bf16-mixed): where the step's time goes, and each convolution's achieved GFLOP/s against the
// measured FMA peak (peak.cpp). The FLOPs are those of a direct convolution (2 N C_out H W C_in 9),
// whatever algorithm runs: Winograd does fewer, so its figure is the equivalent rate.
void profile_layers(SimpleCNN& m, int64_t batch, DType dt) {
  auto& be = detail::backend(Device::cpu());
  const Peak peak = measure_peak(kiln::get_num_threads());
  struct ConvCase {
    const char* name;
    int64_t cin, cout, hw;
    int w;
  };
  const int64_t cin1 = m.conv1->weight.size(1);
  const ConvCase convs[] = {{"conv1", cin1, 32, 32, 0}, {"conv2", 32, 64, 16, 2}, {"conv3", 64, 128, 8, 4}};
  std::fprintf(stderr,
               "layer kernels at batch %lld in %s (median ms); f32 FMA peak %.1f GFLOP/s (%s, %d threads);\n"
               "conv GFLOP/s count a direct convolution's FLOPs, so Winograd's equivalent rate can pass 100%%\n",
               (long long)batch, std::string(dtype_name(dt)).c_str(), peak.gflops, peak.isa.c_str(), peak.threads);
  auto rate = [&](double gflop, double ms) {
    char buf[64];
    const double r = gflop / ms * 1e3;
    if (peak.gflops > 0)
      std::snprintf(buf, sizeof buf, "%6.1f GFLOP/s, %3.0f%%", r, 100.0 * r / peak.gflops);
    else
      std::snprintf(buf, sizeof buf, "%6.1f GFLOP/s", r);
    return std::string(buf);
  };
  for (const auto& c : convs) {
    Tensor x = kiln::randn({batch, c.cin, c.hw, c.hw}).to(dt);
    auto& conv = c.w == 0 ? m.conv1 : c.w == 2 ? m.conv2 : m.conv3;
    Tensor w = conv->weight.detach().to(dt), b = conv->bias.detach().to(dt);
    kernels::Conv2dParams p{batch, c.cin, c.hw, c.hw, c.cout, 3, 3, c.hw, c.hw, 1, 1, 1, 1, 1, 1, 1};
    Tensor y = kiln::empty({batch, c.cout, c.hw, c.hw}, {.dtype = dt});
    Tensor gx = kiln::empty_like(x), gw = kiln::empty_like(w), gb = kiln::empty_like(b);
    auto v = [](const Tensor& t) { return detail::view_of(t); };
    double f = time_ms([&] { be.conv2d_forward(p, v(y), v(x), v(w), v(b)); });
    double bw = time_ms([&] { be.conv2d_backward(p, detail::null_view(), v(gw), v(gb), v(y), v(x), v(w)); });
    double bx =
        time_ms([&] { be.conv2d_backward(p, v(gx), detail::null_view(), detail::null_view(), v(y), v(x), v(w)); });
    const double gflop = 2.0 * double(batch * c.cout * c.hw * c.hw * c.cin * 9) * 1e-9;
    const auto k = kernels::cpu::conv2d_fast_kernels(p, dt);
    auto kernel = [](const std::string& name) { return name.empty() ? std::string("im2col+gemm") : name; };
    std::fprintf(stderr, "  %s fwd   %7.2f (%s) %s\n", c.name, f, rate(gflop, f).c_str(), kernel(k.forward).c_str());
    std::fprintf(stderr, "  %s bwd_w %7.2f (%s) %s  (with the bias gradient)\n", c.name, bw, rate(gflop, bw).c_str(),
                 kernel(k.weight_grad).c_str());
    std::fprintf(stderr, "  %s bwd_x %7.2f (%s) %s%s\n", c.name, bx, rate(gflop, bx).c_str(),
                 kernel(k.input_grad).c_str(),
                 c.w == 0 ? "  (not needed in training: the images need no gradient)" : "");
    Tensor r = kiln::empty({batch, c.cout, c.hw, c.hw}, {.dtype = dt});
    double relu_ms = time_ms([&] { be.unary(kernels::UnaryOp::relu, v(r), v(y), 0, 0); });
    double relu_bw = time_ms([&] { be.binary(kernels::BinaryOp::relu_backward, v(r), v(y), v(y), 0, 0); });
    Tensor pooled = kiln::empty({batch, c.cout, c.hw / 2, c.hw / 2}, {.dtype = dt});
    Tensor idx = kiln::empty({batch, c.cout, c.hw / 2, c.hw / 2}, {.dtype = DType::i64});
    kernels::Pool2dParams pp{batch, c.cout, c.hw, c.hw, c.hw / 2, c.hw / 2, 2, 2, 2, 2, 0, 0, true};
    double pool_f = time_ms([&] { be.max_pool2d_forward(pp, v(pooled), v(idx), v(y)); });
    double pool_b = time_ms([&] { be.max_pool2d_backward(pp, v(r), v(pooled), v(idx)); });
    std::fprintf(stderr, "  %s relu fwd %.2f bwd %.2f  maxpool fwd %.2f bwd %.2f\n", c.name, relu_ms, relu_bw, pool_f,
                 pool_b);
  }
  Tensor h = kiln::randn({batch, 2048}).to(dt);
  Tensor w1 = m.fc1->weight.detach().to(dt);
  double fc1 = time_ms([&] {
    NoGradGuard g;
    (void)linear(h, w1);
  });
  Tensor go = kiln::randn({batch, 256}).to(dt);
  double fc1_bw = time_ms([&] {
    NoGradGuard g;
    (void)matmul(transpose(go, 0, 1), h);
  });
  double fc1_bx = time_ms([&] {
    NoGradGuard g;
    (void)matmul(go, w1);
  });
  std::fprintf(stderr, "  fc1 fwd %.2f  bwd_w %.2f  bwd_x %.2f\n", fc1, fc1_bw, fc1_bx);
}

}  // namespace

// On a GPU: `repeats` runs of `steps` steps queued back to back, each closed by one
// synchronisation (the peer's method, bench/peers/fabric_cnn.py), after warm-up steps that also
// run cuDNN's algorithm search; with --cuda-graphs 1 the step is captured once after warm-up and
// each step is one replay. Peak memory is measured from the end of warm-up, as the peer does.
int train_on_gpu(const Args& a, const Precision& prec, const Device& dev) {
  const int64_t batch = a.batch_size;
  kiln::cuda::set_conv_allow_tf32(a.tf32);
  kiln::manual_seed(0);
  SimpleCNN model;
  model.to(dev);
  model.train();
  kiln::optim::AdamW opt(model.parameters(), kiln::optim::AdamWOptions{.lr = 3e-4, .weight_decay = 1e-2});
  kiln::optim::GradScaler scaler({.enabled = prec.mixed && prec.low == DType::f16});
  Tensor x = kiln::randn({batch, 3, 32, 32}).to(dev);
  Tensor y = kiln::randint(0, 10, {batch}).to(dev);
  Tensor loss;
  auto step = [&] {
    opt.zero_grad();
    {
      AutocastGuard ac(dev.type, prec.low, prec.mixed);
      loss = cross_entropy(model.forward(x), y);
    }
    scaler.scale(loss).backward();
    scaler.step(opt);
    scaler.update();
  };
  for (int s = 0; s < std::max(a.warmup, a.cuda_graphs ? 2 : 0); ++s) step();
  // The peak counts from here: a capture allocates what one step needs (from the graph's pool,
  // which its replays then reuse), so it is the step's working set in both modes.
  kiln::cuda::synchronize();
  kiln::cuda::reset_peak_memory_stats();
  kiln::cuda::Graph graph;
  if (a.cuda_graphs) {
    graph.capture(step);
    graph.replay();
  }
  kiln::cuda::synchronize();
  const uint64_t syncs = kiln::cuda::host_sync_count();
  std::vector<double> rates, step_ms;
  for (int r = 0; r < std::max(a.repeats, 1); ++r) {
    auto t0 = Clock::now();
    for (int s = 0; s < a.steps; ++s) {
      if (a.cuda_graphs)
        graph.replay();
      else
        step();
    }
    kiln::cuda::synchronize();
    const double t = seconds_since(t0);
    rates.push_back(double(batch) * a.steps / t);
    step_ms.push_back(t / a.steps * 1e3);
  }
  // One synchronisation closes each repeat; anything above that happened inside the steps.
  const double syncs_per_step = double(kiln::cuda::host_sync_count() - syncs - uint64_t(std::max(a.repeats, 1))) /
                                (double(a.steps) * std::max(a.repeats, 1));
  const double peak_mb = double(kiln::cuda::memory_stats().peak_allocated) / (1 << 20);
  const float last_loss = loss.item<float>();
  std::string rs;
  for (double r : rates) {
    if (!rs.empty()) rs += ',';
    rs += std::to_string(int64_t(r));
  }
  std::printf("{\"bench\":\"train_step\",\"device\":\"%s\",\"precision\":\"%s\",\"batch_size\":%d,"
              "\"cuda_graphs\":%s,\"tf32\":%s,\"steps\":%d,\"median_step_ms\":%.3f,\"images_per_s\":%.1f,"
              "\"repeats\":[%s],\"host_syncs_per_step\":%.2f,\"peak_mem_mb\":%.1f,\"loss\":%.4f}\n",
              a.device.c_str(), a.precision.c_str(), int(batch), a.cuda_graphs ? "true" : "false",
              a.tf32 ? "true" : "false", a.steps, median(step_ms), median(rates), rs.c_str(), syncs_per_step, peak_mb,
              last_loss);
  return 0;
}

int run_train(const Args& a) {
  const Precision prec = check_args(a);
  const Device dev = Device::parse(a.device);
  if (dev.is_cuda()) return train_on_gpu(a, prec, dev);
  KILN_CHECK(!a.cuda_graphs, "kiln_bench: --cuda-graphs needs --device cuda");
  const int64_t batch = a.batch_size;
  kiln::manual_seed(0);
  SimpleCNN model;
  model.to(dev);
  model.train();
  kiln::optim::AdamW opt(model.parameters(), kiln::optim::AdamWOptions{.lr = 3e-4, .weight_decay = 1e-2});
  kiln::optim::GradScaler scaler({.enabled = prec.mixed && prec.low == DType::f16});
  Tensor x = kiln::randn({batch, 3, 32, 32}).to(dev);
  Tensor y = kiln::randint(0, 10, {batch}).to(dev);
  const bool prof = profiling();
  std::vector<double> t_step, t_fwd, t_bwd, t_opt;
  float last_loss = 0;
  for (int s = 0; s < a.warmup + a.steps; ++s) {
    auto t0 = Clock::now();
    opt.zero_grad();
    Tensor loss;
    {
      AutocastGuard ac(dev.type, prec.low, prec.mixed);
      loss = cross_entropy(model.forward(x), y);
    }
    auto t1 = Clock::now();
    scaler.scale(loss).backward();
    auto t2 = Clock::now();
    scaler.step(opt);
    scaler.update();
    auto t3 = Clock::now();
    if (s >= a.warmup) {
      t_step.push_back(std::chrono::duration<double>(t3 - t0).count());
      t_fwd.push_back(std::chrono::duration<double>(t1 - t0).count());
      t_bwd.push_back(std::chrono::duration<double>(t2 - t1).count());
      t_opt.push_back(std::chrono::duration<double>(t3 - t2).count());
    }
    if (s + 1 == a.warmup + a.steps) last_loss = loss.item<float>();
  }
  const double step = median(t_step);
  if (prof) {
    std::fprintf(stderr, "train step median %.2f ms: forward+loss %.2f, backward %.2f, adamw %.2f (loss %.4f)\n",
                 step * 1e3, median(t_fwd) * 1e3, median(t_bwd) * 1e3, median(t_opt) * 1e3, last_loss);
    profile_layers(model, batch, prec.mixed ? prec.low : DType::f32);
  }
  print_json("train_step", a, int(batch), double(batch) / step, step * 1e3);
  return 0;
}

int run_infer(const Args& a) {
  const Precision prec = check_args(a);
  const Device dev = Device::parse(a.device);
  const int64_t batch = a.batch_size;
  kiln::manual_seed(0);
  SimpleCNN model;
  model.to(dev);
  model.eval();
  Tensor x = kiln::randn({batch, 3, 32, 32}).to(dev);
  std::vector<double> t;
  NoGradGuard guard;
  AutocastGuard ac(dev.type, prec.low, prec.mixed);
  for (int s = 0; s < a.warmup + a.steps; ++s) {
    auto t0 = Clock::now();
    Tensor out = model.forward(x);
    sync(dev);
    if (s >= a.warmup) t.push_back(seconds_since(t0));
  }
  const double step = median(t);
  if (profiling() && dev.is_cpu()) {
    std::fprintf(stderr, "infer step median %.2f ms\n", step * 1e3);
    profile_layers(model, batch, prec.mixed ? prec.low : DType::f32);
  }
  print_json("infer", a, int(batch), double(batch) / step, step * 1e3);
  return 0;
}

}  // namespace kiln::bench
