#include "core/gradcheck.h"

#include <cmath>
#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"

namespace kiln {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, std::vector<Tensor> inputs,
                          GradcheckOptions o) {
  GradcheckResult r;
  for (auto& t : inputs) {
    if (t.defined() && is_floating(t.dtype())) {
      KILN_CHECK(t.dtype() == DType::f64,
                 "gradcheck: inputs must be float64 for finite differences "
                 "to be meaningful, got ",
                 t.dtype());
      t = t.detach().requires_grad_(true);
    }
  }
  Tensor out0;
  {
    NoGradGuard g;
    out0 = fn(inputs);
  }
  Generator gen(1234);
  Tensor proj = randn(out0.sizes(), {.dtype = DType::f64}, &gen);
  auto scalar = [&](const std::vector<Tensor>& in) { return sum(mul(fn(in), proj)); };

  Tensor loss = scalar(inputs);
  if (!loss.requires_grad()) {
    r.ok = false;
    r.message = "gradcheck: output does not require grad";
    return r;
  }
  loss.backward();
  std::ostringstream msg;
  int reported = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor analytic = x.grad().defined() ? x.grad() : zeros_like(x);
    std::vector<double> an = analytic.contiguous().to_vector<double>();
    // Perturb the input's own storage through a contiguous copy swapped in for the evaluation.
    Tensor base = x.detach().contiguous();
    std::vector<double> vals = base.to_vector<double>();
    for (size_t i = 0; i < vals.size(); ++i) {
      auto eval_at = [&](double v) {
        std::vector<double> pert = vals;
        pert[i] = v;
        std::vector<Tensor> in = inputs;
        in[k] = tensor(pert, x.sizes(), {.dtype = DType::f64});
        NoGradGuard g;
        return scalar(in).item<double>();
      };
      const double num = (eval_at(vals[i] + o.eps) - eval_at(vals[i] - o.eps)) / (2 * o.eps);
      const double err = std::abs(num - an[i]);
      r.max_abs_error = std::max(r.max_abs_error, err);
      if (err > o.atol + o.rtol * std::abs(num)) {
        r.ok = false;
        if (reported++ < 5)
          msg << "input " << k << " element " << i << ": numerical " << num << ", analytic " << an[i] << "\n";
      }
    }
  }
  r.message = msg.str();
  return r;
}

}  // namespace kiln
