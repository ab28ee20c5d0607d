// DeviceImageLoader on the CPU backend (the GPU builds the same batches bit for bit, tests/gpu):
// without augmentation a batch equals the torchvision-style transforms' (Pad, ToTensor,
// Normalize); a flip gives the mirror image, a crop a shifted image with zero fill inside the
// padding's range; the order is a permutation per epoch, reproducible from the seed, split
// between ranks like DistributedSampler; bad options are clear errors.
#include <cmath>
#include <set>

#include "data/data.h"
#include "helpers.h"

using namespace kiln;
namespace T = kiln::data::transforms;

namespace {

// 12 random uint8 images [12, 1, 6, 6] with labels 0..11.
data::VisionDataset small_dataset() {
  manual_seed(5);
  Tensor images = randint(0, 256, {12, 1, 6, 6}).to(DType::u8);
  std::vector<int64_t> labels(12);
  for (int64_t i = 0; i < 12; ++i) labels[size_t(i)] = i;
  return data::VisionDataset(images, tensor(labels, {12}, {.dtype = DType::i64}));
}

// Image `k` as ToTensor + Normalize(0.5, 0.25) gives it, zero-padded by `pad` (before normalising).
Tensor reference(const data::VisionDataset& ds, int64_t k, int64_t pad) {
  T::Compose tf(T::Pad(pad), T::ToTensor(), T::Normalize({0.5}, {0.25}));
  return tf(ds.images()[k]);
}

}  // namespace

TEST_CASE("DeviceImageLoader without augmentation equals Pad + ToTensor + Normalize, in order") {
  auto ds = small_dataset();
  data::DeviceImageLoader loader(ds, Device::cpu(),
                                 {.batch_size = 5, .augment = {.pad = 2, .mean = {0.5}, .std = {0.25}}});
  CHECK(loader.size() == 3);  // 5 + 5 + 2
  int64_t k = 0;
  for (auto& [x, y] : loader) {
    CHECK(x.dtype() == DType::f32);
    CHECK(x.size(2) == 10);
    CHECK(x.size(3) == 10);
    for (int64_t b = 0; b < x.size(0); ++b, ++k) {
      CHECK(y[b].item<int64_t>() == k);
      kiln::test::check_close(x[b], reference(ds, k, 2), 1e-5, 1e-5);  // one fma vs two roundings
    }
  }
  CHECK(k == 12);
}

TEST_CASE("DeviceImageLoader's flips are mirror images and its crops shifted windows with zero fill") {
  // Square 8x8 images, mean 0 and std 1: outputs are the pixels / 255.
  manual_seed(6);
  Tensor images = randint(0, 256, {64, 1, 8, 8}).to(DType::u8);
  Tensor labels = zeros({64}, {.dtype = DType::i64});
  const auto px = images.to(DType::f32).to_vector<float>();
  // Pixel (y, x) of image b seen through a flip and a window at (dy, dx) of the image padded by p.
  auto expect = [&](int64_t b, bool flip, int64_t p, int64_t dy, int64_t dx, int64_t y, int64_t x) {
    int64_t r = y + dy - p, c = x + dx - p;
    if (flip) c = 7 - c;
    return r < 0 || r > 7 || c < 0 || c > 7 ? 0.0f : px[size_t(b * 64 + r * 8 + c)] / 255.0f;
  };
  auto matches = [&](const std::vector<float>& got, int64_t b, bool flip, int64_t p, int64_t dy, int64_t dx) {
    for (int64_t y = 0; y < 8; ++y)
      for (int64_t x = 0; x < 8; ++x)
        if (std::abs(got[size_t(b * 64 + y * 8 + x)] - expect(b, flip, p, dy, dx, y, x)) > 1e-6f) return false;
    return true;
  };
  data::DeviceImageLoader flips(images, labels, Device::cpu(),
                                {.batch_size = 64, .augment = {.random_flip = true, .mean = {0.0}, .std = {1.0}}});
  const auto f = flips.batch(0).data.to_vector<float>();
  int flipped = 0;
  for (int64_t b = 0; b < 64; ++b) {
    const bool same = matches(f, b, false, 0, 0, 0), mirrored = matches(f, b, true, 0, 0, 0);
    CHECK((same || mirrored));
    flipped += mirrored && !same;
  }
  CHECK(flipped > 16);
  CHECK(flipped < 48);

  data::DeviceImageLoader crops(
      images, labels, Device::cpu(),
      {.batch_size = 64, .augment = {.crop_padding = 2, .random_crop = true, .mean = {0.0}, .std = {1.0}}});
  const auto c = crops.batch(0).data.to_vector<float>();
  std::set<std::pair<int64_t, int64_t>> shifts;
  for (int64_t b = 0; b < 64; ++b) {
    bool found = false;
    for (int64_t dy = 0; dy <= 4 && !found; ++dy)
      for (int64_t dx = 0; dx <= 4 && !found; ++dx)
        if (matches(c, b, false, 2, dy, dx)) {
          found = true;
          shifts.insert({dy, dx});
        }
    CHECK_MESSAGE(found, "entry " << b << " is no window of the padded image");
  }
  CHECK(shifts.size() > 8);  // the corners vary
}

TEST_CASE("DeviceImageLoader shuffles per epoch, reproducibly, and splits between ranks") {
  auto ds = small_dataset();
  auto order = [&](uint64_t seed, int64_t epoch, int64_t rank, int64_t world) {
    data::DeviceImageLoader l(ds, Device::cpu(),
                              {.batch_size = 4, .shuffle = true, .seed = seed, .rank = rank, .world_size = world});
    l.set_epoch(epoch);
    std::vector<int64_t> out;
    for (auto& [x, y] : l)
      for (int64_t v : y.to_vector<int64_t>()) out.push_back(v);
    return out;
  };
  auto e0 = order(1, 0, 0, 1), e0b = order(1, 0, 0, 1), e1 = order(1, 1, 0, 1);
  CHECK(e0 == e0b);
  CHECK(e0 != e1);
  CHECK(std::set<int64_t>(e0.begin(), e0.end()).size() == 12);  // a permutation
  // Two ranks: 6 each, together every image once.
  auto r0 = order(1, 3, 0, 2), r1 = order(1, 3, 1, 2);
  CHECK(r0.size() == 6);
  CHECK(r1.size() == 6);
  std::set<int64_t> both(r0.begin(), r0.end());
  both.insert(r1.begin(), r1.end());
  CHECK(both.size() == 12);
  // Five ranks: 3 each (12 padded to 15 by repeating the order's start), as DistributedSampler.
  CHECK(order(1, 0, 4, 5).size() == 3);
}

TEST_CASE("DeviceImageLoader refuses bad options with clear errors") {
  auto ds = small_dataset();
  CHECK_THROWS_WITH_AS(data::DeviceImageLoader(ds, Device::cpu(), {.batch_size = 0}),
                       doctest::Contains("batch_size must be positive"), Error);
  CHECK_THROWS_WITH_AS(data::DeviceImageLoader(ds, Device::cpu(), {.batch_size = 1, .augment = {.size = 40}}),
                       doctest::Contains("does not fit"), Error);
  CHECK_THROWS_WITH_AS(data::DeviceImageLoader(ds, Device::cpu(), {.batch_size = 1, .augment = {.mean = {0.1, 0.2}}}),
                       doctest::Contains("one mean and std per channel"), Error);
  CHECK_THROWS_WITH_AS(data::DeviceImageLoader(ds, Device::cpu(), {.batch_size = 1, .rank = 2, .world_size = 2}),
                       doctest::Contains("rank 2 is not in a world of 2"), Error);
  CHECK_THROWS_WITH_AS(
      data::DeviceImageLoader(ds.images().to(DType::f32), ds.labels(), Device::cpu(), {.batch_size = 1}),
      doctest::Contains("expected uint8 images"), Error);
}
