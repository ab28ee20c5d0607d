#include "distributed/sharded.h"

#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"

namespace kiln::distributed {

struct ShardedDataParallel::Bucket {
  int group = 0;
  DType dtype = DType::f32;
  std::vector<size_t> params;    // indices into params_, in flat order
  std::vector<int64_t> offsets;  // of each parameter in the flat bucket
  int64_t numel = 0, padded = 0, shard = 0;
  Tensor master;                // this rank's [shard] elements; the optimizer's parameter
  uint64_t master_version = 0;  // after this class last wrote it
};

ShardedDataParallel::ShardedDataParallel(std::shared_ptr<nn::Module> module,
                                         std::shared_ptr<optim::Optimizer> optimizer,
                                         std::shared_ptr<Communicator> comm, ShardedOptions options)
    : module_(std::move(module)), optimizer_(std::move(optimizer)), comm_(std::move(comm)) {
  KILN_CHECK(module_ && optimizer_ && comm_, "ShardedDataParallel: needs a module, an optimizer and a communicator");
  KILN_CHECK(optimizer_->state_tensors().empty(), "ShardedDataParallel: the ", optimizer_->name(),
             " optimizer already holds state (it stepped, or loaded a checkpoint); set it up "
             "before its first step and load checkpoints after setup, so the state is sharded as "
             "it is created");
  auto& groups = optimizer_->param_groups();
  std::vector<int> group_of;
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& p : groups[g].params) {
      params_.push_back(p);
      group_of.push_back(int(g));
    }
  // The optimizer must hold exactly the module's trainable parameters: those are the ones whose
  // gradients are reduced, and nothing else would update a sharded parameter.
  std::unordered_map<const TensorImpl*, size_t> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].impl()] = i;
  size_t trainable = 0;
  for (const auto& [name, p] : module_->named_parameters()) {
    if (!p.requires_grad()) continue;
    ++trainable;
    KILN_CHECK(index.count(p.impl()), "ShardedDataParallel: parameter '", name, "' of ", module_->name(),
               " is trainable but not in the ", optimizer_->name(),
               " optimizer; "
               "the sharded strategy needs one optimizer over all of the module's trainable "
               "parameters (freeze the others with requires_grad_(false))");
  }
  KILN_CHECK(trainable == params_.size(), "ShardedDataParallel: the ", optimizer_->name(), " optimizer holds ",
             params_.size(), " parameters but ", module_->name(), " has ", trainable,
             " trainable ones; give the optimizer exactly the module's parameters");
  for (const auto& p : params_)
    KILN_CHECK(p.is_contiguous(), "ShardedDataParallel: parameters must be contiguous, got shape ", p.sizes(),
               " with strides ", p.strides());

  auto state = module_->parameters();
  for (auto& b : module_->buffers()) state.push_back(b);
  broadcast_tensors(*comm_, state, 0);

  reducer_ = std::make_unique<Reducer>(
      comm_, params_,
      ReducerOptions{.bucket_cap_bytes = options.bucket_cap_bytes,
                     .bucket_keys = group_of,
                     .reduce_bucket = [this](size_t b, const std::vector<size_t>&) { reduce_bucket(b); }});
  // After the Reducer's hook on every parameter: free the full gradients of buckets already
  // reduce-scattered, while backward goes on, so they never all live at once. Not the gradient
  // whose hooks are running now (later hooks may read it); the next hook or finalize() frees it.
  std::weak_ptr<Releasable> weak = releasable_;
  for (const auto& p : params_)
    p.register_post_accumulate_grad_hook([weak, self = p.impl()](Tensor&) {
      if (auto r = weak.lock()) r->release_except(self);
    });

  // Buckets in the optimizer's order: group by group, the reducer's order within a group.
  const int64_t n = comm_->world_size();
  auto reducer_buckets = reducer_->bucket_indices();
  std::vector<size_t> order(reducer_buckets.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return group_of[reducer_buckets[a][0]] < group_of[reducer_buckets[b][0]];
  });
  by_reducer_.assign(reducer_buckets.size(), 0);
  std::vector<std::vector<Tensor>> masters(groups.size());
  layout_ = {{"world_size", n}, {"group_sizes", nlohmann::json::array()}, {"buckets", nlohmann::json::array()}};
  for (const auto& g : groups) layout_["group_sizes"].push_back(g.params.size());
  NoGradGuard no_grad;
  for (size_t k : order) {
    Bucket b;
    b.params = reducer_buckets[k];
    b.group = group_of[b.params[0]];
    b.dtype = params_[b.params[0]].dtype();
    nlohmann::json entries = nlohmann::json::array();
    for (size_t i : b.params) {
      const Tensor& p = params_[i];
      b.offsets.push_back(b.numel);
      entries.push_back({i, b.numel, p.numel(), p.sizes()});
      b.numel += p.numel();
    }
    b.padded = (b.numel + n - 1) / n * n;
    b.shard = b.padded / n;
    b.master = zeros({b.shard}, {.dtype = b.dtype, .device = params_[b.params[0]].device()});
    layout_["buckets"].push_back({{"group", b.group},
                                  {"dtype", dtype_name(b.dtype)},
                                  {"numel", b.numel},
                                  {"shard_numel", b.shard},
                                  {"params", entries}});
    total_numel_ += b.numel;
    masters[size_t(b.group)].push_back(b.master);
    by_reducer_[k] = buckets_.size();
    buckets_.push_back(std::move(b));
  }
  refresh_masters();
  for (size_t g = 0; g < groups.size(); ++g) groups[g].params = masters[g];
}

void ShardedDataParallel::Releasable::release_except(const TensorImpl* keep) {
  std::lock_guard<std::mutex> g(mu);
  NoGradGuard no_grad;
  std::vector<Tensor> kept;
  for (const auto& p : params) {
    if (p.impl() == keep)
      kept.push_back(p);
    else
      p.set_grad(Tensor());
  }
  params.swap(kept);
}

ShardedDataParallel::~ShardedDataParallel() = default;

void ShardedDataParallel::reduce_bucket(size_t reducer_bucket) {
  NoGradGuard no_grad;
  Bucket& b = buckets_[by_reducer_[reducer_bucket]];
  // A fresh padded buffer per bucket and step: between steps no full-size gradient buffer stays.
  Tensor flat = zeros({b.padded}, {.dtype = b.dtype, .device = b.master.device()});
  for (size_t j = 0; j < b.params.size(); ++j) {
    const Tensor& p = params_[b.params[j]];
    flat.narrow(0, b.offsets[j], p.numel()).view(p.sizes()).copy_(p.grad());
  }
  {
    // Copied: the full gradients may go. The main thread frees them (this thread must not write
    // a .grad that backward's hook loop may still be reading).
    std::lock_guard<std::mutex> g(releasable_->mu);
    for (size_t i : b.params) releasable_->params.push_back(params_[i]);
  }
  Tensor shard = comm_->reduce_scatter(flat, ReduceOp::avg);
  Tensor& g = b.master.mutable_grad();
  if (g.defined())
    g.add_(shard);
  else
    g = shard;
}

void ShardedDataParallel::check_not_stepped_alone(const char* where) const {
  for (const auto& b : buckets_)
    KILN_CHECK(b.master.version() == b.master_version, "ShardedDataParallel (", where, "): the ", optimizer_->name(),
               " optimizer's shards changed since the last sharded step, so "
               "optimizer->step() ran on its own: that updates this rank's shard but not the "
               "model's parameters. Step through fabric.step(optimizer) (or "
               "ShardedDataParallel::step()), which also all-gathers the parameters");
}

void ShardedDataParallel::finalize() {
  check_not_stepped_alone("after backward");
  if (!reducer_->finalize()) return;
  // The shards hold the reduced gradients now; the full ones still here go (the last buckets',
  // and those the Reducer zero-filled for parameters that got no gradient this step).
  releasable_->release_except(nullptr);
  NoGradGuard no_grad;
  for (auto& p : params_) p.set_grad(Tensor());
}

void ShardedDataParallel::refresh_masters() {
  NoGradGuard no_grad;
  const int64_t r = comm_->rank();
  for (auto& b : buckets_) {
    // This rank's range of the flat bucket, parameter by parameter (padding stays zero).
    int64_t lo = r * b.shard, hi = lo + b.shard;
    for (size_t j = 0; j < b.params.size(); ++j) {
      const Tensor& p = params_[b.params[j]];
      int64_t s = std::max(lo, b.offsets[j]), e = std::min(hi, b.offsets[j] + p.numel());
      if (s >= e) continue;
      Tensor flat = p.detach().view({p.numel()});
      b.master.narrow(0, s - lo, e - s).copy_(flat.narrow(0, s - b.offsets[j], e - s));
    }
    b.master_version = b.master.version();
  }
}

void ShardedDataParallel::gather_parameters() {
  NoGradGuard no_grad;
  // One all-gather per dtype: this rank's shards of every bucket of that dtype, side by side.
  std::map<DType, std::vector<size_t>> by_dtype;
  for (size_t k = 0; k < buckets_.size(); ++k) by_dtype[buckets_[k].dtype].push_back(k);
  for (const auto& [dtype, ks] : by_dtype) {
    std::vector<Tensor> mine;
    for (size_t k : ks) mine.push_back(buckets_[k].master);
    Tensor all = comm_->all_gather(mine.size() == 1 ? mine[0] : cat(mine));  // [N, sum of shards]
    int64_t seg = 0;
    for (size_t k : ks) {
      Bucket& b = buckets_[k];
      Tensor flat = all.narrow(1, seg, b.shard).contiguous().view({b.padded});
      for (size_t j = 0; j < b.params.size(); ++j) {
        Tensor p = params_[b.params[j]].detach();
        p.copy_(flat.narrow(0, b.offsets[j], p.numel()).view(p.sizes()));
      }
      seg += b.shard;
    }
  }
}

void ShardedDataParallel::step() {
  check_not_stepped_alone("step");
  refresh_masters();
  optimizer_->step();
  gather_parameters();
  for (auto& b : buckets_) b.master_version = b.master.version();
}

Tensor ShardedDataParallel::clip_grad_norm_(double max_norm, double norm_type, bool error_if_nonfinite) {
  KILN_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be positive (or infinity), got ", norm_type);
  KILN_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be non-negative, got ", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  DType acc = DType::f64;
  for (const auto& b : buckets_) {
    if (b.master.grad().defined()) grads.push_back(b.master.grad());
    if (b.dtype != DType::f64) acc = DType::f32;
  }
  const bool inf = std::isinf(norm_type);
  // This rank's part of the norm: sum of |g|^p (or the max of |g|) over its shards. Every rank
  // takes part in the all-reduce, with zero when it has no gradient.
  Tensor part = zeros({1}, {.dtype = acc});
  for (const auto& g : grads) {
    Tensor a = abs(g.to(Device::cpu(), acc));
    Tensor s = inf ? amax(a) : norm_type == 2.0 ? sum(mul(a, a)) : sum(pow(a, norm_type));
    part = inf ? maximum(part, s.view({1})) : add(part, s.view({1}));
  }
  comm_->all_reduce(part, inf ? ReduceOp::max : ReduceOp::sum);
  Tensor total = inf ? part.view({}) : pow(part.view({}), 1.0 / norm_type);
  if (error_if_nonfinite)
    KILN_CHECK(isfinite_all(total).item<bool>(), "clip_grad_norm_: the total norm of order ", norm_type,
               " of the gradients is non-finite, so it cannot be clipped; pass "
               "error_if_nonfinite=false to clip anyway");
  Tensor coef = clamp(div(full({}, max_norm, {.dtype = acc}), add(total, 1e-6)), std::nullopt, 1.0);
  for (auto& g : grads) mul_(g, coef.to(g.device(), g.dtype()));
  return total;
}

void ShardedDataParallel::clip_grad_value_(double clip_value) {
  KILN_CHECK(clip_value >= 0, "clip_grad_value_: clip_value must be non-negative, got ", clip_value);
  NoGradGuard no_grad;
  for (auto& b : buckets_)
    if (b.master.grad().defined()) b.master.mutable_grad().clamp_(-clip_value, clip_value);
}

int64_t ShardedDataParallel::local_state_numel() const {
  int64_t n = 0;
  for (const auto& [name, t] : optimizer_->state_tensors())
    if (t.dim() > 0) n += t.numel();  // not the 0-d step counts
  return n;
}

int64_t ShardedDataParallel::local_grad_numel() const {
  int64_t n = 0;
  for (const auto& b : buckets_)
    if (b.master.grad().defined()) n += b.master.grad().numel();
  for (const auto& p : params_)
    if (p.grad().defined()) n += p.grad().numel();
  return n;
}

int64_t ShardedDataParallel::local_master_numel() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b.shard;
  return n;
}

}  // namespace kiln::distributed
