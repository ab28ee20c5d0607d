#include "fabric/fabric.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/autograd.h"
#include "data/sampler.h"
#include "fabric/checkpoint_io.h"
#include "fabric/process_group.h"
#include "fabric/wrappers.h"
#include "optim/clip_grad.h"

namespace kiln {
namespace {

const std::vector<std::string> kAccelerators = {"auto", "cpu", "gpu", "cuda"};
const std::vector<std::string> kPrecisions = {"32-true", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"};
const std::vector<std::string> kStrategies = {"auto",      "single_device",     "ddp", "zero",
                                              "deepspeed", "deepspeed_stage_2", "fsdp"};
// The names under which Fabric users ask for sharding; kiln runs ZeRO stage 2 for each of them.
const std::vector<std::string> kShardedStrategies = {"zero", "deepspeed", "deepspeed_stage_2", "fsdp"};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "\"" : ", \"") + x + "\"";
  return s;
}

void check_one_of(const std::string& what, const std::string& value, const std::vector<std::string>& accepted) {
  KILN_CHECK(std::find(accepted.begin(), accepted.end(), value) != accepted.end(), "Fabric: unknown ", what, " \"",
             value, "\"; use one of ", join(accepted));
}

// "16" -> "16-mixed", "bf16" -> "bf16-mixed", "32" -> "32-true", "64" -> "64-true", as Lightning
// reads them (and, as it does, with a word on stderr for the two that mean mixed precision).
std::string canonical_precision(const std::string& p) {
  static const std::map<std::string, std::string> aliases = {
      {"16", "16-mixed"}, {"bf16", "bf16-mixed"}, {"32", "32-true"}, {"64", "64-true"}};
  auto it = aliases.find(p);
  if (it == aliases.end()) return p;
  const char* rank = std::getenv("RANK");
  if ((p == "16" || p == "bf16") && (!rank || std::string(rank) == "0"))
    std::cerr << "kiln: precision \"" << p << "\" is supported for historical reasons but its usage "
              << "is discouraged; set it to \"" << it->second << "\" instead\n";
  return it->second;
}

// The Precision plugin among options.plugins, if any.
std::shared_ptr<Precision> precision_from_plugins(const FabricOptions& o) {
  std::shared_ptr<Precision> found;
  for (const auto& p : o.plugins) {
    KILN_CHECK(p, "Fabric: a plugin in options.plugins is null");
    auto prec = std::dynamic_pointer_cast<Precision>(p);
    const Plugin& plugin = *p;
    KILN_CHECK(prec, "Fabric: options.plugins holds a ", detail::type_name(typeid(plugin)),
               ", which Fabric does not know; pass a kiln::Precision");
    KILN_CHECK(!found, "Fabric: options.plugins holds more than one Precision; pass one");
    found = prec;
  }
  KILN_CHECK(!found || o.precision == "32-true", "Fabric: both precision \"", o.precision,
             "\" and a Precision plugin (\"", found ? found->precision() : "", "\") were given; choose one");
  return found;
}

// One LT_* variable: the launcher's value wins over the option's default, and a program value
// that is neither the default nor the variable's is a conflict.
void override_from_env(const char* var, const char* flag, std::string& value, const std::string& default_value) {
  const char* env = std::getenv(var);
  if (!env) return;
  KILN_CHECK(value == default_value || value == env, "Fabric: the program sets ", flag, " \"", value,
             "\", but the launcher asks for \"", env, "\" (", var, ", from kiln-run --", flag,
             "); remove one of the two");
  value = env;
}

}  // namespace

void apply_launcher_overrides(FabricOptions& o) {
  override_from_env("LT_ACCELERATOR", "accelerator", o.accelerator, "auto");
  std::string devices = o.devices.str();
  override_from_env("LT_DEVICES", "devices", devices, "auto");
  o.devices = devices;
  override_from_env("LT_STRATEGY", "strategy", o.strategy, "auto");
  override_from_env("LT_PRECISION", "precision", o.precision, "32-true");
  std::string nodes = std::to_string(o.num_nodes);
  override_from_env("LT_NUM_NODES", "num-nodes", nodes, "1");
  if (nodes != std::to_string(o.num_nodes)) {
    KILN_CHECK(!nodes.empty() && nodes.size() < 7 && nodes.find_first_not_of("0123456789") == std::string::npos,
               "Fabric: LT_NUM_NODES must be a positive whole number, got \"", nodes, "\"");
    o.num_nodes = std::stoi(nodes);
  }
}

Fabric::Fabric(FabricOptions options) : options_(std::move(options)) {
  apply_launcher_overrides(options_);
  const std::string& acc = options_.accelerator;
  check_one_of("accelerator", acc, kAccelerators);
  std::shared_ptr<Precision> plugin = precision_from_plugins(options_);
  options_.precision = plugin ? plugin->precision() : canonical_precision(options_.precision);
  check_one_of("precision", options_.precision, kPrecisions);
  check_one_of("strategy", options_.strategy, kStrategies);
  KILN_CHECK(options_.num_nodes >= 1, "Fabric: num_nodes must be >= 1, got ", options_.num_nodes);
  bool gpu = acc == "gpu" || acc == "cuda" || (acc == "auto" && cuda::is_available());
  if (gpu)
    KILN_CHECK(cuda::is_available(), "Fabric: accelerator \"", acc, "\" asks for a GPU, but ",
               "this machine has none that kiln can use (no CUDA device, or kiln was built "
               "without its CUDA backend); use accelerator \"cpu\" or \"auto\"");
  plan_ = detail::plan_devices(options_.devices, gpu, gpu ? cuda::device_count() : 0);
  if (gpu) device_ = Device::cuda(plan_.gpu_ids.front());
  // Started by torchrun, kiln-run, srun or mpirun: the job is the launcher's, whatever the strategy.
  const auto launcher = detail::detect_launcher();
  const int launched_world = launcher ? launcher->world_size : 1;
  const std::string& prec = options_.precision;
  if (!gpu && prec == "16-mixed" && !plugin)
    fail("Fabric: precision \"16-mixed\" needs a GPU (fp16 loss scaling on a CPU is slow and "
         "inaccurate); on the CPU use \"bf16-mixed\" or \"32-true\"");
  const std::string& strat = options_.strategy;
  const bool sharded =
      std::find(kShardedStrategies.begin(), kShardedStrategies.end(), strat) != kShardedStrategies.end();
  if (sharded && prec == "16-mixed")
    fail("Fabric: strategy \"", strat, "\" does not combine with precision \"16-mixed\" yet: each ",
         "rank would see inf/NaN only in its own gradient shard, and the loss scaler's skip decision "
         "must be the same on every rank; use \"bf16-mixed\", or strategy \"ddp\"");
  KILN_CHECK(!(strat == "single_device" && launched_world > 1), "Fabric: strategy \"single_device\" runs one ",
             "process, but ", launcher ? launcher->source : "", " started ", launched_world,
             " (WORLD_SIZE); "
             "each would train alone. Use strategy \"auto\" or \"ddp\"");
  bool multi = plan_.processes > 1 || options_.num_nodes > 1 || launched_world > 1 || strat == "ddp" || sharded;
  KILN_CHECK(!(strat == "single_device" && multi), "Fabric: strategy \"single_device\" runs one ",
             "process, but devices \"", options_.devices, "\" and num_nodes ", options_.num_nodes,
             " ask for more; use strategy \"ddp\"");
  precision_ = prec;
  strategy_ = sharded ? "zero" : multi ? "ddp" : "single_device";
  loggers_ = options_.loggers;
  for (const auto& l : loggers_) KILN_CHECK(l, "Fabric: a logger in options.loggers is null");
  callbacks_ = options_.callbacks;
  for (const auto& c : callbacks_) KILN_CHECK(c, "Fabric: a callback in options.callbacks is null");
  KILN_CHECK(options_.timeout.count() > 0, "Fabric: timeout must be positive, got ", options_.timeout.count(), " ms");
  precision_plugin_ = plugin ? plugin : std::make_shared<Precision>(prec, device_, options_.grad_scaler);
  state_ = std::make_shared<detail::FabricState>();
  state_->precision = precision_plugin_;
  if (precision_plugin_->scaler())
    state_->backward_reason = "precision \"" + prec +
                              "\" scales the loss in it, so that small fp16 "
                              "gradients do not underflow";
  else if (strategy_ == "ddp")
    state_->backward_reason = "strategy \"ddp\" waits in it for the gradients to be averaged over "
                              "the processes";
  else if (strategy_ == "zero")
    state_->backward_reason = "strategy \"" + options_.strategy +
                              "\" reduces the gradients into "
                              "this process's shards in it";
}

void Fabric::launch() {
  if (launched_) return;
  if (strategy_ == "ddp" || strategy_ == "zero") {
    group_ = detail::start_process_group(plan_.processes, plan_.automatic, strategy_ == "zero", options_.timeout);
    state_->group = group_;
    if (device_.is_cuda()) {
      int lr = group_->local_rank();
      KILN_CHECK(lr < int(plan_.gpu_ids.size()), "Fabric::launch: local rank ", lr, " has no GPU: devices \"",
                 options_.devices, "\" selects ", plan_.gpu_ids.size(), " and this node runs more processes");
      device_ = Device::cuda(plan_.gpu_ids[size_t(lr)]);
    }
  }
  if (options_.strategy == "fsdp" && is_global_zero())
    std::cerr << "kiln: strategy \"fsdp\" runs as ZeRO stage 2 (\"zero\"): gradients, optimizer state "
                 "and master weights are sharded over the "
              << world_size()
              << " processes, "
                 "parameters stay whole on every rank (FSDP would shard those too)\n";
  launched_ = true;
}

int Fabric::global_rank() const { return group_ ? group_->rank() : 0; }
int Fabric::local_rank() const { return group_ ? group_->local_rank() : 0; }
int Fabric::node_rank() const { return group_ ? group_->node_rank() : 0; }
int Fabric::world_size() const { return group_ ? group_->world_size() : 1; }

void Fabric::setup_module_impl(const std::shared_ptr<nn::Module>& model) {
  KILN_CHECK(model, "Fabric::setup: the model is null; create it first (std::make_shared<Net>())");
  KILN_CHECK(!setup_objects_.count(model.get()), "Fabric::setup: this ", model->name(),
             " was already "
             "set up; a model should be passed to setup() only once (keep the object it returned)");
  for (const auto& [name, p] : model->named_parameters())
    KILN_CHECK(p.defined(), "Fabric::setup: parameter '", name, "' of ", model->name(),
               " is not initialised; create every parameter before setup()");
  KILN_CHECK(strategy_ == "single_device" || group_, "Fabric::setup: strategy \"", strategy_,
             "\" needs its processes; call fabric.launch() before fabric.setup()");
  model->to(device_);
  if (auto dt = param_dtype()) model->to(*dt);
  if (group_) group_->wrap(model);
  detail::wrap_module(*model, state_);
  setup_objects_.insert(model.get());
}

void Fabric::setup_optimizer_impl(const std::shared_ptr<optim::Optimizer>& optimizer) {
  KILN_CHECK(optimizer, "Fabric::setup: the optimizer is null");
  KILN_CHECK(!setup_objects_.count(optimizer.get()), "Fabric::setup: this ", optimizer->name(),
             " optimizer was already set up; an optimizer should be passed to setup() only once");
  if (group_) group_->wrap_optimizer(optimizer);
  detail::wrap_optimizer(*optimizer, state_);
  setup_objects_.insert(optimizer.get());
  optimizers_.push_back(optimizer);
}

CompiledStep Fabric::compile_step(CompiledStep::Fn fn, int warmup) const {
  bool graphs = options_.cuda_graphs && device_.is_cuda();
  if (graphs && world_size() > 1) {
    // Collectives inside a captured step (NCCL under DDP's hooks) are not verified yet.
    print("cuda_graphs: the step runs eagerly with ", world_size(), " processes; graphs are used with one");
    graphs = false;
  }
  std::vector<std::shared_ptr<optim::Optimizer>> opts = optimizers_;
  auto lrs = [opts] {
    std::vector<double> v;
    for (const auto& o : opts)
      for (const auto& g : o->param_groups()) v.push_back(g.lr());
    return v;
  };
  return CompiledStep(std::move(fn), graphs, lrs, warmup);
}

std::shared_ptr<DeviceDataLoader> Fabric::setup_one_dataloader(std::shared_ptr<data::DataLoader> loader,
                                                               const DataloaderSetupOptions& options) {
  KILN_CHECK(loader, "Fabric::setup_dataloaders: the loader is null");
  const auto& sampler = loader->options().sampler;
  if (world_size() > 1 && options.use_distributed_sampler &&
      !std::dynamic_pointer_cast<data::DistributedSampler>(sampler)) {
    data::DataLoaderOptions o = loader->options();
    const data::DistributedSamplerOptions share{
        .num_replicas = world_size(), .rank = global_rank(), .shuffle = o.shuffle, .seed = loader->seed()};
    if (sampler)  // the loader's own order, cut into disjoint shares (Lightning's DistributedSamplerWrapper)
      o.sampler = std::make_shared<data::DistributedSamplerWrapper>(sampler, share);
    else
      o.sampler = std::make_shared<data::DistributedSampler>(loader->dataset().size(), share);
    o.shuffle = false;
    o.seed = loader->seed();
    // The new loader shares the dataset, which the old one owns.
    std::shared_ptr<const data::Dataset> dataset(loader, &loader->dataset());
    loader = std::make_shared<data::DataLoader>(std::move(dataset), std::move(o));
  }
  if (!options.move_to_device) return std::make_shared<DeviceDataLoader>(std::move(loader), std::nullopt, std::nullopt);
  return std::make_shared<DeviceDataLoader>(std::move(loader), device_, param_dtype());
}

std::shared_ptr<DeviceDataLoader> Fabric::setup_dataloaders(std::shared_ptr<data::DataLoader> loader,
                                                            DataloaderSetupOptions options) {
  return setup_one_dataloader(std::move(loader), options);
}

std::tuple<std::shared_ptr<DeviceDataLoader>, std::shared_ptr<DeviceDataLoader>> Fabric::setup_dataloaders(
    std::shared_ptr<data::DataLoader> a, std::shared_ptr<data::DataLoader> b, DataloaderSetupOptions options) {
  return {setup_one_dataloader(std::move(a), options), setup_one_dataloader(std::move(b), options)};
}

std::tuple<std::shared_ptr<DeviceDataLoader>, std::shared_ptr<DeviceDataLoader>, std::shared_ptr<DeviceDataLoader>>
Fabric::setup_dataloaders(std::shared_ptr<data::DataLoader> a, std::shared_ptr<data::DataLoader> b,
                          std::shared_ptr<data::DataLoader> c, DataloaderSetupOptions options) {
  return {setup_one_dataloader(std::move(a), options), setup_one_dataloader(std::move(b), options),
          setup_one_dataloader(std::move(c), options)};
}

std::vector<std::shared_ptr<DeviceDataLoader>> Fabric::setup_dataloaders(
    const std::vector<std::shared_ptr<data::DataLoader>>& loaders, DataloaderSetupOptions options) {
  std::vector<std::shared_ptr<DeviceDataLoader>> out;
  for (const auto& l : loaders) out.push_back(setup_one_dataloader(l, options));
  return out;
}

std::unique_ptr<nn::ModuleInitGuard> Fabric::init_module() const {
  return std::make_unique<nn::ModuleInitGuard>(device_, param_dtype());
}

void Fabric::backward(const Tensor& loss) {
  KILN_CHECK(loss.defined() && loss.numel() == 1, "Fabric::backward: expected a scalar loss",
             loss.defined() ? ", got shape " + shape_str(loss.sizes()) : std::string(", got an undefined tensor"));
  struct InBackward {
    detail::FabricState& s;
    explicit InBackward(detail::FabricState& st) : s(st) { ++s.in_backward; }
    ~InBackward() { --s.in_backward; }
  } in_backward(*state_);
  precision_plugin_->pre_backward(loss).backward();
  ++state_->backward_count;
  if (group_) group_->finish_backward();
}

bool Fabric::step(const std::shared_ptr<optim::Optimizer>& optimizer) {
  KILN_CHECK(optimizer && setup_objects_.count(optimizer.get()),
             "Fabric::step: the optimizer was not set up; call fabric.setup(model, optimizer) first");
  optimizer->step();  // through the step wrapper setup installed
  return state_->last_step_ran;
}

Tensor Fabric::clip_gradients(const std::shared_ptr<nn::Module>& module,
                              const std::shared_ptr<optim::Optimizer>& optimizer, std::optional<double> clip_val,
                              std::optional<double> max_norm, double norm_type, bool error_if_nonfinite) {
  KILN_CHECK(module && optimizer, "Fabric::clip_gradients: module and optimizer must not be null");
  KILN_CHECK(clip_val.has_value() != max_norm.has_value(),
             "Fabric::clip_gradients: pass exactly one of clip_val and max_norm");
  const auto& scaler = precision_plugin_->scaler();
  if (scaler) {
    scaler->unscale_(*optimizer);
    error_if_nonfinite = false;  // an overflow is the scaler's to handle: it skips the step
  }
  if (group_)
    if (auto norm = group_->clip_gradients(module.get(), clip_val, max_norm, norm_type, error_if_nonfinite))
      return *norm;
  if (clip_val) {
    optim::clip_grad_value_(module->parameters(), *clip_val);
    return {};
  }
  return optim::clip_grad_norm_(module->parameters(), *max_norm, norm_type, error_if_nonfinite);
}

std::unique_ptr<AutocastGuard> Fabric::autocast() const {
  auto low = precision_plugin_->autocast_dtype();
  return std::make_unique<AutocastGuard>(device_.type, low.value_or(DType::bf16), low.has_value());
}

Tensor Fabric::to_device(const Tensor& t) const {
  if (!t.defined() || t.device() == device_) return t;
  return t.to(device_);
}

data::Batch Fabric::to_device(const data::Batch& b) const {
  data::Batch out{to_device(b.data), to_device(b.target), {}};
  for (const Tensor& t : b.rest) out.rest.push_back(to_device(t));
  return out;
}

void Fabric::barrier(const std::string& name) const {
  if (group_) group_->barrier();
}

Tensor Fabric::broadcast(const Tensor& t, int src) const {
  if (group_) return group_->broadcast(t, src);
  KILN_CHECK(src == 0, "Fabric::broadcast: src rank ", src, " does not exist (world size 1)");
  return t;
}

Tensor Fabric::all_gather(const Tensor& t) const { return group_ ? group_->all_gather(t) : t.unsqueeze(0); }

Tensor Fabric::all_reduce(const Tensor& t, const std::string& reduce_op) const {
  KILN_CHECK(reduce_op == "mean" || reduce_op == "sum" || reduce_op == "max" || reduce_op == "min",
             "Fabric::all_reduce: unknown reduce_op \"", reduce_op, "\"; use \"mean\", \"sum\", \"max\" or \"min\"");
  return group_ ? group_->all_reduce(t, reduce_op) : t;
}

Fabric::NoBackwardSync Fabric::no_backward_sync(const std::shared_ptr<nn::Module>& module, bool enabled) const {
  KILN_CHECK(module && setup_objects_.count(module.get()),
             "Fabric::no_backward_sync: the module was not set up; call fabric.setup(model, ...) first");
  if (!group_ || !enabled) return {};
  return NoBackwardSync(group_->no_sync(module.get()));
}

uint64_t Fabric::seed_everything(uint64_t seed) {
  manual_seed(seed);
  return seed;
}

void Fabric::log(const std::string& name, const MetricValue& value, std::optional<int64_t> step) {
  log_dict({{name, value}}, step);
}

void Fabric::log_dict(const std::map<std::string, MetricValue>& metrics, std::optional<int64_t> step) {
  // Tensors are read on every rank (a CUDA tensor's item() waits for its stream), so that ranks
  // stay in step whatever rank 0 does with them.
  std::map<std::string, double> values;
  for (const auto& [name, v] : metrics) values[name] = v.get(name);
  if (!is_global_zero()) return;
  int64_t s = step.value_or(log_step_);
  log_step_ = s + 1;
  for (const auto& l : loggers_) l->log_metrics(values, s);
}

double MetricValue::get(const std::string& name) const {
  if (auto d = std::get_if<double>(&value_)) return *d;
  const Tensor& t = std::get<Tensor>(value_);
  KILN_CHECK(t.defined(), "Fabric::log: the metric '", name, "' is an undefined tensor");
  KILN_CHECK(t.numel() == 1, "Fabric::log: the metric '", name, "' is a tensor of shape ", t.sizes(),
             ", which does not hold a single element, so it cannot be logged as a number; reduce "
             "it first (.mean(), .sum())");
  return t.item<double>();
}

std::string Fabric::broadcast(const std::string& s, int src) const {
  if (!group_) {
    KILN_CHECK(src == 0, "Fabric::broadcast: src rank ", src, " does not exist (world size 1)");
    return s;
  }
  Tensor size = tensor(std::vector<int64_t>{int64_t(s.size())});
  size = group_->broadcast(size, src);
  const int64_t n = size.item<int64_t>();
  // The bytes packed four to an int32 (the collectives carry numeric dtypes).
  Tensor words = zeros({(n + 3) / 4}, {.dtype = DType::i32});
  if (global_rank() == src && n > 0) std::memcpy(words.data_ptr<int32_t>(), s.data(), size_t(n));
  words = group_->broadcast(words, src);
  return std::string(reinterpret_cast<const char*>(words.data_ptr<int32_t>()), size_t(n));
}

Fabric::RankZeroFirst::RankZeroFirst(const Fabric& fabric, bool first) : fabric_(fabric), first_(first) {
  if (!first_) fabric_.barrier("rank_zero_first");  // wait for the first ones to finish
}

Fabric::RankZeroFirst::~RankZeroFirst() {
  if (!first_) return;
  try {
    fabric_.barrier("rank_zero_first");  // let the others go
  } catch (const Error& e) {
    // A destructor must not throw; the next collective reports the failed process too.
    std::cerr << "kiln: Fabric::rank_zero_first: " << e.what() << "\n";
  }
}

Fabric::RankZeroFirst Fabric::rank_zero_first(bool local) const {
  return RankZeroFirst(*this, (local ? local_rank() : global_rank()) == 0);
}

namespace {

// Checks `filter` against the state: it names modules and optimizers of it.
void check_filter(const State& state, const SaveFilter& filter) {
  for (const auto& [key, fn] : filter) {
    auto it = state.find(key);
    KILN_CHECK(it != state.end(), "Fabric::save: the filter names '", key, "', which the state does not have");
    KILN_CHECK(std::holds_alternative<std::shared_ptr<nn::Module>>(it->second) ||
                   std::holds_alternative<std::shared_ptr<optim::Optimizer>>(it->second),
               "Fabric::save: the filter for '", key,
               "' applies to a module's or an optimizer's "
               "tensors, but '",
               key, "' is neither");
    KILN_CHECK(fn, "Fabric::save: the filter for '", key, "' is empty");
  }
}

}  // namespace

void Fabric::save(const std::string& path, const State& state, const SaveFilter& filter) const {
  check_filter(state, filter);
  auto ctx = group_ ? group_->shard_context() : std::nullopt;
  bool sharded = false;
  for (const auto& [key, value] : state)
    if (auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&value))
      sharded = sharded || (ctx && ctx->layouts.count(o->get()));
  KILN_CHECK(!sharded || filter.empty(),
             "Fabric::save: a filter does not combine with the sharded "
             "strategy's optimizer yet; save without a filter, or filter the consolidated checkpoint");
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && (sharded || is_global_zero())) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    KILN_CHECK(!ec, "Fabric::save: cannot create the folder ", parent.string(), " for ", path, ": ", ec.message());
  }
  // One file's contents, with the filter applied to the tensors of the objects it names.
  auto contents = [&] {
    detail::CheckpointContents c = detail::encode_state(state, nullptr, false);
    for (const auto& entry : filter) {
      const std::string prefix = entry.first + ".";
      const auto& keep = entry.second;
      std::erase_if(c.tensors, [&](const auto& kv) {
        return kv.first.rfind(prefix, 0) == 0 && !keep(kv.first.substr(prefix.size()), kv.second);
      });
    }
    return c;
  };
  if (!group_) {
    detail::write_checkpoint_file(path, contents());
    return;
  }
  // Every rank's outcome is exchanged after each step: a failure anywhere fails every rank at once.
  detail::SaveGroup g{global_rank(), world_size(), [&](const Tensor& t) { return group_->all_gather(t); },
                      [&](const Tensor& t, int src) { return group_->broadcast(t, src); }, [&] { group_->barrier(); }};
  detail::save_distributed(path, state, ctx ? &*ctx : nullptr, g, contents);
}

State Fabric::load(const std::string& path, State& state, bool strict) const {
  for (const auto& [key, value] : state) {
    const void* obj = nullptr;
    if (auto m = std::get_if<std::shared_ptr<nn::Module>>(&value)) obj = m->get();
    if (auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&value)) obj = o->get();
    KILN_CHECK(!obj || setup_objects_.count(obj), "Fabric::load: '", key,
               "' has not been set up; call fabric.setup(model, optimizer) before fabric.load() so "
               "the state lands on the right device and dtype");
  }
  auto ctx = group_ ? group_->shard_context() : std::nullopt;
  return detail::load_checkpoint(path, state, strict, ctx ? &*ctx : nullptr);
}

State Fabric::load(const std::string& path) const {
  State nothing;
  return detail::load_checkpoint(path, nothing, /*strict=*/false, nullptr);
}

void Fabric::load_raw(const std::string& path, const std::shared_ptr<nn::Module>& module, bool strict) const {
  KILN_CHECK(module, "Fabric::load_raw: the module is null");
  SafetensorsData file = load_safetensors(path);
  KILN_CHECK(!file.metadata.count("kiln.state") && !file.metadata.count("kiln.sharded"), "Fabric::load_raw ", path,
             ": this is a Fabric checkpoint, not a raw state dict; load it "
             "with fabric.load(path, state)");
  nn::StateDict own = module->state_dict(), sd;
  NoGradGuard no_grad;
  for (auto& [name, t] : file.tensors) {
    const Tensor* dst = own.find(name);
    // Converted to the module's dtype and device (a float32 file into a bf16-true model, say).
    sd.insert(name, dst && dst->sizes() == t.sizes() ? t.to(dst->device(), dst->dtype()) : t);
  }
  try {
    module->load_state_dict(sd, strict);
  } catch (const Error& e) { fail("Fabric::load_raw ", path, ": ", e.what()); }
}

void Fabric::load_raw(const std::string& path, const std::shared_ptr<optim::Optimizer>& optimizer) const {
  KILN_CHECK(optimizer, "Fabric::load_raw: the optimizer is null");
  auto ctx = group_ ? group_->shard_context() : std::nullopt;
  KILN_CHECK(!ctx || !ctx->layouts.count(optimizer.get()), "Fabric::load_raw ", path,
             ": the "
             "optimizer is sharded (strategy \"zero\"); load its state from a Fabric checkpoint with "
             "fabric.load(path, state), which cuts it into this rank's shards");
  SafetensorsData file = load_safetensors(path);
  nlohmann::json hyper = optimizer->hyper_params();
  if (auto it = file.metadata.find("kiln.optimizer"); it != file.metadata.end()) {
    try {
      hyper = nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception& e) {
      fail("Fabric::load_raw ", path, ": the kiln.optimizer metadata is not valid JSON: ", e.what());
    }
  }
  try {
    optimizer->load(file.tensors, hyper);
  } catch (const Error& e) { fail("Fabric::load_raw ", path, ": ", e.what()); }
}

}  // namespace kiln
