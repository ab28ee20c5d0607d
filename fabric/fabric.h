// kiln::Fabric: the facade modelled on Lightning Fabric. A user keeps their own training loop and
// hands devices, precision, checkpoints and logging to Fabric by changing a few lines.
//   kiln::Fabric fabric({.accelerator = "cpu", .precision = "32-true"});
//   fabric.launch();
//   std::tie(model, optimizer) = fabric.setup(model, optimizer);
//   auto loader = fabric.setup_dataloaders(std::make_shared<kiln::data::DataLoader>(ds, opts));
//   for (auto& [x, y] : *loader) {
//     optimizer->zero_grad();
//     auto loss = kiln::cross_entropy(model->forward(x), y);
//     fabric.backward(loss);
//     fabric.step(optimizer);   // optimizer->step() too, except under "16-mixed" and "zero"
//   }
//   fabric.save("ckpt.safetensors", {{"model", model}, {"optimizer", optimizer}, {"epoch", int64_t(1)}});
// Strategies: "ddp" (gradients all-reduced) and "zero" (ZeRO-2: gradients, optimizer state and
// master weights sharded over the ranks) run the same loop unchanged.
#pragma once

#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/autocast.h"
#include "data/dataloader.h"
#include "fabric/checkpoint.h"
#include "fabric/compiled_step.h"
#include "fabric/device_loader.h"
#include "fabric/loggers.h"
#include "fabric/safetensors.h"
#include "optim/grad_scaler.h"

namespace kiln {
namespace detail {
class FabricProcessGroup;
}

struct FabricOptions {
  std::string accelerator = "auto";  // "auto", "cpu", "gpu" / "cuda"
  std::string devices = "auto";      // "auto", a count ("1"), or device ids ("0,1")
  int num_nodes = 1;
  std::string precision = "32-true"; // "32-true" "64-true" "bf16-mixed" "bf16-true" "16-true" "16-mixed"
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
};

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

  // Moves the model to the device and dtype of the precision; with strategy "ddp" also wraps it in
  // DistributedDataParallel (weights broadcast from rank 0, gradients averaged during
  // fabric.backward). The optimizer keeps working on the same parameter objects. Under the
  // sharded strategy the model and its optimizer are wrapped together (the optimizer must hold
  // exactly the model's trainable parameters and not have stepped yet): the optimizer's param
  // groups are re-pointed at this rank's flat shards, keeping their options, so it must step
  // through fabric.step(). Returns the same objects, so `std::tie(model, opt) = setup(...)` works.
  template <class M, class O>
  std::pair<std::shared_ptr<M>, std::shared_ptr<O>> setup(std::shared_ptr<M> model,
                                                           std::shared_ptr<O> optimizer) {
    setup_module_impl(model);
    setup_optimizer_impl(optimizer);
    return {std::move(model), std::move(optimizer)};
  }
  template <class M>
  std::shared_ptr<M> setup_module(std::shared_ptr<M> model) {
    setup_module_impl(model);
    return model;
  }
  template <class O>
  std::shared_ptr<O> setup_optimizers(std::shared_ptr<O> optimizer) {
    setup_optimizer_impl(optimizer);
    return optimizer;
  }
  // Batches come out on device() and, for the "-true" precisions, in the precision's dtype. With
  // several processes a loader without a sampler of its own gets a DistributedSampler (this rank's
  // share, shuffled as the loader was, padded so that every rank sees as many batches).
  std::shared_ptr<DeviceDataLoader> setup_dataloaders(std::shared_ptr<data::DataLoader> loader);

  // loss.backward() with the precision plugin's loss scaling ("16-mixed": loss * scale); under
  // "ddp" it returns once the gradients are averaged over the ranks; under the sharded strategy
  // once they are reduce-scattered into the optimizer's gradient shards (the parameters' own
  // .grad is freed then).
  void backward(const Tensor& loss);
  // optimizer->step() through the precision plugin. Under "16-mixed" it unscales the gradients
  // (unless clip_gradients already did), skips the step when one is inf/NaN, and updates the
  // scale; a plain optimizer->step() there would apply gradients still multiplied by the scale.
  // It is an error when no fabric.backward(loss) ran since this optimizer's last step (a direct
  // loss.backward() leaves unscaled gradients the scaler would shrink by the scale). Returns
  // whether the optimizer stepped. Every precision accepts it, so a loop written with it runs
  // unchanged under all of them. Under the sharded strategy it is required: it steps this rank's
  // shards and all-gathers the updated parameters (a bare optimizer->step() is reported as an error
  // at the next backward).
  bool step(const std::shared_ptr<optim::Optimizer>& optimizer);
  // Clips the gradients of `module`'s parameters by total norm (max_norm) or value (clip_val);
  // returns the total norm before clipping (undefined for clip_val). Under "16-mixed" the
  // optimizer's gradients are unscaled first, so max_norm means the same as in fp32. Under the
  // sharded strategy the norm is the global one over every rank's gradient shards.
  Tensor clip_gradients(const std::shared_ptr<nn::Module>& module,
                        const std::shared_ptr<optim::Optimizer>& optimizer,
                        std::optional<double> clip_val = std::nullopt,
                        std::optional<double> max_norm = std::nullopt, double norm_type = 2.0);
  // The training step as a function of the batch (fabric/compiled_step.h): with
  // FabricOptions::cuda_graphs on a GPU it is replayed as a CUDA graph after warm-up, and captured
  // again when a set-up optimizer's learning rate changes; otherwise each call just runs `fn`.
  CompiledStep compile_step(CompiledStep::Fn fn, int warmup = 2) const;

  // The precision's autocast scope ("-mixed" precisions); a no-op scope otherwise. Wrap the forward
  // pass and the loss in it: { auto ac = fabric.autocast(); loss = ...; }
  std::unique_ptr<AutocastGuard> autocast() const;

  Tensor to_device(const Tensor& t) const;
  data::Batch to_device(const data::Batch& b) const;
  Device device() const { return device_; }
  const std::string& precision() const { return precision_; }
  const std::string& strategy() const { return strategy_; }
  // The dynamic loss scaler of "16-mixed" (null for the other precisions). Put it in the state
  // given to save() and load() so a resumed run continues with the same scale:
  //   if (auto s = fabric.grad_scaler()) state["grad_scaler"] = s;
  const std::shared_ptr<optim::GradScaler>& grad_scaler() const { return scaler_; }

  // From the process group once launch() ran (0, 0, 0 and 1 before it and with one process).
  int global_rank() const;
  int local_rank() const;
  int node_rank() const;
  int world_size() const;
  bool is_global_zero() const { return global_rank() == 0; }
  template <class... Args>
  void print(const Args&... args) const {
    if (!is_global_zero()) return;
    ((std::cout << args), ...);
    std::cout << std::endl;
  }

  // Collectives over the process group (Gloo, CPU tensors); they return new tensors. With one
  // process they return their input (all_gather adds a leading dim of 1).
  void barrier(const std::string& name = "") const;
  Tensor broadcast(const Tensor& t, int src = 0) const;
  Tensor all_gather(const Tensor& t) const;
  Tensor all_reduce(const Tensor& t, const std::string& reduce_op = "mean") const;

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

  const std::vector<std::shared_ptr<Logger>>& loggers() const { return loggers_; }
  std::shared_ptr<Logger> logger() const { return loggers_.empty() ? nullptr : loggers_[0]; }
  void log(const std::string& name, double value, std::optional<int64_t> step = std::nullopt);
  void log_dict(const std::map<std::string, double>& metrics, std::optional<int64_t> step = std::nullopt);

  // Checkpoints (fabric/checkpoint.h). Only global rank 0 writes, except when the state holds an
  // optimizer of the sharded strategy: then `path` becomes an index, and every rank writes its
  // optimizer shard beside it (<stem>.<save id>.rank<r>-of-<n>.safetensors; rank 0's file also
  // holds the model and every other entry). load() restores set-up objects in place and returns what the state did not ask
  // for. It reads full and sharded checkpoints under every strategy: a sharded one on the same
  // world size reads this rank's shard directly (exact resume), otherwise it is consolidated in
  // memory (kiln::consolidate_checkpoint and kiln-consolidate write it as one full file) and, in a
  // sharded run, cut into this rank's shards.
  void save(const std::string& path, const State& state) const;
  State load(const std::string& path, State& state, bool strict = true) const;

 private:
  void setup_module_impl(const std::shared_ptr<nn::Module>& model);
  void setup_optimizer_impl(const std::shared_ptr<optim::Optimizer>& optimizer);
  std::optional<DType> param_dtype() const;  // the "-true" precisions' dtype

  FabricOptions options_;
  Device device_ = Device::cpu();
  std::string precision_, strategy_;
  std::vector<std::shared_ptr<Logger>> loggers_;
  std::set<const void*> setup_objects_;
  std::vector<std::shared_ptr<optim::Optimizer>> optimizers_;  // set up, in order
  std::shared_ptr<optim::GradScaler> scaler_;
  // fabric.backward calls so far, and the count each optimizer last stepped at ("16-mixed").
  int64_t backward_count_ = 0;
  std::map<const optim::Optimizer*, int64_t> stepped_at_;
  bool launched_ = false;
  int processes_ = 1;  // per node; 0: as many as the launcher's environment says
  std::shared_ptr<detail::FabricProcessGroup> group_;
  int64_t log_step_ = 0;
};

}  // namespace kiln
