// Image transforms with torchvision's names and semantics, applied to one image [C, H, W] or to a
// whole batch [B, C, H, W] (the form a GPU can run later). Random transforms draw from the
// generator of each sample, so an augmented epoch depends only on the seed, never on threads.
//   auto t = kiln::data::transforms::Compose{RandomHorizontalFlip(), RandomCrop(32, 4), ToTensor(),
//                                            Normalize({0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616})};
//   Tensor x = t(image_u8_chw, gen);   // float [3, 32, 32]
#pragma once

#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "core/tensor.h"

namespace kiln::data {

class Transform {
 public:
  virtual ~Transform() = default;
  // A batch [B, C, H, W]; gens[b] is the random stream of sample b (size B; unused when the
  // transform is deterministic). Never modifies `batch`.
  virtual Tensor apply_batch(const Tensor& batch, std::span<Generator> gens) const = 0;
  // One image [C, H, W]: the batch path with B = 1, so both give identical results.
  virtual Tensor operator()(const Tensor& image, Generator& gen) const;
  // One image, random draws seeded from kiln's default generator (kiln::manual_seed fixes them).
  Tensor operator()(const Tensor& image) const;
};
using TransformPtr = std::shared_ptr<const Transform>;

namespace transforms {

// Runs transforms one after the other.
class Compose : public Transform {
 public:
  explicit Compose(std::vector<TransformPtr> transforms);
  template <class... T>
  requires(sizeof...(T) > 0 && (std::is_base_of_v<Transform, T> && ...)) explicit Compose(T... ts)
      : Compose(std::vector<TransformPtr>{std::make_shared<T>(std::move(ts))...}) {}
  Tensor apply_batch(const Tensor& batch, std::span<Generator> gens) const override;
  Tensor operator()(const Tensor& image, Generator& gen) const override;
  using Transform::operator();
  const std::vector<TransformPtr>& transforms() const { return transforms_; }

 private:
  std::vector<TransformPtr> transforms_;
};

enum class Layout { CHW, HWC };

// uint8 -> float32 in [0, 1], channel-first. Single images may be [C, H, W], [H, W, C] (with
// Layout::HWC, torchvision's input layout) or [H, W] (one channel); batches [B, C, H, W] or
// [B, H, W, C].
class ToTensor : public Transform {
 public:
  explicit ToTensor(Layout from = Layout::CHW) : from_(from) {}
  Tensor apply_batch(const Tensor& batch, std::span<Generator> gens) const override;
  Tensor operator()(const Tensor& image, Generator& gen) const override;
  using Transform::operator();
  Layout layout() const { return from_; }

 private:
  Layout from_;
};

// (x - mean[c]) / std[c] per channel of a float image; one value applies to every channel.
class Normalize : public Transform {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std);
  Tensor apply_batch(const Tensor& batch, std::span<Generator> gens) const override;
  const std::vector<float>& mean() const { return mean_; }
  const std::vector<float>& std() const { return std_; }

 private:
  std::vector<float> mean_, std_;
};

// Border widths as in torchvision: {all}, {left/right, top/bottom} or {left, top, right, bottom}.
struct Padding {
  int64_t left = 0, top = 0, right = 0, bottom = 0;
  Padding() = default;
  Padding(int64_t all) : left(all), top(all), right(all), bottom(all) {}  // NOLINT: implicit like torchvision's int
  Padding(std::initializer_list<int64_t> values);
};

// Constant padding with `fill` (in the image's own units: 0 is black for uint8 and float alike).
class Pad : public Transform {
 public:
  explicit Pad(Padding padding, double fill = 0.0);
  Tensor apply_batch(const Tensor& batch, std::span<Generator> gens) const override;

 private:
  Padding padding_;
  double fill_;
};

// Pads by `padding` (constant `fill`), then takes a size[0] x size[1] window at a random place
// (top drawn first, then left, uniformly, as torchvision does).
class RandomCrop : public Transform {
 public:
  RandomCrop(int64_t size, Padding padding = {}, double fill = 0.0) : RandomCrop({size, size}, padding, fill) {}
  RandomCrop(std::pair<int64_t, int64_t> size, Padding padding = {}, double fill = 0.0);
  Tensor apply_batch(const Tensor& batch, std::span<Generator> gens) const override;

 private:
  int64_t height_, width_;
  Padding padding_;
  double fill_;
};

// Mirrors left-right with probability p (one draw per sample).
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Tensor apply_batch(const Tensor& batch, std::span<Generator> gens) const override;

 private:
  double p_;
};

}  // namespace transforms
}  // namespace kiln::data
