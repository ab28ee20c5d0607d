// Module: registration, traversal under dotted names, mode switches, in-place conversion and
// state_dict loading. Traversal order is registration order throughout, as in PyTorch.
#include "nn/module.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <typeinfo>
#include <unordered_set>

#include "core/autograd.h"

namespace kiln::nn {
namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string join_list(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + ("\"" + v[i] + "\"");
  return s;
}

// Gives `dst` the contents of `src` while keeping dst's TensorImpl (and so its autograd meta,
// hooks and every handle to it) alive: this is how parameters change dtype/device in place.
void assign_in_place(const Tensor& dst, const Tensor& src) {
  TensorImpl* d = dst.impl();
  const TensorImpl* s = src.impl();
  d->storage = s->storage;
  d->sizes = s->sizes;
  d->strides = s->strides;
  d->offset = s->offset;
  d->dtype = s->dtype;
}

// The innermost ModuleInitGuard of this thread.
thread_local const ModuleInitGuard* t_init_guard = nullptr;
// The module whose operator() has run its hooks and is now in forward(): its run_forward() must
// not run them again.
thread_local const Module* t_hooks_done = nullptr;

class HooksDoneScope {
 public:
  explicit HooksDoneScope(const Module* m) : prev_(t_hooks_done) { t_hooks_done = m; }
  ~HooksDoneScope() { t_hooks_done = prev_; }
  HooksDoneScope(const HooksDoneScope&) = delete;
  HooksDoneScope& operator=(const HooksDoneScope&) = delete;

 private:
  const Module* prev_;
};

// The wrappers from `i` on around `compute`.
Tensor run_chain(Module& m, const std::vector<Module::ForwardWrapper>& chain, size_t i, const Tensor& input,
                 const Module::ForwardFn& compute) {
  if (i == chain.size()) return compute(input);
  return chain[i](m, input, [&](const Tensor& x) { return run_chain(m, chain, i + 1, x, compute); });
}

}  // namespace

ModuleInitGuard::ModuleInitGuard(Device device, std::optional<DType> dtype)
    : device_(device), dtype_(dtype), prev_(t_init_guard) {
  KILN_CHECK(!dtype || is_floating(*dtype),
             "ModuleInitGuard: dtype must be a floating-point "
             "type, got ",
             *dtype);
  t_init_guard = this;
}

ModuleInitGuard::~ModuleInitGuard() { t_init_guard = prev_; }

Tensor Module::operator()(const Tensor& input) {
  if (!forward_hooks_ || forward_hooks_->empty()) return forward(input);
  return run_chain(*this, forward_hooks_->snapshot(), 0, input, [this](const Tensor& x) {
    HooksDoneScope done(this);
    return forward(x);
  });
}

Tensor Module::run_forward(const Tensor& input, const ForwardFn& compute) {
  if (t_hooks_done == this) {
    HooksDoneScope inner(nullptr);  // for the submodules compute() calls
    return compute(input);
  }
  if (!forward_hooks_ || forward_hooks_->empty()) return compute(input);
  return run_chain(*this, forward_hooks_->snapshot(), 0, input, compute);
}

HookHandle Module::register_forward_wrapper(ForwardWrapper wrapper) {
  KILN_CHECK(wrapper, name(), "::register_forward_wrapper: the wrapper is empty");
  if (!forward_hooks_) forward_hooks_ = std::make_shared<detail::HookList<ForwardWrapper>>();
  return forward_hooks_->add(std::move(wrapper));
}

HookHandle Module::register_forward_pre_hook(ForwardPreHook hook) {
  KILN_CHECK(hook, name(), "::register_forward_pre_hook: the hook is empty");
  return register_forward_wrapper([hook = std::move(hook)](Module& m, const Tensor& x, const ForwardFn& next) {
    std::optional<Tensor> replaced = hook(m, x);
    return next(replaced ? *replaced : x);
  });
}

HookHandle Module::register_forward_hook(ForwardHook hook) {
  KILN_CHECK(hook, name(), "::register_forward_hook: the hook is empty");
  return register_forward_wrapper([hook = std::move(hook)](Module& m, const Tensor& x, const ForwardFn& next) {
    Tensor out = next(x);
    std::optional<Tensor> replaced = hook(m, x, out);
    return replaced ? *replaced : out;
  });
}

Tensor Module::forward(const Tensor&) {
  fail(name(), "::forward: this module does not implement forward(const Tensor&); override it, "
               "or call the module's own forward with the inputs it takes");
}

std::string Module::name() const {
  const char* mangled = typeid(*this).name();
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string n = status == 0 && demangled ? demangled : mangled;
  std::free(demangled);
  for (const std::string prefix : {"kiln::nn::", "kiln::"})
    if (n.rfind(prefix, 0) == 0) n = n.substr(prefix.size());
  return n;
}

Tensor Module::placed(const Tensor& t) {
  const ModuleInitGuard* g = t_init_guard;
  if (!g) return t;
  NoGradGuard no_grad;
  Tensor out = t.device() == g->device_ ? t : t.to(g->device_);
  if (g->dtype_ && out.is_floating_point() && out.dtype() != *g->dtype_) out = out.to(*g->dtype_);
  return out;
}

void Module::check_new_name(const std::string& n, const char* what) const {
  KILN_CHECK(!n.empty() && n.find('.') == std::string::npos, name(), "::", what, ": name '", n,
             "' must be non-empty and contain no '.' (dots separate submodule names)");
  KILN_CHECK(!parameters_.contains(n) && !buffers_.contains(n) && !children_.contains(n), name(), "::", what, ": '", n,
             "' is already registered in this module; pick another name");
}

namespace {
// A parameter must be a leaf so gradients accumulate in it rather than flowing through it.
Tensor as_parameter(Tensor tensor, bool requires_grad) {
  if (!tensor.is_leaf()) tensor = tensor.detach();
  tensor.requires_grad_(requires_grad && tensor.is_floating_point());
  return tensor;
}
}  // namespace

Tensor Module::register_parameter(const std::string& n, Tensor tensor, bool requires_grad) {
  check_new_name(n, "register_parameter");
  if (!tensor.defined()) return tensor;
  tensor = as_parameter(placed(tensor), requires_grad);
  parameters_.insert(n, ParamSlot{tensor, nullptr});
  return tensor;
}

Tensor& Module::register_parameter(const std::string& n, Tensor& member, Tensor tensor, bool requires_grad) {
  check_new_name(n, "register_parameter");
  member = tensor.defined() ? as_parameter(placed(tensor), requires_grad) : Tensor();
  parameters_.insert(n, ParamSlot{Tensor(), &member});
  return member;
}

Tensor Module::register_buffer(const std::string& n, Tensor tensor, bool persistent) {
  check_new_name(n, "register_buffer");
  if (!tensor.defined()) return tensor;
  tensor = placed(tensor);
  buffers_.insert(n, BufferSlot{tensor, persistent});
  return tensor;
}

void Module::register_module_impl(const std::string& n, std::shared_ptr<Module> module) {
  check_new_name(n, "register_module");
  KILN_CHECK(module, name(), "::register_module: submodule '", n,
             "' is null; create it with "
             "std::make_shared first");
  KILN_CHECK(module.get() != this, name(), "::register_module: a module cannot contain itself");
  children_.insert(n, std::move(module));
}

void Module::collect_params(const std::string& prefix, bool recurse, OrderedDict<Tensor>& out,
                            std::vector<const TensorImpl*>& seen) const {
  for (const auto& [n, slot] : parameters_) {
    const Tensor& t = slot.get();
    if (!t.defined() || std::find(seen.begin(), seen.end(), t.impl()) != seen.end()) continue;
    seen.push_back(t.impl());
    out.insert(join(prefix, n), t);
  }
  if (!recurse) return;
  for (const auto& [n, child] : children_) child->collect_params(join(prefix, n), true, out, seen);
}

std::vector<Tensor> Module::parameters(bool recurse) const { return named_parameters(recurse).values(); }

OrderedDict<Tensor> Module::named_parameters(bool recurse) const {
  OrderedDict<Tensor> out;
  std::vector<const TensorImpl*> seen;
  collect_params("", recurse, out, seen);
  return out;
}

void Module::collect_buffers(const std::string& prefix, bool recurse, OrderedDict<Tensor>& out) const {
  for (const auto& [n, slot] : buffers_) out.insert(join(prefix, n), slot.tensor);
  if (!recurse) return;
  for (const auto& [n, child] : children_) child->collect_buffers(join(prefix, n), true, out);
}

std::vector<Tensor> Module::buffers(bool recurse) const { return named_buffers(recurse).values(); }

OrderedDict<Tensor> Module::named_buffers(bool recurse) const {
  OrderedDict<Tensor> out;
  collect_buffers("", recurse, out);
  return out;
}

std::vector<std::shared_ptr<Module>> Module::children() const { return children_.values(); }
OrderedDict<std::shared_ptr<Module>> Module::named_children() const { return children_; }

std::vector<std::shared_ptr<Module>> Module::modules() const { return named_modules().values(); }

OrderedDict<std::shared_ptr<Module>> Module::named_modules() const {
  OrderedDict<std::shared_ptr<Module>> out;
  std::unordered_set<const Module*> seen;
  std::function<void(const Module&, const std::string&)> visit = [&](const Module& m, const std::string& prefix) {
    for (const auto& [n, child] : m.children_) {
      if (!seen.insert(child.get()).second) continue;
      out.insert(join(prefix, n), child);
      visit(*child, join(prefix, n));
    }
  };
  visit(*this, "");
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& [n, child] : children_) child->apply(fn);
  fn(*this);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, child] : children_) child->train(on);
}

void Module::convert(const std::function<Tensor(const Tensor&)>& fn, bool floating_only) {
  NoGradGuard no_grad;
  std::unordered_set<const TensorImpl*> done;  // a tied parameter is converted once
  auto convert_one = [&](const Tensor& t) {
    if (!t.defined() || !done.insert(t.impl()).second) return;
    if (floating_only && !t.is_floating_point()) return;
    Tensor converted = fn(t);
    if (!converted.is_same(t)) assign_in_place(t, converted);
    Tensor g = t.grad();
    if (g.defined()) {
      Tensor gc = fn(g);
      if (!gc.is_same(g)) assign_in_place(g, gc);
    }
  };
  std::function<void(Module&)> visit = [&](Module& m) {
    for (auto& [n, slot] : m.parameters_) convert_one(slot.get());
    for (auto& [n, slot] : m.buffers_) convert_one(slot.tensor);
    for (auto& [n, child] : m.children_) visit(*child);
  };
  visit(*this);
}

Module& Module::to(Device device) {
  convert([&](const Tensor& t) { return t.device() == device ? t : t.to(device); }, false);
  return *this;
}

Module& Module::to(DType dtype) {
  convert([&](const Tensor& t) { return t.dtype() == dtype ? t : t.to(dtype); }, true);
  return *this;
}

Module& Module::to(Device device, DType dtype) {
  to(device);
  return to(dtype);
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (Tensor& p : parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (set_to_none) {
      p.set_grad(Tensor());
    } else {
      g.zero_();
    }
  }
}

void Module::collect_state(const std::string& prefix, StateDict& out) const {
  for (const auto& [n, slot] : parameters_)
    if (slot.get().defined()) out.insert(join(prefix, n), slot.get().detach());
  for (const auto& [n, slot] : buffers_)
    if (slot.persistent) out.insert(join(prefix, n), slot.tensor.detach());
  for (const auto& [n, child] : children_) child->collect_state(join(prefix, n), out);
}

StateDict Module::state_dict() const {
  StateDict out;
  collect_state("", out);
  return out;
}

LoadResult Module::load_state_dict(const StateDict& dict, bool strict) {
  StateDict own = state_dict();
  LoadResult result;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source)
  for (const auto& [key, dst] : own) {
    const Tensor* src = dict.find(key);
    if (!src) {
      result.missing_keys.push_back(key);
      continue;
    }
    KILN_CHECK(src->defined(), "load_state_dict: the tensor for '", key, "' is undefined");
    KILN_CHECK(src->sizes() == dst.sizes(), "load_state_dict: size mismatch for ", key, ": copying a tensor of shape ",
               src->sizes(),
               " from the state dict, but the shape "
               "in the current model is ",
               dst.sizes());
    KILN_CHECK(src->dtype() == dst.dtype(), "load_state_dict: dtype mismatch for ", key,
               ": the "
               "state dict holds ",
               src->dtype(), " but the model has ", dst.dtype(),
               "; convert "
               "the model with to(",
               src->dtype(), ") or the tensor with .to(", dst.dtype(), ")");
    copies.emplace_back(dst, *src);
  }
  for (const auto& [key, t] : dict)
    if (!own.contains(key)) result.unexpected_keys.push_back(key);
  if (strict && (!result.missing_keys.empty() || !result.unexpected_keys.empty())) {
    std::string msg = "load_state_dict: error(s) in loading state_dict for " + name() + ":";
    if (!result.missing_keys.empty()) msg += " missing key(s): " + join_list(result.missing_keys) + ".";
    if (!result.unexpected_keys.empty()) msg += " unexpected key(s): " + join_list(result.unexpected_keys) + ".";
    fail(msg, " Pass strict=false to load the keys that match.");
  }
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return result;
}

namespace {
void print_module(std::ostream& os, const Module& m, const std::string& indent) {
  os << m.name() << "(" << m.extra_repr();
  auto children = m.named_children();
  if (!children.empty()) {
    os << "\n";
    for (const auto& [n, child] : children) {
      os << indent << "  (" << n << "): ";
      print_module(os, *child, indent + "  ");
      os << "\n";
    }
    os << indent;
  }
  os << ")";
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const Module& m) {
  print_module(os, m, "");
  return os;
}

}  // namespace kiln::nn
