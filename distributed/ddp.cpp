#include "distributed/ddp.h"

#include "core/error.h"

namespace kiln::distributed {

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<nn::Module> module, std::shared_ptr<Communicator> comm,
                                                 ReducerOptions options)
    : module_(std::move(module)), comm_(std::move(comm)) {
  KILN_CHECK(module_ && comm_, "DistributedDataParallel: needs a module and a communicator");
  auto state = module_->parameters();
  for (auto& b : module_->buffers()) state.push_back(b);
  broadcast_tensors(*comm_, state, 0);
  std::vector<Tensor> trainable;
  for (auto& p : module_->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  reducer_ = std::make_unique<Reducer>(comm_, std::move(trainable), options);
}

void DistributedDataParallel::sync_buffers() { broadcast_tensors(*comm_, module_->buffers(), 0); }

}  // namespace kiln::distributed
