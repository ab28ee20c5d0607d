// Adam/AdamW: a fused backend update (moments, bias correction and the parameter write in a
// single pass) per CPU parameter with host step counts, and one multi-tensor update for all CUDA
// parameters of a device whose step counts live on the device (as PyTorch's capturable/fused
// Adam keeps them), so GradScaler can skip a step there and a CUDA graph can replay it.
#include "optim/adam.h"

#include <algorithm>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/json.h"

namespace kiln::optim {
namespace {

AdamOptions from_adamw(const AdamWOptions& o) {
  return {o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad, o.maximize};
}

std::vector<ParamGroup> single_group(std::vector<Tensor> params) {
  return {ParamGroup{std::move(params)}};
}

}  // namespace

void to_json(nlohmann::json& j, const AdamOptions& o) {
  j = {{"lr", o.lr}, {"betas", {o.betas.first, o.betas.second}}, {"eps", o.eps},
       {"weight_decay", o.weight_decay}, {"amsgrad", o.amsgrad}, {"maximize", o.maximize}};
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
Adam::Adam(std::vector<Tensor> params, AdamOptions defaults)
    : Adam(single_group(std::move(params)), defaults, false) {}
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
  } catch (const Error& e) {
    fail(name(), ": malformed options: ", e.what());
  }
  KILN_CHECK(o.lr >= 0.0, name(), ": Invalid learning rate: ", o.lr);
  KILN_CHECK(o.eps >= 0.0, name(), ": Invalid epsilon value: ", o.eps);
  KILN_CHECK(o.betas.first >= 0.0 && o.betas.first < 1.0, name(), ": Invalid beta parameter at index 0: ",
             o.betas.first);
  KILN_CHECK(o.betas.second >= 0.0 && o.betas.second < 1.0, name(),
             ": Invalid beta parameter at index 1: ", o.betas.second);
  KILN_CHECK(o.weight_decay >= 0.0, name(), ": Invalid weight_decay value: ", o.weight_decay);
}

void Adam::update() { apply_update(nullptr); }

bool Adam::step_unless_found_inf(const Tensor& found_inf) {
  if (!found_inf.is_cuda() || found_inf.dtype() != DType::f32 || found_inf.numel() != 1 ||
      !grads_all_on(found_inf.device()))
    return false;
  apply_update(&found_inf);
  return true;
}

void Adam::apply_update(const Tensor* found_inf) {
  NoGradGuard no_grad;
  for (const auto& group : param_groups()) {
    const auto o = group.options.get<AdamOptions>();
    // The CUDA parameters of a device are updated by one multi-tensor call that also counts
    // their steps on the device; the others one by one with host step counts.
    struct Batch {
      Device device{};
      std::vector<kernels::View> w, g, m, v, vmax, steps;
      std::vector<Tensor> grads;  // keeps converted gradients alive until the call
    };
    std::vector<Batch> batches;
    for (const auto& p : group.params) {
      Tensor g = dense_grad(p, name().c_str());
      if (!g.defined()) continue;
      ParamState& st = state(p);
      Tensor m = state_tensor(st, "exp_avg", p);
      Tensor v = state_tensor(st, "exp_avg_sq", p);
      Tensor vmax = o.amsgrad ? state_tensor(st, "max_exp_avg_sq", p) : Tensor();
      if (p.is_cuda()) {
        auto it = std::find_if(batches.begin(), batches.end(),
                               [&](const Batch& b) { return b.device == p.device(); });
        if (it == batches.end()) {
          it = batches.insert(batches.end(), Batch{});
          it->device = p.device();
        }
        it->w.push_back(detail::view_of(p));
        it->g.push_back(detail::view_of(g));
        it->m.push_back(detail::view_of(m));
        it->v.push_back(detail::view_of(v));
        if (vmax.defined()) it->vmax.push_back(detail::view_of(vmax));
        it->steps.push_back(detail::view_of(device_step(st, p)));
        it->grads.push_back(g);
      } else {
        if (st.device_step.defined()) {  // the parameter came back from a GPU
          st.step = int64_t(st.device_step.item<double>());
          st.device_step = Tensor();
        }
        st.step += 1;
        kernels::AdamParams ap{o.lr, o.betas.first, o.betas.second, o.eps, o.weight_decay, st.step,
                               decoupled_, o.amsgrad, o.maximize};
        detail::backend(p.device()).adam_step(ap, detail::view_of(p), detail::view_of(g),
                                             detail::view_of(m), detail::view_of(v),
                                             vmax.defined() ? detail::view_of(vmax) : detail::null_view(p.dtype()));
      }
      p.bump_version();
      m.bump_version();
      v.bump_version();
      if (vmax.defined()) vmax.bump_version();
    }
    for (const Batch& b : batches) {
      kernels::AdamParams ap{o.lr, o.betas.first, o.betas.second, o.eps, o.weight_decay, /*step=*/0,
                             decoupled_, o.amsgrad, o.maximize};
      if (found_inf) ap.found_inf = found_inf->data_ptr<float>();
      detail::backend(b.device).adam_step_multi(ap, b.w, b.g, b.m, b.v, b.vmax, b.steps);
    }
  }
}

}  // namespace kiln::optim
