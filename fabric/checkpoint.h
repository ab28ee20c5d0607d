// Checkpoints: one safetensors file holding models, optimizers, schedulers, grad scalers, tensors and plain
// values. Tensors are stored under "<key>.<state_dict name>" (model.conv1.weight,
// optimizer.state.0.exp_avg), so PyTorch's safetensors package reads them directly; everything else
// (format version, plain values, optimizer hyper-parameters and groups, scheduler state) is JSON in
// __metadata__. Files are written atomically; loading checks everything and names the key at fault.
//   kiln::State state{{"model", model}, {"optimizer", opt}, {"epoch", int64_t(3)}};
//   kiln::save_checkpoint("ckpt.safetensors", state);
//   auto rest = kiln::load_checkpoint("ckpt.safetensors", state);   // restores model/opt in place
//   int64_t epoch = std::get<int64_t>(state.at("epoch"));
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "optim/grad_scaler.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"

namespace kiln {

// One entry of a State: an object restored in place, a tensor, or a plain value. Plain values
// may nest: a nlohmann::json of lists and maps ({"history", nlohmann::json{0.9, 0.7}}); a C
// string is a std::string.
using StateVariant =
    std::variant<std::shared_ptr<nn::Module>, std::shared_ptr<optim::Optimizer>, std::shared_ptr<optim::LRScheduler>,
                 std::shared_ptr<optim::GradScaler>, Tensor, int64_t, double, std::string, bool, nlohmann::json>;
struct StateValue : StateVariant {
  using StateVariant::StateVariant;
  StateValue(const char* s) : StateVariant(std::string(s)) {}  // NOLINT: as std::string would
};
using State = std::map<std::string, StateValue>;

// The checkpoint format written by this version of kiln ("format_version" in __metadata__).
inline constexpr int kCheckpointFormatVersion = 1;

void save_checkpoint(const std::string& path, const State& state);

// Restores each object of `state` in place (modules, optimizers, schedulers, grad scalers, tensors)
// and overwrites its plain values with the saved ones. Everything is checked before anything is
// changed: a malformed file is a kiln::Error naming the entry (its JSON path, its byte offset),
// and so are NaN or infinite values in a module's or optimizer's tensors, which only a run that
// had diverged saves (the error names the tensor and how many values; PyTorch would load them and
// train on NaN). To inspect such a file, read it with kiln::load_safetensors. Returns the saved entries that `state`
// did not ask for (plain values and tensors). strict: every key of `state` must be in the file and every module must
// match exactly; otherwise missing entries are left as they are. `path` may be the index of a sharded checkpoint: its
// shards are consolidated in memory first.
State load_checkpoint(const std::string& path, State& state, bool strict = true);

// Sharded checkpoints (Fabric's sharded strategies: "zero", "deepspeed_stage_2", "fsdp"). `path`
// is an index: a safetensors file without tensors whose __metadata__ "kiln.sharded" names one
// file per rank beside it (<stem>.<save id>.rank<r>-of-<n>.safetensors) and how each sharded
// optimizer's flat shards map onto its parameters. Rank 0's file holds every unsharded entry
// (model weights, schedulers, plain values) and its own optimizer shards; the other ranks' files
// hold their optimizer shards only. The shards are written first, the index last and atomically,
// each save under a fresh id: a crash leaves the previous checkpoint whole.
bool is_sharded_checkpoint(const std::string& path);
// Reads the index at `index_path` and its shards and writes one full checkpoint to `out_path`:
// the file save_checkpoint writes under DDP (optimizer.state.<param>.<name> with the parameters'
// shapes), which any world size, or a single process, or PyTorch's safetensors reads.
// The kiln-consolidate tool does this from the command line.
void consolidate_checkpoint(const std::string& index_path, const std::string& out_path);

namespace detail {
// What Fabric's sharded strategy tells the checkpoint code: this rank, the world, and the layout
// (ShardedDataParallel::layout()) of each optimizer it shards.
struct ShardContext {
  int rank = 0;
  int world_size = 1;
  std::map<const optim::Optimizer*, nlohmann::json> layouts = {};
};
// The shard file of `rank` for the index at `path` and save id `token`.
std::string checkpoint_shard_path(const std::string& path, const std::string& token, int rank, int world_size);
// Each rank writes its shard; then rank 0, once every shard is written, the index.
void save_checkpoint_shard(const std::string& path, const std::string& token, const State& state,
                           const ShardContext& ctx);
void save_checkpoint_index(const std::string& path, const std::string& token, const State& state,
                           const ShardContext& ctx);
// The shard files that the index at `path` names (none when there is no index there).
std::vector<std::string> checkpoint_shard_files(const std::string& path);
// load_checkpoint for a sharded run: optimizers in ctx receive this rank's shard of their state,
// read straight from this rank's file when the checkpoint was saved with the same layout, else cut
// from the per-parameter state of a full checkpoint (or of the consolidated shards).
State load_checkpoint(const std::string& path, State& state, bool strict, const ShardContext* ctx);
}  // namespace detail

}  // namespace kiln
