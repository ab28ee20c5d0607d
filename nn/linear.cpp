// Linear and Conv2d. Both initialise like PyTorch's reset_parameters: kaiming_uniform_(a=sqrt(5))
// gives weights in +-1/sqrt(fan_in), and the bias shares that bound.
#include "nn/linear.h"

#include <cmath>
#include <sstream>

#include "nn/functional.h"
#include "nn/init.h"

namespace kiln::nn {
namespace {

void reset_weight_and_bias(Tensor& weight, Tensor& bias, Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  if (bias.defined()) {
    auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(weight);
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

}  // namespace

Linear::Linear(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  KILN_CHECK(in > 0 && out > 0, "Linear: in_features and out_features must be positive, got ", in, " and ", out);
  register_parameter("weight", weight, empty({out, in}));
  register_parameter("bias", bias, with_bias ? empty({out}) : Tensor());  // None without a bias
  reset_parameters();
}

void Linear::reset_parameters(Generator* gen) { reset_weight_and_bias(weight, bias, gen); }

Tensor Linear::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& x) { return functional::linear(x, weight, bias); });
}

std::string Linear::extra_repr() const {
  std::ostringstream os;
  os << "in_features=" << in_features << ", out_features=" << out_features
     << ", bias=" << (bias.defined() ? "true" : "false");
  return os.str();
}

Conv2d::Conv2d(int64_t in, int64_t out, Size2 kernel, Conv2dOptions o)
    : in_channels(in), out_channels(out), kernel_size(kernel), options(o) {
  KILN_CHECK(in > 0 && out > 0, "Conv2d: in_channels and out_channels must be positive, got ", in, " and ", out);
  KILN_CHECK(o.groups > 0, "Conv2d: groups must be a positive integer, got ", o.groups);
  KILN_CHECK(in % o.groups == 0, "Conv2d: in_channels (", in, ") must be divisible by groups (", o.groups, ")");
  KILN_CHECK(out % o.groups == 0, "Conv2d: out_channels (", out, ") must be divisible by groups (", o.groups, ")");
  KILN_CHECK(kernel.h > 0 && kernel.w > 0, "Conv2d: kernel_size must be positive, got ", kernel);
  KILN_CHECK(o.stride.h > 0 && o.stride.w > 0, "Conv2d: stride must be positive, got ", o.stride);
  KILN_CHECK(o.dilation.h > 0 && o.dilation.w > 0, "Conv2d: dilation must be positive, got ", o.dilation);
  KILN_CHECK(o.padding.h >= 0 && o.padding.w >= 0, "Conv2d: padding must be non-negative, got ", o.padding);
  register_parameter("weight", weight, empty({out, in / o.groups, kernel.h, kernel.w}));
  register_parameter("bias", bias, o.bias ? empty({out}) : Tensor());
  reset_parameters();
}

void Conv2d::reset_parameters(Generator* gen) { reset_weight_and_bias(weight, bias, gen); }

Tensor Conv2d::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& x) {
    return functional::conv2d(x, weight, bias, options.stride, options.padding, options.dilation, options.groups);
  });
}

std::string Conv2d::extra_repr() const {
  std::ostringstream os;
  os << in_channels << ", " << out_channels << ", kernel_size=" << kernel_size << ", stride=" << options.stride;
  if (options.padding != Size2(0)) os << ", padding=" << options.padding;
  if (options.dilation != Size2(1)) os << ", dilation=" << options.dilation;
  if (options.groups != 1) os << ", groups=" << options.groups;
  if (!bias.defined()) os << ", bias=false";
  return os.str();
}

}  // namespace kiln::nn
