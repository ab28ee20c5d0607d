// Sequential: a registration-ordered list of modules applied in turn.
#include "nn/sequential.h"

#include <string>

namespace kiln::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
  for (const auto& m : modules) push_back(m);
}

Sequential::Sequential(std::initializer_list<std::pair<std::string, std::shared_ptr<Module>>> named) {
  for (const auto& [n, m] : named) push_back(n, m);
}

Sequential& Sequential::push_back(std::shared_ptr<Module> module) {
  return push_back(std::to_string(modules_.size()), std::move(module));
}

Sequential& Sequential::push_back(const std::string& n, std::shared_ptr<Module> module) {
  modules_.push_back(register_module(n, std::move(module)));
  return *this;
}

Tensor Sequential::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& in) {
    Tensor x = in;
    for (const auto& m : modules_) x = (*m)(x);
    return x;
  });
}

std::shared_ptr<Module> Sequential::operator[](size_t index) const {
  KILN_CHECK(index < modules_.size(), "Sequential: index ", index, " is out of range for ", modules_.size(),
             " modules");
  return modules_[index];
}

}  // namespace kiln::nn
