// SGD: options checks as PyTorch words them, then one multi-tensor update (kiln::_fused_sgd_)
// for the parameters of each device.
#include "optim/sgd.h"

#include <algorithm>

#include "core/autograd.h"
#include "core/foreach.h"
#include "core/json.h"

namespace kiln::optim {

void to_json(nlohmann::json& j, const SGDOptions& o) {
  j = {{"lr", o.lr},
       {"momentum", o.momentum},
       {"dampening", o.dampening},
       {"weight_decay", o.weight_decay},
       {"nesterov", o.nesterov},
       {"maximize", o.maximize}};
}

void from_json(const nlohmann::json& j, SGDOptions& o) {
  const detail::JsonIn in(j, "SGD options");
  o.lr = in["lr"].as_double();
  o.momentum = in["momentum"].as_double();
  o.dampening = in["dampening"].as_double();
  o.weight_decay = in["weight_decay"].as_double();
  o.nesterov = in["nesterov"].as_bool();
  o.maximize = in["maximize"].as_bool();
}

SGD::SGD(std::vector<Tensor> params, double lr) : SGD(std::move(params), SGDOptions{.lr = lr}) {}

SGD::SGD(std::vector<Tensor> params, SGDOptions defaults)
    : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params)}}, defaults) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions defaults) : Optimizer(nlohmann::json(defaults)) {
  init_groups(std::move(groups));
}

void SGD::check_options(const nlohmann::json& j) const {
  SGDOptions o;
  try {
    o = j.get<SGDOptions>();
  } catch (const Error& e) { fail("SGD: malformed options: ", e.what()); }
  KILN_CHECK(o.lr >= 0.0, "SGD: Invalid learning rate: ", o.lr);
  KILN_CHECK(o.momentum >= 0.0, "SGD: Invalid momentum value: ", o.momentum);
  KILN_CHECK(o.weight_decay >= 0.0, "SGD: Invalid weight_decay value: ", o.weight_decay);
  KILN_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
             "SGD: Nesterov momentum "
             "requires a momentum and zero dampening (got momentum ",
             o.momentum, ", dampening ", o.dampening, ")");
}

void SGD::update() { apply_update(nullptr); }

bool SGD::step_unless_found_inf(const Tensor& found_inf) {
  if (!found_inf.defined() || found_inf.dtype() != DType::f32 || found_inf.numel() != 1 ||
      !grads_all_on(found_inf.device()))
    return false;
  // A step that creates momentum buffers initialises them from the gradient: skipped on the
  // device it would leave them zero, so that first step is decided on the host.
  for (const auto& group : param_groups())
    if (group.options.get<SGDOptions>().momentum != 0.0)
      for (const auto& p : group.params)
        if (p.grad().defined() && !state(p).tensors.count("momentum_buffer")) return false;
  apply_update(&found_inf);
  return true;
}

void SGD::apply_update(const Tensor* found_inf) {
  NoGradGuard no_grad;
  for (const auto& group : param_groups()) {
    const auto o = group.options.get<SGDOptions>();
    // One multi-tensor step per device and kind of step (the one that creates momentum buffers
    // sets them to the gradients).
    struct Lists {
      Device device{};
      bool first = false;
      std::vector<Tensor> w, g, buf;
    };
    std::vector<Lists> lists;
    for (const auto& p : group.params) {
      Tensor g = dense_grad(p, "SGD");
      if (!g.defined()) continue;
      Tensor buf;
      bool first = false;
      if (o.momentum != 0.0) buf = state_tensor(state(p), "momentum_buffer", p, &first);
      auto it = std::find_if(lists.begin(), lists.end(),
                             [&](const Lists& l) { return l.device == p.device() && l.first == first; });
      if (it == lists.end()) {
        it = lists.insert(lists.end(), Lists{});
        it->device = p.device();
        it->first = first;
      }
      it->w.push_back(p);
      it->g.push_back(g);
      if (buf.defined()) it->buf.push_back(buf);
    }
    for (const Lists& l : lists)
      _fused_sgd_(l.w, l.g, l.buf, {o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov, o.maximize, l.first},
                  found_inf && found_inf->device() == l.device ? *found_inf : Tensor());
  }
}

}  // namespace kiln::optim
