// Checkpoint metadata and sharded indexes. The first byte picks what the rest of the input is:
//   0: up to three whole files, split at "\nKILN-FILE\n": a checkpoint or index, and the two
//      shard files beside it (names as the seed index gives them)
//   1: the kiln.state JSON of an otherwise valid checkpoint
//   2: the kiln.sharded JSON of an index whose two shard files are valid
//   3: a shard layout JSON, handed to consolidation and to resharding
// Each is loaded into a Linear(2, 2) with SGD, StepLR, a GradScaler and an epoch, without and
// with a sharding context.
#include <unistd.h>

#include <filesystem>

#include "core/json.h"
#include "fabric/checkpoint.h"
#include "fabric/checkpoint_io.h"
#include "fabric/safetensors.h"
#include "fuzz/fuzz_util.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;
using nlohmann::json;

namespace {

const char* const kLayout = R"({"world_size":2,"group_sizes":[2],"buckets":[{"group":0,"dtype":"float32",
  "numel":6,"shard_numel":3,"params":[[0,0,4,[2,2]],[1,4,2,[2]]]}]})";
const char* const kToken = "0123456789ab";

struct Target {
  std::shared_ptr<nn::Linear> model = std::make_shared<nn::Linear>(2, 2);
  std::shared_ptr<optim::SGD> opt =
      std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  std::shared_ptr<optim::StepLR> sched = std::make_shared<optim::StepLR>(*opt, 2, 0.5);
  std::shared_ptr<optim::GradScaler> scaler = std::make_shared<optim::GradScaler>();
  State state() {
    return {{"model", model}, {"optimizer", opt}, {"scheduler", sched}, {"scaler", scaler}, {"epoch", int64_t(0)}};
  }
};

// Rank r of a two-rank sharded run: the model whole, the optimizer over a flat shard of 3.
struct ShardTarget {
  std::shared_ptr<nn::Linear> model = std::make_shared<nn::Linear>(2, 2);
  Tensor flat = zeros({3}, {.requires_grad = true});
  std::shared_ptr<optim::SGD> opt =
      std::make_shared<optim::SGD>(std::vector<Tensor>{flat}, optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  detail::ShardContext ctx;
  explicit ShardTarget(int rank) {
    ctx.rank = rank;
    ctx.world_size = 2;
    ctx.layouts[opt.get()] = json::parse(kLayout);
    flat.set_grad(ones({3}));
    opt->step();
  }
  State state() { return {{"model", model}, {"optimizer", opt}, {"epoch", int64_t(3)}}; }
};

fs::path scratch() {
  static const fs::path dir = [] {
    fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path d = base / ("kiln_fuzz_checkpoint_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

std::string shard_name(int r) {
  return "last." + std::string(kToken) + ".rank" + std::to_string(r) + "-of-2.safetensors";
}

// Valid shard files and their index, written once.
void write_valid_sharded() {
  const std::string index = (scratch() / "last.safetensors").string();
  for (int r = 0; r < 2; ++r) {
    ShardTarget t(r);
    detail::save_checkpoint_shard(index, kToken, t.state(), t.ctx);
    if (r == 0) detail::save_checkpoint_index(index, kToken, t.state(), t.ctx);
  }
}

void write(const fs::path& p, std::string_view bytes) {
  FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) std::abort();
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

void load_all(const std::string& path) {
  fuzz::expect_success_or_error([&] {
    Target t;
    State st = t.state();
    load_checkpoint(path, st, /*strict=*/false);
  });
  fuzz::expect_success_or_error([&] {
    ShardTarget t(1);
    State st = t.state();
    detail::load_checkpoint(path, st, /*strict=*/false, &t.ctx);
  });
  fuzz::expect_success_or_error([&] {
    if (is_sharded_checkpoint(path)) consolidate_checkpoint(path, (scratch() / "full.safetensors").string());
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const fs::path index = scratch() / "last.safetensors";
  switch (data[0] % 4) {
    case 0: {
      std::string_view parts[3];
      std::string_view rest = in;
      for (int i = 0; i < 3; ++i) {
        size_t at = i < 2 ? rest.find("\nKILN-FILE\n") : std::string_view::npos;
        parts[i] = rest.substr(0, at);
        rest = at == std::string_view::npos ? std::string_view() : rest.substr(at + 11);
      }
      write(index, parts[0]);
      for (int r = 0; r < 2; ++r) write(scratch() / shard_name(r), parts[r + 1]);
      load_all(index.string());
      break;
    }
    case 1: {
      try {
        save_safetensors(index.string(), {{"model.weight", ones({2, 2})}, {"model.bias", zeros({2})}},
                         {{"format", "pt"}, {"kiln.format_version", "1"}, {"kiln.state", std::string(in)}});
      } catch (const Error&) { return 0; }
      load_all(index.string());
      break;
    }
    case 2:
      write_valid_sharded();
      try {  // text that is not UTF-8 cannot be written into a header
        save_safetensors(index.string(), {},
                         {{"format", "pt"}, {"kiln.format_version", "1"}, {"kiln.sharded", std::string(in)}});
      } catch (const Error&) { return 0; }
      load_all(index.string());
      break;
    default: {
      json layout;
      try {
        layout = detail::parse_json(in, "fuzz layout");
      } catch (const Error&) { return 0; }
      ShardTarget r0(0), r1(1);
      std::vector<detail::OptimizerEntry> shards;
      for (auto* t : {&r0, &r1}) shards.push_back({t->opt->state_tensors(), t->opt->hyper_params()});
      fuzz::expect_success_or_error([&] { detail::consolidate_optimizer(layout, shards, "fuzz"); });
      Target full;
      full.model->forward(ones({1, 2})).sum().backward();
      full.opt->step();
      detail::OptimizerEntry entry{full.opt->state_tensors(), full.opt->hyper_params()};
      fuzz::expect_success_or_error([&] { detail::shard_optimizer(layout, 1, entry, "fuzz"); });
      break;
    }
  }
  return 0;
}
