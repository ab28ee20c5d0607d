// kiln::nn::OrderedDict: string-keyed values that remember insertion order, the container behind
// named_parameters(), state_dict() and friends (PyTorch's ordering of names matters there).
//   nn::OrderedDict<Tensor> sd = model->state_dict();
//   for (auto& [name, t] : sd) std::cout << name << " " << t.sizes() << "\n";
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/error.h"

namespace kiln::nn {

template <class V>
class OrderedDict {
 public:
  using Item = std::pair<std::string, V>;

  OrderedDict() = default;
  OrderedDict(std::initializer_list<Item> items) {
    for (const auto& item : items) insert(item.first, item.second);
  }

  // Adds a new key at the end; a key that exists already is an error.
  V& insert(std::string key, V value) {
    KILN_CHECK(!index_.count(key), "OrderedDict: key '", key, "' already exists");
    index_.emplace(key, items_.size());
    items_.emplace_back(std::move(key), std::move(value));
    return items_.back().second;
  }
  // Adds the key or replaces its value in place (keeping its position).
  V& insert_or_assign(const std::string& key, V value) {
    if (auto it = index_.find(key); it != index_.end()) return items_[it->second].second = std::move(value);
    return insert(key, std::move(value));
  }

  bool contains(const std::string& key) const { return index_.count(key) != 0; }
  const V* find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  V* find(const std::string& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  const V& at(const std::string& key) const {
    const V* v = find(key);
    KILN_CHECK(v, "OrderedDict: no key '", key, "'");
    return *v;
  }
  V& at(const std::string& key) {
    V* v = find(key);
    KILN_CHECK(v, "OrderedDict: no key '", key, "'");
    return *v;
  }
  const V& operator[](const std::string& key) const { return at(key); }
  V& operator[](const std::string& key) { return at(key); }

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::vector<std::string> keys() const {
    std::vector<std::string> k;
    for (const auto& item : items_) k.push_back(item.first);
    return k;
  }
  std::vector<V> values() const {
    std::vector<V> v;
    for (const auto& item : items_) v.push_back(item.second);
    return v;
  }
  const std::vector<Item>& items() const { return items_; }

  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace kiln::nn
