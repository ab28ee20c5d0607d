// A loader that runs the input pipeline of an in-memory image dataset on the training device. The
// uint8 images and labels are uploaded once; each epoch's order (shuffled, split between ranks as
// DistributedSampler splits it) is one small upload; each batch is gathered, augmented (zero pad,
// random horizontal flip, random crop with zero padding) and normalised by one kernel
// (kernels/augment.h). On a GPU the data path then costs one launch per batch, with no worker
// threads, no host copies and nothing that waits for the device. The random choices come from
// (seed, epoch, position in the epoch), so a run is reproducible, and the CPU builds the same
// batches bit for bit.
//   kiln::data::DeviceImageLoader train(dataset, kiln::Device::cuda(0),
//       {.batch_size = 128, .shuffle = true, .augment = {.crop_padding = 4, .random_flip = true,
//        .random_crop = true, .mean = {0.4914, 0.4822, 0.4465}, .std = {0.2470, 0.2435, 0.2616}}});
//   for (auto& [x, y] : train) { ... }   // x f32 [B, C, H, W], y i64 [B], both on the device
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"

namespace kiln::data {

struct ImageAugment {
  int64_t pad = 0;           // fixed zero border first (torchvision's Pad), e.g. 2 for 28 -> 32
  int64_t crop_padding = 0;  // RandomCrop(size, padding)
  bool random_flip = false;
  bool random_crop = false;
  int64_t size = 0;                         // output height and width; 0: the padded source's
  std::vector<double> mean = {}, std = {};  // Normalize, one value per channel (or one for all)
};

struct DeviceImageLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  bool drop_last = false;
  ImageAugment augment = {};
  uint64_t seed = 0;
  int64_t rank = 0, world_size = 1;  // each rank sees its own share, padded to equal length
};

class DeviceImageLoader {
 public:
  DeviceImageLoader(const VisionDataset& dataset, Device device, DeviceImageLoaderOptions options);
  // From images uint8 [N, C, H, W] and labels int64 [N] on any device.
  DeviceImageLoader(const Tensor& images, const Tensor& labels, Device device, DeviceImageLoaderOptions options);

  int64_t size() const;  // batches per epoch on this rank
  int64_t num_samples() const { return per_rank_; }
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  Device device() const { return device_; }
  const DeviceImageLoaderOptions& options() const { return options_; }

  // Batch `i` of the current epoch (0 <= i < size()).
  Batch batch(int64_t i);

  class Iterator {
   public:
    Iterator(DeviceImageLoader* loader, int64_t i) : loader_(loader), i_(i) {}
    Batch& operator*() {
      if (!current_.data.defined()) current_ = loader_->batch(i_);
      return current_;
    }
    Iterator& operator++() {
      ++i_;
      current_ = Batch{};
      return *this;
    }
    bool operator!=(const Iterator& other) const { return i_ != other.i_; }

   private:
    DeviceImageLoader* loader_;
    int64_t i_;
    Batch current_;
  };
  Iterator begin();  // uploads this epoch's order
  Iterator end() { return Iterator(this, size()); }

 private:
  void upload_order();

  Device device_;
  DeviceImageLoaderOptions options_;
  Tensor images_, labels_;  // on the device
  int64_t per_rank_ = 0;
  int64_t epoch_ = 0;
  int64_t order_epoch_ = -1;
  Tensor order_;  // i64 [per_rank_] on the device
};

}  // namespace kiln::data
