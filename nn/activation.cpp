// Parameter-free layers; each checks its settings once, at construction.
#include "nn/activation.h"

#include <sstream>

#include "nn/functional.h"

namespace kiln::nn {

Tensor ReLU::forward(const Tensor& x) {
  return run_forward(x, [](const Tensor& in) { return functional::relu(in); });
}
Tensor SiLU::forward(const Tensor& x) {
  return run_forward(x, [](const Tensor& in) { return functional::silu(in); });
}

GELU::GELU(std::string approx) : approximate(std::move(approx)) {
  KILN_CHECK(approximate == "none" || approximate == "tanh",
             "GELU: approximate must be \"none\" or "
             "\"tanh\", got \"",
             approximate, "\"");
}
Tensor GELU::forward(const Tensor& x) {
  return run_forward(x, [this](const Tensor& in) { return functional::gelu(in, approximate); });
}
std::string GELU::extra_repr() const { return "approximate=\"" + approximate + "\""; }

Dropout::Dropout(double prob) : p(prob) {
  KILN_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability has to be between 0 and 1, but got ", p);
}
Tensor Dropout::forward(const Tensor& x) {
  return run_forward(x, [this](const Tensor& in) { return functional::dropout(in, p, is_training(), generator); });
}
std::string Dropout::extra_repr() const {
  std::ostringstream os;
  os << "p=" << p;
  return os.str();
}

Flatten::Flatten(int64_t start, int64_t end) : start_dim(start), end_dim(end) {}
Tensor Flatten::forward(const Tensor& x) {
  return run_forward(x, [this](const Tensor& in) { return functional::flatten(in, start_dim, end_dim); });
}
std::string Flatten::extra_repr() const {
  std::ostringstream os;
  os << "start_dim=" << start_dim << ", end_dim=" << end_dim;
  return os.str();
}

}  // namespace kiln::nn
