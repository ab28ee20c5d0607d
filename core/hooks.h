// Hook lists for modules and optimizers: hooks run in registration order, and each registration
// returns a HookHandle whose remove() takes that hook out again (PyTorch's RemovableHandle).
//   auto h = module->register_forward_hook(fn);
//   h.remove();   // fn no longer runs; dropping the handle instead keeps it registered
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace kiln {

class HookHandle {
 public:
  HookHandle() = default;
  explicit HookHandle(std::function<void()> remove) : remove_(std::move(remove)) {}
  // Unregisters the hook; a second call, or one after its owner is gone, does nothing.
  void remove() {
    if (!remove_) return;
    auto f = std::move(remove_);
    remove_ = nullptr;
    f();
  }

 private:
  std::function<void()> remove_;
};

namespace detail {

// Hooks of type F in registration order. Held through a shared_ptr so that a handle outliving
// the owner removes nothing.
template <class F>
class HookList : public std::enable_shared_from_this<HookList<F>> {
 public:
  HookHandle add(F f) {
    const uint64_t id = next_id_++;
    hooks_.emplace_back(id, std::move(f));
    std::weak_ptr<HookList> self = this->shared_from_this();
    return HookHandle([self, id] {
      if (auto list = self.lock()) std::erase_if(list->hooks_, [id](const auto& h) { return h.first == id; });
    });
  }
  bool empty() const { return hooks_.empty(); }
  size_t size() const { return hooks_.size(); }
  // A copy, so that a hook may add or remove hooks while the list runs.
  std::vector<F> snapshot() const {
    std::vector<F> out;
    out.reserve(hooks_.size());
    for (const auto& [id, f] : hooks_) out.push_back(f);
    return out;
  }

 private:
  uint64_t next_id_ = 0;
  std::vector<std::pair<uint64_t, F>> hooks_;
};

}  // namespace detail
}  // namespace kiln
