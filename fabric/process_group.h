// How Fabric reaches distributed/ for the multi-process strategies without its public header
// depending on that optional layer. fabric/process_group.cpp implements it over distributed/
// (launch, process group, DistributedDataParallel); builds without Gloo get
// fabric/process_group_none.cpp, which explains that the strategy is not available.
#pragma once

#include <memory>
#include <string>

#include "core/tensor.h"
#include "nn/module.h"

namespace kiln::detail {

class FabricProcessGroup {
 public:
  virtual ~FabricProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  virtual int node_rank() const = 0;

  // Wraps the model in DistributedDataParallel (parameters and buffers broadcast from rank 0).
  virtual void wrap(const std::shared_ptr<nn::Module>& model) = 0;
  // After backward: waits for every wrapped model's gradient averaging.
  virtual void finish_backward() = 0;
  // The wrapped model's no_sync guard for as long as the returned handle lives.
  virtual std::shared_ptr<void> no_sync(const nn::Module* model) = 0;

  virtual void barrier() = 0;
  virtual Tensor broadcast(const Tensor& t, int src) = 0;
  virtual Tensor all_gather(const Tensor& t) = 0;
  virtual Tensor all_reduce(const Tensor& t, const std::string& op) = 0;
};

// Starts the other local processes when no distributed environment is set (the program is
// re-executed, this process becomes rank 0), then joins the process group. processes_per_node 0:
// as many as the launcher's environment says (one without a launcher).
std::shared_ptr<FabricProcessGroup> start_process_group(int processes_per_node);

}  // namespace kiln::detail
