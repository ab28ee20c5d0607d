// Sharded checkpoints: one file per rank plus an index (see checkpoint.h), and the conversions
// between a sharded optimizer's flat shard state and the per-parameter state of a full
// checkpoint. Both directions are plain copies, so a checkpoint goes sharded -> full -> sharded
// bit for bit.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include "core/autograd.h"
#include "core/file.h"
#include "core/json.h"
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
// not read to learn that it is not an index): empty when the file is missing, nullopt when its
// header is not readable (the full read then says why). A path that is not a regular file is
// refused here.
std::optional<std::map<std::string, std::string>> read_header_metadata(const std::string& path,
                                                                       const std::string& what) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec)) && !fs::exists(path, ec)) return std::map<std::string, std::string>{};
  auto file = detail::RegularFile::open(path, what);
  uint64_t len = 0;
  if (file.size() < 8 || file.read(&len, 8) != 8 || len > 100u * 1000 * 1000 || len > file.size() - 8)
    return std::nullopt;
  std::string header(size_t(len), '\0');
  if (file.read(header.data(), header.size()) != header.size()) return std::nullopt;
  std::map<std::string, std::string> out;
  try {
    json h = detail::parse_json(header, what + " " + path);
    if (!h.is_object()) return std::nullopt;
    if (h.contains("__metadata__") && h["__metadata__"].is_object())
      for (const auto& [k, v] : h["__metadata__"].items())
        if (v.is_string()) out[k] = v.get<std::string>();
  } catch (const Error&) { return std::nullopt; }
  return out;
}

std::map<std::string, std::string> header_metadata(const std::string& path, const std::string& what) {
  return read_header_metadata(path, what).value_or(std::map<std::string, std::string>{});
}

std::string shard_dir(const std::string& index_path) {
  fs::path dir = fs::path(index_path).parent_path();
  return dir.empty() ? "." : dir.string();
}

// "state.<index>.<field>": an optimizer state entry of parameter (or shard) <index>.
std::string state_key(size_t k, const std::string& field) { return "state." + std::to_string(k) + "." + field; }

// The field names ("exp_avg", "step", ...) of state.<index>.* in `tensors`.
std::vector<std::string> fields_of(const std::map<std::string, Tensor>& tensors, size_t index) {
  std::vector<std::string> out;
  const std::string prefix = "state." + std::to_string(index) + ".";
  for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.rfind(prefix, 0) == 0; ++it)
    out.push_back(it->first.substr(prefix.size()));
  return out;
}

// Bounds on what an index may declare, far beyond any real run; they keep a hostile index from
// asking for absurd allocations before its shard files are even opened.
constexpr int64_t kMaxWorld = 1 << 20;
constexpr size_t kMaxParams = size_t(1) << 24;

// A sharded optimizer's layout (ShardedDataParallel::layout()), checked and typed: each bucket's
// parameters lie inside its padded flat buffer, their shapes match their sizes, and every index
// is in range.
struct Layout {
  struct Param {
    size_t index;
    int64_t offset, numel;
    Shape shape;
  };
  struct Bucket {
    size_t group;
    int64_t shard;
    std::vector<Param> params;
  };
  int64_t world_size;
  std::vector<size_t> group_sizes;
  size_t num_params = 0;
  std::vector<Bucket> buckets;
};

Layout parse_layout(const json& j, const std::string& source) {
  const detail::JsonIn in(j, source, "the sharded checkpoint's index is damaged");
  Layout l;
  in.object();
  l.world_size = in["world_size"].as_int(1, kMaxWorld);
  for (const auto& g : in["group_sizes"].elements(kMaxParams)) {
    l.group_sizes.push_back(g.as_size(kMaxParams));
    l.num_params += l.group_sizes.back();
    if (l.num_params > kMaxParams) g.fail("makes more than 2^24 parameters in all");
  }
  for (const auto& jb : in["buckets"].elements(kMaxParams)) {
    Layout::Bucket b;
    b.group = jb["group"].as_index(l.group_sizes.size());
    b.shard = jb["shard_numel"].as_int(0, (int64_t(1) << 62) / l.world_size);
    const int64_t padded = b.shard * l.world_size;
    const auto params = jb["params"].elements(kMaxParams);
    if (params.empty()) jb["params"].fail("must name at least one parameter");
    for (const auto& jp : params) {
      jp.array();
      if (jp.size() != 4) jp.fail("must be [index, offset, numel, shape]");
      Layout::Param p;
      p.index = jp[0].as_index(l.num_params);
      p.offset = jp[1].as_int(0, padded);
      p.numel = jp[2].as_int(0, padded - p.offset);
      int64_t numel = 1, span = 1;  // span: zero sizes as one, as strides count them
      for (const auto& d : jp[3].elements(64)) {
        int64_t v = d.as_int(0, int64_t(1) << 62);
        if (span > (int64_t(1) << 62) / std::max<int64_t>(v, 1)) d.fail("makes the shape too large");
        span *= std::max<int64_t>(v, 1);
        numel *= v;
        p.shape.push_back(v);
      }
      if (numel != p.numel) jp[3].fail("must hold " + std::to_string(p.numel) + " elements");
      b.params.push_back(std::move(p));
    }
    l.buckets.push_back(std::move(b));
  }
  return l;
}

}  // namespace

namespace detail {

std::string checkpoint_shard_path(const std::string& path, const std::string& token, int rank, int world_size) {
  fs::path p(path);
  std::string stem = p.extension() == ".safetensors" ? p.stem().string() : p.filename().string();
  std::string name =
      stem + "." + token + ".rank" + std::to_string(rank) + "-of-" + std::to_string(world_size) + ".safetensors";
  return (p.parent_path() / name).string();
}

void save_checkpoint_shard(const std::string& path, const std::string& token, const State& state,
                           const ShardContext& ctx) {
  CheckpointContents c = encode_state(state, &ctx, /*sharded_only=*/ctx.rank != 0);
  c.metadata["kiln.shard"] =
      dump_json(json{{"rank", ctx.rank}, {"world_size", ctx.world_size}, {"save_id", token}}, "save " + path);
  write_contents(checkpoint_shard_path(path, token, ctx.rank, ctx.world_size), std::move(c));
}

void save_checkpoint_index(const std::string& path, const std::string& token, const State& state,
                           const ShardContext& ctx) {
  json files = json::array(), layouts = json::object();
  for (int r = 0; r < ctx.world_size; ++r)
    files.push_back(fs::path(checkpoint_shard_path(path, token, r, ctx.world_size)).filename().string());
  for (const auto& [key, value] : state)
    if (auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&value))
      if (auto it = ctx.layouts.find(o->get()); it != ctx.layouts.end()) layouts[key] = it->second;
  json index = {{"world_size", ctx.world_size}, {"save_id", token}, {"files", files}, {"layouts", layouts}};
  save_safetensors(path, {},
                   {{"format", "pt"},
                    {"kiln.format_version", std::to_string(kCheckpointFormatVersion)},
                    {"kiln.version", KILN_VERSION},
                    {"kiln.sharded", dump_json(index, "save " + path)}});
}

json read_index(const std::string& path) {
  auto meta = header_metadata(path, "load_checkpoint");
  auto it = meta.find("kiln.sharded");
  if (it == meta.end()) return nullptr;
  check_format_version(meta, path);
  const std::string source = "load_checkpoint " + path + ": sharded index kiln.sharded";
  json index = parse_json(it->second, source);
  const JsonIn in(index, source, "the index is damaged; save the checkpoint again");
  in.object();
  const int64_t n = in["world_size"].as_int(1, kMaxWorld);
  const std::string id = in["save_id"].as_string();
  if (id.empty() || id.size() > 64 || id.find_first_of("/\\") != std::string::npos)
    in["save_id"].fail("must be a short name without slashes");
  const auto files = in["files"].elements(size_t(kMaxWorld));
  if (int64_t(files.size()) != n) in["files"].fail("must name one file per rank (" + std::to_string(n) + ")");
  for (const auto& f : files) {
    std::string name = f.as_string();
    if (name.empty() || name == "." || name == ".." || name.size() > 255 || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos)
      f.fail("must be the name of a file beside the index");
  }
  for (const auto& [key, layout] : in["layouts"].members()) {
    Layout l = parse_layout(layout.json(), source + " layouts." + key);
    if (l.world_size != n) layout["world_size"].fail("must be the index's world_size " + std::to_string(n));
  }
  return index;
}

std::optional<std::vector<std::string>> indexed_shard_names(const std::string& path) {
  auto meta = read_header_metadata(path, "save");
  if (!meta) return std::nullopt;
  if (!meta->count("kiln.sharded")) return std::vector<std::string>{};
  try {
    json index = read_index(path);
    std::vector<std::string> out;
    for (const auto& f : index["files"]) out.push_back(f.get<std::string>());
    return out;
  } catch (const Error&) { return std::nullopt; }
}

std::vector<std::string> checkpoint_shard_files(const std::string& path) {
  json index = read_index(path);
  std::vector<std::string> out;
  if (index.is_null()) return out;
  for (const auto& f : index["files"]) out.push_back((fs::path(shard_dir(path)) / f.get<std::string>()).string());
  return out;
}

namespace {

// One rank's shard file, checked against the index that names it (read_index checked the index).
CheckpointContents read_shard(const std::string& path, const json& index, int rank) {
  std::string file = (fs::path(shard_dir(path)) / index["files"][size_t(rank)].get<std::string>()).string();
  std::error_code ec;
  KILN_CHECK(fs::exists(fs::symlink_status(file, ec)), "load_checkpoint ", path, ": shard file ", file, " of rank ",
             rank, " is missing; a sharded checkpoint needs every rank's file beside its index");
  CheckpointContents c = read_contents(file);
  auto meta = c.metadata.find("kiln.shard");
  KILN_CHECK(meta != c.metadata.end(), "load_checkpoint ", file,
             ": not a shard of a sharded checkpoint (no kiln.shard metadata)");
  const std::string source = "load_checkpoint " + file + ": kiln.shard";
  json shard = parse_json(meta->second, source);
  const JsonIn in(shard, source);
  in.object();
  auto r = in.find("rank"), n = in.find("world_size"), id = in.find("save_id");
  bool same = r && r->json() == rank && n && n->json() == index["world_size"] && id && id->json() == index["save_id"];
  KILN_CHECK(same, "load_checkpoint ", path, ": ", file, " is ", json_brief(shard), ", not rank ", rank, " of save ",
             index["save_id"].get<std::string>(), "; the shard files were mixed up");
  return c;
}

}  // namespace

bool same_sharding(const json& index, const State& state, const ShardContext& ctx) {
  if (index["world_size"] != ctx.world_size) return false;
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
    KILN_CHECK(own.objects.contains(key), "load_checkpoint ", path, ": the shard of rank ", rank, " has no entry '",
               key, "'");
    take_prefix(base.tensors, key);
    for (auto& [name, t] : take_prefix(own.tensors, key)) base.tensors[key + "." + name] = t;
    base.objects[key] = own.objects[key];
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
      const JsonIn objects(c.objects,
                           "load_checkpoint " + path + ": the shard of rank " + std::to_string(r) + ": kiln.state");
      auto entry = objects.find(key);
      KILN_CHECK(entry, "load_checkpoint ", path, ": the shard of rank ", r, " has no entry '", key, "'");
      entries.push_back({take_prefix(c.tensors, key), (*entry)["hyper_params"].object().json()});
    }
    OptimizerEntry full = consolidate_optimizer(layout, entries, path);
    for (auto& [name, t] : full.tensors) out.tensors[key + "." + name] = t;
    out.objects[key] = {{"kind", "optimizer"}, {"hyper_params", full.hyper_params}};
  }
  out.metadata.erase("kiln.shard");
  return out;
}

namespace {

// hyper_params()["param_groups"], checked to be an array of objects of `groups` entries.
json& param_groups(json& hyper_params, size_t groups, const std::string& source) {
  const JsonIn in(hyper_params, source + ": optimizer hyper_params");
  const auto gs = in["param_groups"].elements();
  KILN_CHECK(gs.size() == groups, source, ": ", gs.size(), " param groups but a layout of ", groups);
  for (const auto& g : gs) g.object();
  return hyper_params["param_groups"];
}

}  // namespace

OptimizerEntry consolidate_optimizer(const json& layout_json, const std::vector<OptimizerEntry>& shards,
                                     const std::string& source) {
  const Layout layout = parse_layout(layout_json, "sharded checkpoint " + source + ": layout");
  const size_t n = size_t(layout.world_size);
  KILN_CHECK(shards.size() == n, "sharded checkpoint ", source, ": ", shards.size(),
             " shards for a layout of world size ", n);
  OptimizerEntry out;
  for (size_t k = 0; k < layout.buckets.size(); ++k) {
    const Layout::Bucket& b = layout.buckets[k];
    for (const std::string& field : fields_of(shards[0].tensors, k)) {
      const std::string name = state_key(k, field);
      if (field == "step") {  // one count per bucket, the same on every rank
        for (const auto& p : b.params) out.tensors[state_key(p.index, "step")] = shards[0].tensors.at(name).clone();
        continue;
      }
      std::vector<Tensor> parts;
      for (size_t r = 0; r < n; ++r) {
        auto it = shards[r].tensors.find(name);
        KILN_CHECK(it != shards[r].tensors.end() && it->second.sizes() == Shape{b.shard} &&
                       it->second.dtype() == shards[0].tensors.at(name).dtype(),
                   "sharded checkpoint ", source, ": rank ", r, "'s ", name, " is ",
                   it == shards[r].tensors.end() ? std::string("missing")
                                                 : "of shape " + shape_str(it->second.sizes()) + " " +
                                                       std::string(dtype_name(it->second.dtype())),
                   "; expected [", b.shard, "] ", dtype_name(shards[0].tensors.at(name).dtype()));
        parts.push_back(it->second);
      }
      Tensor flat = cat(parts);
      for (const auto& p : b.params)
        out.tensors[state_key(p.index, field)] = flat.narrow(0, p.offset, p.numel).view(p.shape).clone();
    }
  }
  // The groups as the optimizer had them before sharding: group g's parameters, numbered on.
  out.hyper_params = shards[0].hyper_params;
  json& groups = param_groups(out.hyper_params, layout.group_sizes.size(), "sharded checkpoint " + source);
  int64_t next = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g]["params"] = json::array();
    for (size_t i = 0; i < layout.group_sizes[g]; ++i) groups[g]["params"].push_back(next++);
  }
  return out;
}

OptimizerEntry shard_optimizer(const json& layout_json, int rank, const OptimizerEntry& full,
                               const std::string& source) {
  const Layout layout = parse_layout(layout_json, "load_checkpoint " + source + ": shard layout");
  const auto& sizes = layout.group_sizes;
  const JsonIn hp(full.hyper_params, "load_checkpoint " + source + ": optimizer hyper_params");
  const auto groups = hp["param_groups"].elements();
  KILN_CHECK(groups.size() == sizes.size(), "load_checkpoint ", source, ": the saved optimizer has ", groups.size(),
             " param groups, this one ", sizes.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].object();
    const size_t want = sizes[g];
    auto params = groups[g].find("params");
    size_t saved = params ? params->array().size() : want;
    KILN_CHECK(saved == want, "load_checkpoint ", source, ": param group ", g, " of the saved optimizer has ", saved,
               " parameters, this one ", want);
  }
  auto state_of = [&](size_t i, const std::string& field) -> const Tensor& {
    auto it = full.tensors.find(state_key(i, field));
    KILN_CHECK(it != full.tensors.end(), "load_checkpoint ", source, ": optimizer state ", state_key(i, field),
               " is missing");
    return it->second;
  };
  OptimizerEntry out;
  const int64_t n = layout.world_size;
  for (size_t k = 0; k < layout.buckets.size(); ++k) {
    const Layout::Bucket& b = layout.buckets[k];
    // Every parameter of a bucket shares one flat state: their fields must agree.
    const size_t first = b.params[0].index;
    std::vector<std::string> fields = fields_of(full.tensors, first);
    for (const auto& p : b.params) {
      KILN_CHECK(fields_of(full.tensors, p.index) == fields, "load_checkpoint ", source, ": parameters ", first,
                 " and ", p.index,
                 " have different optimizer state (one stepped, the other not); "
                 "the sharded strategy keeps one state per bucket of parameters");
    }
    for (const std::string& field : fields) {
      if (field == "step") {
        const Tensor& step = state_of(first, "step");
        KILN_CHECK(step.numel() == 1, "load_checkpoint ", source, ": ", state_key(first, "step"), " has ", step.numel(),
                   " elements; a step count has one");
        for (const auto& p : b.params) {
          const Tensor& other = state_of(p.index, "step");
          KILN_CHECK(other.numel() == 1 && other.item<double>() == step.item<double>(), "load_checkpoint ", source,
                     ": parameters ", first, " and ", p.index,
                     " have different step counts; the sharded strategy keeps one per bucket");
        }
        out.tensors[state_key(k, "step")] = step.clone();
        continue;
      }
      const Tensor& proto = state_of(first, field);
      Tensor flat = zeros({b.shard * n}, proto.options());
      for (const auto& p : b.params) {
        const std::string name = state_key(p.index, field);
        const Tensor& t = state_of(p.index, field);
        KILN_CHECK(t.numel() == p.numel && t.dtype() == proto.dtype(), "load_checkpoint ", source, ": ", name, " is ",
                   dtype_name(t.dtype()), " with ", t.numel(), " elements, the parameter ", dtype_name(proto.dtype()),
                   " with ", p.numel);
        flat.narrow(0, p.offset, t.numel()).copy_(t.reshape({t.numel()}));
      }
      out.tensors[state_key(k, field)] = flat.narrow(0, rank * b.shard, b.shard).clone();
    }
  }
  // Group g holds its buckets' shards, numbered in bucket order.
  out.hyper_params = full.hyper_params;
  auto& out_groups = out.hyper_params["param_groups"];
  for (auto& g : out_groups) g["params"] = json::array();
  for (size_t k = 0; k < layout.buckets.size(); ++k) out_groups[layout.buckets[k].group]["params"].push_back(k);
  return out;
}

}  // namespace detail

bool is_sharded_checkpoint(const std::string& path) {
  return header_metadata(path, "is_sharded_checkpoint").count("kiln.sharded") > 0;
}

void consolidate_checkpoint(const std::string& index_path, const std::string& out_path) {
  json index = detail::read_index(index_path);
  KILN_CHECK(!index.is_null(), "consolidate_checkpoint: ", index_path,
             " is not the index of a "
             "sharded checkpoint (no kiln.sharded metadata); it can be loaded as it is");
  std::error_code ec1, ec2;
  KILN_CHECK(fs::weakly_canonical(index_path, ec1) != fs::weakly_canonical(out_path, ec2) || ec1 || ec2,
             "consolidate_checkpoint: writing ", out_path,
             " over its own index would orphan the shards; choose another output path");
  detail::write_contents(out_path, detail::consolidate_index(index_path, index));
}

}  // namespace kiln
