#include "fabric/fabric.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/autograd.h"
#include "data/sampler.h"
#include "fabric/process_group.h"
#include "optim/clip_grad.h"

namespace kiln {
namespace {

const std::vector<std::string> kAccelerators = {"auto", "cpu", "gpu", "cuda"};
const std::vector<std::string> kPrecisions = {"32-true", "64-true", "bf16-mixed", "bf16-true",
                                              "16-mixed", "16-true"};
const std::vector<std::string> kStrategies = {"auto", "single_device", "ddp", "zero",
                                              "deepspeed", "deepspeed_stage_2", "fsdp"};
// The names under which Fabric users ask for sharding; kiln runs ZeRO stage 2 for each of them.
const std::vector<std::string> kShardedStrategies = {"zero", "deepspeed", "deepspeed_stage_2", "fsdp"};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "\"" : ", \"") + x + "\"";
  return s;
}

void check_one_of(const std::string& what, const std::string& value,
                  const std::vector<std::string>& accepted) {
  KILN_CHECK(std::find(accepted.begin(), accepted.end(), value) != accepted.end(), "Fabric: unknown ",
             what, " \"", value, "\"; use one of ", join(accepted));
}

// "auto" -> 1; "3" -> 3; "0,1" -> 2 (a list of ids). Anything else is an error.
int parse_device_count(const std::string& devices) {
  if (devices == "auto") return 1;
  int count = 0;
  size_t pos = 0;
  bool list = devices.find(',') != std::string::npos || devices.find('[') != std::string::npos;
  std::string s = devices;
  std::erase_if(s, [](char c) { return c == '[' || c == ']' || c == ' '; });
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    std::string part = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    KILN_CHECK(!part.empty() && part.find_first_not_of("0123456789") == std::string::npos,
               "Fabric: invalid devices \"", devices,
               "\"; use \"auto\", a count such as \"1\", or device ids such as \"0,1\"");
    count += list ? 1 : std::stoi(part);
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  KILN_CHECK(count > 0, "Fabric: devices \"", devices, "\" selects no device; use \"auto\" or \"1\"");
  return count;
}

}  // namespace

Fabric::Fabric(FabricOptions options) : options_(std::move(options)) {
  const std::string& acc = options_.accelerator;
  check_one_of("accelerator", acc, kAccelerators);
  check_one_of("precision", options_.precision, kPrecisions);
  check_one_of("strategy", options_.strategy, kStrategies);
  KILN_CHECK(options_.num_nodes >= 1, "Fabric: num_nodes must be >= 1, got ", options_.num_nodes);
  int count = parse_device_count(options_.devices);

  bool gpu = acc == "gpu" || acc == "cuda" || (acc == "auto" && cuda::is_available());
  if (gpu) {
    KILN_CHECK(cuda::is_available(), "Fabric: accelerator \"", acc, "\" asks for a GPU, but ",
               "this machine has none that kiln can use (no CUDA device, or kiln was built "
               "without its CUDA backend); use accelerator \"cpu\" or \"auto\"");
    KILN_CHECK(count <= cuda::device_count(), "Fabric: devices \"", options_.devices, "\" asks for ",
               count, " GPUs but this machine has ", cuda::device_count());
    device_ = Device::cuda(0);
  }
  const std::string& prec = options_.precision;
  if (!gpu && prec == "16-mixed")
    fail("Fabric: precision \"16-mixed\" needs a GPU (fp16 loss scaling on a CPU is slow and "
         "inaccurate); on the CPU use \"bf16-mixed\" or \"32-true\"");
  if (prec == "16-mixed") scaler_ = std::make_shared<optim::GradScaler>();
  const std::string& strat = options_.strategy;
  const bool sharded =
      std::find(kShardedStrategies.begin(), kShardedStrategies.end(), strat) != kShardedStrategies.end();
  if (sharded && prec == "16-mixed")
    fail("Fabric: strategy \"", strat, "\" does not combine with precision \"16-mixed\" yet: each ",
         "rank would see inf/NaN only in its own gradient shard, and the loss scaler's skip decision "
         "must be the same on every rank; use \"bf16-mixed\", or strategy \"ddp\"");
  bool multi = count > 1 || options_.num_nodes > 1 || strat == "ddp" || sharded;
  KILN_CHECK(!(strat == "single_device" && multi), "Fabric: strategy \"single_device\" runs one ",
             "process, but devices \"", options_.devices, "\" and num_nodes ", options_.num_nodes,
             " ask for more; use strategy \"ddp\"");
  precision_ = prec;
  strategy_ = sharded ? "zero" : multi ? "ddp" : "single_device";
  processes_ = options_.devices == "auto" ? 0 : count;
  loggers_ = options_.loggers;
  for (const auto& l : loggers_) KILN_CHECK(l, "Fabric: a logger in options.loggers is null");
}

void Fabric::launch() {
  if (launched_) return;
  if (strategy_ == "ddp" || strategy_ == "zero") {
    group_ = detail::start_process_group(processes_, strategy_ == "zero");
    if (device_.is_cuda()) device_ = Device::cuda(group_->local_rank());
  }
  if (options_.strategy == "fsdp" && is_global_zero())
    std::cerr << "kiln: strategy \"fsdp\" runs as ZeRO stage 2 (\"zero\"): gradients, optimizer state "
                 "and master weights are sharded over the " << world_size() << " processes, "
                 "parameters stay whole on every rank (FSDP would shard those too)\n";
  launched_ = true;
}

int Fabric::global_rank() const { return group_ ? group_->rank() : 0; }
int Fabric::local_rank() const { return group_ ? group_->local_rank() : 0; }
int Fabric::node_rank() const { return group_ ? group_->node_rank() : 0; }
int Fabric::world_size() const { return group_ ? group_->world_size() : 1; }

std::optional<DType> Fabric::param_dtype() const {
  if (precision_ == "64-true") return DType::f64;
  if (precision_ == "bf16-true") return DType::bf16;
  if (precision_ == "16-true") return DType::f16;
  return std::nullopt;
}

void Fabric::setup_module_impl(const std::shared_ptr<nn::Module>& model) {
  KILN_CHECK(model, "Fabric::setup: the model is null; create it first (std::make_shared<Net>())");
  for (const auto& [name, p] : model->named_parameters())
    KILN_CHECK(p.defined(), "Fabric::setup: parameter '", name, "' of ", model->name(),
               " is not initialised; create every parameter before setup()");
  KILN_CHECK(strategy_ == "single_device" || group_, "Fabric::setup: strategy \"", strategy_,
             "\" needs its processes; call fabric.launch() before fabric.setup()");
  model->to(device_);
  if (auto dt = param_dtype()) model->to(*dt);
  if (group_) group_->wrap(model);
  setup_objects_.insert(model.get());
}

void Fabric::setup_optimizer_impl(const std::shared_ptr<optim::Optimizer>& optimizer) {
  KILN_CHECK(optimizer, "Fabric::setup: the optimizer is null");
  if (group_) group_->wrap_optimizer(optimizer);
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

std::shared_ptr<DeviceDataLoader> Fabric::setup_dataloaders(std::shared_ptr<data::DataLoader> loader) {
  KILN_CHECK(loader, "Fabric::setup_dataloaders: the loader is null");
  if (world_size() > 1 && !loader->options().sampler) {
    data::DataLoaderOptions o = loader->options();
    o.sampler = std::make_shared<data::DistributedSampler>(
        loader->dataset().size(),
        data::DistributedSamplerOptions{.num_replicas = world_size(), .rank = global_rank(),
                                        .shuffle = o.shuffle, .seed = loader->seed()});
    o.shuffle = false;
    o.seed = loader->seed();
    // The new loader shares the dataset, which the old one owns.
    std::shared_ptr<const data::Dataset> dataset(loader, &loader->dataset());
    loader = std::make_shared<data::DataLoader>(std::move(dataset), std::move(o));
  }
  return std::make_shared<DeviceDataLoader>(std::move(loader), device_, param_dtype());
}

void Fabric::backward(const Tensor& loss) {
  KILN_CHECK(loss.defined() && loss.numel() == 1, "Fabric::backward: expected a scalar loss",
             loss.defined() ? ", got shape " + shape_str(loss.sizes()) : std::string(", got an undefined tensor"));
  if (scaler_) {
    scaler_->scale(loss).backward();
    ++backward_count_;
  } else {
    loss.backward();
  }
  if (group_) group_->finish_backward();
}

bool Fabric::step(const std::shared_ptr<optim::Optimizer>& optimizer) {
  KILN_CHECK(optimizer && setup_objects_.count(optimizer.get()),
             "Fabric::step: the optimizer was not set up; call fabric.setup(model, optimizer) first");
  if (group_ && group_->step(*optimizer)) return true;  // the sharded step
  if (!scaler_) {
    optimizer->step();
    return true;
  }
  int64_t& last = stepped_at_[optimizer.get()];
  KILN_CHECK(backward_count_ > last, "Fabric::step: precision \"16-mixed\" scales the loss, but no ",
             "fabric.backward(loss) ran since this optimizer's last step; call fabric.backward(loss) ",
             "instead of loss.backward(), or the unscaled gradients would be divided by the scale (",
             scaler_->get_scale(), ")");
  last = backward_count_;
  bool stepped = scaler_->step(*optimizer);
  scaler_->update();
  return stepped;
}

Tensor Fabric::clip_gradients(const std::shared_ptr<nn::Module>& module,
                              const std::shared_ptr<optim::Optimizer>& optimizer,
                              std::optional<double> clip_val, std::optional<double> max_norm,
                              double norm_type) {
  KILN_CHECK(module && optimizer, "Fabric::clip_gradients: module and optimizer must not be null");
  KILN_CHECK(clip_val.has_value() != max_norm.has_value(),
             "Fabric::clip_gradients: pass exactly one of clip_val and max_norm");
  if (scaler_) scaler_->unscale_(*optimizer);
  if (group_)
    if (auto norm = group_->clip_gradients(module.get(), clip_val, max_norm, norm_type)) return *norm;
  if (clip_val) {
    optim::clip_grad_value_(module->parameters(), *clip_val);
    return {};
  }
  return optim::clip_grad_norm_(module->parameters(), *max_norm, norm_type);
}

std::unique_ptr<AutocastGuard> Fabric::autocast() const {
  bool mixed = precision_ == "bf16-mixed" || precision_ == "16-mixed";
  DType low = precision_ == "16-mixed" ? DType::f16 : DType::bf16;
  return std::make_unique<AutocastGuard>(device_.type, low, mixed);
}

Tensor Fabric::to_device(const Tensor& t) const {
  if (!t.defined() || t.device() == device_) return t;
  return t.to(device_);
}

data::Batch Fabric::to_device(const data::Batch& b) const {
  return {to_device(b.data), to_device(b.target)};
}

void Fabric::barrier(const std::string& name) const {
  if (group_) group_->barrier();
}

Tensor Fabric::broadcast(const Tensor& t, int src) const {
  if (group_) return group_->broadcast(t, src);
  KILN_CHECK(src == 0, "Fabric::broadcast: src rank ", src, " does not exist (world size 1)");
  return t;
}

Tensor Fabric::all_gather(const Tensor& t) const {
  return group_ ? group_->all_gather(t) : t.unsqueeze(0);
}

Tensor Fabric::all_reduce(const Tensor& t, const std::string& reduce_op) const {
  KILN_CHECK(reduce_op == "mean" || reduce_op == "sum" || reduce_op == "max" || reduce_op == "min",
             "Fabric::all_reduce: unknown reduce_op \"", reduce_op, "\"; use \"mean\", \"sum\", \"max\" or \"min\"");
  return group_ ? group_->all_reduce(t, reduce_op) : t;
}

Fabric::NoBackwardSync Fabric::no_backward_sync(const std::shared_ptr<nn::Module>& module,
                                                bool enabled) const {
  KILN_CHECK(module && setup_objects_.count(module.get()),
             "Fabric::no_backward_sync: the module was not set up; call fabric.setup(model, ...) first");
  if (!group_ || !enabled) return {};
  return NoBackwardSync(group_->no_sync(module.get()));
}

uint64_t Fabric::seed_everything(uint64_t seed) {
  manual_seed(seed);
  return seed;
}

void Fabric::log(const std::string& name, double value, std::optional<int64_t> step) {
  log_dict({{name, value}}, step);
}

void Fabric::log_dict(const std::map<std::string, double>& metrics, std::optional<int64_t> step) {
  if (!is_global_zero()) return;
  int64_t s = step.value_or(log_step_);
  log_step_ = s + 1;
  for (const auto& l : loggers_) l->log_metrics(metrics, s);
}

void Fabric::save(const std::string& path, const State& state) const {
  auto ctx = group_ ? group_->shard_context() : std::nullopt;
  bool sharded = false;
  for (const auto& [key, value] : state)
    if (auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&value))
      sharded = sharded || (ctx && ctx->layouts.count(o->get()));
  // The shard files of a sharded checkpoint this save replaces go once the new one is in place,
  // each removed by one rank.
  std::vector<std::string> old = ctx ? detail::checkpoint_shard_files(path) : std::vector<std::string>{};
  auto remove_old = [&](const std::string& token) {
    std::error_code ec;
    for (size_t j = 0; j < old.size(); ++j)
      if (int(j % size_t(world_size())) == global_rank() &&
          old[j] != detail::checkpoint_shard_path(path, token, int(j), world_size()))
        std::filesystem::remove(old[j], ec);
  };
  if (!sharded) {  // no sharded optimizer in the state (a model alone, say): one file
    if (is_global_zero()) save_checkpoint(path, state);
    barrier("save");
    remove_old("");
    return;
  }
  // Sharded: every rank writes its file under a fresh save id, then rank 0 the index.
  Tensor id = zeros({1}, {.dtype = DType::i64});
  if (is_global_zero()) {
    std::random_device rd;
    uint64_t bits = (uint64_t(rd()) << 32) ^ rd() ^
                    uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    id.fill_(double(bits & ((uint64_t(1) << 48) - 1)));
  }
  char token[16];
  std::snprintf(token, sizeof token, "%012llx", (unsigned long long)broadcast(id, 0).item<int64_t>());
  detail::save_checkpoint_shard(path, token, state, *ctx);
  barrier("save shards");
  if (is_global_zero()) detail::save_checkpoint_index(path, token, state, *ctx);
  barrier("save index");
  remove_old(token);
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

}  // namespace kiln
