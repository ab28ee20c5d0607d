// Fabric: option parsing and its errors, setup/precision, single-process collectives, logging.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "fabric/fabric.h"
#include "helpers.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {
std::string error_of(const FabricOptions& o) {
  try {
    Fabric f(o);
  } catch (const Error& e) { return e.what(); }
  return "";
}
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("Fabric: options are parsed and invalid ones explained") {
  CHECK(error_of({}).empty());
  CHECK(error_of({.accelerator = "cpu", .devices = "1", .precision = "64-true"}).empty());
  CHECK(has(error_of({.accelerator = "tpu"}), "unknown accelerator \"tpu\"; use one of \"auto\", \"cpu\""));
  CHECK(has(error_of({.precision = "fp8"}), "\"bf16-mixed\""));
  CHECK(has(error_of({.strategy = "deepspeed_stage_3"}), "unknown strategy \"deepspeed_stage_3\"; use one of"));
  CHECK(has(error_of({.strategy = "deepspeed_stage_3"}), "\"ddp\", \"zero\""));
  CHECK(has(error_of({.devices = "two"}), "invalid devices \"two\""));
  CHECK(has(error_of({.accelerator = "cpu", .precision = "16-mixed"}), "use \"bf16-mixed\" or \"32-true\""));
  if (!cuda::is_available()) {
    CHECK(has(error_of({.accelerator = "gpu"}), "has none"));
    CHECK(Fabric(FabricOptions{}).device() == Device::cpu());
  }
  // Several devices mean strategy "ddp"; its processes start at launch(), not here.
  CHECK(Fabric({.accelerator = "cpu", .devices = "2"}).strategy() == "ddp");
  CHECK(Fabric({.accelerator = "cpu", .strategy = "ddp"}).strategy() == "ddp");
  CHECK(has(error_of({.accelerator = "cpu", .devices = "2", .strategy = "single_device"}), "use strategy \"ddp\""));
  // Every sharded name runs ZeRO-2, reported as "zero"; its processes also start at launch().
  for (const char* name : {"zero", "deepspeed", "deepspeed_stage_2", "fsdp"}) {
    CAPTURE(name);
    CHECK(Fabric({.accelerator = "cpu", .strategy = name}).strategy() == "zero");
  }
  {
    Fabric zero({.accelerator = "cpu", .devices = "2", .strategy = "zero"});
    CHECK_THROWS_WITH_AS(zero.setup_module(std::make_shared<nn::Linear>(2, 2)),
                         doctest::Contains("strategy \"zero\" needs its processes"), Error);
  }
  {
    Fabric ddp({.accelerator = "cpu", .devices = "2"});
    CHECK_THROWS_WITH_AS(ddp.setup_module(std::make_shared<nn::Linear>(2, 2)),
                         doctest::Contains("call fabric.launch() before fabric.setup()"), Error);
  }
  Fabric f({.accelerator = "cpu"});
  CHECK(f.world_size() == 1);
  CHECK(f.global_rank() == 0);
  CHECK(f.is_global_zero());
}

TEST_CASE("Fabric: setup converts for 64-true, collectives are identities, load needs setup") {
  Fabric fabric({.accelerator = "cpu", .precision = "64-true"});
  fabric.launch();
  auto model = std::make_shared<nn::Linear>(3, 2);
  auto opt = std::make_shared<optim::SGD>(model->parameters(), 0.1);
  auto fresh = std::make_shared<nn::Linear>(3, 2);
  auto dir = fs::temp_directory_path() / ("kiln_test_fabric_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto path = (dir / "c.safetensors").string();
  fabric.save(path, {{"model", model}});
  State early{{"model", std::static_pointer_cast<nn::Module>(fresh)}};
  CHECK_THROWS_WITH_AS(fabric.load(path, early), doctest::Contains("before fabric.load()"), Error);

  std::tie(model, opt) = fabric.setup(model, opt);
  CHECK(model->weight.dtype() == DType::f64);
  auto x = fabric.to_device(randn({4, 3})).to(DType::f64);
  opt->zero_grad();
  auto loss = model->forward(x).sum();
  fabric.backward(loss);
  CHECK(model->weight.grad().dtype() == DType::f64);
  Tensor norm = fabric.clip_gradients(model, opt, std::nullopt, 0.5);
  CHECK(norm.item<double>() > 0);
  CHECK_THROWS_AS(fabric.backward(model->forward(x)), Error);

  auto t = arange(3.0, {.dtype = DType::f32});
  CHECK(equal(fabric.all_reduce(t), t));
  CHECK(equal(fabric.broadcast(t), t));
  CHECK(fabric.all_gather(t).sizes() == Shape{1, 3});
  { [[maybe_unused]] auto guard = fabric.no_backward_sync(model); }
  CHECK_THROWS_AS(fabric.no_backward_sync(fresh), Error);
  fs::remove_all(dir);
}

TEST_CASE("Fabric: bf16-mixed runs the forward in autocast with f32 master weights") {
  Fabric fabric({.accelerator = "cpu", .precision = "bf16-mixed"});
  auto model = fabric.setup_module(std::make_shared<nn::Linear>(4, 2));
  CHECK(model->weight.dtype() == DType::f32);
  // The set-up model computes in bf16 and returns f32, with or without an autocast scope.
  Tensor out = model->forward(randn({3, 4}));
  CHECK(out.dtype() == DType::f32);
  CHECK(allclose(out, out.to(DType::bf16).to(DType::f32)));  // values of bf16 precision
  {
    // Inside the explicit form's scope the model computes as that scope says, as it always did.
    auto ac = fabric.autocast();
    CHECK(kiln::linear(randn({3, 4}), model->weight, model->bias).dtype() == DType::bf16);
    CHECK(model->forward(randn({3, 4})).dtype() == DType::bf16);
  }
  fabric.backward(out.sum());
  CHECK(model->weight.grad().dtype() == DType::f32);
}

TEST_CASE("Fabric: log and log_dict reach every logger") {
  auto root = fs::temp_directory_path() / ("kiln_test_fabric_log_" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto csv = std::make_shared<CSVLogger>(root.string(), "run");
  auto tb = std::make_shared<TensorBoardLogger>(root.string(), "run");
  Fabric fabric({.accelerator = "cpu", .loggers = {csv, tb}});
  fabric.log("loss", 1.5, 10);
  fabric.log_dict({{"loss", 1.0}, {"acc", 0.5}}, 11);
  CHECK(fs::exists(csv->metrics_path()));
  CHECK(fs::exists(tb->event_file()));
  CHECK(fabric.logger() == csv);
  fs::remove_all(root);
}

TEST_CASE("Fabric: step() is optimizer->step() without a scaler, and needs a set-up optimizer") {
  Fabric fabric({.accelerator = "cpu"});
  CHECK(fabric.grad_scaler() == nullptr);
  auto model = std::make_shared<nn::Linear>(3, 1);
  auto opt = std::make_shared<optim::SGD>(model->parameters(), 0.1);
  auto stray = std::make_shared<optim::SGD>(model->parameters(), 0.1);
  std::tie(model, opt) = fabric.setup(model, opt);
  Tensor before = model->weight.clone();
  fabric.backward(model->forward(ones({2, 3})).sum());
  CHECK(fabric.step(opt));
  CHECK_FALSE(allclose(model->weight, before));
  CHECK_THROWS_WITH_AS(fabric.step(stray), doctest::Contains("was not set up"), Error);
}

TEST_CASE("Fabric: 16-mixed scales the loss, unscales at the step and catches loss.backward()") {
  if (!cuda::is_available()) {
    MESSAGE("skipped: 16-mixed needs a CUDA device");
    return;
  }
  Fabric fabric({.accelerator = "cuda", .precision = "16-mixed"});
  REQUIRE(fabric.grad_scaler());
  CHECK(fabric.grad_scaler()->get_scale() == 65536.0);
  auto model = std::make_shared<nn::Linear>(4, 1);
  auto opt = std::make_shared<optim::SGD>(model->parameters(), 0.1);
  std::tie(model, opt) = fabric.setup(model, opt);
  CHECK(model->weight.device() == fabric.device());
  CHECK(model->weight.dtype() == DType::f32);
  // Small enough that the scaled gradients (x 65536) stay finite in f16.
  auto x = fabric.to_device(full({2, 4}, 0.25));
  Tensor w0 = model->weight.to(Device::cpu());

  opt->zero_grad();
  Tensor loss;
  {
    auto ac = fabric.autocast();
    loss = model->forward(x).to(DType::f32).mean() * 0.25;
  }
  fabric.backward(loss);
  // dloss/dw = 2 rows * 0.25 * 0.5 * 0.25 = 0.0625, db = 0.25; scaled until the step unscales.
  CHECK(model->weight.grad().to(Device::cpu()).max().item<double>() == doctest::Approx(0.0625 * 65536));
  Tensor norm = fabric.clip_gradients(model, opt, std::nullopt, 1e6);
  CHECK(norm.to(Device::cpu()).item<double>() ==
        doctest::Approx(std::sqrt(4 * 0.0625 * 0.0625 + 0.0625)).epsilon(1e-2));
  CHECK(fabric.step(opt));
  CHECK(fabric.grad_scaler()->get_scale() == 65536.0);
  CHECK(allclose(model->weight.to(Device::cpu()), w0 - 0.00625, 1e-3, 1e-4));

  // A direct loss.backward() would leave unscaled gradients: it is refused at that backward, and
  // a step without fabric.backward is refused too.
  opt->zero_grad();
  CHECK_THROWS_WITH_AS(model->forward(x).sum().backward(), doctest::Contains("fabric.backward(loss)"), Error);
  CHECK_THROWS_WITH_AS(fabric.step(opt), doctest::Contains("fabric.backward(loss)"), Error);
}
