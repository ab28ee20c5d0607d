// Sharded checkpoints: one file per rank plus an index (see checkpoint.h), and the conversions
// between a sharded optimizer's flat shard state and the per-parameter state of a full
// checkpoint. Both directions are plain copies, so a checkpoint goes sharded -> full -> sharded
// bit for bit.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/autograd.h"
#include "core/ops.h"
#include "fabric/checkpoint_io.h"
#include "fabric/safetensors.h"

#ifndef KILN_VERSION
#define KILN_VERSION "unknown"
#endif

namespace kiln {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The __metadata__ of a safetensors file, from its header alone (a full checkpoint's tensors are
// not read to learn that it is not an index). Empty when the file is missing or not safetensors.
std::map<std::string, std::string> header_metadata(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint64_t len = 0;
  if (!f || !f.read(reinterpret_cast<char*>(&len), 8) || len > 100u * 1000 * 1000) return {};
  std::string header(len, '\0');
  if (!f.read(header.data(), std::streamsize(len))) return {};
  try {
    json h = json::parse(header);
    if (h.contains("__metadata__") && h["__metadata__"].is_object())
      return h["__metadata__"].get<std::map<std::string, std::string>>();
  } catch (const json::exception&) {
  }
  return {};
}

std::string shard_dir(const std::string& index_path) {
  fs::path dir = fs::path(index_path).parent_path();
  return dir.empty() ? "." : dir.string();
}

// "state.<index>.<field>": an optimizer state entry of parameter (or shard) <index>.
std::string state_key(size_t k, const std::string& field) {
  return "state." + std::to_string(k) + "." + field;
}

// The field names ("exp_avg", "step", ...) of state.<index>.* in `tensors`.
std::vector<std::string> fields_of(const std::map<std::string, Tensor>& tensors, size_t index) {
  std::vector<std::string> out;
  const std::string prefix = "state." + std::to_string(index) + ".";
  for (auto it = tensors.lower_bound(prefix);
       it != tensors.end() && it->first.rfind(prefix, 0) == 0; ++it)
    out.push_back(it->first.substr(prefix.size()));
  return out;
}

void check_layout(const json& layout, const std::string& source) {
  KILN_CHECK(layout.is_object() && layout.contains("world_size") && layout.contains("buckets") &&
                 layout.contains("group_sizes"),
             "sharded checkpoint ", source, ": malformed shard layout ", layout.dump());
}

}  // namespace

namespace detail {

std::string checkpoint_shard_path(const std::string& path, const std::string& token, int rank,
                                  int world_size) {
  fs::path p(path);
  std::string stem = p.extension() == ".safetensors" ? p.stem().string() : p.filename().string();
  std::string name = stem + "." + token + ".rank" + std::to_string(rank) + "-of-" +
                     std::to_string(world_size) + ".safetensors";
  return (p.parent_path() / name).string();
}

void save_checkpoint_shard(const std::string& path, const std::string& token, const State& state,
                           const ShardContext& ctx) {
  CheckpointContents c = encode_state(state, &ctx, /*sharded_only=*/ctx.rank != 0);
  c.metadata["kiln.shard"] =
      json{{"rank", ctx.rank}, {"world_size", ctx.world_size}, {"save_id", token}}.dump();
  write_contents(checkpoint_shard_path(path, token, ctx.rank, ctx.world_size), std::move(c));
}

void save_checkpoint_index(const std::string& path, const std::string& token, const State& state,
                           const ShardContext& ctx) {
  json files = json::array(), layouts = json::object();
  for (int r = 0; r < ctx.world_size; ++r)
    files.push_back(
        fs::path(checkpoint_shard_path(path, token, r, ctx.world_size)).filename().string());
  for (const auto& [key, value] : state)
    if (auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&value))
      if (auto it = ctx.layouts.find(o->get()); it != ctx.layouts.end()) layouts[key] = it->second;
  json index = {{"world_size", ctx.world_size}, {"save_id", token}, {"files", files},
                {"layouts", layouts}};
  save_safetensors(path, {}, {{"format", "pt"},
                              {"kiln.format_version", std::to_string(kCheckpointFormatVersion)},
                              {"kiln.version", KILN_VERSION},
                              {"kiln.sharded", index.dump()}});
}

json read_index(const std::string& path) {
  auto meta = header_metadata(path);
  auto it = meta.find("kiln.sharded");
  if (it == meta.end()) return nullptr;
  json index;
  try {
    index = json::parse(it->second);
  } catch (const json::exception& e) {
    fail("load_checkpoint ", path, ": the sharded index's kiln.sharded is not valid JSON: ",
         e.what());
  }
  KILN_CHECK(index.is_object() && index.contains("world_size") && index.contains("files") &&
                 index["files"].is_array() && index.contains("layouts") &&
                 index["files"].size() == index["world_size"].get<size_t>(),
             "load_checkpoint ", path, ": malformed sharded index ", index.dump());
  return index;
}

std::vector<std::string> checkpoint_shard_files(const std::string& path) {
  json index = read_index(path);
  std::vector<std::string> out;
  if (index.is_null()) return out;
  for (const auto& f : index["files"])
    out.push_back((fs::path(shard_dir(path)) / f.get<std::string>()).string());
  return out;
}

namespace {

// One rank's shard file, checked against the index that names it.
CheckpointContents read_shard(const std::string& path, const json& index, int rank) {
  std::string file =
      (fs::path(shard_dir(path)) / index["files"][size_t(rank)].get<std::string>()).string();
  KILN_CHECK(fs::exists(file), "load_checkpoint ", path, ": shard file ", file, " of rank ", rank,
             " is missing; a sharded checkpoint needs every rank's file beside its index");
  CheckpointContents c = read_contents(file);
  json shard;
  try {
    shard = json::parse(c.metadata.at("kiln.shard"));
  } catch (const std::exception&) {
    fail("load_checkpoint ", file,
         ": not a shard of a sharded checkpoint (no kiln.shard metadata)");
  }
  KILN_CHECK(shard.value("rank", -1) == rank &&
                 shard.value("world_size", -1) == index["world_size"] &&
                 shard.value("save_id", "") == index.value("save_id", ""),
             "load_checkpoint ", path, ": ", file, " is ", shard.dump(), ", not rank ", rank,
             " of save ", index.value("save_id", "?"), "; the shard files were mixed up");
  return c;
}

}  // namespace

bool same_sharding(const json& index, const State& state, const ShardContext& ctx) {
  if (index["world_size"].get<int>() != ctx.world_size) return false;
  for (const auto& [key, layout] : index["layouts"].items()) {
    auto it = state.find(key);
    if (it == state.end()) return false;
    auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&it->second);
    if (!o) return false;
    auto l = ctx.layouts.find(o->get());
    if (l == ctx.layouts.end() || l->second != layout) return false;
  }
  return true;
}

CheckpointContents read_own_shard(const std::string& path, const json& index, int rank) {
  CheckpointContents base = read_shard(path, index, 0);
  if (rank == 0) return base;
  CheckpointContents own = read_shard(path, index, rank);
  for (const auto& [key, layout] : index["layouts"].items()) {
    take_prefix(base.tensors, key);
    for (auto& [name, t] : take_prefix(own.tensors, key)) base.tensors[key + "." + name] = t;
    base.objects[key] = own.objects.at(key);
  }
  return base;
}

CheckpointContents consolidate_index(const std::string& path, const json& index) {
  const int n = index["world_size"].get<int>();
  std::vector<CheckpointContents> shards;
  for (int r = 0; r < n; ++r) shards.push_back(read_shard(path, index, r));
  CheckpointContents out = std::move(shards[0]);
  for (const auto& [key, layout] : index["layouts"].items()) {
    std::vector<OptimizerEntry> entries;
    for (int r = 0; r < n; ++r) {
      CheckpointContents& c = r == 0 ? out : shards[size_t(r)];
      KILN_CHECK(c.objects.contains(key), "load_checkpoint ", path, ": the shard of rank ", r,
                 " has no entry '", key, "'");
      entries.push_back({take_prefix(c.tensors, key), c.objects[key].at("hyper_params")});
    }
    OptimizerEntry full = consolidate_optimizer(layout, entries, path);
    for (auto& [name, t] : full.tensors) out.tensors[key + "." + name] = t;
    out.objects[key] = {{"kind", "optimizer"}, {"hyper_params", full.hyper_params}};
  }
  out.metadata.erase("kiln.shard");
  return out;
}

OptimizerEntry consolidate_optimizer(const json& layout, const std::vector<OptimizerEntry>& shards,
                                     const std::string& source) {
  check_layout(layout, source);
  const size_t n = layout["world_size"].get<size_t>();
  KILN_CHECK(shards.size() == n, "sharded checkpoint ", source, ": ", shards.size(),
             " shards for a layout of world size ", n);
  OptimizerEntry out;
  const auto& buckets = layout["buckets"];
  for (size_t k = 0; k < buckets.size(); ++k) {
    const json& b = buckets[k];
    const int64_t shard = b["shard_numel"].get<int64_t>();
    for (const std::string& field : fields_of(shards[0].tensors, k)) {
      const std::string name = state_key(k, field);
      if (field == "step") {  // one count per bucket, the same on every rank
        for (const auto& p : b["params"])
          out.tensors[state_key(p[0].get<size_t>(), "step")] = shards[0].tensors.at(name).clone();
        continue;
      }
      std::vector<Tensor> parts;
      for (size_t r = 0; r < n; ++r) {
        auto it = shards[r].tensors.find(name);
        KILN_CHECK(it != shards[r].tensors.end() && it->second.sizes() == Shape{shard},
                   "sharded checkpoint ", source, ": rank ", r, "'s ", name, " is ",
                   it == shards[r].tensors.end() ? std::string("missing")
                                                 : "of shape " + shape_str(it->second.sizes()),
                   "; expected [", shard, "]");
        parts.push_back(it->second);
      }
      Tensor flat = cat(parts);
      for (const auto& p : b["params"]) {
        auto shape = p[3].get<Shape>();
        out.tensors[state_key(p[0].get<size_t>(), field)] =
            flat.narrow(0, p[1].get<int64_t>(), p[2].get<int64_t>()).view(shape).clone();
      }
    }
  }
  // The groups as the optimizer had them before sharding: group g's parameters, numbered on.
  out.hyper_params = shards[0].hyper_params;
  auto& groups = out.hyper_params["param_groups"];
  const auto& sizes = layout["group_sizes"];
  KILN_CHECK(groups.size() == sizes.size(), "sharded checkpoint ", source, ": ", groups.size(),
             " param groups but a layout of ", sizes.size());
  int64_t next = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g]["params"] = json::array();
    for (size_t i = 0; i < sizes[g].get<size_t>(); ++i) groups[g]["params"].push_back(next++);
  }
  return out;
}

OptimizerEntry shard_optimizer(const json& layout, int rank, const OptimizerEntry& full,
                               const std::string& source) {
  check_layout(layout, source);
  const auto& sizes = layout["group_sizes"];
  const auto& groups = full.hyper_params.at("param_groups");
  KILN_CHECK(groups.size() == sizes.size(), "load_checkpoint ", source,
             ": the saved optimizer has ", groups.size(), " param groups, this one ", sizes.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const size_t want = sizes[g].get<size_t>();
    size_t saved = groups[g].contains("params") ? groups[g]["params"].size() : want;
    KILN_CHECK(saved == want, "load_checkpoint ", source, ": param group ", g,
               " of the saved optimizer has ", saved, " parameters, this one ", want);
  }
  OptimizerEntry out;
  const auto& buckets = layout["buckets"];
  const int64_t n = layout["world_size"].get<int64_t>();
  for (size_t k = 0; k < buckets.size(); ++k) {
    const json& b = buckets[k];
    const int64_t shard = b["shard_numel"].get<int64_t>();
    const auto& params = b["params"];
    // Every parameter of a bucket shares one flat state: their fields must agree.
    const size_t first = params[0][0].get<size_t>();
    std::vector<std::string> fields = fields_of(full.tensors, first);
    for (const auto& p : params) {
      size_t i = p[0].get<size_t>();
      KILN_CHECK(fields_of(full.tensors, i) == fields, "load_checkpoint ", source, ": parameters ",
                 first, " and ", i, " have different optimizer state (one stepped, the other not); "
                 "the sharded strategy keeps one state per bucket of parameters");
    }
    for (const std::string& field : fields) {
      if (field == "step") {
        Tensor step = full.tensors.at(state_key(first, "step"));
        for (const auto& p : params) {
          const size_t i = p[0].get<size_t>();
          KILN_CHECK(full.tensors.at(state_key(i, "step")).item<double>() == step.item<double>(),
                     "load_checkpoint ", source, ": parameters ", first, " and ", i,
                     " have different step counts; the sharded strategy keeps one per bucket");
        }
        out.tensors[state_key(k, "step")] = step.clone();
        continue;
      }
      Tensor proto = full.tensors.at(state_key(first, field));
      Tensor flat = zeros({shard * n}, proto.options());
      for (const auto& p : params) {
        const std::string name = state_key(p[0].get<size_t>(), field);
        const Tensor& t = full.tensors.at(name);
        KILN_CHECK(t.numel() == p[2].get<int64_t>(), "load_checkpoint ", source, ": ", name,
                   " has ", t.numel(), " elements, the parameter ", p[2].get<int64_t>());
        flat.narrow(0, p[1].get<int64_t>(), t.numel()).copy_(t.reshape({t.numel()}));
      }
      out.tensors[state_key(k, field)] = flat.narrow(0, rank * shard, shard).clone();
    }
  }
  // Group g holds its buckets' shards, numbered in bucket order.
  out.hyper_params = full.hyper_params;
  auto& out_groups = out.hyper_params["param_groups"];
  for (auto& g : out_groups) g["params"] = json::array();
  for (size_t k = 0; k < buckets.size(); ++k)
    out_groups[buckets[k]["group"].get<size_t>()]["params"].push_back(k);
  return out;
}

}  // namespace detail

bool is_sharded_checkpoint(const std::string& path) {
  return header_metadata(path).count("kiln.sharded") > 0;
}

void consolidate_checkpoint(const std::string& index_path, const std::string& out_path) {
  json index = detail::read_index(index_path);
  KILN_CHECK(!index.is_null(), "consolidate_checkpoint: ", index_path, " is not the index of a "
             "sharded checkpoint (no kiln.sharded metadata); it can be loaded as it is");
  KILN_CHECK(fs::absolute(index_path) != fs::absolute(out_path), "consolidate_checkpoint: writing ",
             out_path, " over its own index would orphan the shards; choose another output path");
  detail::write_contents(out_path, detail::consolidate_index(index_path, index));
}

}  // namespace kiln
