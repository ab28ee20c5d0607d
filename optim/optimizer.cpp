// Optimizer base: group bookkeeping, lazily created state and the checkpoint format.
#include "optim/optimizer.h"

#include <cmath>
#include <unordered_set>

#include "core/autograd.h"
#include "core/json.h"
#include "core/ops.h"

namespace kiln::optim {

nlohmann::json Optimizer::merged_options(const nlohmann::json& overrides, size_t index) const {
  KILN_CHECK(overrides.is_object(), name(), ": options of param group ", index,
             " must be a JSON "
             "object such as {\"lr\": 0.1}, got ",
             overrides.dump());
  nlohmann::json merged = defaults_;
  for (const auto& [key, value] : overrides.items()) {
    // initial_lr belongs to LR schedulers, which keep it in the group as PyTorch's do.
    KILN_CHECK(defaults_.contains(key) || key == "initial_lr", name(), ": unknown option \"", key, "\" in param group ",
               index, "; the options are ", defaults_.dump());
    KILN_CHECK(key != "initial_lr" || value.is_number(), name(), ": initial_lr of param group ", index,
               " must be a number, got ", detail::json_brief(value));
    merged[key] = value;
  }
  check_options(merged);
  return merged;
}

void Optimizer::init_groups(std::vector<ParamGroup> groups) {
  check_options(defaults_);
  size_t total = 0;
  for (const auto& g : groups) total += g.params.size();
  KILN_CHECK(total > 0, name(), ": optimizer got an empty parameter list");
  for (auto& g : groups) add_param_group(std::move(g));
}

void Optimizer::add_param_group(ParamGroup group) {
  const size_t index = groups_.size();
  KILN_CHECK(!group.params.empty(), name(), ": param group ", index, " has no parameters");
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& g : groups_)
    for (const auto& p : g.params) seen.insert(p.impl());
  for (const auto& p : group.params) {
    KILN_CHECK(p.defined(), name(), ": param group ", index, " holds an undefined tensor");
    KILN_CHECK(p.is_floating_point(), name(), ": can only optimize floating-point tensors, got ", p.dtype(), " (shape ",
               p.sizes(), ")");
    KILN_CHECK(p.is_leaf(), name(), ": can't optimize a non-leaf tensor (shape ", p.sizes(),
               "); "
               "optimize the leaf it was computed from, or detach() it and call requires_grad_()");
    KILN_CHECK(seen.insert(p.impl()).second, name(), ": a parameter (shape ", p.sizes(),
               ") appears "
               "more than once or in more than one param group");
  }
  group.options = merged_options(group.options, index);
  groups_.push_back(std::move(group));
}

void Optimizer::step() {
  if (running_next_) {  // called from inside a wrapper: continue its chain
    const StepFn* next = running_next_;
    (*next)();
    return;
  }
  if (!step_hooks_ || step_hooks_->empty()) {
    update();
    return;
  }
  run_step_chain(step_hooks_->snapshot(), 0);
}

void Optimizer::run_step_chain(const std::vector<StepWrapper>& chain, size_t i) {
  if (i == chain.size()) {
    update();
    return;
  }
  StepFn next = [this, &chain, i] { run_step_chain(chain, i + 1); };
  const StepFn* prev = running_next_;
  running_next_ = &next;
  try {
    chain[i](*this, next);
  } catch (...) {
    running_next_ = prev;
    throw;
  }
  running_next_ = prev;
}

HookHandle Optimizer::register_step_wrapper(StepWrapper wrapper) {
  KILN_CHECK(wrapper, name(), ": register_step_wrapper got an empty wrapper");
  if (!step_hooks_) step_hooks_ = std::make_shared<detail::HookList<StepWrapper>>();
  return step_hooks_->add(std::move(wrapper));
}

HookHandle Optimizer::register_step_pre_hook(std::function<void(Optimizer&)> hook) {
  KILN_CHECK(hook, name(), ": register_step_pre_hook got an empty hook");
  return register_step_wrapper([hook = std::move(hook)](Optimizer& o, const StepFn& next) {
    hook(o);
    next();
  });
}

HookHandle Optimizer::register_step_post_hook(std::function<void(Optimizer&)> hook) {
  KILN_CHECK(hook, name(), ": register_step_post_hook got an empty hook");
  return register_step_wrapper([hook = std::move(hook)](Optimizer& o, const StepFn& next) {
    next();
    hook(o);
  });
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (auto& g : groups_)
    for (auto& p : g.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (set_to_none)
        p.set_grad(Tensor());
      else
        grad.zero_();
    }
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

double Optimizer::lr(size_t group) const {
  KILN_CHECK(group < groups_.size(), name(), ": param group ", group, " does not exist (", groups_.size(), " groups)");
  return groups_[group].lr();
}

void Optimizer::set_lr(double lr) {
  KILN_CHECK(lr >= 0, name(), ": Invalid learning rate: ", lr);
  for (auto& g : groups_) g.options["lr"] = lr;
}

Tensor Optimizer::state_tensor(ParamState& st, const std::string& key, const Tensor& param, bool* created) {
  auto it = st.tensors.find(key);
  if (created) *created = it == st.tensors.end();
  if (it == st.tensors.end()) return st.tensors[key] = zeros(param.sizes(), param.options());
  Tensor& t = it->second;
  if (t.dtype() != param.dtype() || t.device() != param.device()) t = t.to(param.device(), param.dtype());
  return t;
}

Tensor Optimizer::dense_grad(const Tensor& param, const char* op) {
  Tensor g = param.grad();
  if (!g.defined()) return g;
  KILN_CHECK(param.is_contiguous(), op, ": parameters must be contiguous, got shape ", param.sizes(), " with strides ",
             param.strides());
  KILN_CHECK(g.device() == param.device(), op, ": gradient on ", g.device(), " for a parameter on ", param.device());
  if (g.dtype() != param.dtype()) g = g.to(param.dtype());
  return g.is_contiguous() ? g : g.contiguous();
}

bool Optimizer::grads_all_on(Device device) const {
  for (const auto& g : groups_)
    for (const auto& p : g.params)
      if (p.grad().defined() && p.device() != device) return false;
  return true;
}

Tensor Optimizer::device_step(ParamState& st, const Tensor& param) {
  if (!st.device_step.defined())
    st.device_step = full({}, double(st.step), {.dtype = DType::f32, .device = param.device()});
  else if (st.device_step.device() != param.device())
    st.device_step = st.device_step.to(param.device());
  return st.device_step;
}

std::map<std::string, Tensor> Optimizer::state_tensors() const {
  std::map<std::string, Tensor> out;
  size_t index = 0;
  for (const auto& g : groups_)
    for (const auto& p : g.params) {
      auto it = state_.find(p.impl());
      if (it != state_.end()) {
        const std::string prefix = "state." + std::to_string(index) + ".";
        for (const auto& [key, t] : it->second.tensors) out[prefix + key] = t;
        // PyTorch keeps the count as a 0-d float32 tensor; so does kiln.
        if (tracks_step())
          out[prefix + "step"] =
              it->second.device_step.defined() ? it->second.device_step : scalar_tensor(double(it->second.step));
      }
      ++index;
    }
  return out;
}

nlohmann::json Optimizer::hyper_params() const {
  nlohmann::json groups = nlohmann::json::array();
  int64_t index = 0;
  for (const auto& g : groups_) {
    nlohmann::json j = g.options;
    j["params"] = nlohmann::json::array();
    for (size_t i = 0; i < g.params.size(); ++i) j["params"].push_back(index++);
    groups.push_back(j);
  }
  return {{"optimizer", name()}, {"defaults", defaults_}, {"param_groups", groups}};
}

void Optimizer::load(const std::map<std::string, Tensor>& tensors, const nlohmann::json& hp) {
  const std::string op = name() + "::load";
  const detail::JsonIn in(hp, op + ": hyper_params",
                          "expected {\"param_groups\": [...]} as produced by hyper_params()");
  if (auto saved_by = in.find("optimizer"))
    KILN_CHECK(saved_by->json() == name(), op, ": the state was saved by ", detail::json_text(saved_by->json()),
               ", not by ", name());
  const auto saved = in["param_groups"].elements();
  KILN_CHECK(saved.size() == groups_.size(), op, ": the state has ", saved.size(),
             " param groups, "
             "this optimizer has ",
             groups_.size());
  std::vector<nlohmann::json> options;
  std::vector<Tensor> params;
  for (size_t i = 0; i < groups_.size(); ++i) {
    saved[i].object();
    auto listed = saved[i].find("params");
    const size_t n = listed ? listed->array().size() : groups_[i].params.size();
    KILN_CHECK(n == groups_[i].params.size(), op, ": param group ", i, " of the state has ", n,
               " parameters, this optimizer's has ", groups_[i].params.size());
    nlohmann::json o = saved[i].json();
    o.erase("params");
    options.push_back(merged_options(o, i));
    params.insert(params.end(), groups_[i].params.begin(), groups_[i].params.end());
  }
  std::unordered_map<const TensorImpl*, ParamState> state;
  for (const auto& [key, t] : tensors) {
    const size_t dot1 = key.find('.'), dot2 = key.find('.', dot1 + 1);
    KILN_CHECK(key.rfind("state.", 0) == 0 && dot2 != std::string::npos, op, ": unexpected entry \"", key,
               "\"; expected names like state.<param index>.<name>");
    const std::string idx = key.substr(dot1 + 1, dot2 - dot1 - 1), field = key.substr(dot2 + 1);
    // At most 18 digits: the index fits an int64 without a range error to catch.
    KILN_CHECK(!idx.empty() && idx.size() <= 18 && idx.find_first_not_of("0123456789") == std::string::npos &&
                   std::stoll(idx) < int64_t(params.size()),
               op, ": entry \"", key, "\" names parameter ", idx.substr(0, 40), " but there are ", params.size());
    const Tensor& p = params[size_t(std::stoll(idx))];
    ParamState& st = state[p.impl()];
    if (field == "step") {
      // A count of steps taken: a whole number a double holds exactly.
      const double step = t.numel() == 1 ? t.item<double>() : -1.0;
      KILN_CHECK(step >= 0 && step <= 9007199254740992.0 && step == std::floor(step), op, ": entry \"", key,
                 "\" must hold one whole step count in [0, 2^53], got ",
                 t.numel() == 1 ? std::to_string(step) : "a tensor of shape " + shape_str(t.sizes()));
      st.step = int64_t(step);
      continue;
    }
    KILN_CHECK(t.sizes() == p.sizes(), op, ": entry \"", key, "\" has shape ", t.sizes(), " but parameter ", idx,
               " has shape ", p.sizes());
    st.tensors[field] = t.to(p.device(), p.dtype()).clone();
  }
  for (size_t i = 0; i < groups_.size(); ++i) groups_[i].options = std::move(options[i]);
  state_ = std::move(state);
}

}  // namespace kiln::optim
