// Checkpoints: round trips for every kind of state, strictness, corrupt files, and exact resume.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/data.h"
#include "fabric/fabric.h"
#include "helpers.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kiln_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::shared_ptr<nn::Sequential> small_net() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::pair<std::string, std::shared_ptr<nn::Module>>>{
      {"fc1", std::make_shared<nn::Linear>(4, 8)},
      {"act", std::make_shared<nn::ReLU>()},
      {"drop", std::make_shared<nn::Dropout>(0.25)},
      {"fc2", std::make_shared<nn::Linear>(8, 3)}});
}

void train_steps(nn::Module& model, optim::Optimizer& opt, int steps) {
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    auto loss = cross_entropy(model.forward(randn({6, 4})), randint(0, 3, {6}));
    loss.backward();
    opt.step();
  }
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("checkpoint: modules, optimizers, schedulers, tensors and plain values round-trip") {
  auto dir = fresh_dir("ckpt_roundtrip");
  auto path = (dir / "c.safetensors").string();
  manual_seed(1);
  auto model = small_net();
  auto opt = std::make_shared<optim::AdamW>(model->parameters(), 1e-2);
  auto sched = std::make_shared<optim::CosineAnnealingLR>(*opt, 10);
  train_steps(*model, *opt, 3);
  sched->step();
  sched->step();
  Tensor extra = arange(5.0, {.dtype = DType::f32});
  auto scaler = std::make_shared<optim::GradScaler>(optim::GradScalerOptions{.init_scale = 1024.0});
  save_checkpoint(path, {{"model", model}, {"optimizer", opt}, {"scheduler", sched}, {"extra", extra},
                         {"scaler", scaler},
                         {"epoch", int64_t(7)}, {"best", 0.875}, {"tag", std::string("run-a")},
                         {"done", true}, {"unasked", int64_t(42)}});

  // The file is plain safetensors with PyTorch's names.
  auto raw = load_safetensors(path);
  CHECK(raw.tensors.count("model.fc1.weight"));
  CHECK(raw.tensors.count("optimizer.state.0.exp_avg"));
  CHECK(raw.tensors.count("optimizer.state.3.exp_avg_sq"));
  CHECK(raw.metadata.at("format") == "pt");
  auto meta = nlohmann::json::parse(raw.metadata.at("kiln.state"));
  CHECK(meta["optimizer"]["hyper_params"]["param_groups"][0]["lr"].is_number());
  CHECK(meta["scheduler"]["state"]["last_epoch"] == 2);

  manual_seed(99);
  auto model2 = small_net();
  auto opt2 = std::make_shared<optim::AdamW>(model2->parameters(), 1e-2);
  auto sched2 = std::make_shared<optim::CosineAnnealingLR>(*opt2, 10);
  Tensor extra2 = zeros({5});
  auto scaler2 = std::make_shared<optim::GradScaler>();
  State state{{"model", model2}, {"optimizer", opt2}, {"scheduler", sched2}, {"extra", extra2},
              {"scaler", scaler2},
              {"epoch", int64_t(0)}, {"best", 0.0}, {"tag", std::string()}, {"done", false}};
  State rest = load_checkpoint(path, state);
  CHECK(std::get<int64_t>(state["epoch"]) == 7);
  CHECK(std::get<double>(state["best"]) == 0.875);
  CHECK(std::get<std::string>(state["tag"]) == "run-a");
  CHECK(std::get<bool>(state["done"]) == true);
  CHECK(extra2.to_vector<double>() == extra.to_vector<double>());
  REQUIRE(rest.size() == 1);
  CHECK(std::get<int64_t>(rest.at("unasked")) == 42);
  for (const auto& [name, t] : model->state_dict())
    CHECK(equal(t, model2->state_dict().at(name)));
  CHECK(opt2->lr() == doctest::Approx(opt->lr()));
  CHECK(sched2->last_epoch() == 2);
  CHECK(scaler2->get_scale() == 1024.0);

  // Both continue identically.
  manual_seed(5);
  train_steps(*model, *opt, 2);
  manual_seed(5);
  train_steps(*model2, *opt2, 2);
  for (const auto& [name, t] : model->state_dict()) CHECK(equal(t, model2->state_dict().at(name)));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: missing keys, mismatches and corrupt files are errors naming the key") {
  auto dir = fresh_dir("ckpt_errors");
  auto path = (dir / "c.safetensors").string();
  auto model = small_net();
  save_checkpoint(path, {{"model", model}, {"epoch", int64_t(1)}});

  State missing{{"model", small_net()}, {"optimizer", std::make_shared<optim::SGD>(model->parameters(), 0.1)}};
  CHECK(error_of([&] { load_checkpoint(path, missing); }).find("missing key 'optimizer'") != std::string::npos);
  State lenient{{"model", small_net()}, {"scheduler_state", int64_t(3)}};
  CHECK(error_of([&] { load_checkpoint(path, lenient, /*strict=*/false); }).empty());

  auto other = std::make_shared<nn::Linear>(4, 8);  // different layout
  State wrong{{"model", std::static_pointer_cast<nn::Module>(other)}};
  std::string e = error_of([&] { load_checkpoint(path, wrong); });
  CHECK(e.find("'model'") != std::string::npos);

  State kind{{"epoch", std::string("x")}};
  CHECK(error_of([&] { load_checkpoint(path, kind); }).find("'epoch' is a string") != std::string::npos);
  CHECK(error_of([&] { save_checkpoint(path, {{"a.b", int64_t(1)}}); }).find("'a.b'") != std::string::npos);

  Tensor t = zeros({2, 2});
  save_checkpoint(path, {{"t", ones({3})}});
  State shape{{"t", t}};
  CHECK(error_of([&] { load_checkpoint(path, shape); }).find("tensor 't'") != std::string::npos);

  // Truncated file: the error names the byte offset, and a plain safetensors file is refused.
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size() - 4));
  }
  CHECK(error_of([&] { load_checkpoint(path, shape); }).find("past the end") != std::string::npos);
  save_safetensors(path, {{"w", ones({1})}});
  CHECK(error_of([&] { load_checkpoint(path, shape); }).find("not a kiln checkpoint") != std::string::npos);
  fs::remove_all(dir);
}

namespace {
// Trains a seeded model over a fixed shuffled dataset for epochs [start, end), resuming from
// `resume` when given and saving to `save` after the last epoch; returns the per-step losses.
std::vector<double> run_epochs(int start, int end, const std::string& resume, const std::string& save) {
  Fabric fabric({.accelerator = "cpu"});
  Fabric::seed_everything(1234);
  Generator data_gen(7);
  auto ds = std::make_shared<data::TensorDataset>(randn({40, 4}, {}, &data_gen),
                                                  randint(0, 3, {40}, {.dtype = DType::i64}, &data_gen));
  auto model = small_net();
  auto opt = std::make_shared<optim::AdamW>(model->parameters(), 1e-2);
  auto sched = std::make_shared<optim::CosineAnnealingLR>(*opt, 3);
  std::tie(model, opt) = fabric.setup(model, opt);
  auto loader = fabric.setup_dataloaders(std::make_shared<data::DataLoader>(
      ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true}));
  if (!resume.empty()) {
    State st{{"model", model}, {"optimizer", opt}, {"scheduler", sched}, {"epoch", int64_t(0)},
             {"rng_seed", int64_t(0)}, {"rng_offset", int64_t(0)}};
    fabric.load(resume, st);
    default_generator().manual_seed(uint64_t(std::get<int64_t>(st["rng_seed"])));
    default_generator().set_offset(uint64_t(std::get<int64_t>(st["rng_offset"])));
    CHECK(std::get<int64_t>(st["epoch"]) == start - 1);
  }
  std::vector<double> losses;
  for (int epoch = start; epoch < end; ++epoch) {
    loader->set_epoch(epoch);
    model->train();
    for (auto& [x, y] : *loader) {
      opt->zero_grad();
      auto loss = cross_entropy(model->forward(x), y);
      fabric.backward(loss);
      opt->step();
      losses.push_back(loss.item<double>());
    }
    sched->step();
  }
  if (!save.empty())
    fabric.save(save, {{"model", model}, {"optimizer", opt}, {"scheduler", sched},
                       {"epoch", int64_t(end - 1)},
                       {"rng_seed", int64_t(default_generator().seed())},
                       {"rng_offset", int64_t(default_generator().offset())}});
  return losses;
}
}  // namespace

TEST_CASE("checkpoint: resuming after 2 epochs gives the losses of 3 uninterrupted epochs") {
  auto dir = fresh_dir("ckpt_resume");
  auto path = (dir / "epoch.safetensors").string();
  auto full = run_epochs(0, 3, "", "");
  auto first = run_epochs(0, 2, "", path);
  auto rest = run_epochs(2, 3, path, "");
  first.insert(first.end(), rest.begin(), rest.end());
  REQUIRE(first.size() == full.size());
  for (size_t i = 0; i < full.size(); ++i) CHECK(first[i] == full[i]);
  fs::remove_all(dir);
}
