// How Fabric reaches distributed/ for the multi-process strategies without its public header
// depending on that optional layer. fabric/process_group.cpp implements it over distributed/
// (launch, process group, DistributedDataParallel, ShardedDataParallel); builds without Gloo get
// fabric/process_group_none.cpp, which explains that the strategy is not available.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "fabric/checkpoint.h"
#include "nn/module.h"
#include "optim/optimizer.h"

namespace kiln::detail {

class FabricProcessGroup {
 public:
  virtual ~FabricProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  virtual int node_rank() const = 0;

  // Broadcasts the model's parameters and buffers from rank 0. "ddp" wraps it in
  // DistributedDataParallel; the sharded strategy waits for its optimizer (wrap_optimizer).
  virtual void wrap(const std::shared_ptr<nn::Module>& model) = 0;
  // The sharded strategy: wraps the optimizer and the set-up model whose parameters it holds in a
  // ShardedDataParallel (the optimizer then steps this rank's shards). Nothing under "ddp".
  virtual void wrap_optimizer(const std::shared_ptr<optim::Optimizer>& optimizer) = 0;
  // After backward: waits for every wrapped model's gradient averaging (or reduce-scatter).
  virtual void finish_backward() = 0;
  // The wrapped model's no_sync guard for as long as the returned handle lives.
  virtual std::shared_ptr<void> no_sync(const nn::Module* model) = 0;
  // The sharded step (shards, then all-gather of the parameters); false when `optimizer` is not
  // sharded, and the caller steps it as usual.
  virtual bool step(optim::Optimizer& optimizer) = 0;
  // Clipping over a sharded model's gradient shards with the global norm; nullopt when `model`
  // is not sharded (its gradients are whole, and the caller clips them as usual).
  virtual std::optional<Tensor> clip_gradients(const nn::Module* model, std::optional<double> clip_val,
                                               std::optional<double> max_norm, double norm_type,
                                               bool error_if_nonfinite) = 0;
  // What the checkpoint code needs to save and load sharded optimizers; nullopt under "ddp".
  virtual std::optional<ShardContext> shard_context() const = 0;

  virtual void barrier() = 0;
  virtual Tensor broadcast(const Tensor& t, int src) = 0;
  virtual Tensor all_gather(const Tensor& t) = 0;
  virtual Tensor all_reduce(const Tensor& t, const std::string& op) = 0;
};

// Starts the other local processes when no distributed environment is set (the program is
// re-executed, this process becomes rank 0), then joins the process group. match_launcher: take
// as many processes per node as a launcher started (devices "auto"); otherwise they must be
// processes_per_node. sharded: the ZeRO-2 strategy instead of DDP. timeout: how long joining and
// each collective wait for the others.
std::shared_ptr<FabricProcessGroup> start_process_group(int processes_per_node, bool match_launcher, bool sharded,
                                                        std::chrono::milliseconds timeout);

// The job a launcher (torchrun, kiln-run, srun, mpirun) started this process in; nullopt without one.
struct LauncherInfo {
  int world_size = 1;
  int local_world_size = 1;
  std::string source;
};
std::optional<LauncherInfo> detect_launcher();

}  // namespace kiln::detail
