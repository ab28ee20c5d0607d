// Helpers for checking a model against a golden file of PyTorch's values: load "param.*" into the
// model, and compare its state_dict or its gradients with the entries under a prefix.
#pragma once

#include <string>
#include <vector>

#include "golden.h"
#include "nn/nn.h"

namespace kiln::test {

// The golden entries under prefix as a state dict (prefix stripped).
inline nn::StateDict golden_state(const Golden& g, const std::vector<std::string>& names, const std::string& prefix) {
  nn::StateDict sd;
  for (const auto& n : names) sd.insert(n, g.get(prefix + n));
  return sd;
}

inline void check_state(const nn::StateDict& got, const Golden& g, const std::string& prefix, double tol) {
  for (const auto& [name, t] : got) {
    INFO(prefix << name);
    REQUIRE(g.has(prefix + name));
    Tensor want = g.get(prefix + name);
    check_close(t.to(want.dtype()), want, tol, tol);
  }
}

}  // namespace kiln::test
