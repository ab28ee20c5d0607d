// ModuleList and ModuleDict: registration under positions or keys, with errors that name the
// container and the bad index or key.
#include "nn/containers.h"

namespace kiln::nn {

ModuleList::ModuleList(std::initializer_list<std::shared_ptr<Module>> modules) {
  for (const auto& m : modules) push_back(m);
}

ModuleList& ModuleList::push_back(std::shared_ptr<Module> module) {
  modules_.push_back(register_module(std::to_string(modules_.size()), std::move(module)));
  return *this;
}

ModuleList& ModuleList::extend(const std::vector<std::shared_ptr<Module>>& modules) {
  for (const auto& m : modules) push_back(m);
  return *this;
}

std::shared_ptr<Module> ModuleList::operator[](int64_t index) const {
  const int64_t n = int64_t(modules_.size());
  KILN_CHECK(index >= -n && index < n, "ModuleList: index ", index, " is out of range for a list of ", n, " modules");
  return modules_[size_t(index < 0 ? index + n : index)];
}

ModuleDict::ModuleDict(std::initializer_list<std::pair<std::string, std::shared_ptr<Module>>> modules) {
  for (const auto& [k, m] : modules) insert(k, m);
}

ModuleDict& ModuleDict::insert(const std::string& key, std::shared_ptr<Module> module) {
  modules_.insert(key, register_module(key, std::move(module)));
  return *this;
}

std::shared_ptr<Module> ModuleDict::operator[](const std::string& key) const {
  const auto* m = modules_.find(key);
  KILN_CHECK(m, "ModuleDict: no module under key '", key, "'");
  return *m;
}

}  // namespace kiln::nn
