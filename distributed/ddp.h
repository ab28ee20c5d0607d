// DistributedDataParallel for an nn::Module: at construction, parameters and buffers are
// broadcast from rank 0 (every rank starts from the same weights); after each backward,
// finalize() waits for the Reducer's bucketed, overlapped gradient averaging. Fabric's "ddp"
// strategy wraps the user's model in one of these.
//   kiln::distributed::DistributedDataParallel ddp(model, comm);
//   loss.backward();  ddp.finalize();  optimizer->step();
//   { auto g = ddp.no_sync(); loss.backward(); }   // gradient accumulation without communication
#pragma once

#include <memory>

#include "distributed/reducer.h"
#include "nn/module.h"

namespace kiln::distributed {

class DistributedDataParallel {
 public:
  DistributedDataParallel(std::shared_ptr<nn::Module> module, std::shared_ptr<Communicator> comm,
                          ReducerOptions options = {});

  bool finalize() { return reducer_->finalize(); }
  Reducer::NoSyncGuard no_sync() { return reducer_->no_sync(); }
  // Rank 0's buffers (BatchNorm running statistics) to every rank, as PyTorch does each forward.
  void sync_buffers();

  const std::shared_ptr<nn::Module>& module() const { return module_; }
  Reducer& reducer() { return *reducer_; }
  Communicator& communicator() { return *comm_; }

 private:
  std::shared_ptr<nn::Module> module_;
  std::shared_ptr<Communicator> comm_;
  std::unique_ptr<Reducer> reducer_;
};

}  // namespace kiln::distributed
