#include "distributed/zero.h"

#include <algorithm>
#include <numeric>

#include "core/autograd.h"
#include "core/error.h"
#include "distributed/reducer.h"

namespace kiln::distributed {

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(std::shared_ptr<Communicator> comm, std::vector<Tensor> params,
                                                 const Factory& make_optimizer)
    : comm_(std::move(comm)), params_(std::move(params)) {
  KILN_CHECK(comm_, "ZeroRedundancyOptimizer: no communicator");
  int w = comm_->world_size();
  // Largest first onto the least-loaded rank; ties by index, so every rank computes the same.
  std::vector<size_t> order(params_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return params_[a].numel() * params_[a].element_size() > params_[b].numel() * params_[b].element_size();
  });
  std::vector<int64_t> load(w, 0);
  owner_.assign(params_.size(), 0);
  for (size_t i : order) {
    int r = int(std::min_element(load.begin(), load.end()) - load.begin());
    owner_[i] = r;
    load[r] += params_[i].numel() * params_[i].element_size();
  }
  for (size_t i = 0; i < params_.size(); ++i)
    if (owner_[i] == comm_->rank()) local_.push_back(params_[i]);
  if (!local_.empty()) opt_ = make_optimizer(local_);
}

void ZeroRedundancyOptimizer::step() {
  if (opt_) opt_->step();
  for (int r = 0; r < comm_->world_size(); ++r) {
    std::vector<Tensor> owned;
    for (size_t i = 0; i < params_.size(); ++i)
      if (owner_[i] == r) owned.push_back(params_[i]);
    if (!owned.empty()) broadcast_tensors(*comm_, owned, r);
  }
}

void ZeroRedundancyOptimizer::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& p : params_) {
    if (set_to_none) {
      p.mutable_grad() = Tensor();
    } else if (p.grad().defined()) {
      p.mutable_grad().zero_();
    }
  }
}

int64_t ZeroRedundancyOptimizer::local_state_numel() const {
  if (!opt_) return 0;
  int64_t n = 0;
  for (auto& [name, t] : opt_->state_tensors()) n += t.numel();
  return n;
}

}  // namespace kiln::distributed
