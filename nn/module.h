// kiln::nn::Module: the base of every layer and model. A module owns named parameters, buffers and
// submodules in insertion order, so names and state_dict() keys match PyTorch's for the same model.
//   struct Net : kiln::nn::Module {
//     std::shared_ptr<kiln::nn::Linear> fc = register_module("fc", std::make_shared<kiln::nn::Linear>(4, 2));
//     kiln::Tensor forward(const kiln::Tensor& x) override { return fc->forward(x); }
//   };
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/hooks.h"
#include "core/tensor.h"
#include "nn/ordered_dict.h"

namespace kiln::nn {

using StateDict = OrderedDict<Tensor>;

// What load_state_dict found: model keys absent from the dict, dict keys the model lacks.
struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Modules hold shared state (parameters are handles); copying one would alias it silently.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The computation. Layers override it; a module that takes other inputs defines its own.
  virtual Tensor forward(const Tensor& input);
  // forward() through the module's forward hooks.
  Tensor operator()(const Tensor& input);

  // Forward hooks, with PyTorch's names. They run when the module is called, (*m)(x); kiln's own
  // layers also run them from forward(), since C++ code calls forward() directly, and so does a
  // module of your own whose forward() hands its computation to run_forward(). A pre hook may
  // replace the input, a forward hook the output (nullopt keeps it). A wrapper runs around the
  // call: it gets the input and `next` (the hooks registered after it, then forward) and returns
  // the output, so it can hold a scope, such as an AutocastGuard, for the whole computation.
  // Hooks run in registration order, the first registered outermost.
  using ForwardFn = std::function<Tensor(const Tensor&)>;
  using ForwardPreHook = std::function<std::optional<Tensor>(Module&, const Tensor& input)>;
  using ForwardHook = std::function<std::optional<Tensor>(Module&, const Tensor& input, const Tensor& output)>;
  using ForwardWrapper = std::function<Tensor(Module&, const Tensor& input, const ForwardFn& next)>;
  HookHandle register_forward_pre_hook(ForwardPreHook hook);
  HookHandle register_forward_hook(ForwardHook hook);
  HookHandle register_forward_wrapper(ForwardWrapper wrapper);

  // The type's name as printed and used in error messages ("Linear", "SimpleCNN").
  virtual std::string name() const;
  // Layer settings shown by operator<< ("in_features=4, out_features=2, bias=true").
  virtual std::string extra_repr() const { return {}; }

  // Registration. A parameter becomes a leaf that requires grad (when floating point); a
  // non-persistent buffer stays out of state_dict(). An undefined tensor registers nothing (like
  // PyTorch's None), so optional pieces such as a bias can be skipped.
  Tensor register_parameter(const std::string& name, Tensor tensor, bool requires_grad = true);
  // Registers the data member `member` (set to `tensor`) as the parameter `name`. The module reads
  // the member from then on, so assigning it ties parameters as in PyTorch: after
  // `head->weight = wte->weight` both modules hold one tensor, which gets one gradient, appears once
  // in parameters() (under its first name) and under both names in state_dict(). kiln's layers
  // register their weights this way.
  //   weight = ...;  register_parameter("weight", weight, kiln::empty({out, in}));
  Tensor& register_parameter(const std::string& name, Tensor& member, Tensor tensor, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor tensor, bool persistent = true);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    register_module_impl(name, module);
    return module;
  }

  // Parameters of this module and all submodules, each shared tensor once, in registration order.
  std::vector<Tensor> parameters(bool recurse = true) const;
  OrderedDict<Tensor> named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  OrderedDict<Tensor> named_buffers(bool recurse = true) const;
  std::vector<std::shared_ptr<Module>> children() const;
  OrderedDict<std::shared_ptr<Module>> named_children() const;
  // Every module below this one, depth first, this one excluded (it is not owned by a shared_ptr).
  std::vector<std::shared_ptr<Module>> modules() const;
  // The same modules under dotted names ("block.conv1").
  OrderedDict<std::shared_ptr<Module>> named_modules() const;
  // Calls fn on this module and every submodule (children first, as PyTorch's apply does).
  void apply(const std::function<void(Module&)>& fn);

  // Training mode for this module and its submodules (dropout, batch norm read it).
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves/casts parameters and buffers in place: each keeps its identity (the same TensorImpl, so
  // optimizers and user code holding it stay valid) while its storage, dtype and gradient are
  // replaced. to(dtype) touches only floating-point tensors (num_batches_tracked stays int64).
  Module& to(Device device);
  Module& to(DType dtype);
  Module& to(Device device, DType dtype);

  void zero_grad(bool set_to_none = true);

  // Parameters and persistent buffers under dotted names, detached but sharing storage.
  StateDict state_dict() const;
  // Copies values into the registered tensors. Shape or dtype mismatches are errors naming the key,
  // checked before anything is written; strict also rejects missing and unexpected keys.
  LoadResult load_state_dict(const StateDict& dict, bool strict = true);

 protected:
  // For forward() implementations: runs `compute` on the input through this module's forward
  // hooks, unless operator() already ran them for this call.
  Tensor run_forward(const Tensor& input, const ForwardFn& compute);

 private:
  struct BufferSlot {
    Tensor tensor;
    bool persistent;
  };
  // A parameter held by the module, or a data member it reads (set by the member form above).
  struct ParamSlot {
    Tensor owned;
    Tensor* member = nullptr;
    const Tensor& get() const { return member ? *member : owned; }
  };
  void register_module_impl(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name, const char* what) const;
  // `t` where the innermost ModuleInitGuard puts new parameters and buffers.
  static Tensor placed(const Tensor& t);
  void collect_state(const std::string& prefix, StateDict& out) const;
  void collect_params(const std::string& prefix, bool recurse, OrderedDict<Tensor>& out,
                      std::vector<const TensorImpl*>& seen) const;
  void collect_buffers(const std::string& prefix, bool recurse, OrderedDict<Tensor>& out) const;
  void convert(const std::function<Tensor(const Tensor&)>& fn, bool floating_only);

  OrderedDict<ParamSlot> parameters_;
  OrderedDict<BufferSlot> buffers_;
  OrderedDict<std::shared_ptr<Module>> children_;
  bool training_ = true;
  std::shared_ptr<detail::HookList<ForwardWrapper>> forward_hooks_;
};

// While it lives, register_parameter and register_buffer put the tensors they are given on
// `device` and, floating-point ones, in `dtype` (when set): modules constructed in its scope are
// created where they will run (Fabric::init_module() uses it). Per thread; the innermost counts.
//   { kiln::nn::ModuleInitGuard g(kiln::Device::cuda(0), kiln::DType::bf16);
//     model = std::make_shared<Net>(); }   // parameters on cuda:0, in bf16
class ModuleInitGuard {
 public:
  explicit ModuleInitGuard(Device device, std::optional<DType> dtype = std::nullopt);
  ~ModuleInitGuard();
  ModuleInitGuard(const ModuleInitGuard&) = delete;
  ModuleInitGuard& operator=(const ModuleInitGuard&) = delete;

 private:
  friend class Module;
  Device device_;
  std::optional<DType> dtype_;
  const ModuleInitGuard* prev_;
};

// PyTorch-style tree: "Net(\n  (fc): Linear(in_features=4, out_features=2, bias=true)\n)".
std::ostream& operator<<(std::ostream& os, const Module& m);

}  // namespace kiln::nn
