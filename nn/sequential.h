// kiln::nn::Sequential: runs its modules one after another. Unnamed entries are registered as
// "0", "1", ... like PyTorch's, so a Sequential's state_dict keys match PyTorch's too.
//   auto net = std::make_shared<kiln::nn::Sequential>(std::initializer_list<std::shared_ptr<kiln::nn::Module>>{
//       std::make_shared<kiln::nn::Linear>(4, 8), std::make_shared<kiln::nn::ReLU>(),
//       std::make_shared<kiln::nn::Linear>(8, 2)});
#pragma once

#include <initializer_list>
#include <utility>

#include "nn/module.h"

namespace kiln::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  Sequential(std::initializer_list<std::pair<std::string, std::shared_ptr<Module>>> named_modules);

  Sequential& push_back(std::shared_ptr<Module> module);
  Sequential& push_back(const std::string& name, std::shared_ptr<Module> module);

  Tensor forward(const Tensor& input) override;

  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  std::shared_ptr<Module> operator[](size_t index) const;
  // The module at `index` as its concrete type (an error if it is another type).
  template <class M>
  std::shared_ptr<M> at(size_t index) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[index]);
    KILN_CHECK(m, "Sequential::at: module ", index, " is a ", (*this)[index]->name(), ", not the requested type");
    return m;
  }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace kiln::nn
