// kiln::optim::Optimizer: the base of SGD, Adam and AdamW. Parameters live in groups, each with its
// own options (a JSON object such as {"lr": 0.1, "momentum": 0.9}, PyTorch's param_group dict);
// per-parameter state is created on the first step and saved under PyTorch's names.
//   kiln::optim::SGD opt({{backbone->parameters(), {{"lr", 1e-3}}}, {head->parameters()}},
//                        {.lr = 1e-2, .momentum = 0.9});
//   opt.zero_grad(); loss.backward(); opt.step();
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/hooks.h"
#include "core/tensor.h"

namespace kiln::optim {

struct ParamGroup {
  std::vector<Tensor> params;
  // Overrides of the optimizer's defaults for this group; the optimizer fills in the rest.
  nlohmann::json options = nlohmann::json::object();
  double lr() const { return options.at("lr").get<double>(); }
};

// What a checkpoint stores: tensors under "state.<param index>.<name>" (exp_avg, exp_avg_sq,
// max_exp_avg_sq, momentum_buffer, step) and a JSON description of the groups and options.
struct OptimizerState {
  std::map<std::string, Tensor> tensors;
  nlohmann::json meta;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (update(), which each optimizer
  // implements), through the step hooks when there are any.
  void step();

  // Step hooks. A pre hook runs before the update, a post hook after it. A wrapper runs around
  // it: it gets `next` (the hooks registered after it, then the update) and decides whether and
  // how the update runs; a step() call made while it runs (GradScaler::step from inside it, say)
  // continues with `next` instead of starting over. A training facade installs one so that a
  // plain optimizer->step() also unscales a loss-scaled gradient or steps a sharded optimizer.
  // Hooks run in registration order, the first registered outermost.
  using StepFn = std::function<void()>;
  using StepWrapper = std::function<void(Optimizer&, const StepFn& next)>;
  HookHandle register_step_pre_hook(std::function<void(Optimizer&)> hook);
  HookHandle register_step_post_hook(std::function<void(Optimizer&)> hook);
  HookHandle register_step_wrapper(StepWrapper wrapper);
  // One update unless `found_inf` (one f32 on the parameters' device: GradScaler's inf/NaN flag)
  // is nonzero, decided on the device without reading the flag on the host. Returns false, having
  // done nothing, where this optimizer cannot decide on the device (CPU parameters, parameters on
  // another device, state that the first step creates); the caller then reads the flag and calls
  // step() or not. This is the update alone, without the step hooks: a loss scaler calls it from
  // inside a step wrapper.
  virtual bool step_unless_found_inf(const Tensor& found_inf) {
    (void)found_inf;
    return false;
  }
  // "SGD", "Adam", "AdamW": recorded in checkpoints and checked on load.
  virtual std::string name() const = 0;

  // Drops (set_to_none) or zeroes the gradients of every parameter.
  void zero_grad(bool set_to_none = true);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  const nlohmann::json& defaults() const { return defaults_; }
  // Adds a group; options it leaves out come from the defaults. Errors on unknown options,
  // invalid values and parameters that are already in another group.
  void add_param_group(ParamGroup group);
  // Every parameter, group by group (the index order used by the state names).
  std::vector<Tensor> parameters() const;

  double lr(size_t group = 0) const;
  void set_lr(double lr);  // every group

  // The per-parameter state tensors (name -> tensor, sharing storage with the optimizer's).
  std::map<std::string, Tensor> state_tensors() const;
  // {"optimizer": name, "defaults": {...}, "param_groups": [{...options, "params": [0, 1]}]}.
  nlohmann::json hyper_params() const;
  // Restores what state_tensors() and hyper_params() produced, converting state tensors to each
  // parameter's dtype and device. Checks everything before changing anything.
  void load(const std::map<std::string, Tensor>& tensors, const nlohmann::json& hyper_params);

  OptimizerState state_dict() const { return {state_tensors(), hyper_params()}; }
  void load_state_dict(const OptimizerState& state) { load(state.tensors, state.meta); }

 protected:
  explicit Optimizer(nlohmann::json defaults) : defaults_(std::move(defaults)) {}
  // The update of every parameter that has a gradient: SGD, Adam, AdamW and optimizers of your
  // own implement it; callers use step().
  virtual void update() = 0;
  // Derived constructors call this once their option checks are in place.
  void init_groups(std::vector<ParamGroup> groups);
  // Throws kiln::Error for invalid values ("Invalid learning rate: -0.1").
  virtual void check_options(const nlohmann::json& options) const = 0;
  // Adam-like optimizers count steps per parameter and save the count as "step".
  virtual bool tracks_step() const { return false; }

  struct ParamState {
    int64_t step = 0;
    // The count as one f32 on a CUDA parameter's device, once a step has run there (the device
    // then counts, skipped steps and CUDA graph replays included, and `step` is stale).
    Tensor device_step;
    std::map<std::string, Tensor> tensors;
  };
  // The parameter's state, created empty on first use.
  ParamState& state(const Tensor& param) { return state_[param.impl()]; }
  // A state tensor for `param`: created as zeros on first use, and moved to the parameter's
  // dtype and device if the model was converted since.
  Tensor state_tensor(ParamState& st, const std::string& key, const Tensor& param, bool* created = nullptr);
  // The parameter's gradient as a dense tensor of the parameter's dtype (undefined if none).
  static Tensor dense_grad(const Tensor& param, const char* op);
  // Whether every parameter that has a gradient lives on `device`.
  bool grads_all_on(Device device) const;
  // The step count on the parameter's CUDA device, created from the host count on first use.
  Tensor device_step(ParamState& st, const Tensor& param);

 private:
  nlohmann::json merged_options(const nlohmann::json& overrides, size_t group_index) const;
  void run_step_chain(const std::vector<StepWrapper>& chain, size_t i);

  nlohmann::json defaults_;
  std::vector<ParamGroup> groups_;
  std::unordered_map<const TensorImpl*, ParamState> state_;
  std::shared_ptr<detail::HookList<StepWrapper>> step_hooks_;
  const StepFn* running_next_ = nullptr;  // `next` of the wrapper running now
};

}  // namespace kiln::optim
