// Internal to fabric/: what Fabric::setup installs on the user's own objects, so that they carry
// the precision and the strategy (Lightning's _FabricModule and _FabricOptimizer, without
// changing the objects' types): a forward wrapper on the model and each of its submodules, and a
// step wrapper on each optimizer. Not installed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "fabric/precision.h"
#include "fabric/process_group.h"
#include "nn/module.h"
#include "optim/optimizer.h"

namespace kiln::detail {

// Shared by a Fabric and the hooks it installs (which may outlive it).
struct FabricState {
  std::shared_ptr<Precision> precision;
  std::shared_ptr<FabricProcessGroup> group;  // set by launch() for the multi-process strategies
  // Why a plain loss.backward() is wrong under this precision and strategy; empty when it is fine.
  std::string backward_reason;
  int in_backward = 0;                                    // > 0 while fabric.backward runs
  int64_t backward_count = 0;                             // fabric.backward calls so far ("16-mixed")
  std::map<const optim::Optimizer*, int64_t> stepped_at;  // backward_count at each one's last step
  bool last_step_ran = true;                              // false when the scaler skipped the last step
};

// The model computes under the precision (Precision::forward_context, convert_input and
// convert_output) whether it is called as (*model)(x) or model->forward(x): the wrapper goes on
// every submodule, so kiln's layers apply it from forward() too, and the outermost one that runs
// does the work (inside the precision's own autocast scope, fabric.autocast(), that scope does).
// Where backward_reason is set, outputs also carry a check that reports a
// loss.backward() made without fabric.backward(loss) at that backward.
void wrap_module(nn::Module& model, const std::shared_ptr<FabricState>& state);
// optimizer->step() does what fabric.step(optimizer) does: the sharded step, or the loss
// scaler's unscale / skip on inf or NaN / update, or the plain step.
void wrap_optimizer(optim::Optimizer& optimizer, const std::shared_ptr<FabricState>& state);

}  // namespace kiln::detail
