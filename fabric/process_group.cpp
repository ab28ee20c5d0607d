// Fabric's multi-process strategies over distributed/: launch, Gloo process group, DDP.
#include "fabric/process_group.h"

#include <algorithm>
#include <map>

#include "distributed/distributed.h"

namespace kiln::detail {
namespace {

namespace kd = kiln::distributed;

class GlooProcessGroup final : public FabricProcessGroup {
 public:
  GlooProcessGroup(const kd::Environment& env, std::shared_ptr<kd::Communicator> comm)
      : env_(env), comm_(std::move(comm)) {}

  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->world_size(); }
  int local_rank() const override { return env_.local_rank; }
  int node_rank() const override { return env_.node_rank; }

  void wrap(const std::shared_ptr<nn::Module>& model) override {
    if (ddp_.count(model.get())) return;
    ddp_[model.get()] = std::make_shared<kd::DistributedDataParallel>(model, comm_);
  }
  void finish_backward() override {
    for (auto& [m, ddp] : ddp_) ddp->finalize();
  }
  std::shared_ptr<void> no_sync(const nn::Module* model) override {
    auto it = ddp_.find(model);
    KILN_CHECK(it != ddp_.end(), "Fabric::no_backward_sync: the module is not wrapped in "
               "DistributedDataParallel; pass the model returned by fabric.setup()");
    return std::make_shared<kd::Reducer::NoSyncGuard>(it->second->reducer());
  }

  void barrier() override { comm_->barrier(); }
  Tensor broadcast(const Tensor& t, int src) override {
    KILN_CHECK(src >= 0 && src < world_size(), "Fabric::broadcast: src rank ", src,
               " does not exist (world size ", world_size(), ")");
    Tensor out = t.clone();
    comm_->broadcast(out, src);
    return out;
  }
  Tensor all_gather(const Tensor& t) override { return comm_->all_gather(t.contiguous()); }
  Tensor all_reduce(const Tensor& t, const std::string& op) override {
    Tensor out = t.clone();
    comm_->all_reduce(out, kd::parse_reduce_op(op));
    return out;
  }

 private:
  kd::Environment env_;
  std::shared_ptr<kd::Communicator> comm_;
  std::map<const nn::Module*, std::shared_ptr<kd::DistributedDataParallel>> ddp_;
};

}  // namespace

std::shared_ptr<FabricProcessGroup> start_process_group(int processes_per_node) {
  kd::Environment env = kd::launch(std::max(processes_per_node, 1));
  KILN_CHECK(processes_per_node <= 0 || env.local_world_size == processes_per_node, "Fabric::launch: devices asks for ",
             processes_per_node, " processes per node, but the launcher (", env.source,
             ") started ", env.local_world_size, "; make them agree");
  return std::make_shared<GlooProcessGroup>(env, kd::init_process_group(env));
}

}  // namespace kiln::detail
