// Fabric's multi-process strategies over distributed/: launch, Gloo process group, DDP and the
// sharded strategy (ShardedDataParallel, ZeRO-2).
#include "fabric/process_group.h"

#include <algorithm>
#include <map>

#include "distributed/distributed.h"

namespace kiln::detail {
namespace {

namespace kd = kiln::distributed;

class GlooProcessGroup final : public FabricProcessGroup {
 public:
  GlooProcessGroup(const kd::Environment& env, std::shared_ptr<kd::Communicator> comm, bool sharded)
      : env_(env), comm_(std::move(comm)), sharded_(sharded) {}

  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->world_size(); }
  int local_rank() const override { return env_.local_rank; }
  int node_rank() const override { return env_.node_rank; }

  void wrap(const std::shared_ptr<nn::Module>& model) override {
    if (!sharded_) {
      if (!ddp_.count(model.get())) ddp_[model.get()] = std::make_shared<kd::DistributedDataParallel>(model, comm_);
      return;
    }
    if (zero_.count(model.get()) || pending_.count(model.get())) return;
    // Every rank starts from rank 0's weights now, even if no optimizer follows (evaluation).
    auto state = model->parameters();
    for (auto& b : model->buffers()) state.push_back(b);
    kd::broadcast_tensors(*comm_, state, 0);
    pending_[model.get()] = model;
  }

  void wrap_optimizer(const std::shared_ptr<optim::Optimizer>& optimizer) override {
    if (!sharded_ || by_optimizer_.count(optimizer.get())) return;
    auto params = optimizer->parameters();
    std::shared_ptr<nn::Module> model;
    for (const auto& [m, candidate] : pending_)
      for (const auto& p : candidate->parameters())
        if (p.is_same(params.at(0))) model = candidate;
    KILN_CHECK(model,
               "Fabric::setup: under the sharded strategy an optimizer is sharded together "
               "with its model, but no set-up model (without an optimizer yet) holds this ",
               optimizer->name(),
               "'s parameters; call fabric.setup(model, optimizer), or "
               "fabric.setup_module(model) before fabric.setup_optimizers(optimizer)");
    auto zero = std::make_shared<kd::ShardedDataParallel>(model, optimizer, comm_);
    pending_.erase(model.get());
    zero_[model.get()] = zero;
    by_optimizer_[optimizer.get()] = zero;
  }

  void finish_backward() override {
    for (auto& [m, ddp] : ddp_) ddp->finalize();
    for (auto& [m, zero] : zero_) zero->finalize();
    KILN_CHECK(pending_.empty(), "Fabric::backward: under the sharded strategy each model's ",
               "gradients are reduced into its optimizer's shards, but ", pending_.begin()->second->name(),
               " was set up without an optimizer; pass it to "
               "fabric.setup(model, optimizer) together with its optimizer");
  }

  std::shared_ptr<void> no_sync(const nn::Module* model) override {
    if (auto it = zero_.find(model); it != zero_.end())
      return std::make_shared<kd::Reducer::NoSyncGuard>(it->second->reducer());
    auto it = ddp_.find(model);
    KILN_CHECK(it != ddp_.end(), "Fabric::no_backward_sync: the module is not wrapped for "
                                 "the strategy (DistributedDataParallel or ShardedDataParallel); pass the model "
                                 "returned by fabric.setup(), with its optimizer under the sharded strategy");
    return std::make_shared<kd::Reducer::NoSyncGuard>(it->second->reducer());
  }

  bool step(optim::Optimizer& optimizer) override {
    auto it = by_optimizer_.find(&optimizer);
    if (it == by_optimizer_.end()) return false;
    it->second->step();
    return true;
  }

  std::optional<Tensor> clip_gradients(const nn::Module* model, std::optional<double> clip_val,
                                       std::optional<double> max_norm, double norm_type,
                                       bool error_if_nonfinite) override {
    auto it = zero_.find(model);
    if (it == zero_.end()) return std::nullopt;
    if (clip_val) {
      it->second->clip_grad_value_(*clip_val);
      return Tensor();
    }
    return it->second->clip_grad_norm_(*max_norm, norm_type, error_if_nonfinite);
  }

  std::optional<ShardContext> shard_context() const override {
    if (!sharded_) return std::nullopt;
    ShardContext ctx{.rank = rank(), .world_size = world_size(), .layouts = {}};
    for (const auto& [o, zero] : by_optimizer_) ctx.layouts[o] = zero->layout();
    return ctx;
  }

  void barrier() override { comm_->barrier(); }
  Tensor broadcast(const Tensor& t, int src) override {
    KILN_CHECK(src >= 0 && src < world_size(), "Fabric::broadcast: src rank ", src, " does not exist (world size ",
               world_size(), ")");
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
  bool sharded_;
  std::map<const nn::Module*, std::shared_ptr<kd::DistributedDataParallel>> ddp_;
  // The sharded strategy: models set up but still waiting for their optimizer, and the wrapped.
  std::map<const nn::Module*, std::shared_ptr<nn::Module>> pending_;
  std::map<const nn::Module*, std::shared_ptr<kd::ShardedDataParallel>> zero_;
  std::map<const optim::Optimizer*, std::shared_ptr<kd::ShardedDataParallel>> by_optimizer_;
};

}  // namespace

std::shared_ptr<FabricProcessGroup> start_process_group(int processes_per_node, bool match_launcher, bool sharded,
                                                        std::chrono::milliseconds timeout) {
  kd::Environment env = kd::launch(std::max(processes_per_node, 1));
  KILN_CHECK(match_launcher || env.local_world_size == processes_per_node, "Fabric::launch: devices asks for ",
             processes_per_node, " processes per node, but the launcher (", env.source, ") started ",
             env.local_world_size, "; make them agree, or pass devices \"auto\"");
  kd::ProcessGroupOptions options;
  options.timeout = timeout;
  return std::make_shared<GlooProcessGroup>(env, kd::init_process_group(env, options), sharded);
}

std::optional<LauncherInfo> detect_launcher() {
  auto env = kd::detect_environment();
  if (!env) return std::nullopt;
  return LauncherInfo{.world_size = env->world_size, .local_world_size = env->local_world_size, .source = env->source};
}

}  // namespace kiln::detail
