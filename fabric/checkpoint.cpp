#include "fabric/checkpoint.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "core/autograd.h"
#include "core/json.h"
#include "fabric/checkpoint_io.h"
#include "fabric/safetensors.h"

#ifndef KILN_VERSION
#define KILN_VERSION "unknown"
#endif

namespace kiln {
namespace {

using nlohmann::json;

template <class... F>
struct Overload : F... {
  using F::operator()...;
};
template <class... F>
Overload(F...) -> Overload<F...>;

void check_key(const std::string& key) {
  KILN_CHECK(!key.empty() && key.find('.') == std::string::npos && key != "__metadata__",
             "save_checkpoint: invalid state key '", key,
             "'; use a non-empty name without dots, such as \"model\" or \"optimizer\"");
}

}  // namespace

namespace detail {

std::map<std::string, Tensor> take_prefix(std::map<std::string, Tensor>& tensors, const std::string& key) {
  std::map<std::string, Tensor> out;
  const std::string prefix = key + ".";
  for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.rfind(prefix, 0) == 0;) {
    out.emplace(it->first.substr(prefix.size()), it->second);
    it = tensors.erase(it);
  }
  return out;
}

CheckpointContents encode_state(const State& state, const ShardContext* ctx, bool sharded_only) {
  CheckpointContents c;
  auto& tensors = c.tensors;
  json& objects = c.objects;
  // Named, not structured, bindings: the lambdas below capture them (clang before 16 cannot).
  for (const auto& entry_kv : state) {
    const std::string& key = entry_kv.first;
    const StateValue& value = entry_kv.second;
    check_key(key);
    auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&value);
    bool sharded = o && *o && ctx && ctx->layouts.count(o->get());
    if (sharded_only && !sharded) continue;
    json& entry = objects[key];
    std::visit(Overload{
                   [&](const std::shared_ptr<nn::Module>& m) {
                     KILN_CHECK(m, "save_checkpoint: module '", key, "' is null");
                     entry = {{"kind", "module"}, {"type", m->name()}};
                     for (const auto& [name, t] : m->state_dict()) tensors[key + "." + name] = t;
                   },
                   [&](const std::shared_ptr<optim::Optimizer>& o) {
                     KILN_CHECK(o, "save_checkpoint: optimizer '", key, "' is null");
                     entry = {{"kind", "optimizer"}, {"hyper_params", o->hyper_params()}};
                     if (sharded) entry["sharded"] = true;
                     for (const auto& [name, t] : o->state_tensors()) tensors[key + "." + name] = t;
                   },
                   [&](const std::shared_ptr<optim::LRScheduler>& s) {
                     KILN_CHECK(s, "save_checkpoint: scheduler '", key, "' is null");
                     entry = {{"kind", "scheduler"}, {"state", s->state_dict()}};
                   },
                   [&](const std::shared_ptr<optim::GradScaler>& g) {
                     KILN_CHECK(g, "save_checkpoint: grad scaler '", key, "' is null");
                     entry = {{"kind", "grad_scaler"}, {"state", g->state_dict()}};
                   },
                   [&](const Tensor& t) {
                     KILN_CHECK(t.defined(), "save_checkpoint: tensor '", key, "' is undefined");
                     entry = {{"kind", "tensor"}};
                     tensors[key] = t;
                   },
                   [&](int64_t v) {
                     entry = {{"kind", "int"}, {"value", v}};
                   },
                   [&](double v) {
                     entry = {{"kind", "float"}, {"value", v}};
                   },
                   [&](const std::string& v) {
                     entry = {{"kind", "string"}, {"value", v}};
                   },
                   [&](bool v) {
                     entry = {{"kind", "bool"}, {"value", v}};
                   },
                   [&](const json& v) {
                     entry = {{"kind", "json"}, {"value", v}};
                   },
               },
               value);
  }
  return c;
}

void write_contents(const std::string& path, CheckpointContents c) {
  c.metadata["format"] = "pt";
  c.metadata["kiln.format_version"] = std::to_string(kCheckpointFormatVersion);
  c.metadata["kiln.version"] = KILN_VERSION;
  c.metadata["kiln.state"] = dump_json(c.objects, "save_checkpoint " + path);
  save_safetensors(path, c.tensors, c.metadata);
}

int check_format_version(const std::map<std::string, std::string>& metadata, const std::string& path) {
  auto it = metadata.find("kiln.format_version");
  KILN_CHECK(it != metadata.end(), "load_checkpoint ", path,
             ": __metadata__ has no "
             "kiln.format_version; the file is not a kiln checkpoint or was damaged");
  const std::string& v = it->second;
  bool digits = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
  KILN_CHECK(digits, "load_checkpoint ", path, ": __metadata__ kiln.format_version is \"", v.substr(0, 40),
             v.size() > 40 ? "..." : "",
             "\", not a format version (a whole "
             "number such as \"1\"); the file is damaged or was not written by kiln");
  int version = std::stoi(v);
  KILN_CHECK(version >= 1 && version <= kCheckpointFormatVersion, "load_checkpoint ", path,
             ": checkpoint format version ", v, " is not supported by kiln ", KILN_VERSION, " (which reads 1..",
             kCheckpointFormatVersion, "); load it with a newer kiln");
  return version;
}

CheckpointContents read_contents(const std::string& path) {
  SafetensorsData file = load_safetensors(path);
  KILN_CHECK(!file.metadata.count("kiln.sharded"), "load_checkpoint ", path,
             ": this is the index "
             "of a sharded checkpoint, not one file; pass it to load_checkpoint or "
             "consolidate_checkpoint");
  auto meta_it = file.metadata.find("kiln.state");
  KILN_CHECK(meta_it != file.metadata.end(), "load_checkpoint ", path,
             ": __metadata__ has no kiln.state entry; this safetensors file is not a kiln "
             "checkpoint (load plain tensors with kiln::load_safetensors)");
  check_format_version(file.metadata, path);
  CheckpointContents c;
  c.objects = parse_json(meta_it->second, "load_checkpoint " + path + ": __metadata__ kiln.state");
  KILN_CHECK(c.objects.is_object(), "load_checkpoint ", path, ": kiln.state is not a JSON object");
  file.metadata.erase(meta_it);
  c.tensors = std::move(file.tensors);
  c.metadata = std::move(file.metadata);
  return c;
}

namespace {

// The non-finite values of a floating-point tensor read from a file (CPU, contiguous), found by
// their bit patterns: an all-ones exponent is inf (zero mantissa) or NaN.
struct NonFinite {
  int64_t nan = 0, inf = 0, first = -1;
};

template <class Bits>
NonFinite scan_bits(const void* data, int64_t n, Bits exp_mask, Bits man_mask) {
  NonFinite r;
  const Bits* p = static_cast<const Bits*>(data);
  for (int64_t i = 0; i < n; ++i) {
    Bits b = p[i];
    if ((b & exp_mask) != exp_mask) continue;
    if (b & man_mask)
      ++r.nan;
    else
      ++r.inf;
    if (r.first < 0) r.first = i;
  }
  return r;
}

NonFinite non_finite(const Tensor& t) {
  Tensor c = t.contiguous();
  const void* d = c.raw_data();
  const int64_t n = c.numel();
  switch (c.dtype()) {
    case DType::f32: return scan_bits<uint32_t>(d, n, 0x7f800000u, 0x007fffffu);
    case DType::f64: return scan_bits<uint64_t>(d, n, 0x7ff0000000000000ull, 0x000fffffffffffffull);
    case DType::f16: return scan_bits<uint16_t>(d, n, 0x7c00, 0x03ff);
    case DType::bf16: return scan_bits<uint16_t>(d, n, 0x7f80, 0x007f);
    default: return {};
  }
}

// Weights and optimizer state with NaN or inf come from a run that diverged: training on from
// them would go on silently producing NaN, so they are refused with the tensor's name.
void check_finite(const std::string& path, const std::string& prefix, const std::map<std::string, Tensor>& tensors) {
  for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.rfind(prefix, 0) == 0; ++it) {
    if (!it->second.is_floating_point() || !it->second.device().is_cpu()) continue;
    NonFinite r = non_finite(it->second);
    KILN_CHECK(r.first < 0, "load_checkpoint ", path, ": tensor '", it->first, "' holds ", r.nan, " NaN and ", r.inf,
               " infinite values (the first at flat index ", r.first,
               "); the run had diverged when this checkpoint was saved. Resume from an earlier "
               "checkpoint, or read the file with kiln::load_safetensors to inspect it");
  }
}

const char* const kKinds[] = {"module", "optimizer", "scheduler", "grad_scaler", "tensor",
                              "int",    "float",     "string",    "bool",        "json"};

State restore(const std::string& path, CheckpointContents& file, State& state, bool strict, const ShardContext* ctx) {
  const JsonIn objects(file.objects, "load_checkpoint " + path + ": __metadata__ kiln.state",
                       "the checkpoint is damaged or was not written by kiln");

  auto kind_of = [&](const std::string& key) -> std::string {
    auto e = objects.find(key);
    if (!e) return "";
    std::string kind = (*e)["kind"].as_string();
    if (std::find(std::begin(kKinds), std::end(kKinds), kind) == std::end(kKinds))
      (*e)["kind"].fail("must be one of module, optimizer, scheduler, grad_scaler, tensor, int, "
                        "float, string, bool, json");
    return kind;
  };
  auto wrong_kind = [&](const std::string& key, const char* want, const std::string& got) {
    fail("load_checkpoint ", path, ": '", key, "' is a ", want, " in the state but a ", got, " in the checkpoint");
  };

  // Check that every requested key is present and of the right kind before changing anything.
  std::set<std::string> requested;
  for (const auto& [key, value] : state) {
    std::string kind = kind_of(key);
    if (kind.empty()) {
      KILN_CHECK(
          !strict, "load_checkpoint ", path, ": missing key '", key, "': the checkpoint holds ", objects.size(),
          " entries (",
          [&] {
            std::string s;
            for (const auto& [k, v] : objects.members())
              if (s.size() < 400) s += (s.empty() ? "" : ", ") + k;
            return s;
          }(),
          "); pass strict=false to skip it");
      continue;
    }
    const char* want = std::visit(Overload{[](const std::shared_ptr<nn::Module>&) { return "module"; },
                                           [](const std::shared_ptr<optim::Optimizer>&) { return "optimizer"; },
                                           [](const std::shared_ptr<optim::LRScheduler>&) { return "scheduler"; },
                                           [](const std::shared_ptr<optim::GradScaler>&) { return "grad_scaler"; },
                                           [](const Tensor&) { return "tensor"; }, [](int64_t) { return "int"; },
                                           [](double) { return "float"; }, [](const std::string&) { return "string"; },
                                           [](bool) { return "bool"; }, [](const json&) { return "json"; }},
                                  value);
    bool numeric = (kind == "int" || kind == "float") && (std::string(want) == "int" || std::string(want) == "float");
    // A JSON value takes any plain value.
    bool plain =
        std::string(want) == "json" && (kind == "int" || kind == "float" || kind == "string" || kind == "bool");
    if (kind != want && !numeric && !plain) wrong_kind(key, want, kind);
    if (kind == "tensor") {
      KILN_CHECK(file.tensors.count(key), "load_checkpoint ", path, ": tensor '", key,
                 "' is listed in __metadata__ but missing from the file");
      const Tensor& dst = std::get<Tensor>(value);
      const Tensor& src = file.tensors.at(key);
      if (dst.defined()) {
        KILN_CHECK(dst.sizes() == src.sizes() && dst.dtype() == src.dtype(), "load_checkpoint ", path, ": tensor '",
                   key, "' is ", src.dtype(), " ", src.sizes(), " in the checkpoint but ", dst.dtype(), " ",
                   dst.sizes(), " in the state");
      }
    }
    if (kind == "module" || kind == "optimizer") check_finite(path, key + ".", file.tensors);
    // Plain values are read here, so a malformed one fails before anything is restored.
    if (kind == "int" || kind == "float" || kind == "string" || kind == "bool") {
      const JsonIn v = objects[key]["value"];
      std::visit(
          Overload{[&](const int64_t&) { v.as_int(); }, [&](const double&) { v.as_double(); },
                   [&](const std::string&) { v.as_string(); }, [&](const bool&) { v.as_bool(); }, [](const auto&) {}},
          value);
    }
    requested.insert(key);
  }

  // Restore. Object loaders check their own entries before writing.
  for (auto& kv : state) {
    const std::string& key = kv.first;
    StateValue& value = kv.second;
    if (!requested.count(key)) continue;
    const JsonIn e = objects[key];
    try {
      std::visit(Overload{[&](std::shared_ptr<nn::Module>& m) {
                            nn::StateDict sd;
                            for (auto& [name, t] : take_prefix(file.tensors, key)) sd.insert(name, t);
                            m->load_state_dict(sd, strict);
                          },
                          [&](std::shared_ptr<optim::Optimizer>& o) {
                            OptimizerEntry entry{take_prefix(file.tensors, key), e["hyper_params"].object().json()};
                            const json* layout = nullptr;
                            if (ctx)
                              if (auto it = ctx->layouts.find(o.get()); it != ctx->layouts.end()) layout = &it->second;
                            auto sharded = e.find("sharded");
                            bool sharded_entry = sharded && sharded->as_bool();
                            KILN_CHECK(!sharded_entry || layout,
                                       "this file holds one rank's shard of a sharded "
                                       "checkpoint; load the checkpoint's index, or consolidate it "
                                       "(kiln-consolidate)");
                            if (layout && !sharded_entry) entry = shard_optimizer(*layout, ctx->rank, entry, path);
                            o->load(entry.tensors, entry.hyper_params);
                          },
                          [&](std::shared_ptr<optim::LRScheduler>& s) { s->load_state_dict(e["state"].json()); },
                          [&](std::shared_ptr<optim::GradScaler>& g) { g->load_state_dict(e["state"].json()); },
                          [&](Tensor& t) {
                            Tensor src = file.tensors.at(key);
                            file.tensors.erase(key);
                            if (t.defined()) {
                              NoGradGuard g;
                              t.copy_(src);
                            } else {
                              t = src;
                            }
                          },
                          [&](int64_t& v) { v = e["value"].as_int(); }, [&](double& v) { v = e["value"].as_double(); },
                          [&](std::string& v) { v = e["value"].as_string(); },
                          [&](bool& v) { v = e["value"].as_bool(); }, [&](json& v) { v = e["value"].json(); }},
                 value);
    } catch (const Error& err) {
      std::string what = err.what();
      // Messages of the checked JSON view already name the file.
      if (what.rfind("load_checkpoint " + path, 0) == 0) throw;
      fail("load_checkpoint ", path, ": '", key, "': ", what);
    }
  }

  // The remainder: plain values and tensors nobody asked for.
  State rest;
  for (const auto& [key, e] : objects.members()) {
    if (requested.count(key)) continue;
    std::string kind = kind_of(key);
    if (kind == "int")
      rest[key] = e["value"].as_int();
    else if (kind == "float")
      rest[key] = e["value"].as_double();
    else if (kind == "string")
      rest[key] = e["value"].as_string();
    else if (kind == "bool")
      rest[key] = e["value"].as_bool();
    else if (kind == "json")
      rest[key] = e["value"].json();
    // Objects nobody asked for: their JSON state (their tensors follow under full names).
    else if (kind == "optimizer")
      rest[key] = e["hyper_params"].json();
    else if (kind == "scheduler" || kind == "grad_scaler")
      rest[key] = e["state"].json();
    else if (kind == "tensor" && file.tensors.count(key))
      rest[key] = file.tensors.at(key);
  }
  // Tensors of objects that were not requested (a model's weights, say) under their full names.
  for (const auto& [name, t] : file.tensors)
    if (!rest.count(name) && !requested.count(name.substr(0, name.find('.')))) rest[name] = t;
  return rest;
}

}  // namespace

State load_checkpoint(const std::string& path, State& state, bool strict, const ShardContext* ctx) {
  json index = read_index(path);
  CheckpointContents file;
  if (index.is_null())
    file = read_contents(path);
  else if (ctx && same_sharding(index, state, *ctx))
    file = read_own_shard(path, index, ctx->rank);
  else
    file = consolidate_index(path, index);
  return restore(path, file, state, strict, ctx);
}

}  // namespace detail

void detail::write_checkpoint_file(const std::string& path, CheckpointContents c) {
  // Litter of earlier saves that were killed goes before this one and, once it replaced the
  // previous checkpoint, that checkpoint's shard files if it was a sharded one.
  remove_checkpoint_litter(path);
  write_contents(path, std::move(c));
  remove_checkpoint_litter(path);
}

void save_checkpoint(const std::string& path, const State& state) {
  detail::write_checkpoint_file(path, detail::encode_state(state, nullptr, false));
}

State load_checkpoint(const std::string& path, State& state, bool strict) {
  return detail::load_checkpoint(path, state, strict, nullptr);
}

}  // namespace kiln
