// kiln::nn::ModuleList and ModuleDict: submodules held in a list or under string keys, registered
// under their position ("0", "1", ...) or key, so parameter and state_dict names match PyTorch's.
// Neither has a forward: the owning module decides how to call them.
//   auto blocks = register_module("h", std::make_shared<kiln::nn::ModuleList>());
//   for (int i = 0; i < n_layer; ++i) blocks->push_back(std::make_shared<Block>(cfg));
//   for (auto& b : *blocks) x = b->forward(x);
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace kiln::nn {

class ModuleList : public Module {
 public:
  ModuleList() = default;
  ModuleList(std::initializer_list<std::shared_ptr<Module>> modules);

  ModuleList& push_back(std::shared_ptr<Module> module);  // PyTorch's append
  ModuleList& extend(const std::vector<std::shared_ptr<Module>>& modules);

  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // Negative indices count from the end, as in Python.
  std::shared_ptr<Module> operator[](int64_t index) const;
  template <class M>
  std::shared_ptr<M> at(int64_t index) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[index]);
    KILN_CHECK(m, "ModuleList::at: module ", index, " is a ", (*this)[index]->name(), ", not the requested type");
    return m;
  }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

class ModuleDict : public Module {
 public:
  ModuleDict() = default;
  ModuleDict(std::initializer_list<std::pair<std::string, std::shared_ptr<Module>>> modules);

  // Adds a module under a new key (an existing key is an error, as for register_module).
  ModuleDict& insert(const std::string& key, std::shared_ptr<Module> module);

  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  bool contains(const std::string& key) const { return modules_.contains(key); }
  std::shared_ptr<Module> operator[](const std::string& key) const;
  template <class M>
  std::shared_ptr<M> at(const std::string& key) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[key]);
    KILN_CHECK(m, "ModuleDict::at: module '", key, "' is a ", (*this)[key]->name(), ", not the requested type");
    return m;
  }
  std::vector<std::string> keys() const { return modules_.keys(); }
  std::vector<std::shared_ptr<Module>> values() const { return modules_.values(); }
  // (key, module) pairs in insertion order.
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

 private:
  OrderedDict<std::shared_ptr<Module>> modules_;
};

}  // namespace kiln::nn
