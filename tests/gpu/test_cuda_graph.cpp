// A training step with no host in the loop, on a GPU: the reference CNN's step under 32-true and
// 16-mixed adds no host synchronisation; nll_loss reports a bad target at the next
// synchronisation instead of reading a flag back per loss; GradScaler skips and rescales on the
// device exactly as on the CPU; and kiln::cuda::Graph captures the whole step (forward, loss,
// backward, AdamW, scaler) and replays it to the same parameters as eager steps, with fresh
// dropout masks on each replay and clear errors for what a capture cannot hold. Skipped without
// a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "data/device_image_loader.h"
#include "examples/simple_cnn.h"
#include "fabric/fabric.h"
#include "gpu_helpers.h"
#include "optim/adam.h"
#include "optim/grad_scaler.h"
#include "optim/sgd.h"

using namespace kiln;
using namespace kiln::gpu_test;

namespace {

struct Batch {
  Tensor x, y;
};

std::vector<Batch> batches(int n, int64_t size, uint64_t seed) {
  manual_seed(seed);
  std::vector<Batch> out;
  for (int i = 0; i < n; ++i) out.push_back({randn({size, 3, 32, 32}).to(kGpu), randint(0, 10, {size}).to(kGpu)});
  return out;
}

std::shared_ptr<SimpleCNN> model_on_gpu(uint64_t seed) {
  manual_seed(seed);
  auto m = std::make_shared<SimpleCNN>();
  m->to(kGpu);
  return m;
}

// One step of the reference recipe; `scaler` may be null (32-true).
Tensor train_step(SimpleCNN& model, optim::Optimizer& opt, optim::GradScaler* scaler, const Tensor& x,
                  const Tensor& y) {
  opt.zero_grad();
  Tensor loss = nn::functional::cross_entropy(model.forward(x), y);
  if (scaler) {
    scaler->scale(loss).backward();
    scaler->step(opt);
    scaler->update();
  } else {
    loss.backward();
    opt.step();
  }
  return loss;
}

// Bit-reproducible kernels for the scope: with them eager and replayed steps must agree to
// float rounding; without, cuDNN's atomics-based algorithms make even two eager runs differ, and
// Adam turns such differences in near-zero gradients into differences of the order of its lr.
struct Deterministic {
  bool before = are_deterministic_algorithms_enabled();
  Deterministic() { use_deterministic_algorithms(true); }
  ~Deterministic() { use_deterministic_algorithms(before); }
};

void expect_same_parameters(nn::Module& a, nn::Module& b, double rtol, const char* what) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& [name, t] : pa.items())
    expect_close(t, pb[name], rtol, rtol * max_abs(pb[name]), std::string(what) + " " + name);
}

}  // namespace

TEST_CASE("gpu: a training step adds no host synchronisation (32-true, 16-mixed)" * doctest::skip(gpu_missing())) {
  for (bool mixed : {false, true}) {
    auto model = model_on_gpu(1);
    optim::AdamW opt(model->parameters(), optim::AdamWOptions{.lr = 3e-4});
    optim::GradScaler scaler({.enabled = mixed});
    auto data = batches(6, 32, 2);
    for (int i = 0; i < 2; ++i) {  // warm-up: cuDNN's algorithm search, optimizer state
      AutocastGuard ac(DeviceType::cuda, DType::f16, mixed);
      train_step(*model, opt, &scaler, data[size_t(i)].x, data[size_t(i)].y);
    }
    cuda::synchronize();
    const uint64_t before = cuda::host_sync_count();
    for (int i = 2; i < 6; ++i) {
      AutocastGuard ac(DeviceType::cuda, DType::f16, mixed);
      train_step(*model, opt, &scaler, data[size_t(i)].x, data[size_t(i)].y);
    }
    CHECK_MESSAGE(cuda::host_sync_count() == before, (mixed ? "16-mixed" : "32-true")
                                                         << ": " << cuda::host_sync_count() - before
                                                         << " host synchronisations in 4 steps");
    cuda::synchronize();
    CHECK(cuda::host_sync_count() == before + 1);  // and the counter does count
  }
}

TEST_CASE("gpu: nll_loss reports an out-of-range target at the next synchronisation" * doctest::skip(gpu_missing())) {
  Tensor logits = randn({4, 5}).to(kGpu);
  Tensor bad = tensor(std::vector<int64_t>{0, 1, 7, 2}).to(kGpu);
  Tensor loss;
  CHECK_NOTHROW(loss = cross_entropy(logits, bad));  // nothing is read back here
  try {
    (void)loss.item<float>();
    FAIL("expected the bad target to be reported");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("target 7 is out of bounds for 5 classes") != std::string::npos, m);
  }
  // Reported once; the device and later work are fine.
  Tensor good = tensor(std::vector<int64_t>{0, 1, 4, 2}).to(kGpu);
  CHECK(std::isfinite(cross_entropy(logits, good).item<float>()));
  // ignore_index is not an error.
  Tensor ignored = tensor(std::vector<int64_t>{0, -100, 4, 2}).to(kGpu);
  CHECK(std::isfinite(cross_entropy(logits, ignored).item<float>()));
}

TEST_CASE("gpu: GradScaler skips and rescales on the device like the CPU" * doctest::skip(gpu_missing())) {
  for (bool use_sgd : {false, true}) {
    std::vector<Tensor> pc = {randn({257}), randn({3, 5})};
    std::vector<Tensor> pg;
    for (Tensor& p : pc) {
      p.requires_grad_(true);
      pg.push_back(p.detach().to(kGpu).requires_grad_(true));
    }
    auto make = [&](std::vector<Tensor> ps) -> std::unique_ptr<optim::Optimizer> {
      if (use_sgd) return std::make_unique<optim::SGD>(ps, optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
      return std::make_unique<optim::AdamW>(ps, optim::AdamWOptions{.lr = 1e-2});
    };
    auto oc = make(pc), og = make(pg);
    optim::GradScaler sc({.init_scale = 1024.0, .growth_interval = 3}),
        sg({.init_scale = 1024.0, .growth_interval = 3});
    const float inf = std::numeric_limits<float>::infinity();
    for (int step = 0; step < 8; ++step) {
      for (size_t k = 0; k < pc.size(); ++k) {
        Tensor g = randn(pc[k].sizes()) * 1024.0;
        if ((step == 2 || step == 5) && k == 1) g.view({-1}).narrow(0, 3, 1).fill_(step == 2 ? inf : std::nan(""));
        pc[k].set_grad(g);
        pg[k].set_grad(g.to(kGpu));
      }
      sc.step(*oc);
      sg.step(*og);
      sc.update();
      sg.update();
      CHECK_MESSAGE(sg.get_scale() == sc.get_scale(), "step " << step);
    }
    CHECK(sg.growth_tracker() == sc.growth_tracker());
    for (size_t k = 0; k < pc.size(); ++k)
      expect_close(pg[k], pc[k], 1e-5, 1e-5 * max_abs(pc[k]), std::string(use_sgd ? "sgd" : "adamw") + " param");
    // The device step counts saw the skips: the saved state equals the CPU's.
    auto stc = oc->state_tensors(), stg = og->state_tensors();
    for (auto& [name, t] : stc) expect_close(stg.at(name), t, 1e-5, 1e-5 * max_abs(t), "state " + name);
  }
}

TEST_CASE("gpu: a captured training step replays to the parameters of eager steps" * doctest::skip(gpu_missing())) {
  Deterministic det;
  for (bool mixed : {false, true}) {
    auto eager = model_on_gpu(3), graphed = model_on_gpu(3);
    eager->train(false);  // no dropout: both runs draw no random numbers
    graphed->train(false);
    optim::AdamW oe(eager->parameters(), optim::AdamWOptions{.lr = 1e-3});
    optim::AdamW og(graphed->parameters(), optim::AdamWOptions{.lr = 1e-3});
    optim::GradScaler se({.enabled = mixed}), sg({.enabled = mixed});
    auto data = batches(8, 64, 4);
    for (const Batch& b : data) {
      AutocastGuard ac(DeviceType::cuda, DType::f16, mixed);
      train_step(*eager, oe, &se, b.x, b.y);
    }
    Tensor sx = zeros({64, 3, 32, 32}, {.device = kGpu});
    Tensor sy = zeros({64}, {.dtype = DType::i64, .device = kGpu});
    Tensor loss;
    auto step = [&] {
      AutocastGuard ac(DeviceType::cuda, DType::f16, mixed);
      loss = train_step(*graphed, og, &sg, sx, sy);
    };
    cuda::Graph graph;
    for (size_t i = 0; i < data.size(); ++i) {
      sx.copy_(data[i].x);
      sy.copy_(data[i].y);
      if (i < 2) {
        step();  // warm-up, eager
      } else {
        if (!graph.is_captured()) graph.capture(step);
        graph.replay();
      }
    }
    expect_same_parameters(*graphed, *eager, 1e-5, mixed ? "16-mixed" : "32-true");
    // The step counts advanced on the device through every replay.
    CHECK(og.state_tensors().at("state.0.step").item<double>() == 8.0);
    CHECK(std::isfinite(loss.item<float>()));
    if (mixed) CHECK(sg.get_scale() == se.get_scale());
  }
}

TEST_CASE("gpu: replays draw fresh dropout masks" * doctest::skip(gpu_missing())) {
  Tensor x = ones({4096}, {.device = kGpu});
  Tensor y;
  cuda::Graph graph;
  (void)dropout(x, 0.5, true);  // eager once
  graph.capture([&] { y = dropout(x, 0.5, true); });
  graph.replay();
  Tensor first = y.clone();
  graph.replay();
  Tensor second = y.clone();
  const double kept = ne(first, 0.0).to(DType::f32).mean().item<double>();
  CHECK(kept > 0.45);
  CHECK(kept < 0.55);
  CHECK(ne(first, second).to(DType::f32).mean().item<double>() > 0.3);
}

TEST_CASE("gpu: what a capture cannot hold is a clear error, and the device stays usable" *
          doctest::skip(gpu_missing())) {
  Tensor x = randn({1000}).to(kGpu);
  cuda::Graph graph;
  try {
    graph.capture([&] { (void)(x * 2).sum().item<float>(); });
    FAIL("expected a capture error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("CUDA graph") != std::string::npos, m);
  }
  CHECK_FALSE(graph.is_captured());
  CHECK_THROWS_AS(graph.replay(), Error);
  // Eager work and a new capture still work.
  CHECK((x * 2).sum().item<float>() == doctest::Approx(2 * x.sum().item<float>()).epsilon(1e-4));
  Tensor y;
  graph.capture([&] { y = x * 3 + 1; });
  x.fill_(2.0);
  graph.replay();
  CHECK(min(y).item<float>() == 7.0f);
  CHECK(max(y).item<float>() == 7.0f);
  CHECK_THROWS_AS(graph.capture([&] {}), Error);  // already captured
  graph.reset();
  CHECK_FALSE(graph.is_captured());
}

TEST_CASE("gpu: DeviceImageLoader builds the CPU's batches bit for bit" * doctest::skip(gpu_missing())) {
  manual_seed(9);
  Tensor images = randint(0, 256, {300, 3, 32, 32}).to(DType::u8);
  Tensor labels = randint(0, 10, {300});
  data::DeviceImageLoaderOptions o{.batch_size = 128,
                                   .shuffle = true,
                                   .augment = {.crop_padding = 4,
                                               .random_flip = true,
                                               .random_crop = true,
                                               .mean = {0.49, 0.48, 0.45},
                                               .std = {0.25, 0.24, 0.26}},
                                   .seed = 3};
  data::DeviceImageLoader cpu(images, labels, kCpu, o), gpu(images, labels, kGpu, o);
  cpu.set_epoch(2);
  gpu.set_epoch(2);
  for (int64_t i = 0; i < cpu.size(); ++i) {
    data::Batch a = cpu.batch(i), b = gpu.batch(i);
    CHECK(b.data.is_cuda());
    expect_close(b.data, a.data, 0, 0, "batch " + std::to_string(i) + " images");
    expect_close(b.target, a.target, 0, 0, "batch " + std::to_string(i) + " labels");
  }
}

TEST_CASE("gpu: Fabric's compiled step captures once per learning rate and trains like eager steps" *
          doctest::skip(gpu_missing())) {
  Deterministic det;
  auto eager = model_on_gpu(5), graphed = model_on_gpu(5);
  eager->train(false);
  graphed->train(false);
  optim::AdamW oe(eager->parameters(), optim::AdamWOptions{.lr = 1e-3});
  optim::AdamW og(graphed->parameters(), optim::AdamWOptions{.lr = 1e-3});
  Fabric fabric({.accelerator = "gpu", .cuda_graphs = true});
  auto model = graphed;
  auto opt = std::shared_ptr<optim::AdamW>(&og, [](optim::AdamW*) {});
  std::tie(model, opt) = fabric.setup(model, opt);
  CompiledStep step = fabric.compile_step([&](const std::vector<Tensor>& in) {
    opt->zero_grad();
    Tensor loss = nn::functional::cross_entropy(model->forward(in[0]), in[1]);
    fabric.backward(loss);
    fabric.step(opt);
    return std::vector<Tensor>{loss.detach()};
  });
  CHECK(step.uses_cuda_graphs());
  auto data = batches(10, 32, 6);
  data.push_back({data[0].x.narrow(0, 0, 16).clone(), data[0].y.narrow(0, 0, 16).clone()});  // a short last batch
  for (size_t i = 0; i < data.size(); ++i) {
    if (i == 6) {  // a scheduler's step: both take the new rate, the graph is captured again
      oe.set_lr(5e-4);
      og.set_lr(5e-4);
    }
    train_step(*eager, oe, nullptr, data[i].x, data[i].y);
    Tensor loss = step({data[i].x, data[i].y})[0];
    CHECK(std::isfinite(loss.item<float>()));
  }
  CHECK(step.captures() == 2);  // batch 32 before and after the new rate; batch 16 is still warming up
  expect_same_parameters(*graphed, *eager, 1e-5, "compiled step");
}
