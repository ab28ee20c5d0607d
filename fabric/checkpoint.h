// Checkpoints: one safetensors file holding models, optimizers, schedulers, grad scalers, tensors and plain
// values. Tensors are stored under "<key>.<state_dict name>" (model.conv1.weight,
// optimizer.state.0.exp_avg), so PyTorch's safetensors package reads them directly; everything else
// (format version, plain values, optimizer hyper-parameters and groups, scheduler state) is JSON in
// __metadata__. Files are written atomically; loading checks everything and names the key at fault.
//   kiln::State state{{"model", model}, {"optimizer", opt}, {"epoch", int64_t(3)}};
//   kiln::save_checkpoint("ckpt.safetensors", state);
//   auto rest = kiln::load_checkpoint("ckpt.safetensors", state);   // restores model/opt in place
//   int64_t epoch = std::get<int64_t>(state.at("epoch"));
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>

#include "core/tensor.h"
#include "nn/module.h"
#include "optim/grad_scaler.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"

namespace kiln {

using StateValue = std::variant<std::shared_ptr<nn::Module>, std::shared_ptr<optim::Optimizer>,
                                std::shared_ptr<optim::LRScheduler>,
                                std::shared_ptr<optim::GradScaler>, Tensor, int64_t, double,
                                std::string, bool>;
using State = std::map<std::string, StateValue>;

// The checkpoint format written by this version of kiln ("format_version" in __metadata__).
inline constexpr int kCheckpointFormatVersion = 1;

void save_checkpoint(const std::string& path, const State& state);

// Restores each object of `state` in place (modules, optimizers, schedulers, grad scalers, tensors)
// and overwrites its plain values with the saved ones. Returns the saved entries that `state` did
// not ask for (plain values and tensors). strict: every key of `state` must be in the file and
// every module must match exactly; otherwise missing entries are left as they are.
State load_checkpoint(const std::string& path, State& state, bool strict = true);

}  // namespace kiln
