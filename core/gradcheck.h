// Numerical gradient checking, shipped with the library so users can check their own ops and
// layers: central finite differences in float64 against the analytic gradient from backward().
//   auto r = kiln::gradcheck([](const std::vector<kiln::Tensor>& in) { return my_op(in[0]); },
//                            {kiln::randn({3, 4}, {.dtype = kiln::DType::f64})});
//   if (!r.ok) std::cerr << r.message;
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace kiln {

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string message;  // the first mismatches, when !ok
};

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

// fn maps the inputs to one tensor; its gradient is checked against every floating input (which
// must be f64; they are made to require grad). The output is reduced with a fixed random
// projection, so every output element takes part.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, std::vector<Tensor> inputs,
                          GradcheckOptions options = {});

}  // namespace kiln
