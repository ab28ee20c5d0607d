// Printing: shapes and tensors on a std::ostream.
#include <iomanip>
#include <sstream>

#include "core/dispatch.h"
#include "core/tensor.h"

namespace kiln {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}
std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << shape_str(s); }

namespace {
void print_values(std::ostream& os, const std::vector<double>& v, const Shape& sizes, size_t dim, int64_t& pos,
                  bool floating, int indent) {
  if (sizes.empty()) {
    os << v[0];
    return;
  }
  const int64_t n = sizes[dim];
  const int64_t inner = detail::shape_numel(Shape(sizes.begin() + int64_t(dim) + 1, sizes.end()));
  const bool summarize = n > 6;
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && i == 3) {
      os << "...";
      pos += (n - 6) * inner;
      i = n - 3;
      os << (dim + 1 == sizes.size() ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
    }
    if (dim + 1 == sizes.size()) {
      double x = v[size_t(pos++)];
      if (floating)
        os << std::fixed << std::setprecision(4) << x;
      else
        os << int64_t(x);
    } else {
      print_values(os, v, sizes, dim + 1, pos, floating, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == sizes.size() ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
  }
  os << ']';
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  std::ostringstream body;
  std::vector<double> values = t.to_vector<double>();
  int64_t pos = 0;
  if (t.dim() == 0) {
    if (t.is_floating_point())
      body << std::fixed << std::setprecision(4) << values[0];
    else
      body << int64_t(values[0]);
  } else {
    print_values(body, values, t.sizes(), 0, pos, t.is_floating_point(), 7);
  }
  os << "tensor(" << body.str() << ", shape=" << t.sizes() << ", dtype=" << t.dtype() << ", device=" << t.device();
  if (t.requires_grad()) os << ", requires_grad=true";
  return os << ')';
}

}  // namespace kiln
