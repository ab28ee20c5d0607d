#include "fabric/checkpoint.h"

#include <nlohmann/json.hpp>
#include <set>

#include "core/autograd.h"
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
  for (const auto& [key, value] : state) {
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
                   [&](int64_t v) { entry = {{"kind", "int"}, {"value", v}}; },
                   [&](double v) { entry = {{"kind", "float"}, {"value", v}}; },
                   [&](const std::string& v) { entry = {{"kind", "string"}, {"value", v}}; },
                   [&](bool v) { entry = {{"kind", "bool"}, {"value", v}}; },
                   [&](const json& v) { entry = {{"kind", "json"}, {"value", v}}; },
               },
               value);
  }
  return c;
}

void write_contents(const std::string& path, CheckpointContents c) {
  c.metadata["format"] = "pt";
  c.metadata["kiln.format_version"] = std::to_string(kCheckpointFormatVersion);
  c.metadata["kiln.version"] = KILN_VERSION;
  c.metadata["kiln.state"] = c.objects.dump();
  save_safetensors(path, c.tensors, c.metadata);
}

CheckpointContents read_contents(const std::string& path) {
  SafetensorsData file = load_safetensors(path);
  KILN_CHECK(!file.metadata.count("kiln.sharded"), "load_checkpoint ", path, ": this is the index "
             "of a sharded checkpoint, not one file; pass it to load_checkpoint or "
             "consolidate_checkpoint");
  auto meta_it = file.metadata.find("kiln.state");
  KILN_CHECK(meta_it != file.metadata.end(), "load_checkpoint ", path,
             ": __metadata__ has no kiln.state entry; this safetensors file is not a kiln "
             "checkpoint (load plain tensors with kiln::load_safetensors)");
  int version = std::atoi(file.metadata["kiln.format_version"].c_str());
  KILN_CHECK(version >= 1 && version <= kCheckpointFormatVersion, "load_checkpoint ", path,
             ": checkpoint format version ", file.metadata["kiln.format_version"],
             " is not supported by kiln ", KILN_VERSION, " (which reads 1..",
             kCheckpointFormatVersion, ")");
  CheckpointContents c;
  try {
    c.objects = json::parse(meta_it->second);
  } catch (const json::exception& e) {
    fail("load_checkpoint ", path, ": __metadata__ kiln.state is not valid JSON: ", e.what());
  }
  KILN_CHECK(c.objects.is_object(), "load_checkpoint ", path, ": kiln.state is not a JSON object");
  file.metadata.erase(meta_it);
  c.tensors = std::move(file.tensors);
  c.metadata = std::move(file.metadata);
  return c;
}

namespace {

State restore(const std::string& path, CheckpointContents& file, State& state, bool strict,
              const ShardContext* ctx) {
  json& objects = file.objects;

  auto kind_of = [&](const std::string& key) -> std::string {
    if (!objects.contains(key)) return "";
    const json& e = objects[key];
    KILN_CHECK(e.is_object() && e.contains("kind") && e["kind"].is_string(), "load_checkpoint ",
               path, ": entry '", key, "' has no kind");
    return e["kind"];
  };
  auto wrong_kind = [&](const std::string& key, const char* want, const std::string& got) {
    fail("load_checkpoint ", path, ": '", key, "' is a ", want, " in the state but a ", got,
         " in the checkpoint");
  };

  // Check that every requested key is present and of the right kind before changing anything.
  std::set<std::string> requested;
  for (const auto& [key, value] : state) {
    std::string kind = kind_of(key);
    if (kind.empty()) {
      KILN_CHECK(!strict, "load_checkpoint ", path, ": missing key '", key,
                 "': the checkpoint holds ", objects.size(), " entries (",
                 [&] {
                   std::string s;
                   for (auto it = objects.begin(); it != objects.end(); ++it)
                     s += (s.empty() ? "" : ", ") + it.key();
                   return s;
                 }(),
                 "); pass strict=false to skip it");
      continue;
    }
    const char* want = std::visit(Overload{
        [](const std::shared_ptr<nn::Module>&) { return "module"; },
        [](const std::shared_ptr<optim::Optimizer>&) { return "optimizer"; },
        [](const std::shared_ptr<optim::LRScheduler>&) { return "scheduler"; },
        [](const std::shared_ptr<optim::GradScaler>&) { return "grad_scaler"; },
        [](const Tensor&) { return "tensor"; }, [](int64_t) { return "int"; },
        [](double) { return "float"; }, [](const std::string&) { return "string"; },
        [](bool) { return "bool"; }, [](const json&) { return "json"; }}, value);
    bool numeric = (kind == "int" || kind == "float") && (std::string(want) == "int" || std::string(want) == "float");
    // A JSON value takes any plain value.
    bool plain = std::string(want) == "json" && (kind == "int" || kind == "float" || kind == "string" || kind == "bool");
    if (kind != want && !numeric && !plain) wrong_kind(key, want, kind);
    if (kind == "tensor") {
      KILN_CHECK(file.tensors.count(key), "load_checkpoint ", path, ": tensor '", key,
                 "' is listed in __metadata__ but missing from the file");
      const Tensor& dst = std::get<Tensor>(value);
      const Tensor& src = file.tensors.at(key);
      if (dst.defined()) {
        KILN_CHECK(dst.sizes() == src.sizes() && dst.dtype() == src.dtype(), "load_checkpoint ",
                   path, ": tensor '", key, "' is ", src.dtype(), " ", src.sizes(),
                   " in the checkpoint but ", dst.dtype(), " ", dst.sizes(), " in the state");
      }
    }
    requested.insert(key);
  }

  // Restore. Object loaders check their own entries before writing.
  for (auto& [key, value] : state) {
    if (!requested.count(key)) continue;
    const json& e = objects[key];
    auto context = [&](const Error& err) {
      fail("load_checkpoint ", path, ": '", key, "': ", err.what());
    };
    try {
      std::visit(Overload{
          [&](std::shared_ptr<nn::Module>& m) {
            nn::StateDict sd;
            for (auto& [name, t] : take_prefix(file.tensors, key)) sd.insert(name, t);
            m->load_state_dict(sd, strict);
          },
          [&](std::shared_ptr<optim::Optimizer>& o) {
            OptimizerEntry entry{take_prefix(file.tensors, key), e.at("hyper_params")};
            const json* layout = nullptr;
            if (ctx)
              if (auto it = ctx->layouts.find(o.get()); it != ctx->layouts.end()) layout = &it->second;
            bool sharded_entry = e.value("sharded", false);
            KILN_CHECK(!sharded_entry || layout, "this file holds one rank's shard of a sharded "
                       "checkpoint; load the checkpoint's index, or consolidate it "
                       "(kiln-consolidate)");
            if (layout && !sharded_entry) entry = shard_optimizer(*layout, ctx->rank, entry, path);
            o->load(entry.tensors, entry.hyper_params);
          },
          [&](std::shared_ptr<optim::LRScheduler>& s) { s->load_state_dict(e.at("state")); },
          [&](std::shared_ptr<optim::GradScaler>& g) { g->load_state_dict(e.at("state")); },
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
          [&](int64_t& v) { v = e.at("value").get<int64_t>(); },
          [&](double& v) { v = e.at("value").get<double>(); },
          [&](std::string& v) { v = e.at("value").get<std::string>(); },
          [&](bool& v) { v = e.at("value").get<bool>(); },
          [&](json& v) { v = e.at("value"); }}, value);
    } catch (const Error& err) {
      context(err);
    } catch (const json::exception& err) {
      fail("load_checkpoint ", path, ": '", key, "': malformed metadata: ", err.what());
    }
  }

  // The remainder: plain values and tensors nobody asked for.
  State rest;
  for (auto it = objects.begin(); it != objects.end(); ++it) {
    const std::string& key = it.key();
    if (requested.count(key)) continue;
    std::string kind = kind_of(key);
    const json& e = it.value();
    if (kind == "int") rest[key] = e.at("value").get<int64_t>();
    else if (kind == "float") rest[key] = e.at("value").get<double>();
    else if (kind == "string") rest[key] = e.at("value").get<std::string>();
    else if (kind == "bool") rest[key] = e.at("value").get<bool>();
    else if (kind == "json") rest[key] = e.at("value");
    // Objects nobody asked for: their JSON state (their tensors follow under full names).
    else if (kind == "optimizer") rest[key] = e.at("hyper_params");
    else if (kind == "scheduler" || kind == "grad_scaler") rest[key] = e.at("state");
    else if (kind == "tensor" && file.tensors.count(key)) rest[key] = file.tensors.at(key);
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
  if (index.is_null()) file = read_contents(path);
  else if (ctx && same_sharding(index, state, *ctx)) file = read_own_shard(path, index, ctx->rank);
  else file = consolidate_index(path, index);
  return restore(path, file, state, strict, ctx);
}

}  // namespace detail

void save_checkpoint(const std::string& path, const State& state) {
  detail::write_contents(path, detail::encode_state(state, nullptr, false));
}

State load_checkpoint(const std::string& path, State& state, bool strict) {
  return detail::load_checkpoint(path, state, strict, nullptr);
}

}  // namespace kiln
