// Adam/AdamW: one multi-tensor update (kiln::_fused_adam_: moments, bias correction and the
// parameter write in a single pass) for the parameters of each device, with the step counts kept
// beside the parameters as one f32 each (PyTorch's fused/capturable layout), so GradScaler can
// skip a step on a GPU without the host and a CUDA graph can replay it.
#include "optim/adam.h"

#include <algorithm>

#include "core/autograd.h"
#include "core/foreach.h"
#include "core/json.h"

namespace kiln::optim {
namespace {

AdamOptions from_adamw(const AdamWOptions& o) { return {o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad, o.maximize}; }

std::vector<ParamGroup> single_group(std::vector<Tensor> params) { return {ParamGroup{std::move(params)}}; }

}  // namespace

void to_json(nlohmann::json& j, const AdamOptions& o) {
  j = {{"lr", o.lr},           {"betas", {o.betas.first, o.betas.second}},
       {"eps", o.eps},         {"weight_decay", o.weight_decay},
       {"amsgrad", o.amsgrad}, {"maximize", o.maximize}};
}

void from_json(const nlohmann::json& j, AdamOptions& o) {
  const detail::JsonIn in(j, "Adam options");
  o.lr = in["lr"].as_double();
  const auto b = in["betas"];
  if (b.array().size() != 2) b.fail("must be a pair of numbers");
  o.betas = {b[0].as_double(), b[1].as_double()};
  o.eps = in["eps"].as_double();
  o.weight_decay = in["weight_decay"].as_double();
  o.amsgrad = in["amsgrad"].as_bool();
  o.maximize = in["maximize"].as_bool();
}

Adam::Adam(std::vector<Tensor> params, double lr) : Adam(std::move(params), AdamOptions{.lr = lr}) {}
Adam::Adam(std::vector<Tensor> params, AdamOptions defaults) : Adam(single_group(std::move(params)), defaults, false) {}
Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults) : Adam(std::move(groups), defaults, false) {}
Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults, bool decoupled)
    : Optimizer(nlohmann::json(defaults)), decoupled_(decoupled) {
  init_groups(std::move(groups));
}

AdamW::AdamW(std::vector<Tensor> params, double lr) : AdamW(std::move(params), AdamWOptions{.lr = lr}) {}
AdamW::AdamW(std::vector<Tensor> params, AdamWOptions defaults)
    : Adam(single_group(std::move(params)), from_adamw(defaults), true) {}
AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults)
    : Adam(std::move(groups), from_adamw(defaults), true) {}

void Adam::check_options(const nlohmann::json& j) const {
  AdamOptions o;
  try {
    o = j.get<AdamOptions>();
  } catch (const Error& e) { fail(name(), ": malformed options: ", e.what()); }
  KILN_CHECK(o.lr >= 0.0, name(), ": Invalid learning rate: ", o.lr);
  KILN_CHECK(o.eps >= 0.0, name(), ": Invalid epsilon value: ", o.eps);
  KILN_CHECK(o.betas.first >= 0.0 && o.betas.first < 1.0, name(),
             ": Invalid beta parameter at index 0: ", o.betas.first);
  KILN_CHECK(o.betas.second >= 0.0 && o.betas.second < 1.0, name(),
             ": Invalid beta parameter at index 1: ", o.betas.second);
  KILN_CHECK(o.weight_decay >= 0.0, name(), ": Invalid weight_decay value: ", o.weight_decay);
}

void Adam::update() { apply_update(nullptr); }

bool Adam::step_unless_found_inf(const Tensor& found_inf) {
  if (!found_inf.defined() || found_inf.dtype() != DType::f32 || found_inf.numel() != 1 ||
      !grads_all_on(found_inf.device()))
    return false;
  apply_update(&found_inf);
  return true;
}

void Adam::apply_update(const Tensor* found_inf) {
  NoGradGuard no_grad;
  for (const auto& group : param_groups()) {
    const auto o = group.options.get<AdamOptions>();
    const FusedAdamOptions fo{o.lr,           o.betas.first, o.betas.second, o.eps,
                              o.weight_decay, decoupled_,    o.amsgrad,      o.maximize};
    // One multi-tensor step per device; the step counts live beside the parameters.
    struct Lists {
      Device device{};
      std::vector<Tensor> w, g, m, v, vmax, steps;
    };
    std::vector<Lists> per_device;
    for (const auto& p : group.params) {
      Tensor g = dense_grad(p, name().c_str());
      if (!g.defined()) continue;
      ParamState& st = state(p);
      auto it =
          std::find_if(per_device.begin(), per_device.end(), [&](const Lists& l) { return l.device == p.device(); });
      if (it == per_device.end()) {
        it = per_device.insert(per_device.end(), Lists{});
        it->device = p.device();
      }
      it->w.push_back(p);
      it->g.push_back(g);
      it->m.push_back(state_tensor(st, "exp_avg", p));
      it->v.push_back(state_tensor(st, "exp_avg_sq", p));
      if (o.amsgrad) it->vmax.push_back(state_tensor(st, "max_exp_avg_sq", p));
      it->steps.push_back(device_step(st, p));
    }
    for (const Lists& l : per_device)
      _fused_adam_(l.w, l.g, l.m, l.v, l.vmax, l.steps, fo,
                   found_inf && found_inf->device() == l.device ? *found_inf : Tensor());
  }
}

}  // namespace kiln::optim
