// Tape-based reverse-mode autograd. Each op whose inputs need gradients appends one Node to a
// thread-local tape; backward() walks the tape in reverse, accumulates into leaves' .grad, fires
// their post-accumulate hooks as soon as a leaf's gradient is final, and frees the nodes it walked
// (other graphs recorded on the same tape stay usable).
//   { kiln::NoGradGuard g; w.sub_(w.grad() * lr); }   // nothing is recorded inside
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace kiln {

struct Node;

struct AutogradMeta {
  // When the last output of a node dies, nothing can send that node a gradient any more: the
  // destructor frees what the node holds (saved tensors, its inputs' history) at once.
  ~AutogradMeta();
  bool requires_grad = false;
  Tensor grad;                  // leaves: the accumulated gradient
  std::weak_ptr<Node> grad_fn;  // non-leaves: the node that produced this tensor
  bool is_leaf = true;
  int output_nr = 0;
  Tensor pending;  // gradient flowing through this tensor during backward
  std::vector<std::function<void(Tensor&)>> post_accumulate_hooks;
};

// A tensor saved for backward; unpacking checks that no in-place op has changed it since.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t);  // NOLINT: saving is the only use
  Tensor unpack(const char* op) const;
  bool defined() const { return tensor_.defined(); }

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

struct Node {
  std::string name;
  std::vector<std::shared_ptr<AutogradMeta>> inputs;  // null where the input needs no gradient
  std::vector<std::weak_ptr<AutogradMeta>> outputs;
  std::vector<Shape> input_sizes;  // gradients are summed/cast back to these
  std::vector<DType> input_dtypes;
  std::vector<Shape> output_sizes;
  std::vector<TensorOptions> output_options;
  BackwardFn backward;
  uint64_t sequence = 0;
  bool released = false;  // its outputs are gone and backward, inputs were freed
};

// Gradient mode, thread-local like the tape.
class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

// Stops recording in its scope.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Re-enables recording in its scope (inside a NoGradGuard, say).
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(true); }
  ~EnableGradGuard() { GradMode::set_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

namespace autograd {

// True when grad mode is on and any input requires a gradient.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Appends a node for `outputs` computed from `inputs`; marks the outputs as requiring grad.
// backward receives one gradient per output (zeros for outputs that got none) and returns one
// per input (undefined where the input needs none).
void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward);

// backward() over several roots with their gradients.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph = false);

// Number of nodes on this thread's tape (for tests and leak checks).
size_t tape_size();
// Drops every recorded node of this thread.
void clear_tape();

}  // namespace autograd
}  // namespace kiln
