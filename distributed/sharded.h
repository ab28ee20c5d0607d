// ShardedDataParallel: ZeRO stage 2 for an nn::Module and its optimizer (DeepSpeed's stage 2,
// fairscale's ShardedDDP + OSS). Parameters stay whole on every rank; gradients, optimizer state
// and the optimizer's copy of the weights are split over the ranks:
//  - backward: as each bucket's gradients become ready, the bucket is reduce-scattered (averaged)
//    on the Reducer's communication thread, and its full gradients are freed while backward goes
//    on; each rank keeps only its shard of every bucket;
//  - step: the user's optimizer updates this rank's shards only, then the updated shards are
//    all-gathered into every rank's parameters.
// Per rank, gradient, optimizer-state and master memory fall to about 1/N of DDP's, for the price
// of a reduce-scatter (half an all-reduce) plus an all-gather (the other half) per step: the same
// traffic as DDP. The result is DDP's: AdamW, Adam and SGD update element by element, so updating
// a slice is updating that slice of the whole.
//
// Layout: flat, not per parameter. Each Reducer bucket (reverse parameter order, ~25 MB, never
// spanning two dtypes or two param groups) is one flat buffer padded to a multiple of N; rank r
// owns elements [r*S, (r+1)*S) of every bucket, S = padded / N. Flat shards balance the memory
// whatever the parameter sizes (per-parameter ownership, as ZeroRedundancyOptimizer does, leaves
// the rank that owns SimpleCNN's fc1 weight with 85% of the state), let each bucket be reduced as
// soon as backward produces it, and keep param groups whole: the optimizer's group g is re-pointed
// at this rank's shards of group g's buckets, so per-group options (lr, weight_decay, schedulers
// changing them) apply unchanged. Padding elements have zero gradient and stay zero.
//
// The "master" shard has the parameters' dtype: under the "-mixed" precisions parameters are
// already fp32 and the shard is their fp32 master copy; under "bf16-true" the update runs in
// bf16, as DDP's would. Masters are refreshed from the parameters at every step, so weights
// loaded into the module between steps are picked up.
//   ShardedDataParallel zero(model, optimizer, comm);   // re-points optimizer at the shards
//   loss.backward();  zero.finalize();  zero.step();    // not optimizer->step(): see step()
#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

#include "distributed/reducer.h"
#include "nn/module.h"
#include "optim/optimizer.h"

namespace kiln::distributed {

struct ShardedOptions {
  size_t bucket_cap_bytes = 25u << 20;
};

class ShardedDataParallel {
 public:
  // Broadcasts rank 0's parameters and buffers, partitions the optimizer's parameters (which must
  // be exactly the module's trainable ones) into buckets and points the optimizer's param groups
  // at this rank's flat shards. The optimizer must not have stepped yet (no state to move).
  ShardedDataParallel(std::shared_ptr<nn::Module> module, std::shared_ptr<optim::Optimizer> optimizer,
                      std::shared_ptr<Communicator> comm, ShardedOptions options = {});
  ~ShardedDataParallel();
  ShardedDataParallel(const ShardedDataParallel&) = delete;
  ShardedDataParallel& operator=(const ShardedDataParallel&) = delete;

  // After backward: waits for the last bucket's reduce-scatter. The shards are added to the
  // optimizer's gradients (accumulating, like .grad, until zero_grad); the parameters' own .grad
  // is gone afterwards. A no-op after a backward under no_sync(), whose gradients accumulate
  // locally in .grad until the next backward outside it.
  void finalize();
  // The optimizer's step on this rank's shards, then the all-gather that brings every rank's
  // parameters up to date. A bare optimizer->step() would update the shards only; the next
  // finalize() or step() reports it as an error rather than train on stale weights.
  void step();
  Reducer::NoSyncGuard no_sync() { return reducer_->no_sync(); }

  // clip_grad_norm_ / clip_grad_value_ on the gradient shards; the norm is the global one (the
  // shards' partial sums, or maxima, all-reduced), so every rank clips by the same factor as DDP.
  Tensor clip_grad_norm_(double max_norm, double norm_type = 2.0, bool error_if_nonfinite = false);
  void clip_grad_value_(double clip_value);

  // How the optimizer's parameters map onto the shards, for checkpoints (fabric/ turns shard
  // state back into per-parameter state with it): {"world_size", "group_sizes": [params per
  // group], "buckets": [{"group", "dtype", "numel", "shard_numel", "params": [[index, offset,
  // numel, [shape...]], ...]}, ...]} with buckets in the order of the optimizer's shard tensors
  // and parameter indices in the order of the optimizer before setup (group by group).
  const nlohmann::json& layout() const { return layout_; }

  // Elements this rank holds: optimizer state (exp_avg, ...), gradient shards, master shards.
  int64_t local_state_numel() const;
  int64_t local_grad_numel() const;
  int64_t local_master_numel() const;
  // Elements of the optimizer's parameters before sharding (their sum over the buckets).
  int64_t total_numel() const { return total_numel_; }

  const std::shared_ptr<nn::Module>& module() const { return module_; }
  const std::shared_ptr<optim::Optimizer>& optimizer() const { return optimizer_; }
  // The parameters as the optimizer held them before setup, group by group.
  const std::vector<Tensor>& parameters() const { return params_; }
  Communicator& communicator() { return *comm_; }
  Reducer& reducer() { return *reducer_; }

 private:
  struct Bucket;
  // Parameters whose bucket is reduce-scattered: their full gradients are freed on the main
  // thread, from the parameters' gradient hooks during backward and in finalize().
  struct Releasable {
    std::mutex mu;
    std::vector<Tensor> params;
    void release_except(const TensorImpl* keep);
  };
  void reduce_bucket(size_t reducer_bucket);
  void refresh_masters();
  void gather_parameters();
  void check_not_stepped_alone(const char* where) const;

  std::shared_ptr<nn::Module> module_;
  std::shared_ptr<optim::Optimizer> optimizer_;
  std::shared_ptr<Communicator> comm_;
  std::vector<Tensor> params_;
  std::vector<Bucket> buckets_;     // in the optimizer's shard order
  std::vector<size_t> by_reducer_;  // reducer bucket -> index in buckets_
  std::shared_ptr<Releasable> releasable_ = std::make_shared<Releasable>();
  std::unique_ptr<Reducer> reducer_;
  nlohmann::json layout_;
  int64_t total_numel_ = 0;
};

}  // namespace kiln::distributed
