// The tape and the backward walk.
//
// Nodes hold their inputs' AutogradMeta strongly (to push gradients into them) and their outputs'
// weakly. A node whose outputs have all died can never receive a gradient: when the last output's
// AutogradMeta is destroyed, the node's backward function (with its saved tensors) and its inputs
// are released at once, which may release the nodes before it in turn (through a work list, not
// recursion). A forward pass run without NoGradGuard and never differentiated (an evaluation loop,
// say) so frees its memory as soon as its outputs go, as PyTorch's does; the tape drops the empty
// node shells as it grows.
#include "core/autograd.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "core/dispatch.h"
#include "core/ops.h"

namespace kiln {
namespace {

struct Tape {
  std::vector<std::shared_ptr<Node>> nodes;
  uint64_t next_sequence = 0;
  size_t prune_at = 256;
};

Tape& tape() {
  thread_local Tape t;
  return t;
}

thread_local bool grad_enabled = true;

bool node_dead(const Node& n) {
  for (const auto& o : n.outputs)
    if (!o.expired()) return false;
  return true;
}

void prune() {
  auto& nodes = tape().nodes;
  // Back to front: dropping a dead node releases its inputs, which may kill earlier nodes.
  for (size_t i = nodes.size(); i-- > 0;) {
    if (nodes[i]->released || node_dead(*nodes[i])) nodes[i].reset();
  }
  nodes.erase(std::remove(nodes.begin(), nodes.end(), nullptr), nodes.end());
}

// Frees what a node whose outputs are all gone holds. Releasing its inputs can kill earlier nodes'
// last outputs, whose destructors come back here: they are queued and handled by the outermost
// call, so a long chain of ops does not recurse once per op.
void release(std::shared_ptr<Node> node) {
  thread_local std::vector<std::shared_ptr<Node>> pending;
  thread_local bool draining = false;
  pending.push_back(std::move(node));
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    if (n->released) continue;
    n->released = true;
    BackwardFn fn = std::move(n->backward);
    std::vector<std::shared_ptr<AutogradMeta>> inputs = std::move(n->inputs);
    n->backward = nullptr;
    n->inputs.clear();
    // fn and inputs are destroyed here, possibly queueing more nodes.
  }
  draining = false;
}

std::shared_ptr<AutogradMeta>& meta_of(const Tensor& t) {
  auto& m = t.impl()->autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  return m;
}

// The gradient as the input expects it: its dtype, its (possibly broadcast-from) shape.
Tensor conform(Tensor g, const Shape& sizes, DType dtype, const char* op) {
  if (g.sizes() != sizes) {
    KILN_CHECK(g.numel() >= detail::shape_numel(sizes) || g.dim() < int64_t(sizes.size()), "backward of ", op,
               ": gradient of shape ", g.sizes(), " for an input of shape ", sizes);
    g = sum_to(g, sizes);
  }
  if (g.dtype() != dtype) g = g.to(dtype);
  return g;
}

// Leaves keep the gradient tensor they are given unless someone else can see it.
Tensor own(const Tensor& g) {
  if (g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1 && g.is_contiguous()) return g;
  return g.clone();
}

}  // namespace

AutogradMeta::~AutogradMeta() {
  std::shared_ptr<Node> node = grad_fn.lock();
  if (node && !node->released && node_dead(*node)) release(std::move(node));
}

bool GradMode::is_enabled() { return grad_enabled; }
void GradMode::set_enabled(bool enabled) { grad_enabled = enabled; }

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::unpack(const char* op) const {
  if (tensor_.defined() && tensor_.version() != version_) {
    fail("backward of ", op, ": a tensor saved for the gradient (shape ", tensor_.sizes(),
         ") was modified by an in-place operation after it was saved (version ", version_, " -> ", tensor_.version(),
         "); use an out-of-place op (x = x * 2 instead of x.mul_(2)) "
         "or clone() the tensor before modifying it");
  }
  return tensor_;
}

namespace autograd {

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    if (in.defined() && in.requires_grad()) {
      node->inputs.push_back(meta_of(in));
      node->input_sizes.push_back(in.sizes());
      node->input_dtypes.push_back(in.dtype());
    } else {
      node->inputs.push_back(nullptr);
      node->input_sizes.emplace_back();
      node->input_dtypes.push_back(DType::f32);
    }
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    auto& m = meta_of(out);
    m->requires_grad = true;
    m->is_leaf = false;
    m->grad_fn = node;
    m->output_nr = int(i);
    node->outputs.push_back(m);
    node->output_sizes.push_back(out.sizes());
    node->output_options.push_back(out.options());
  }
  node->backward = std::move(backward);
  Tape& t = tape();
  node->sequence = t.next_sequence++;
  t.nodes.push_back(std::move(node));
  if (t.nodes.size() >= t.prune_at) {  // drop the shells of released nodes (amortised O(1))
    prune();
    t.prune_at = std::max<size_t>(256, 2 * t.nodes.size());
  }
}

size_t tape_size() { return tape().nodes.size(); }
void clear_tape() { tape().nodes.clear(); }

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  KILN_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " tensors but ", grads.size(), " gradients");
  Tape& t = tape();
  std::unordered_set<AutogradMeta*> needed;
  std::vector<std::pair<std::shared_ptr<AutogradMeta>, Tensor>> leaf_roots;
  uint64_t last_sequence = 0;
  bool any_node = false;

  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    KILN_CHECK(root.defined(), "backward: called on an undefined tensor");
    KILN_CHECK(root.requires_grad(), "backward: the tensor (shape ", root.sizes(),
               ") does not "
               "require grad and has no history; make a leaf require it with requires_grad_() or "
               "check that the computation ran outside NoGradGuard");
    Tensor g = grads[i];
    if (!g.defined()) {
      KILN_CHECK(root.numel() == 1,
                 "backward: a gradient can be created implicitly only for a "
                 "one-element output; this one has shape ",
                 root.sizes(),
                 ", so pass a gradient "
                 "of that shape (or reduce it first, e.g. loss.sum())");
      g = ones_like(root);
    } else {
      KILN_CHECK(g.sizes() == root.sizes(), "backward: gradient of shape ", g.sizes(), " for an output of shape ",
                 root.sizes());
      g = g.to(root.device(), root.dtype());
    }
    auto meta = root.impl()->autograd;
    if (meta->is_leaf) {
      leaf_roots.emplace_back(meta, g);
      continue;
    }
    auto node = meta->grad_fn.lock();
    KILN_CHECK(node, "backward: trying to backward through the graph a second time (its saved "
                     "values were freed after the first backward); pass retain_graph=true to the first "
                     "backward() if you need to call it twice");
    meta->pending = meta->pending.defined() ? add(meta->pending, g) : g;
    needed.insert(meta.get());
    last_sequence = std::max(last_sequence, node->sequence);
    any_node = true;
  }

  NoGradGuard no_grad;
  auto accumulate_leaf = [](AutogradMeta& m, const Tensor& g) { m.grad = m.grad.defined() ? add(m.grad, g) : own(g); };
  for (auto& [meta, g] : leaf_roots) {
    accumulate_leaf(*meta, g);
    for (auto& hook : meta->post_accumulate_hooks) hook(meta->grad);
  }
  if (!any_node) return;

  // Pass 1: which nodes reach a root, and how many of them feed each leaf.
  std::vector<Node*> order;
  std::unordered_map<AutogradMeta*, int> leaf_uses;
  for (size_t i = t.nodes.size(); i-- > 0;) {
    Node* n = t.nodes[i].get();
    if (n->sequence > last_sequence) continue;
    bool reached = false;
    for (auto& o : n->outputs) {
      auto m = o.lock();
      if (m && needed.count(m.get())) {
        reached = true;
        break;
      }
    }
    if (!reached) continue;
    order.push_back(n);
    for (auto& in : n->inputs) {
      if (!in) continue;
      if (in->is_leaf) {
        ++leaf_uses[in.get()];
      } else {
        KILN_CHECK(!in->grad_fn.expired(), "backward: part of the graph behind ", n->name,
                   " was "
                   "already freed by an earlier backward(); pass retain_graph=true to that call, or "
                   "recompute the forward pass");
        needed.insert(in.get());
      }
    }
  }

  // Pass 2: run the backward functions in reverse order of recording.
  for (Node* n : order) {
    std::vector<Tensor> grad_outputs(n->outputs.size());
    bool any = false;
    for (size_t k = 0; k < n->outputs.size(); ++k) {
      auto m = n->outputs[k].lock();
      if (m && m->pending.defined()) {
        grad_outputs[k] = std::move(m->pending);
        m->pending = Tensor();
        any = true;
      } else {
        grad_outputs[k] = zeros(n->output_sizes[k], n->output_options[k]);
      }
    }
    std::vector<Tensor> grad_inputs;
    if (any) {
      KILN_CHECK(n->backward, "backward of ", n->name, ": its saved state was already freed");
      grad_inputs = n->backward(grad_outputs);
      KILN_CHECK(grad_inputs.size() == n->inputs.size(), "backward of ", n->name, " returned ", grad_inputs.size(),
                 " gradients for ", n->inputs.size(), " inputs");
      // Its saved tensors are needed no more: free them now, not when the whole backward ends,
      // so the peak of a step is the forward's saved tensors plus a few layers' gradients (as in
      // PyTorch), not all of both.
      if (!retain_graph) n->backward = nullptr;
    }
    grad_outputs.clear();
    for (size_t k = 0; k < n->inputs.size(); ++k) {
      auto& in = n->inputs[k];
      if (!in) continue;
      Tensor g = k < grad_inputs.size() ? grad_inputs[k] : Tensor();
      if (g.defined()) g = conform(g, n->input_sizes[k], n->input_dtypes[k], n->name.c_str());
      if (in->is_leaf) {
        if (g.defined()) accumulate_leaf(*in, g);
        if (--leaf_uses[in.get()] == 0 && in->grad.defined())
          for (auto& hook : in->post_accumulate_hooks) hook(in->grad);
      } else if (g.defined()) {
        in->pending = in->pending.defined() ? add(in->pending, g) : g;
      }
    }
  }
  if (!retain_graph) {
    // Free what this backward walked; other graphs on the tape stay (dead ones are pruned later).
    std::unordered_set<const Node*> done(order.begin(), order.end());
    auto& nodes = t.nodes;
    nodes.erase(std::remove_if(nodes.begin(), nodes.end(),
                               [&](const std::shared_ptr<Node>& n) { return done.count(n.get()) > 0; }),
                nodes.end());
  }
}

}  // namespace autograd
}  // namespace kiln
