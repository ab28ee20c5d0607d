// Transforms work on contiguous uint8 or float32 batches with plain loops over rows: no per-pixel
// virtual calls and one allocation per batch, which keeps the loader far ahead of training.
#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/ops.h"

namespace kiln::data {
namespace {

// A contiguous CPU batch of uint8 or float32, after checking what every image transform needs.
Tensor image_batch(const Tensor& batch, const char* name) {
  KILN_CHECK(batch.defined(), name, ": got an undefined tensor");
  KILN_CHECK(batch.dim() == 4, name, ": expected a batch [B, C, H, W], got shape ", batch.sizes(),
             " (single images go through operator() instead)");
  KILN_CHECK(batch.dtype() == DType::u8 || batch.dtype() == DType::f32, name,
             ": expected uint8 or float32 images, got ", batch.dtype());
  KILN_CHECK(!batch.is_cuda(), name, ": CUDA batches are not supported yet; transform on the CPU");
  return batch.contiguous();
}

void check_gens(std::span<Generator> gens, int64_t batch, const char* name) {
  KILN_CHECK(int64_t(gens.size()) == batch, name, ": needs one generator per sample, got ", gens.size(),
             " for a batch of ", batch);
}

// Calls f(T*) with the batch's element type.
template <class F>
auto visit(const Tensor& t, F&& f) {
  if (t.dtype() == DType::u8) return f(t.data_ptr<uint8_t>());
  return f(t.data_ptr<float>());
}

template <class T>
T fill_value(double fill, const char* name) {
  if constexpr (std::is_same_v<T, uint8_t>) {
    KILN_CHECK(fill >= 0 && fill <= 255 && fill == std::floor(fill), name, ": fill ", fill,
               " is not a uint8 pixel value (0..255); use a float image or an integer fill");
    return uint8_t(fill);
  } else {
    return T(fill);
  }
}

// Copies the window of `src` ([C, H, W] planes) whose top-left corner in padded coordinates is
// (top, left), writing `fill` where the window leaves the image. This is Pad and RandomCrop in
// one pass, without materialising the padded image.
template <class T>
void crop_planes(const T* src, T* dst, int64_t channels, int64_t h, int64_t w, int64_t out_h, int64_t out_w,
                 int64_t top, int64_t left, T fill) {
  const int64_t x0 = std::clamp<int64_t>(-left, 0, out_w);      // first column inside the image
  const int64_t x1 = std::clamp<int64_t>(w - left, x0, out_w);  // one past the last
  for (int64_t c = 0; c < channels; ++c) {
    const T* plane = src + c * h * w;
    for (int64_t y = 0; y < out_h; ++y, dst += out_w) {
      int64_t sy = top + y;
      if (sy < 0 || sy >= h) {
        std::fill(dst, dst + out_w, fill);
        continue;
      }
      std::fill(dst, dst + x0, fill);
      std::memcpy(dst + x0, plane + sy * w + left + x0, size_t(x1 - x0) * sizeof(T));
      std::fill(dst + x1, dst + out_w, fill);
    }
  }
}

}  // namespace

Tensor Transform::operator()(const Tensor& image, Generator& gen) const {
  KILN_CHECK(image.defined() && image.dim() == 3, "transform: expected one image [C, H, W], got ",
             image.defined() ? image.sizes() : Shape{}, " (batches go through apply_batch)");
  return apply_batch(image.unsqueeze(0), std::span<Generator>(&gen, 1)).squeeze(0);
}

Tensor Transform::operator()(const Tensor& image) const {
  auto seed = kiln::randint(0, std::numeric_limits<int64_t>::max(), {1}).to_vector<int64_t>()[0];
  Generator gen{static_cast<uint64_t>(seed)};
  return (*this)(image, gen);
}

namespace transforms {

Compose::Compose(std::vector<TransformPtr> transforms) : transforms_(std::move(transforms)) {
  for (size_t i = 0; i < transforms_.size(); ++i)
    KILN_CHECK(transforms_[i] != nullptr, "Compose: transform ", i, " is null");
}

// ToTensor then Normalize in one pass through a per-channel table of the 256 results, computed
// with the same float operations as the two separate steps, so the output is bit for bit equal.
static Tensor to_normalized(const Tensor& batch, const Normalize& norm) {
  Tensor src = image_batch(batch, "ToTensor");
  KILN_CHECK(src.dtype() == DType::u8, "ToTensor: expected uint8 images, got ", src.dtype(),
             "; the images are already float, so drop ToTensor from the pipeline");
  const int64_t b = src.size(0), c = src.size(1), plane = src.size(2) * src.size(3);
  const auto& mean = norm.mean();
  const auto& stdev = norm.std();
  KILN_CHECK(mean.size() == 1 || int64_t(mean.size()) == c, "Normalize: ", mean.size(),
             " mean/std values for images with ", c, " channels");
  std::vector<float> table(size_t(c) * 256);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int v = 0; v < 256; ++v) {
      const size_t k = mean.size() == 1 ? 0 : size_t(ch);
      table[size_t(ch) * 256 + size_t(v)] = (float(v) / 255.0f - mean[k]) / stdev[k];
    }
  Tensor out = empty({b, c, src.size(2), src.size(3)});
  const uint8_t* in = src.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  for (int64_t n = 0; n < b; ++n)
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* t = table.data() + ch * 256;
      const int64_t base = (n * c + ch) * plane;
      for (int64_t p = 0; p < plane; ++p) o[base + p] = t[in[base + p]];
    }
  return out;
}

Tensor Compose::apply_batch(const Tensor& batch, std::span<Generator> gens) const {
  Tensor x = batch;
  for (size_t i = 0; i < transforms_.size(); ++i) {
    auto* to_tensor = dynamic_cast<const ToTensor*>(transforms_[i].get());
    auto* norm = i + 1 < transforms_.size() ? dynamic_cast<const Normalize*>(transforms_[i + 1].get()) : nullptr;
    if (to_tensor && norm && to_tensor->layout() == Layout::CHW && x.dim() == 4) {
      x = to_normalized(x, *norm);
      ++i;
    } else {
      x = transforms_[i]->apply_batch(x, gens);
    }
  }
  return x;
}

Tensor Compose::operator()(const Tensor& image, Generator& gen) const {
  Tensor x = image;
  for (const auto& t : transforms_) x = (*t)(x, gen);
  return x;
}

Tensor ToTensor::apply_batch(const Tensor& batch, std::span<Generator>) const {
  Tensor src = image_batch(batch, "ToTensor");
  KILN_CHECK(src.dtype() == DType::u8, "ToTensor: expected uint8 images, got ", src.dtype(),
             "; the images are already float, so drop ToTensor from the pipeline");
  const int64_t b = src.size(0);
  const int64_t c = from_ == Layout::CHW ? src.size(1) : src.size(3);
  const int64_t h = from_ == Layout::CHW ? src.size(2) : src.size(1);
  const int64_t w = from_ == Layout::CHW ? src.size(3) : src.size(2);
  Tensor out = empty({b, c, h, w});
  const uint8_t* in = src.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  // Divided, not multiplied by 1/255: the same floats as torchvision's ToTensor.
  constexpr float scale = 255.0f;
  if (from_ == Layout::CHW) {
    for (int64_t i = 0, n = src.numel(); i < n; ++i) o[i] = float(in[i]) / scale;
  } else {
    for (int64_t n = 0; n < b; ++n)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t p = 0; p < h * w; ++p) o[(n * c + ch) * h * w + p] = float(in[(n * h * w + p) * c + ch]) / scale;
  }
  return out;
}

Tensor ToTensor::operator()(const Tensor& image, Generator& gen) const {
  KILN_CHECK(image.defined() && (image.dim() == 2 || image.dim() == 3),
             "ToTensor: expected an image [C, H, W], [H, W, C] or [H, W], got ",
             image.defined() ? image.sizes() : Shape{});
  if (image.dim() == 2) return apply_batch(image.unsqueeze(0).unsqueeze(0), std::span<Generator>(&gen, 1)).squeeze(0);
  return apply_batch(image.unsqueeze(0), std::span<Generator>(&gen, 1)).squeeze(0);
}

Normalize::Normalize(std::vector<double> mean, std::vector<double> std) {
  KILN_CHECK(!mean.empty() && mean.size() == std.size(),
             "Normalize: mean and std need the same, "
             "non-zero number of values, got ",
             mean.size(), " and ", std.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    KILN_CHECK(std[i] > 0 && std::isfinite(std[i]) && std::isfinite(mean[i]), "Normalize: std[", i, "] = ", std[i],
               " (mean ", mean[i], "); every std must be positive and finite");
    mean_.push_back(float(mean[i]));
    std_.push_back(float(std[i]));  // divided, not multiplied by 1/std: matches torchvision bit for bit
  }
}

Tensor Normalize::apply_batch(const Tensor& batch, std::span<Generator>) const {
  Tensor src = image_batch(batch, "Normalize");
  KILN_CHECK(src.dtype() == DType::f32, "Normalize: expected float images, got ", src.dtype(),
             "; put ToTensor before Normalize");
  const int64_t b = src.size(0), c = src.size(1), plane = src.size(2) * src.size(3);
  KILN_CHECK(mean_.size() == 1 || int64_t(mean_.size()) == c, "Normalize: ", mean_.size(),
             " mean/std values for images with ", c, " channels");
  Tensor out = empty(src.sizes());
  const float* in = src.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t n = 0; n < b; ++n)
    for (int64_t ch = 0; ch < c; ++ch) {
      const float m = mean_[mean_.size() == 1 ? 0 : ch], s = std_[mean_.size() == 1 ? 0 : ch];
      const int64_t base = (n * c + ch) * plane;
      for (int64_t p = 0; p < plane; ++p) o[base + p] = (in[base + p] - m) / s;
    }
  return out;
}

Padding::Padding(std::initializer_list<int64_t> v) {
  auto p = v.begin();
  if (v.size() == 1)
    *this = Padding(p[0]);
  else if (v.size() == 2)
    left = right = p[0], top = bottom = p[1];
  else if (v.size() == 4)
    left = p[0], top = p[1], right = p[2], bottom = p[3];
  else
    fail("Padding: expected 1, 2 or 4 values (all; left/right, top/bottom; left, top, right, bottom), got ", v.size());
  KILN_CHECK(left >= 0 && top >= 0 && right >= 0 && bottom >= 0, "Padding: negative border (left ", left, ", top ", top,
             ", right ", right, ", bottom ", bottom, "); borders must be >= 0");
}

Pad::Pad(Padding padding, double fill) : padding_(padding), fill_(fill) {
  KILN_CHECK(padding.left >= 0 && padding.top >= 0 && padding.right >= 0 && padding.bottom >= 0,
             "Pad: borders must be >= 0");
}

Tensor Pad::apply_batch(const Tensor& batch, std::span<Generator>) const {
  Tensor src = image_batch(batch, "Pad");
  const int64_t b = src.size(0), c = src.size(1), h = src.size(2), w = src.size(3);
  const int64_t oh = h + padding_.top + padding_.bottom, ow = w + padding_.left + padding_.right;
  Tensor out = empty({b, c, oh, ow}, {.dtype = src.dtype()});
  visit(src, [&](auto* in) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    T fill = fill_value<T>(fill_, "Pad");
    T* o = out.data_ptr<T>();
    for (int64_t n = 0; n < b; ++n)
      crop_planes(in + n * c * h * w, o + n * c * oh * ow, c, h, w, oh, ow, -padding_.top, -padding_.left, fill);
  });
  return out;
}

RandomCrop::RandomCrop(std::pair<int64_t, int64_t> size, Padding padding, double fill)
    : height_(size.first), width_(size.second), padding_(padding), fill_(fill) {
  KILN_CHECK(height_ > 0 && width_ > 0, "RandomCrop: size must be positive, got ", height_, "x", width_);
}

Tensor RandomCrop::apply_batch(const Tensor& batch, std::span<Generator> gens) const {
  Tensor src = image_batch(batch, "RandomCrop");
  const int64_t b = src.size(0), c = src.size(1), h = src.size(2), w = src.size(3);
  check_gens(gens, b, "RandomCrop");
  const int64_t ph = h + padding_.top + padding_.bottom, pw = w + padding_.left + padding_.right;
  KILN_CHECK(ph >= height_ && pw >= width_, "RandomCrop: crop ", height_, "x", width_,
             " is larger than the padded image ", ph, "x", pw, "; increase padding or crop less");
  Tensor out = empty({b, c, height_, width_}, {.dtype = src.dtype()});
  visit(src, [&](auto* in) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    T fill = fill_value<T>(fill_, "RandomCrop");
    T* o = out.data_ptr<T>();
    for (int64_t n = 0; n < b; ++n) {
      // torchvision draws nothing when the window covers the whole padded image.
      int64_t top = 0, left = 0;
      if (ph != height_ || pw != width_) {
        top = gens[n].randint(0, ph - height_ + 1);
        left = gens[n].randint(0, pw - width_ + 1);
      }
      crop_planes(in + n * c * h * w, o + n * c * height_ * width_, c, h, w, height_, width_, top - padding_.top,
                  left - padding_.left, fill);
    }
  });
  return out;
}

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  KILN_CHECK(p >= 0 && p <= 1, "RandomHorizontalFlip: p must be in [0, 1], got ", p);
}

Tensor RandomHorizontalFlip::apply_batch(const Tensor& batch, std::span<Generator> gens) const {
  Tensor src = image_batch(batch, "RandomHorizontalFlip");
  const int64_t b = src.size(0), c = src.size(1), h = src.size(2), w = src.size(3);
  check_gens(gens, b, "RandomHorizontalFlip");
  Tensor out = empty(src.sizes(), {.dtype = src.dtype()});
  visit(src, [&](auto* in) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    T* o = out.data_ptr<T>();
    const int64_t image = c * h * w;
    for (int64_t n = 0; n < b; ++n) {
      const T* s = in + n * image;
      T* d = o + n * image;
      if (gens[n].next_double() < p_) {
        for (int64_t row = 0; row < c * h; ++row) std::reverse_copy(s + row * w, s + (row + 1) * w, d + row * w);
      } else {
        std::memcpy(d, s, size_t(image) * sizeof(T));
      }
    }
  });
  return out;
}

}  // namespace transforms
}  // namespace kiln::data
