// kiln::nn::Module: the base of every layer and model. A module owns named parameters, buffers and
// submodules in insertion order, so names and state_dict() keys match PyTorch's for the same model.
//   struct Net : kiln::nn::Module {
//     std::shared_ptr<kiln::nn::Linear> fc = register_module("fc", std::make_shared<kiln::nn::Linear>(4, 2));
//     kiln::Tensor forward(const kiln::Tensor& x) override { return fc->forward(x); }
//   };
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

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
  Tensor operator()(const Tensor& input) { return forward(input); }

  // The type's name as printed and used in error messages ("Linear", "SimpleCNN").
  virtual std::string name() const;
  // Layer settings shown by operator<< ("in_features=4, out_features=2, bias=true").
  virtual std::string extra_repr() const { return {}; }

  // Registration. A parameter becomes a leaf that requires grad (when floating point); a
  // non-persistent buffer stays out of state_dict(). An undefined tensor registers nothing (like
  // PyTorch's None), so optional pieces such as a bias can be skipped.
  Tensor register_parameter(const std::string& name, Tensor tensor, bool requires_grad = true);
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

 private:
  struct BufferSlot {
    Tensor tensor;
    bool persistent;
  };
  void register_module_impl(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name, const char* what) const;
  void collect_state(const std::string& prefix, StateDict& out) const;
  void collect_params(const std::string& prefix, bool recurse, OrderedDict<Tensor>& out,
                      std::vector<const TensorImpl*>& seen) const;
  void collect_buffers(const std::string& prefix, bool recurse, OrderedDict<Tensor>& out) const;
  void convert(const std::function<Tensor(const Tensor&)>& fn, bool floating_only);

  OrderedDict<Tensor> parameters_;
  OrderedDict<BufferSlot> buffers_;
  OrderedDict<std::shared_ptr<Module>> children_;
  bool training_ = true;
};

// PyTorch-style tree: "Net(\n  (fc): Linear(in_features=4, out_features=2, bias=true)\n)".
std::ostream& operator<<(std::ostream& os, const Module& m);

}  // namespace kiln::nn
