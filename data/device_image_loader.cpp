// DeviceImageLoader: the epoch's order on the host (a Fisher-Yates shuffle from the seed and epoch,
// split between ranks like DistributedSampler), uploaded once per epoch; batches built on the
// device by Backend::augment_images.
#include "data/device_image_loader.h"

#include <algorithm>
#include <numeric>

#include "core/dispatch.h"
#include "core/ops.h"

namespace kiln::data {

DeviceImageLoader::DeviceImageLoader(const VisionDataset& dataset, Device device, DeviceImageLoaderOptions options)
    : DeviceImageLoader(dataset.images(), dataset.labels(), device, std::move(options)) {}

DeviceImageLoader::DeviceImageLoader(const Tensor& images, const Tensor& labels, Device device,
                                     DeviceImageLoaderOptions o)
    : device_(device), options_(std::move(o)) {
  const char* op = "DeviceImageLoader";
  KILN_CHECK(images.defined() && images.dim() == 4 && images.dtype() == DType::u8, op,
             ": expected uint8 images [N, C, H, W], got ",
             images.defined() ? dtype_name(images.dtype()) : "an undefined tensor", " ",
             images.defined() ? shape_str(images.sizes()) : "");
  KILN_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == images.size(0), op,
             ": expected one label per image (", images.size(0), "), got ",
             labels.defined() ? shape_str(labels.sizes()) : "none");
  KILN_CHECK(options_.batch_size > 0, op, ": batch_size must be positive, got ", options_.batch_size);
  KILN_CHECK(options_.world_size > 0 && options_.rank >= 0 && options_.rank < options_.world_size, op, ": rank ",
             options_.rank, " is not in a world of ", options_.world_size);
  const int64_t c = images.size(1);
  KILN_CHECK(c <= kernels::kAugmentMaxChannels, op, ": images with ", c, " channels; at most ",
             kernels::kAugmentMaxChannels, " are supported");
  auto& a = options_.augment;
  KILN_CHECK(a.pad >= 0 && a.crop_padding >= 0, op, ": pad and crop_padding must not be negative");
  const int64_t padded = std::min(images.size(2), images.size(3)) + 2 * a.pad;
  if (a.size == 0) a.size = padded;
  KILN_CHECK(a.size > 0 && a.size <= padded + 2 * a.crop_padding, op, ": crop size ", a.size,
             " does not fit the padded ", padded, " + 2 x ", a.crop_padding, " image");
  for (auto* v : {&a.mean, &a.std}) {
    if (v->empty()) v->assign(size_t(c), v == &a.mean ? 0.0 : 1.0);
    if (v->size() == 1) v->assign(size_t(c), v->front());
    KILN_CHECK(int64_t(v->size()) == c, op, ": Normalize needs one mean and std per channel (", c, "), got ",
               v->size());
  }
  for (double s : a.std) KILN_CHECK(s > 0, op, ": Normalize's std must be positive, got ", s);
  images_ = images.to(device).contiguous();
  labels_ = labels.to(device, DType::i64).contiguous();
  const int64_t n = images.size(0), w = options_.world_size;
  per_rank_ = (n + w - 1) / w;  // DistributedSampler pads by repeating the order's start
}

int64_t DeviceImageLoader::size() const {
  const int64_t b = options_.batch_size;
  return options_.drop_last ? per_rank_ / b : (per_rank_ + b - 1) / b;
}

void DeviceImageLoader::upload_order() {
  if (order_epoch_ == epoch_ && order_.defined()) return;
  const int64_t n = images_.size(0), w = options_.world_size;
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), int64_t(0));
  if (options_.shuffle) {
    Generator g(options_.seed ^ (0x9E3779B97F4A7C15ull * uint64_t(epoch_ + 1)));
    for (int64_t i = n - 1; i > 0; --i) std::swap(all[size_t(i)], all[size_t(g.randint(0, i + 1))]);
  }
  std::vector<int64_t> mine;
  mine.reserve(size_t(per_rank_));
  for (int64_t k = 0; k < per_rank_; ++k) mine.push_back(all[size_t((options_.rank + k * w) % n)]);
  order_ = tensor(mine, {per_rank_}, {.dtype = DType::i64}).to(device_);
  order_epoch_ = epoch_;
}

DeviceImageLoader::Iterator DeviceImageLoader::begin() {
  upload_order();
  return Iterator(this, 0);
}

Batch DeviceImageLoader::batch(int64_t i) {
  KILN_CHECK(i >= 0 && i < size(), "DeviceImageLoader: batch ", i, " of an epoch of ", size());
  upload_order();
  const auto& a = options_.augment;
  const int64_t start = i * options_.batch_size, count = std::min(options_.batch_size, per_rank_ - start);
  kernels::AugmentParams p;
  p.batch = count;
  p.channels = images_.size(1);
  p.h_in = images_.size(2);
  p.w_in = images_.size(3);
  p.h_out = p.w_out = a.size;
  p.pad = a.pad;
  p.crop_padding = a.crop_padding;
  p.random_flip = a.random_flip;
  p.random_crop = a.random_crop;
  for (int64_t ch = 0; ch < p.channels; ++ch) {
    p.scale[ch] = float(1.0 / (255.0 * a.std[size_t(ch)]));
    p.shift[ch] = float(-a.mean[size_t(ch)] / a.std[size_t(ch)]);
  }
  // Every entry of the epoch has its own Philox counter: its position in the rank's order.
  p.seed = options_.seed ^ (0xD1B54A32D192ED03ull * uint64_t(epoch_ + 1)) ^ uint64_t(options_.rank);
  p.offset = uint64_t(start);
  Tensor x = detail::make_empty({count, p.channels, a.size, a.size}, DType::f32, device_);
  Tensor y = detail::make_empty({count}, DType::i64, device_);
  Tensor idx = order_.narrow(0, start, count);
  detail::backend(device_).augment_images(p, detail::view_of(x), detail::view_of(y), detail::view_of(images_),
                                          detail::view_of(labels_), detail::view_of(idx));
  return {x, y};
}

}  // namespace kiln::data
