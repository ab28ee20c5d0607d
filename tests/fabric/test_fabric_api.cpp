// The rest of Fabric's surface under Lightning's names, in one process: setup_dataloaders with
// several loaders and its options, init_module, save with missing folders and a filter, nested
// plain state, load without a state, load_raw, broadcast of strings and JSON, rank_zero_first,
// callbacks, log with tensors, loggers sharing a version, clip_gradients' non-finite check.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "fabric/fabric.h"
#include "helpers.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path fresh_dir(const std::string& tag) {
  auto d = fs::temp_directory_path() / ("kiln_fabric_api_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::shared_ptr<nn::Sequential> mlp() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::pair<std::string, std::shared_ptr<nn::Module>>>{
      {"fc1", std::make_shared<nn::Linear>(4, 8)},
      {"act", std::make_shared<nn::ReLU>()},
      {"fc2", std::make_shared<nn::Linear>(8, 3)}});
}

}  // namespace

TEST_CASE("Fabric: setup_dataloaders takes several loaders and Lightning's options") {
  Fabric fabric({.accelerator = "cpu", .precision = "64-true"});
  auto ds = std::make_shared<data::TensorDataset>(randn({10, 4}), arange(10.0));
  auto a = std::make_shared<data::DataLoader>(ds, data::DataLoaderOptions{.batch_size = 4});
  auto b = std::make_shared<data::DataLoader>(ds, data::DataLoaderOptions{.batch_size = 5});
  auto [la, lb] = fabric.setup_dataloaders(a, b);
  CHECK(la->size() == 3);
  CHECK(lb->size() == 2);
  CHECK((*la->begin()).data.dtype() == DType::f64);  // moved and converted for 64-true
  auto raw = fabric.setup_dataloaders(a, {.use_distributed_sampler = false, .move_to_device = false});
  CHECK((*raw->begin()).data.dtype() == DType::f32);  // as the loader makes it
  auto all = fabric.setup_dataloaders({a, b, a});
  CHECK(all.size() == 3);
  auto [x, y, z] = fabric.setup_dataloaders(a, b, a);
  CHECK(z->size() == 3);
}

TEST_CASE("Fabric: init_module creates parameters in the precision's dtype") {
  Fabric fabric({.accelerator = "cpu", .precision = "64-true"});
  std::shared_ptr<nn::Sequential> model;
  {
    auto init = fabric.init_module();
    model = mlp();
  }
  CHECK(model->named_parameters().find("fc1.weight")->dtype() == DType::f64);
  CHECK(mlp()->named_parameters().find("fc1.weight")->dtype() == DType::f32);
  Fabric mixed({.accelerator = "cpu", .precision = "bf16-mixed"});
  auto init = mixed.init_module();  // mixed precision keeps f32 weights
  CHECK(mlp()->named_parameters().find("fc1.weight")->dtype() == DType::f32);
}

TEST_CASE("Fabric: save makes folders and filters; nested state; load(path) returns everything") {
  auto dir = fresh_dir("save");
  Fabric fabric({.accelerator = "cpu"});
  auto model = mlp();
  auto opt = std::make_shared<optim::AdamW>(model->parameters(), 1e-3);
  auto sched = std::make_shared<optim::StepLR>(*opt, 2);
  std::tie(model, opt) = fabric.setup(model, opt);
  fabric.backward(model->forward(randn({2, 4})).sum());
  opt->step();
  const nlohmann::json history = {{"loss", {2.5, 1.25}}, {"best", {{"epoch", 1}, {"acc", 0.5}}}};
  const std::string path = (dir / "a" / "b" / "ck.safetensors").string();
  fabric.save(path, {{"model", model},
                     {"optimizer", opt},
                     {"scheduler", sched},
                     {"history", history},
                     {"tag", "run-a"},
                     {"epoch", int64_t(3)}});
  REQUIRE(fs::exists(path));

  // Nested plain state comes back into a JSON entry, and a plain one into a JSON too.
  State st{{"history", nlohmann::json()}, {"epoch", nlohmann::json()}, {"tag", std::string()}};
  fabric.load(path, st, /*strict=*/false);
  CHECK(std::get<nlohmann::json>(st["history"]) == history);
  CHECK(std::get<nlohmann::json>(st["epoch"]) == 3);
  CHECK(std::get<std::string>(st["tag"]) == "run-a");

  // Without a state: everything.
  State all = fabric.load(path);
  CHECK(std::get<int64_t>(all.at("epoch")) == 3);
  CHECK(std::get<nlohmann::json>(all.at("history")) == history);
  CHECK(all.count("model.fc1.weight"));
  CHECK(all.count("optimizer.state.0.exp_avg"));
  CHECK(std::get<nlohmann::json>(all.at("optimizer")).at("optimizer") == "AdamW");
  CHECK(std::get<nlohmann::json>(all.at("scheduler")).at("scheduler") == "StepLR");

  // A filter keeps what it accepts, per object.
  const std::string small = (dir / "filtered.safetensors").string();
  fabric.save(small, {{"model", model}, {"optimizer", opt}},
              {{"model", [](const std::string& name, const Tensor&) { return name.rfind("fc2.", 0) == 0; }},
               {"optimizer", [](const std::string&, const Tensor&) { return false; }}});
  auto file = load_safetensors(small);
  CHECK(file.tensors.count("model.fc2.weight"));
  CHECK_FALSE(file.tensors.count("model.fc1.weight"));
  CHECK_FALSE(file.tensors.count("optimizer.state.0.exp_avg"));
  State partial{{"model", model}};
  fabric.load(small, partial, /*strict=*/false);  // the kept weights load
  CHECK_THROWS_WITH_AS(
      fabric.save(small, {{"epoch", int64_t(1)}}, {{"epoch", [](const std::string&, const Tensor&) { return true; }}}),
      doctest::Contains("neither"), Error);
  CHECK_THROWS_WITH_AS(
      fabric.save(small, {{"model", model}}, {{"opt", [](const std::string&, const Tensor&) { return true; }}}),
      doctest::Contains("does not have"), Error);
  fs::remove_all(dir);
}

TEST_CASE("Fabric: load_raw reads a plain state dict into a module or an optimizer") {
  auto dir = fresh_dir("raw");
  fs::create_directories(dir);
  auto src = mlp();
  // A raw state dict, as safetensors.torch.save_file(model.state_dict()) writes it.
  std::map<std::string, Tensor> sd;
  for (const auto& [name, t] : src->state_dict()) sd[name] = t;
  save_safetensors((dir / "raw.safetensors").string(), sd);
  Fabric fabric({.accelerator = "cpu", .precision = "64-true"});
  auto model = fabric.setup(mlp());
  fabric.load_raw((dir / "raw.safetensors").string(), model);
  CHECK(model->named_parameters().find("fc1.weight")->dtype() == DType::f64);  // converted
  CHECK(allclose(model->named_parameters().find("fc1.weight")->to(DType::f32),
                 *src->named_parameters().find("fc1.weight")));
  // strict: a file that misses weights is an error; strict=false loads what matches.
  sd.erase("fc2.bias");
  save_safetensors((dir / "part.safetensors").string(), sd);
  CHECK_THROWS_WITH_AS(fabric.load_raw((dir / "part.safetensors").string(), model),
                       doctest::Contains("missing key(s): \"fc2.bias\""), Error);
  fabric.load_raw((dir / "part.safetensors").string(), model, /*strict=*/false);
  // A Fabric checkpoint is not a raw file.
  fabric.save((dir / "ck.safetensors").string(), {{"model", model}});
  CHECK_THROWS_WITH_AS(fabric.load_raw((dir / "ck.safetensors").string(), model),
                       doctest::Contains("not a raw state dict"), Error);

  // An optimizer's state tensors and hyper-parameters.
  auto a = mlp();
  auto oa = std::make_shared<optim::AdamW>(a->parameters(), 1e-3);
  a->forward(randn({2, 4})).sum().backward();
  oa->step();
  save_safetensors((dir / "opt.safetensors").string(), oa->state_tensors(),
                   {{"kiln.optimizer", oa->hyper_params().dump()}});
  auto b = mlp();
  auto ob = std::make_shared<optim::AdamW>(b->parameters(), 5e-2);
  Fabric f32({.accelerator = "cpu"});
  f32.load_raw((dir / "opt.safetensors").string(), ob);
  CHECK(ob->lr() == doctest::Approx(1e-3));
  CHECK(equal(ob->state_tensors().at("state.0.exp_avg"), oa->state_tensors().at("state.0.exp_avg")));
  fs::remove_all(dir);
}

TEST_CASE("Fabric: one-process collectives, rank_zero_first, print") {
  Fabric fabric({.accelerator = "cpu"});
  CHECK(fabric.broadcast(std::string("hello")) == "hello");
  CHECK(fabric.broadcast("literal") == "literal");
  nlohmann::json j = {{"classes", {"cat", "dog"}}, {"n", 2}};
  CHECK(fabric.broadcast(j) == j);
  CHECK_THROWS_AS(fabric.broadcast(std::string("x"), 1), Error);
  int runs = 0;
  {
    auto first = fabric.rank_zero_first();
    ++runs;
  }
  {
    auto first = fabric.rank_zero_first(/*local=*/true);
    ++runs;
  }
  CHECK(runs == 2);
}

namespace {
struct Recorder : Callback {
  std::vector<std::string> seen;
  Recorder() {
    on("on_train_epoch_end",
       [this](int64_t epoch, double loss) { seen.push_back(std::to_string(epoch) + ":" + std::to_string(loss)); });
    on("on_save", [this](const std::string& path) { seen.push_back(path); });
  }
};
struct Other : Callback {
  int calls = 0;
  Other() {
    on("on_train_epoch_end", [this](int, float) { ++calls; });
  }
};
}  // namespace

TEST_CASE("Fabric: callbacks run by name, in order, with converted numbers") {
  auto rec = std::make_shared<Recorder>();
  auto other = std::make_shared<Other>();
  Fabric fabric({.accelerator = "cpu", .callbacks = {rec, other}});
  fabric.call("on_train_epoch_end", 3, 0.5);  // an int and a double, for int64_t/double and int/float
  fabric.call("on_save", "ck.safetensors");
  fabric.call("no_such_hook", 1, 2, 3);  // nobody has it: nothing runs
  CHECK(rec->seen == std::vector<std::string>{"3:0.500000", "ck.safetensors"});
  CHECK(other->calls == 1);
  CHECK_THROWS_WITH_AS(fabric.call("on_save", 5), doctest::Contains("argument 1 is a int but the hook takes a std::"),
                       Error);
  CHECK_THROWS_WITH_AS(fabric.call("on_train_epoch_end", 1), doctest::Contains("takes 2 arguments, got 1"), Error);
  CHECK(fabric.callbacks().size() == 2);
}

TEST_CASE("Fabric: log takes tensors; a CSV and a TensorBoard logger share one version") {
  auto root = fresh_dir("log");
  fs::create_directories(root / "run" / "version_0");  // an earlier run
  auto csv = std::make_shared<CSVLogger>(root.string(), "run");
  auto tb = std::make_shared<TensorBoardLogger>(root.string(), "run");
  {
    Fabric fabric({.accelerator = "cpu", .loggers = {csv, tb}});
    fabric.log("loss", scalar_tensor(0.25), 1);
    fabric.log_dict({{"acc", full({1}, 0.5)}, {"epoch", 2}}, 2);
    std::map<std::string, double> plain{{"lr", 0.1}};
    fabric.log_dict(plain);
    CHECK(csv->version() == 1);
    CHECK(tb->version() == 1);
    CHECK(fs::path(tb->event_file()).parent_path() == root / "run" / "version_1");
    std::ifstream in(csv->metrics_path());
    std::string header;
    std::getline(in, header);
    CHECK(header == "step,acc,epoch,loss,lr");
    CHECK_THROWS_WITH_AS(fabric.log("v", ones({3})), doctest::Contains("does not hold a single element"), Error);
  }
  csv.reset();
  tb.reset();
  // The run's loggers are gone: a new one takes the next version.
  CHECK(CSVLogger(root.string(), "run").version() == 2);
  fs::remove_all(root);
}

TEST_CASE("Fabric: clip_gradients reports a non-finite norm unless told not to") {
  Fabric fabric({.accelerator = "cpu"});
  auto model = mlp();
  auto opt = std::make_shared<optim::SGD>(model->parameters(), 0.1);
  std::tie(model, opt) = fabric.setup(model, opt);
  fabric.backward(model->forward(randn({2, 4})).sum() * std::numeric_limits<double>::infinity());
  CHECK_THROWS_WITH_AS(fabric.clip_gradients(model, opt, std::nullopt, 1.0), doctest::Contains("non-finite"), Error);
  Tensor norm = fabric.clip_gradients(model, opt, std::nullopt, 1.0, 2.0, /*error_if_nonfinite=*/false);
  CHECK_FALSE(std::isfinite(norm.item<double>()));
}
