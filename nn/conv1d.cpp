// Conv1d: the module over kiln::conv1d, with Conv2d's checks and initialisation.
#include "nn/conv1d.h"

#include <cmath>
#include <sstream>

#include "nn/functional.h"
#include "nn/init.h"

namespace kiln::nn {

Conv1d::Conv1d(int64_t in, int64_t out, int64_t k, Conv1dOptions o)
    : in_channels(in), out_channels(out), kernel_size(k), options(o) {
  KILN_CHECK(in > 0 && out > 0, "Conv1d: in_channels and out_channels must be positive, got ", in, " and ", out);
  KILN_CHECK(o.groups > 0 && in % o.groups == 0 && out % o.groups == 0, "Conv1d: groups (", o.groups,
             ") must be positive and divide in_channels (", in, ") and out_channels (", out, ")");
  KILN_CHECK(k > 0, "Conv1d: kernel_size must be positive, got ", k);
  KILN_CHECK(o.stride > 0 && o.dilation > 0 && o.padding >= 0,
             "Conv1d: stride and dilation must be positive "
             "and padding non-negative, got stride ",
             o.stride, ", dilation ", o.dilation, ", padding ", o.padding);
  register_parameter("weight", weight, empty({out, in / o.groups, k}));
  register_parameter("bias", bias, o.bias ? empty({out}) : Tensor());
  reset_parameters();
}

void Conv1d::reset_parameters(Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  if (bias.defined()) {
    auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(weight);
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv1d::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& x) {
    return functional::conv1d(x, weight, bias, options.stride, options.padding, options.dilation, options.groups);
  });
}

std::string Conv1d::extra_repr() const {
  std::ostringstream os;
  os << in_channels << ", " << out_channels << ", kernel_size=(" << kernel_size << ",), stride=(" << options.stride
     << ",)";
  if (options.padding) os << ", padding=(" << options.padding << ",)";
  if (options.dilation != 1) os << ", dilation=(" << options.dilation << ",)";
  if (options.groups != 1) os << ", groups=" << options.groups;
  if (!bias.defined()) os << ", bias=false";
  return os.str();
}

}  // namespace kiln::nn
