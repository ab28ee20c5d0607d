// ZeroRedundancyOptimizer: the sharded strategy's optimizer (ZeRO stage 1, as PyTorch's
// ZeroRedundancyOptimizer). Parameters are partitioned over the ranks (greedy by size, the same
// on every rank); each rank keeps optimizer state only for the parameters it owns and updates
// only those, then every owner broadcasts its updated parameters. Optimizer memory per rank falls
// to about 1/N when the parameters are many and alike in size (one large layer lands on one rank
// whole). Gradients still arrive whole (averaged by DDP's Reducer): gradient memory is not
// sharded. ShardedDataParallel (distributed/sharded.h, ZeRO-2, what Fabric's sharded strategies
// run) shards gradients too, in flat balanced shards.
//   ZeroRedundancyOptimizer opt(comm, model->parameters(),
//       [](std::vector<Tensor> p) { return std::make_shared<optim::AdamW>(p, 3e-4); });
//   loss.backward(); ddp.finalize(); opt.step();
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "distributed/communicator.h"
#include "optim/optimizer.h"

namespace kiln::distributed {

class ZeroRedundancyOptimizer {
 public:
  using Factory = std::function<std::shared_ptr<optim::Optimizer>(std::vector<Tensor>)>;
  ZeroRedundancyOptimizer(std::shared_ptr<Communicator> comm, std::vector<Tensor> params,
                          const Factory& make_optimizer);

  // Updates this rank's parameters with the (already averaged) gradients, then brings every
  // rank's parameters up to date from their owners.
  void step();
  void zero_grad(bool set_to_none = true);

  int owner(size_t param_index) const { return owner_[param_index]; }
  const std::vector<Tensor>& local_params() const { return local_; }
  // Null when this rank owns no parameter (more ranks than parameters).
  const std::shared_ptr<optim::Optimizer>& local_optimizer() const { return opt_; }
  // Elements of optimizer state held by this rank.
  int64_t local_state_numel() const;

 private:
  std::shared_ptr<Communicator> comm_;
  std::vector<Tensor> params_;
  std::vector<int> owner_;
  std::vector<Tensor> local_;
  std::shared_ptr<optim::Optimizer> opt_;
};

}  // namespace kiln::distributed
