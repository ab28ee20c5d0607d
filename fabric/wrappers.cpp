// Fabric's forward and step wrappers (see fabric/wrappers.h), and the type names callbacks print.
#include "fabric/wrappers.h"

#include <cxxabi.h>

#include <cstdlib>

#include "core/autocast.h"
#include "core/autograd.h"
#include "fabric/callbacks.h"

namespace kiln::detail {
namespace {

// Set-up forwards running on this thread: only the outermost applies the precision, so a model
// called as a whole computes exactly as under one autocast scope around its forward.
thread_local int t_fabric_forwards = 0;

class ForwardScope {
 public:
  ForwardScope() { ++t_fabric_forwards; }
  ~ForwardScope() { --t_fabric_forwards; }
  ForwardScope(const ForwardScope&) = delete;
  ForwardScope& operator=(const ForwardScope&) = delete;
};

// An identity step on the tape whose backward fails unless fabric.backward is running. It sits
// at the model's output, so the check fires before any gradient reaches a parameter.
Tensor guard_backward(const Tensor& out, const std::shared_ptr<FabricState>& state) {
  if (!out.defined() || !autograd::needs_grad({&out})) return out;
  Tensor alias = out.detach();
  autograd::record("fabric.backward check", {out}, {alias},
                   [state](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
                     KILN_CHECK(state->in_backward > 0,
                                "loss.backward(): the current strategy "
                                "and precision selection requires you to call "
                                "fabric.backward(loss) instead of loss.backward() (",
                                state->backward_reason, ")");
                     return {grads[0]};
                   });
  return alias;
}

}  // namespace

void wrap_module(nn::Module& model, const std::shared_ptr<FabricState>& state) {
  if (!state->precision->changes_forward() && state->backward_reason.empty()) return;
  // The hooks hold the state weakly: it owns the process group, whose DDP wrapper owns the model,
  // so a strong reference here would be a cycle that outlives the Fabric. Once the Fabric is gone
  // the model runs as it would without it.
  auto wrapper = [weak = std::weak_ptr<FabricState>(state)](nn::Module&, const Tensor& input,
                                                            const nn::Module::ForwardFn& next) {
    const std::shared_ptr<FabricState> state = weak.lock();
    if (!state) return next(input);
    const Precision& p = *state->precision;
    if (t_fabric_forwards > 0) return next(input);
    // Inside the precision's own autocast scope (fabric.autocast(), the explicit form) the code
    // around the model already runs as the precision asks: compute as that scope says, in one
    // piece, and return what it returns.
    if (auto low = p.autocast_dtype())
      if (autocast::is_enabled(p.device().type) && autocast::dtype(p.device().type) == *low) return next(input);
    ForwardScope scope;
    Tensor out;
    {
      auto context = p.forward_context();
      out = next(p.convert_input(input));
    }
    out = p.convert_output(out);
    if (!state->backward_reason.empty()) out = guard_backward(out, state);
    return out;
  };
  model.apply([&](nn::Module& m) { m.register_forward_wrapper(wrapper); });
}

void wrap_optimizer(optim::Optimizer& optimizer, const std::shared_ptr<FabricState>& state) {
  optimizer.register_step_wrapper(
      [weak = std::weak_ptr<FabricState>(state)](optim::Optimizer& opt, const optim::Optimizer::StepFn& next) {
        const std::shared_ptr<FabricState> state = weak.lock();
        if (!state) {
          next();
          return;
        }
        state->last_step_ran = true;
        // The sharded strategy steps this rank's shards (its opt.step() call continues with `next`)
        // and all-gathers the parameters.
        if (state->group && state->group->step(opt)) return;
        const auto& scaler = state->precision->scaler();
        if (!scaler) {
          next();
          return;
        }
        int64_t& last = state->stepped_at[&opt];
        KILN_CHECK(state->backward_count > last, opt.name(), ".step(): precision \"", state->precision->precision(),
                   "\" scales the loss, but no fabric.backward(loss) ran "
                   "since this optimizer's last step; call fabric.backward(loss) instead of "
                   "loss.backward(), or the unscaled gradients would be divided by the scale (",
                   scaler->get_scale(), ")");
        last = state->backward_count;
        state->last_step_ran = scaler->step(opt);  // unscales (unless clip_gradients did), skips on inf/NaN
        scaler->update();
      });
}

std::string type_name(const std::type_info& t) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string n = status == 0 && demangled ? demangled : t.name();
  std::free(demangled);
  return n;
}

}  // namespace kiln::detail
