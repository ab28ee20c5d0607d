// Internal to fabric/: the pieces checkpoint.cpp (one file) and sharded_checkpoint.cpp (one per
// rank plus an index) share. Not installed.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fabric/checkpoint.h"

namespace kiln::detail {

// A checkpoint file's contents: tensors by full name ("model.fc1.weight"), the "kiln.state"
// entries by state key, and the rest of __metadata__.
struct CheckpointContents {
  std::map<std::string, Tensor> tensors;
  nlohmann::json objects = nlohmann::json::object();
  std::map<std::string, std::string> metadata;
};

// The tensors and kiln.state entries of `state`. Optimizers that ctx shards store this rank's
// shard state as it is, marked {"sharded": true}; with `sharded_only`, nothing else is encoded.
CheckpointContents encode_state(const State& state, const ShardContext* ctx, bool sharded_only);
// Writes `c` atomically, adding the format keys and kiln.state to its metadata.
void write_contents(const std::string& path, CheckpointContents c);
// The file's kiln.format_version, checked: a whole number this kiln reads.
int check_format_version(const std::map<std::string, std::string>& metadata, const std::string& path);
// One checkpoint file as written by write_contents (a full checkpoint or one rank's shard).
CheckpointContents read_contents(const std::string& path);
// The index at `path` (its "kiln.sharded" JSON), or null when `path` is not a sharded index.
nlohmann::json read_index(const std::string& path);
// Every shard of the index read and merged into the contents of the equivalent full checkpoint.
CheckpointContents consolidate_index(const std::string& path, const nlohmann::json& index);
// Whether the index was saved by this sharding: the same world size, and every optimizer it
// shards is one of `state` that ctx shards with the same layout.
bool same_sharding(const nlohmann::json& index, const State& state, const ShardContext& ctx);
// Rank 0's file (every unsharded entry) with the sharded optimizers' entries of `rank`'s file.
CheckpointContents read_own_shard(const std::string& path, const nlohmann::json& index, int rank);

// The tensors of `tensors` under "<key>." with the prefix removed (and erased from `tensors`).
std::map<std::string, Tensor> take_prefix(std::map<std::string, Tensor>& tensors, const std::string& key);

// An optimizer's entry: its state tensors ("state.<i>.<name>") and hyper_params().
struct OptimizerEntry {
  std::map<std::string, Tensor> tensors;
  nlohmann::json hyper_params;
};
// Per-rank shard entries (rank order) -> the per-parameter entry of the unsharded optimizer.
OptimizerEntry consolidate_optimizer(const nlohmann::json& layout, const std::vector<OptimizerEntry>& shards,
                                     const std::string& source);
// A per-parameter entry -> `rank`'s shard entry under `layout`.
OptimizerEntry shard_optimizer(const nlohmann::json& layout, int rank, const OptimizerEntry& full,
                               const std::string& source);

// The file names of the shards the index at `path` names: none when `path` is missing or a full
// checkpoint, nullopt when it cannot be read (a damaged file: which shards are its is unknown).
std::optional<std::vector<std::string>> indexed_shard_names(const std::string& path);

// What a multi-process save needs of the process group.
struct SaveGroup {
  int rank = 0;
  int world_size = 1;
  std::function<Tensor(const Tensor&)> all_gather;      // [world_size, ...t's shape]
  std::function<Tensor(const Tensor&, int)> broadcast;  // from rank src
  std::function<void()> barrier;
};
// Fabric::save under a process group: rank 0 writes the file (`contents`), or (optimizers that ctx
// shards) every rank its shard and rank 0 the index. A failure on any rank fails every rank at
// once with that rank's message, and the failed save's new shard files are removed.
void save_distributed(const std::string& path, const State& state, const ShardContext* ctx, const SaveGroup& group,
                      const std::function<CheckpointContents()>& contents);
// write_contents with the litter of earlier saves removed before, and once the file replaced the
// previous checkpoint, that checkpoint's shards if it was a sharded one (one process's save).
void write_checkpoint_file(const std::string& path, CheckpointContents c);
// Deletes what failed or killed saves left beside the checkpoint at `path`: AtomicFile temporary
// files of `path` and of its shards (unless a process with that pid still runs here), and shard
// files (<stem>.<12 hex digits>.rank<r>-of-<n>.safetensors) that the index at `path` does not
// name. Nothing else is touched; nothing throws. Returns how many files went.
size_t remove_checkpoint_litter(const std::string& path);

}  // namespace kiln::detail
