// Checkpoints: round trips for every kind of state, strictness, corrupt files, and exact resume.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/data.h"
#include "fabric/checkpoint_io.h"
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
  } catch (const Error& e) { return e.what(); }
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
  save_checkpoint(path, {{"model", model},
                         {"optimizer", opt},
                         {"scheduler", sched},
                         {"extra", extra},
                         {"scaler", scaler},
                         {"epoch", int64_t(7)},
                         {"best", 0.875},
                         {"tag", std::string("run-a")},
                         {"done", true},
                         {"unasked", int64_t(42)}});

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
  State state{{"model", model2}, {"optimizer", opt2},    {"scheduler", sched2},
              {"extra", extra2}, {"scaler", scaler2},    {"epoch", int64_t(0)},
              {"best", 0.0},     {"tag", std::string()}, {"done", false}};
  State rest = load_checkpoint(path, state);
  CHECK(std::get<int64_t>(state["epoch"]) == 7);
  CHECK(std::get<double>(state["best"]) == 0.875);
  CHECK(std::get<std::string>(state["tag"]) == "run-a");
  CHECK(std::get<bool>(state["done"]) == true);
  CHECK(extra2.to_vector<double>() == extra.to_vector<double>());
  REQUIRE(rest.size() == 1);
  CHECK(std::get<int64_t>(rest.at("unasked")) == 42);
  for (const auto& [name, t] : model->state_dict()) CHECK(equal(t, model2->state_dict().at(name)));
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
  auto loader = fabric.setup_dataloaders(
      std::make_shared<data::DataLoader>(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true}));
  if (!resume.empty()) {
    State st{{"model", model},      {"optimizer", opt},       {"scheduler", sched},
             {"epoch", int64_t(0)}, {"rng_seed", int64_t(0)}, {"rng_offset", int64_t(0)}};
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
    fabric.save(save, {{"model", model},
                       {"optimizer", opt},
                       {"scheduler", sched},
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

// The sharded format without processes: per-rank optimizers over flat shards, as
// ShardedDataParallel makes them, written with the detail API Fabric uses.
TEST_CASE("checkpoint: sharded files, consolidation and re-sharding are exact; broken sets are errors") {
  auto dir = fresh_dir("ckpt_sharded");
  const std::string index = (dir / "z.safetensors").string(), ref = (dir / "ref.safetensors").string();
  manual_seed(2);
  auto model = small_net();
  auto opt = std::make_shared<optim::AdamW>(model->parameters(), 1e-2);
  train_steps(*model, *opt, 2);
  // small_net's parameters: 0 fc1.weight [8, 4], 1 fc1.bias [8], 2 fc2.weight [3, 8], 3 fc2.bias
  // [3], in two buckets (reverse order) that 2 ranks split with one element of padding.
  nlohmann::json layout = {{"world_size", 2},
                           {"group_sizes", {4}},
                           {"buckets",
                            {{{"group", 0},
                              {"dtype", "float32"},
                              {"numel", 27},
                              {"shard_numel", 14},
                              {"params", {{3, 0, 3, {3}}, {2, 3, 24, {3, 8}}}}},
                             {{"group", 0},
                              {"dtype", "float32"},
                              {"numel", 40},
                              {"shard_numel", 20},
                              {"params", {{1, 0, 8, {8}}, {0, 8, 32, {8, 4}}}}}}}};
  detail::OptimizerEntry full{opt->state_tensors(), opt->hyper_params()};
  std::vector<detail::OptimizerEntry> shards;
  for (int r = 0; r < 2; ++r) shards.push_back(detail::shard_optimizer(layout, r, full, "test"));
  CHECK(shards[1].tensors.at("state.0.exp_avg").sizes() == Shape{14});
  CHECK(shards[1].tensors.at("state.1.exp_avg_sq").sizes() == Shape{20});
  CHECK(shards[0].hyper_params["param_groups"][0]["params"] == nlohmann::json({0, 1}));
  auto back = detail::consolidate_optimizer(layout, shards, "test");
  CHECK(back.hyper_params == full.hyper_params);
  REQUIRE(back.tensors.size() == full.tensors.size());
  for (const auto& [name, t] : full.tensors) CHECK(equal(back.tensors.at(name), t));

  // Each rank's optimizer over its flat shards, saved as Fabric does: shards, then the index.
  std::vector<std::shared_ptr<optim::AdamW>> ranks;
  std::vector<detail::ShardContext> ctx(2);
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(std::make_shared<optim::AdamW>(std::vector<Tensor>{zeros({14}), zeros({20})}, 1e-2));
    ranks[r]->load(shards[r].tensors, shards[r].hyper_params);
    ctx[r] = {.rank = r, .world_size = 2, .layouts = {{ranks[r].get(), layout}}};
    detail::save_checkpoint_shard(index, "abc", {{"model", model}, {"optimizer", ranks[r]}, {"epoch", int64_t(3)}},
                                  ctx[r]);
  }
  CHECK_FALSE(is_sharded_checkpoint(index));
  detail::save_checkpoint_index(index, "abc", {{"model", model}, {"optimizer", ranks[0]}}, ctx[0]);
  CHECK(is_sharded_checkpoint(index));
  auto files = detail::checkpoint_shard_files(index);
  REQUIRE(files.size() == 2);
  CHECK(files[1] == (dir / "z.abc.rank1-of-2.safetensors").string());
  CHECK(load_safetensors(files[1]).tensors.count("model.fc1.weight") == 0);  // rank 0 holds the model

  // A single process loads the index (consolidated in memory) as if DDP had saved it.
  manual_seed(50);
  auto model2 = small_net();
  auto opt2 = std::make_shared<optim::AdamW>(model2->parameters(), 1e-2);
  State state{{"model", model2}, {"optimizer", opt2}, {"epoch", int64_t(0)}};
  load_checkpoint(index, state);
  CHECK(std::get<int64_t>(state["epoch"]) == 3);
  for (const auto& [name, t] : model->state_dict()) CHECK(equal(t, model2->state_dict().at(name)));
  for (const auto& [name, t] : opt->state_tensors()) CHECK(equal(t, opt2->state_tensors().at(name)));

  // Consolidated on disk: the file save_checkpoint writes for the unsharded objects.
  save_checkpoint(ref, {{"model", model}, {"optimizer", opt}, {"epoch", int64_t(3)}});
  consolidate_checkpoint(index, (dir / "full.safetensors").string());
  auto c = load_safetensors((dir / "full.safetensors").string()), d = load_safetensors(ref);
  CHECK(nlohmann::json::parse(c.metadata.at("kiln.state")) == nlohmann::json::parse(d.metadata.at("kiln.state")));
  REQUIRE(c.tensors.size() == d.tensors.size());
  for (const auto& [name, t] : d.tensors) CHECK(equal(c.tensors.at(name), t));

  // Each rank resumes from its own file; a full checkpoint is cut into the same shards.
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    auto mine = std::make_shared<optim::AdamW>(std::vector<Tensor>{zeros({14}), zeros({20})}, 1e-2);
    auto cut = std::make_shared<optim::AdamW>(std::vector<Tensor>{zeros({14}), zeros({20})}, 1e-2);
    detail::ShardContext own{.rank = r, .world_size = 2, .layouts = {{mine.get(), layout}, {cut.get(), layout}}};
    State s1{{"optimizer", mine}}, s2{{"optimizer", cut}};
    detail::load_checkpoint(index, s1, false, &own);
    detail::load_checkpoint(ref, s2, false, &own);
    for (const auto& [name, t] : ranks[r]->state_tensors()) {
      CHECK(equal(mine->state_tensors().at(name), t));
      CHECK(equal(cut->state_tensors().at(name), t));
    }
  }

  // What goes wrong says what it is.
  State opt_only{{"optimizer", opt2}};
  CHECK(error_of([&] { load_checkpoint(files[1], opt_only); }).find("one rank's shard") != std::string::npos);
  CHECK(error_of([&] { consolidate_checkpoint(index, index); }).find("its own index") != std::string::npos);
  CHECK(error_of([&] { consolidate_checkpoint(ref, index + ".x"); }).find("not the index") != std::string::npos);
  auto wrong = layout;
  wrong["group_sizes"] = {2, 2};
  CHECK(error_of([&] { detail::shard_optimizer(wrong, 0, full, "test"); }).find("param groups") != std::string::npos);
  fs::rename(files[1], files[1] + ".moved");
  CHECK(error_of([&] { load_checkpoint(index, state); }).find("rank 1 is missing") != std::string::npos);
  fs::rename(files[1] + ".moved", files[1]);
  fs::copy_file(files[0], files[1], fs::copy_options::overwrite_existing);
  CHECK(error_of([&] { load_checkpoint(index, state); }).find("mixed up") != std::string::npos);
  fs::remove_all(dir);
}
