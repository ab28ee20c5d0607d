// DeviceDataLoader: what Fabric::setup_dataloaders returns. It iterates the wrapped DataLoader and
// hands out each batch moved to the Fabric's device and, where the precision asks, its float dtype
// (with move_to_device = false: as the loader made it).
//   auto loader = fabric.setup_dataloaders(std::make_shared<kiln::data::DataLoader>(ds, opts));
//   for (auto& [x, y] : *loader) { ... }   // x on fabric.device()
#pragma once

#include <memory>
#include <optional>

#include "data/dataloader.h"

namespace kiln {

class DeviceDataLoader {
 public:
  DeviceDataLoader(std::shared_ptr<data::DataLoader> loader, std::optional<Device> device, std::optional<DType> dtype)
      : loader_(std::move(loader)), device_(device), dtype_(dtype) {}

  class Iterator {
   public:
    data::Batch& operator*() { return current(); }
    data::Batch* operator->() { return &current(); }
    Iterator& operator++() {
      ++it_;
      cached_.reset();
      return *this;
    }
    bool operator==(std::default_sentinel_t s) const { return it_ == s; }

   private:
    friend class DeviceDataLoader;
    Iterator(data::DataLoader::Iterator it, const DeviceDataLoader* owner) : it_(std::move(it)), owner_(owner) {}
    data::Batch& current() {
      if (!cached_) cached_ = owner_->convert(*it_);
      return *cached_;
    }
    data::DataLoader::Iterator it_;
    const DeviceDataLoader* owner_;
    std::optional<data::Batch> cached_;
  };

  Iterator begin() { return Iterator(loader_->begin(), this); }
  std::default_sentinel_t end() const { return {}; }
  int64_t size() const { return loader_->size(); }
  void set_epoch(int64_t epoch) { loader_->set_epoch(epoch); }
  data::DataLoader& loader() { return *loader_; }

  // To a GPU the copies are non-blocking: from pinned batches (DataLoader pin_memory=true) they
  // are queued on the current stream, ahead of the kernels that read them, and the host goes on.
  data::Batch convert(const data::Batch& b) const {
    data::Batch out = b;
    if (!device_) return out;
    const Device device = *device_;
    const bool async = device.is_cuda();
    if (out.data.defined()) {
      if (out.data.device() != device) out.data = out.data.to(device, async);
      if (dtype_ && out.data.is_floating_point()) out.data = out.data.to(*dtype_);
    }
    if (out.target.defined() && out.target.device() != device) out.target = out.target.to(device, async);
    for (Tensor& t : out.rest)
      if (t.defined() && t.device() != device) t = t.to(device, async);
    return out;
  }

 private:
  std::shared_ptr<data::DataLoader> loader_;
  std::optional<Device> device_;
  std::optional<DType> dtype_;
};

}  // namespace kiln
