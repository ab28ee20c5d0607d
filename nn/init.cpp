// Initialisers: the fan and gain arithmetic of PyTorch's torch.nn.init, on top of kiln's
// Philox-based uniform_/normal_.
#include "nn/init.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace kiln::nn::init {
namespace {

int64_t fan_for(const Tensor& t, const std::string& mode, const char* op) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  KILN_CHECK(mode == "fan_in" || mode == "fan_out", op,
             ": mode must be \"fan_in\" or \"fan_out\", "
             "got \"",
             mode, "\"");
  int64_t fan = mode == "fan_in" ? fan_in : fan_out;
  KILN_CHECK(fan > 0, op, ": cannot initialise a tensor with zero elements (shape ", t.sizes(), ")");
  return fan;
}

void check_floating(const Tensor& t, const char* op) {
  KILN_CHECK(t.defined(), op, ": the tensor is undefined");
  KILN_CHECK(t.is_floating_point(), op, ": expected a floating-point tensor, got ", t.dtype());
}

}  // namespace

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  KILN_CHECK(t.defined() && t.dim() >= 2,
             "calculate_fan_in_and_fan_out: fan in and fan out cannot "
             "be computed for a tensor with fewer than 2 dimensions (got shape ",
             t.defined() ? t.sizes() : Shape{}, ")");
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "identity" || nl == "sigmoid" || nl.rfind("conv", 0) == 0) return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 0.75;
  fail("calculate_gain: unsupported nonlinearity \"", nl,
       "\"; use linear, conv1d, conv2d, sigmoid, "
       "tanh, relu, leaky_relu or selu");
}

Tensor& uniform_(Tensor& t, double a, double b, Generator* gen) {
  check_floating(t, "init::uniform_");
  KILN_CHECK(a <= b, "init::uniform_: expected a <= b, got a=", a, ", b=", b);
  return kiln::uniform_(t, a, b, gen);
}

Tensor& normal_(Tensor& t, double mean, double std, Generator* gen) {
  check_floating(t, "init::normal_");
  KILN_CHECK(std >= 0, "init::normal_: std must be non-negative, got ", std);
  return kiln::normal_(t, mean, std, gen);
}

Tensor& constant_(Tensor& t, double value) {
  KILN_CHECK(t.defined(), "init::constant_: the tensor is undefined");
  NoGradGuard g;
  return t.fill_(value);
}
Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

Tensor& eye_(Tensor& t) {
  KILN_CHECK(t.defined() && t.dim() == 2, "init::eye_: expected a 2-D tensor, got shape ",
             t.defined() ? t.sizes() : Shape{});
  NoGradGuard g;
  t.fill_(0.0);
  for (int64_t i = 0; i < std::min(t.size(0), t.size(1)); ++i) t.select(0, i).select(0, i).fill_(1.0);
  return t;
}

Tensor& kaiming_uniform_(Tensor& t, double a, const std::string& mode, const std::string& nl, Generator* gen) {
  check_floating(t, "init::kaiming_uniform_");
  const double std = calculate_gain(nl, a) / std::sqrt(double(fan_for(t, mode, "init::kaiming_uniform_")));
  const double bound = std::sqrt(3.0) * std;
  return kiln::uniform_(t, -bound, bound, gen);
}

Tensor& kaiming_normal_(Tensor& t, double a, const std::string& mode, const std::string& nl, Generator* gen) {
  check_floating(t, "init::kaiming_normal_");
  const double std = calculate_gain(nl, a) / std::sqrt(double(fan_for(t, mode, "init::kaiming_normal_")));
  return kiln::normal_(t, 0.0, std, gen);
}

Tensor& xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  check_floating(t, "init::xavier_uniform_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  const double bound = gain * std::sqrt(6.0 / double(fan_in + fan_out));
  return kiln::uniform_(t, -bound, bound, gen);
}

Tensor& xavier_normal_(Tensor& t, double gain, Generator* gen) {
  check_floating(t, "init::xavier_normal_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return kiln::normal_(t, 0.0, gain * std::sqrt(2.0 / double(fan_in + fan_out)), gen);
}

}  // namespace kiln::nn::init
