// kiln::Fabric: the facade modelled on Lightning Fabric. A user keeps their own training loop and
// hands devices, precision, checkpoints and logging to Fabric by changing a few lines.
//   kiln::Fabric fabric({.accelerator = "cpu", .precision = "bf16-mixed"});
//   fabric.launch();
//   std::tie(model, optimizer) = fabric.setup(model, optimizer);
//   auto loader = fabric.setup_dataloaders(std::make_shared<kiln::data::DataLoader>(ds, opts));
//   for (auto& [x, y] : *loader) {
//     optimizer->zero_grad();
//     auto loss = kiln::cross_entropy((*model)(x), y);   // model->forward(x) too: autocast, f32 out
//     fabric.backward(loss);
//     optimizer->step();                                  // through the loss scaler / the shards
//   }
//   fabric.save("ckpt.safetensors", {{"model", model}, {"optimizer", optimizer}, {"epoch", int64_t(1)}});
// Strategies: "ddp" (gradients all-reduced) and "zero" (ZeRO-2: gradients, optimizer state and
// master weights sharded over the ranks) run the same loop unchanged.
#pragma once

#include <chrono>
#include <concepts>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "core/autocast.h"
#include "data/dataloader.h"
#include "fabric/callbacks.h"
#include "fabric/checkpoint.h"
#include "fabric/compiled_step.h"
#include "fabric/device_loader.h"
#include "fabric/devices.h"
#include "fabric/loggers.h"
#include "fabric/precision.h"
#include "fabric/safetensors.h"
#include "nn/module.h"
#include "optim/grad_scaler.h"
#include "optim/lr_scheduler.h"

namespace kiln {
namespace detail {
class FabricProcessGroup;
struct FabricState;
}  // namespace detail

struct FabricOptions {
  std::string accelerator = "auto";  // "auto", "cpu", "gpu" / "cuda"
  Devices devices = "auto";          // "auto", a count ("2"), or GPU ids ("0,2" or {0, 2})
  int num_nodes = 1;
  std::string precision = "32-true";  // "32-true" "64-true" "bf16-mixed" "bf16-true" "16-true" "16-mixed"
  // "auto", "single_device", "ddp", or a sharded one: "zero" (kiln's name), "deepspeed" /
  // "deepspeed_stage_2" (DeepSpeed's ZeRO stage 2, what kiln runs) or "fsdp". All sharded names
  // run ZeRO stage 2 (kiln::distributed::ShardedDataParallel): gradients, optimizer state and the
  // optimizer's master weights are split over the ranks, parameters stay whole on every rank. So
  // "fsdp" shards less than PyTorch's FULL_SHARD (it is close to SHARD_GRAD_OP), and Fabric says
  // so on rank 0 at launch. strategy() reports "zero" for each of them.
  std::string strategy = "auto";
  std::vector<std::shared_ptr<Logger>> loggers = {};
  // Steps built with compile_step() are captured once as CUDA graphs and replayed (one process
  // on a GPU; elsewhere they run eagerly).
  bool cuda_graphs = false;
  // Objects whose named hooks fabric.call("hook", ...) runs (fabric/callbacks.h).
  std::vector<std::shared_ptr<Callback>> callbacks = {};
  // A Precision plugin instead of `precision` (which must then stay "32-true"): to choose its
  // device or scaler, e.g. "16-mixed" on a CPU.
  std::vector<std::shared_ptr<Plugin>> plugins = {};
  // The loss scaler of "16-mixed" (init_scale 65536, growth 2 every 2000 clean steps, backoff 0.5).
  optim::GradScalerOptions grad_scaler = {};
  // How long a collective (and joining the process group) waits for the other processes before
  // failing with an error, as Lightning's DDP strategy's `timeout`.
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
};

// Environment variables set by a launcher (`kiln-run --accelerator ... --precision ...`, like
// `fabric run`) override these options: LT_ACCELERATOR, LT_DEVICES, LT_STRATEGY, LT_PRECISION,
// LT_NUM_NODES. An option the program sets to something else than its default and than the
// variable is a conflict, reported as an error.
void apply_launcher_overrides(FabricOptions& options);

// A metric for Fabric::log and log_dict: a number, or a one-element tensor (read with item()).
class MetricValue {
 public:
  template <class T>
  requires std::is_arithmetic_v<T> MetricValue(T v) : value_(double(v)) {}  // NOLINT: implicit, as the number it holds
  MetricValue(const Tensor& t) : value_(t) {}                               // NOLINT
  // The number; `name` is for the error when a tensor has other than one element.
  double get(const std::string& name) const;

 private:
  std::variant<double, Tensor> value_;
};

// setup_dataloaders' options, Lightning's keyword arguments.
struct DataloaderSetupOptions {
  // With several processes, give each rank its own share: a DistributedSampler, or the loader's
  // own sampler wrapped (data::DistributedSamplerWrapper). A DistributedSampler the loader
  // already has is kept.
  bool use_distributed_sampler = true;
  // Batches come out on the Fabric's device (and, under "-true" precisions, in its dtype).
  bool move_to_device = true;
};

// A filter for Fabric::save: per state key (a module or an optimizer), which of its tensors to
// keep, by name within the object ("fc1.weight", "state.0.exp_avg") and value.
using SaveFilter = std::map<std::string, std::function<bool(const std::string& name, const Tensor& value)>>;

class Fabric {
 public:
  explicit Fabric(FabricOptions options = {});

  // Starts the processes of a multi-device run and joins their process group: without a
  // torchrun/SLURM/mpirun environment the program is re-executed for ranks 1..N-1 and this process
  // becomes rank 0 (every rank then runs the code after launch()). One process: nothing to start.
  void launch();
  template <class F>
  auto launch(F&& fn) {
    launch();
    return fn(*this);
  }

  // Lightning's setup(model, *optimizers, scheduler): moves the model to the device and dtype of
  // the precision; with strategy "ddp" also wraps it in DistributedDataParallel (weights broadcast
  // from rank 0, gradients averaged during fabric.backward). Under the sharded strategy the model
  // and its optimizer are wrapped together (the optimizer must hold exactly the model's trainable
  // parameters and not have stepped yet): its param groups are re-pointed at this rank's flat
  // shards, keeping their options. A scheduler, if given, comes last and is returned as it is.
  // The objects keep their types and now carry the precision and the strategy:
  //  - calling the model, (*model)(x) or model->forward(x), runs its forward under the precision
  //    (autocast for "-mixed", inputs in the parameters' dtype for "-true") and returns f16/bf16
  //    outputs as f32. kiln's layers apply it from forward() too, so a model of your own whose
  //    forward() calls its layers gets it either way; one that computes with its parameters
  //    directly gets it when called as (*model)(x). Inside fabric.autocast() the model computes
  //    as that scope says (the explicit form, unchanged);
  //  - optimizer->step() is fabric.step(optimizer): the loss scaler's unscale / skip / update
  //    under "16-mixed", the sharded step and all-gather under "zero";
  //  - where the precision or strategy needs fabric.backward(loss) ("16-mixed", "ddp", "zero"),
  //    a loss.backward() is an error at that backward.
  // Returns the model alone, or a tuple of everything given: std::tie(model, opt) = setup(model, opt).
  // Setting one object up twice is an error.
  template <class M, class... Rest>
  auto setup(std::shared_ptr<M> model, std::shared_ptr<Rest>... rest) {
    static_assert(std::is_base_of_v<nn::Module, M>, "Fabric::setup: the first argument is the model");
    static_assert(((std::is_base_of_v<optim::Optimizer, Rest> || std::is_base_of_v<optim::LRScheduler, Rest>)&&...),
                  "Fabric::setup: after the model come optimizers and at most one scheduler");
    static_assert(scheduler_last<Rest...>(), "Fabric::setup: at most one scheduler, after the optimizers");
    setup_module_impl(model);
    (setup_rest(rest), ...);
    if constexpr (sizeof...(Rest) == 0)
      return model;
    else
      return std::tuple<std::shared_ptr<M>, std::shared_ptr<Rest>...>(std::move(model), std::move(rest)...);
  }
  template <class M>
  std::shared_ptr<M> setup_module(std::shared_ptr<M> model) {
    setup_module_impl(model);
    return model;
  }
  // One optimizer, or a tuple of them.
  template <class O, class... More>
  auto setup_optimizers(std::shared_ptr<O> optimizer, std::shared_ptr<More>... more) {
    setup_optimizer_impl(optimizer);
    (setup_optimizer_impl(more), ...);
    if constexpr (sizeof...(More) == 0)
      return optimizer;
    else
      return std::tuple<std::shared_ptr<O>, std::shared_ptr<More>...>(std::move(optimizer), std::move(more)...);
  }
  // Lightning's setup_dataloaders(*loaders, use_distributed_sampler, move_to_device). Batches come
  // out on device() and, for the "-true" precisions, in the precision's dtype. With several
  // processes each rank gets its share (see DataloaderSetupOptions). Returns one loader, or a
  // tuple: auto [train, val] = fabric.setup_dataloaders(train_loader, val_loader);
  std::shared_ptr<DeviceDataLoader> setup_dataloaders(std::shared_ptr<data::DataLoader> loader,
                                                      DataloaderSetupOptions options = {});
  std::tuple<std::shared_ptr<DeviceDataLoader>, std::shared_ptr<DeviceDataLoader>> setup_dataloaders(
      std::shared_ptr<data::DataLoader> a, std::shared_ptr<data::DataLoader> b, DataloaderSetupOptions options = {});
  std::tuple<std::shared_ptr<DeviceDataLoader>, std::shared_ptr<DeviceDataLoader>, std::shared_ptr<DeviceDataLoader>>
  setup_dataloaders(std::shared_ptr<data::DataLoader> a, std::shared_ptr<data::DataLoader> b,
                    std::shared_ptr<data::DataLoader> c, DataloaderSetupOptions options = {});
  std::vector<std::shared_ptr<DeviceDataLoader>> setup_dataloaders(
      const std::vector<std::shared_ptr<data::DataLoader>>& loaders, DataloaderSetupOptions options = {});

  // Creates modules where they will train: in its scope parameters and buffers are made on
  // device() and, under the "-true" precisions, in the precision's dtype (Lightning's
  // init_module()):  { auto init = fabric.init_module(); model = std::make_shared<Net>(); }
  std::unique_ptr<nn::ModuleInitGuard> init_module() const;

  // loss.backward() with the precision plugin's loss scaling ("16-mixed": loss * scale); under
  // "ddp" it returns once the gradients are averaged over the ranks; under the sharded strategy
  // once they are reduce-scattered into the optimizer's gradient shards (the parameters' own
  // .grad is freed then).
  void backward(const Tensor& loss);
  // optimizer->step() of a set-up optimizer (which goes through the precision and the strategy:
  // see setup). Under "16-mixed" it unscales the gradients (unless clip_gradients already did),
  // skips the step when one is inf/NaN, and updates the scale. Returns whether the optimizer
  // stepped.
  bool step(const std::shared_ptr<optim::Optimizer>& optimizer);
  // Clips the gradients of `module`'s parameters by total norm (max_norm) or value (clip_val);
  // returns the total norm before clipping (undefined for clip_val). Under "16-mixed" the
  // optimizer's gradients are unscaled first, so max_norm means the same as in fp32, and a
  // non-finite norm is left to the loss scaler (which skips the step); otherwise a non-finite
  // norm is an error unless error_if_nonfinite is false. Under the sharded strategy the norm is
  // the global one over every rank's gradient shards.
  Tensor clip_gradients(const std::shared_ptr<nn::Module>& module, const std::shared_ptr<optim::Optimizer>& optimizer,
                        std::optional<double> clip_val = std::nullopt, std::optional<double> max_norm = std::nullopt,
                        double norm_type = 2.0, bool error_if_nonfinite = true);
  // The precision's autocast scope ("-mixed" precisions); a no-op scope otherwise. A set-up
  // model needs none; code outside it may: { auto ac = fabric.autocast(); ... }
  // The training step as a function of the batch (fabric/compiled_step.h): with
  // FabricOptions::cuda_graphs on a GPU it is replayed as a CUDA graph after warm-up, and captured
  // again when a set-up optimizer's learning rate changes; otherwise each call just runs `fn`.
  CompiledStep compile_step(CompiledStep::Fn fn, int warmup = 2) const;

  std::unique_ptr<AutocastGuard> autocast() const;

  Tensor to_device(const Tensor& t) const;
  data::Batch to_device(const data::Batch& b) const;
  Device device() const { return device_; }
  const std::string& precision() const { return precision_; }
  const std::string& strategy() const { return strategy_; }
  // The precision plugin (from FabricOptions::precision, or the one in plugins).
  const std::shared_ptr<Precision>& precision_plugin() const { return precision_plugin_; }
  // The dynamic loss scaler of "16-mixed" (null for the other precisions). Put it in the state
  // given to save() and load() so a resumed run continues with the same scale:
  //   if (auto s = fabric.grad_scaler()) state["grad_scaler"] = s;
  const std::shared_ptr<optim::GradScaler>& grad_scaler() const { return precision_plugin_->scaler(); }

  // From the process group once launch() ran (0, 0, 0 and 1 before it and with one process).
  int global_rank() const;
  int local_rank() const;
  int node_rank() const;
  int world_size() const;
  bool is_global_zero() const { return global_rank() == 0; }
  // Prints on local rank 0 of every node (each node's console gets one copy). Stream manipulators
  // apply to this line only:  fabric.print("Loss: ", std::fixed, std::setprecision(4), loss);
  template <class... Args>
  void print(const Args&... args) const {
    if (local_rank() != 0) return;
    const std::ios_base::fmtflags flags = std::cout.flags();
    const std::streamsize precision = std::cout.precision();
    ((std::cout << args), ...);
    std::cout << std::endl;
    std::cout.flags(flags);
    std::cout.precision(precision);
  }

  // Collectives over the process group (Gloo, CPU tensors); they return new tensors. With one
  // process they return their input (all_gather adds a leading dim of 1).
  void barrier(const std::string& name = "") const;
  Tensor broadcast(const Tensor& t, int src = 0) const;
  // A string or a JSON value (numbers, lists, maps: any plain Python-like object) from rank src.
  std::string broadcast(const std::string& s, int src = 0) const;
  template <class J>
  requires std::same_as<J, nlohmann::json> J broadcast(const J& value, int src = 0)
  const { return nlohmann::json::parse(broadcast(value.dump(), src)); }
  Tensor all_gather(const Tensor& t) const;
  Tensor all_reduce(const Tensor& t, const std::string& reduce_op = "mean") const;

  // Rank 0 runs the scope's code first while the others wait; then they run it (downloading or
  // preparing data once). local = true: local rank 0 of each node first.
  //   { auto first = fabric.rank_zero_first(); dataset = load_or_download(...); }
  class RankZeroFirst {
   public:
    RankZeroFirst(const Fabric& fabric, bool first);
    ~RankZeroFirst();
    RankZeroFirst(const RankZeroFirst&) = delete;
    RankZeroFirst& operator=(const RankZeroFirst&) = delete;

   private:
    const Fabric& fabric_;
    bool first_;
  };
  RankZeroFirst rank_zero_first(bool local = false) const;

  // Skips the gradient all-reduce (sharded: reduce-scatter) of `module` in its scope (gradient
  // accumulation: DDP's no_sync); the next backward outside it averages the accumulated sum.
  // Nothing to skip with one process; the scope still checks that the module was set up.
  class NoBackwardSync {
   public:
    NoBackwardSync() = default;
    explicit NoBackwardSync(std::shared_ptr<void> guard) : guard_(std::move(guard)) {}

   private:
    std::shared_ptr<void> guard_;
  };
  NoBackwardSync no_backward_sync(const std::shared_ptr<nn::Module>& module, bool enabled = true) const;

  // Seeds kiln's generator (weights, dropout, shuffling, augmentation). Returns the seed.
  static uint64_t seed_everything(uint64_t seed);

  // Runs the hook of that name on every callback that has it, in order (FabricOptions::callbacks).
  template <class... Args>
  void call(const std::string& hook, const Args&... args) {
    for (const auto& cb : callbacks_) cb->call(hook, args...);
  }
  const std::vector<std::shared_ptr<Callback>>& callbacks() const { return callbacks_; }

  const std::vector<std::shared_ptr<Logger>>& loggers() const { return loggers_; }
  std::shared_ptr<Logger> logger() const { return loggers_.empty() ? nullptr : loggers_[0]; }
  // On global rank 0, to every logger. Values are numbers or one-element tensors. Without a
  // step, each call takes the step after the last one logged.
  void log(const std::string& name, const MetricValue& value, std::optional<int64_t> step = std::nullopt);
  void log_dict(const std::map<std::string, MetricValue>& metrics, std::optional<int64_t> step = std::nullopt);
  template <class V>
  void log_dict(const std::map<std::string, V>& metrics, std::optional<int64_t> step = std::nullopt) {
    log_dict(std::map<std::string, MetricValue>(metrics.begin(), metrics.end()), step);
  }

  // Checkpoints (fabric/checkpoint.h). Only global rank 0 writes, except when the state holds an
  // optimizer of the sharded strategy: then `path` becomes an index, and every rank writes its
  // optimizer shard beside it (<stem>.<save id>.rank<r>-of-<n>.safetensors; rank 0's file also
  // holds the model and every other entry). Missing parent folders are created. `filter` keeps,
  // per module or optimizer key, only the tensors it accepts. Plain values may nest (a
  // nlohmann::json of lists and maps).
  void save(const std::string& path, const State& state, const SaveFilter& filter = {}) const;
  // Restores set-up objects in place and returns what the state did not ask for. It reads full
  // and sharded checkpoints under every strategy: a sharded one on the same world size reads this
  // rank's shard directly (exact resume), otherwise it is consolidated in memory
  // (kiln::consolidate_checkpoint and kiln-consolidate write it as one full file) and, in a
  // sharded run, cut into this rank's shards.
  State load(const std::string& path, State& state, bool strict = true) const;
  // Everything in the checkpoint: plain values, tensors (objects' under "<key>.<name>"), and the
  // JSON state of optimizers (hyper-parameters), schedulers and grad scalers under their keys.
  State load(const std::string& path) const;
  // A state dict saved without Fabric into one module or optimizer (Lightning's load_raw): a
  // safetensors file of the module's state_dict() names (PyTorch's
  // safetensors.torch.save_file(model.state_dict(), path) writes one), converted to the
  // module's dtypes; or of an optimizer's state tensors ("state.<i>.<name>", with its
  // hyper-parameters as JSON under "kiln.optimizer" in the metadata, when present).
  void load_raw(const std::string& path, const std::shared_ptr<nn::Module>& module, bool strict = true) const;
  void load_raw(const std::string& path, const std::shared_ptr<optim::Optimizer>& optimizer) const;

 private:
  template <class... R>
  static constexpr bool scheduler_last() {
    constexpr bool is_sched[] = {std::is_base_of_v<optim::LRScheduler, R>..., false};
    size_t n = sizeof...(R), count = 0;
    for (size_t i = 0; i < n; ++i)
      if (is_sched[i]) {
        if (i != n - 1) return false;
        ++count;
      }
    return count <= 1;
  }
  template <class T>
  void setup_rest(const std::shared_ptr<T>& obj) {
    if constexpr (std::is_base_of_v<optim::Optimizer, T>)
      setup_optimizer_impl(obj);
    else
      KILN_CHECK(obj, "Fabric::setup: the scheduler is null");
  }
  void setup_module_impl(const std::shared_ptr<nn::Module>& model);
  void setup_optimizer_impl(const std::shared_ptr<optim::Optimizer>& optimizer);
  std::shared_ptr<DeviceDataLoader> setup_one_dataloader(std::shared_ptr<data::DataLoader> loader,
                                                         const DataloaderSetupOptions& options);
  std::optional<DType> param_dtype() const { return precision_plugin_->param_dtype(); }

  FabricOptions options_;
  Device device_ = Device::cpu();
  std::string precision_, strategy_;
  std::shared_ptr<Precision> precision_plugin_;
  std::shared_ptr<detail::FabricState> state_;
  std::vector<std::shared_ptr<Logger>> loggers_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  std::set<const void*> setup_objects_;
  std::vector<std::shared_ptr<optim::Optimizer>> optimizers_;  // set up, in order
  bool launched_ = false;
  detail::DevicePlan plan_;  // processes per node and their GPUs
  std::shared_ptr<detail::FabricProcessGroup> group_;
  int64_t log_step_ = 0;
};

}  // namespace kiln
