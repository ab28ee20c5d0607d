// Transforms: exact outputs on small hand-made images, batch path == single-image path.
#include "data/data.h"
#include "helpers.h"

using namespace kiln;
using namespace kiln::data;
using namespace kiln::data::transforms;

namespace {

// uint8 [C, H, W] with values 1, 2, 3, ... so every pixel is recognisable.
Tensor ramp(int64_t c, int64_t h, int64_t w) {
  std::vector<uint8_t> v(size_t(c * h * w));
  for (size_t i = 0; i < v.size(); ++i) v[i] = uint8_t(i + 1);
  return tensor(v, {c, h, w});
}

}  // namespace

TEST_CASE("ToTensor scales uint8 to [0, 1] and reorders HWC") {
  Generator g(1);
  Tensor x = tensor(std::vector<uint8_t>{0, 51, 255, 102}, {1, 2, 2});
  test::check_values(ToTensor()(x, g), {0.0, 0.2, 1.0, 0.4});
  // HWC [2, 1, 2]: pixel (0,0) = (1, 2), pixel (1,0) = (3, 4) -> CHW planes {1, 3}, {2, 4}.
  Tensor hwc = tensor(std::vector<uint8_t>{255, 0, 0, 255}, {2, 1, 2});
  Tensor chw = ToTensor(Layout::HWC)(hwc, g);
  CHECK(chw.sizes() == Shape{2, 2, 1});
  test::check_values(chw, {1, 0, 0, 1});
  CHECK(ToTensor()(tensor(std::vector<uint8_t>{0, 255}, {1, 2})).sizes() == Shape{1, 1, 2});
  CHECK_THROWS_WITH_AS(ToTensor()(ToTensor()(x, g), g), doctest::Contains("drop ToTensor"), Error);
}

TEST_CASE("Normalize per channel and with one value") {
  Generator g(1);
  Tensor x = tensor(std::vector<float>{0.5f, 1.0f, 0.0f, 0.25f}, {2, 1, 2});
  test::check_values(Normalize({0.5, 0.0}, {0.5, 0.25})(x, g), {0, 1, 0, 1});
  test::check_values(Normalize({0.25}, {0.5})(x, g), {0.5, 1.5, -0.5, 0});
  CHECK_THROWS_WITH_AS(Normalize({0.5}, {0.0}), doctest::Contains("positive"), Error);
  CHECK_THROWS_WITH_AS(Normalize({0.1, 0.2, 0.3}, {1, 1, 1})(x, g), doctest::Contains("2 channels"), Error);
  CHECK_THROWS_WITH_AS(Normalize({0.1}, {1})(ramp(1, 2, 2), g), doctest::Contains("ToTensor before"), Error);
}

TEST_CASE("Pad uses torchvision's border order and fill") {
  Generator g(1);
  Tensor x = ramp(1, 2, 2);  // [[1, 2], [3, 4]]
  test::check_values(Pad(1)(x, g), {0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0});
  // {left, top, right, bottom}
  test::check_values(Pad(Padding{1, 0, 0, 1}, 9)(x, g), {9, 1, 2, 9, 3, 4, 9, 9, 9});
  test::check_values(Pad(Padding{0, 1})(x, g), {0, 0, 1, 2, 3, 4, 0, 0});
  CHECK_THROWS_WITH_AS(Pad(1, 300)(x, g), doctest::Contains("uint8"), Error);
  CHECK_THROWS_AS(Padding({1, 2, 3}), Error);
}

TEST_CASE("RandomCrop takes the window its generator picks, filling outside the image") {
  Tensor x = ramp(2, 3, 3);
  // The crop draws top then left from the sample's generator, like torchvision.
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator g(seed), probe(seed);
    const int64_t top = probe.randint(0, 3), left = probe.randint(0, 3);  // padded 5x5, crop 3x3
    Tensor y = RandomCrop(3, 1, 7)(x, g);
    REQUIRE(y.sizes() == Shape{2, 3, 3});
    auto v = y.to_vector<int>();
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t col = 0; col < 3; ++col) {
          int64_t sr = top + r - 1, sc = left + col - 1;
          int expect = (sr < 0 || sr > 2 || sc < 0 || sc > 2) ? 7 : int(c * 9 + sr * 3 + sc + 1);
          CHECK(v[size_t(c * 9 + r * 3 + col)] == expect);
        }
  }
  Generator g(3);
  CHECK(equal(RandomCrop(3)(x, g), x));  // whole image: nothing to draw
  CHECK(g.offset() == 0);
  test::check_values(RandomCrop(std::pair<int64_t, int64_t>{1, 3})(ramp(1, 1, 3), g), {1, 2, 3});
  CHECK_THROWS_WITH_AS(RandomCrop(4)(x, g), doctest::Contains("larger than the padded image"), Error);
}

TEST_CASE("RandomHorizontalFlip mirrors with probability p") {
  Tensor x = ramp(1, 2, 3);
  Generator g(5);
  test::check_values(RandomHorizontalFlip(1.0)(x, g), {3, 2, 1, 6, 5, 4});
  CHECK(equal(RandomHorizontalFlip(0.0)(x, g), x));
  int flipped = 0;
  for (uint64_t s = 0; s < 400; ++s) {
    Generator gs(s);
    flipped += !equal(RandomHorizontalFlip(0.5)(x, gs), x);
  }
  CHECK(flipped > 150);
  CHECK(flipped < 250);
  CHECK_THROWS_AS(RandomHorizontalFlip(1.5), Error);
}

TEST_CASE("Compose: batch path equals per-image path, sample by sample") {
  auto t = cifar10_transforms().train;
  Tensor batch = randint(0, 256, {6, 3, 32, 32}, {.dtype = DType::u8});
  std::vector<Generator> gens, copies;
  for (int i = 0; i < 6; ++i) gens.push_back(sample_generator(11, 2, i)), copies.push_back(gens.back());
  Tensor out = t->apply_batch(batch, gens);
  REQUIRE(out.sizes() == Shape{6, 3, 32, 32});
  CHECK(out.dtype() == DType::f32);
  for (int i = 0; i < 6; ++i) CHECK(equal(out[i], (*t)(batch[i], copies[size_t(i)])));
  // The same generators give the same augmentation; different epochs give different ones.
  std::vector<Generator> again, other;
  for (int i = 0; i < 6; ++i) again.push_back(sample_generator(11, 2, i)), other.push_back(sample_generator(11, 3, i));
  CHECK(equal(t->apply_batch(batch, again), out));
  CHECK(!equal(t->apply_batch(batch, other), out));
  CHECK_THROWS_WITH_AS(t->apply_batch(batch, std::span<Generator>(gens.data(), 2)),
                       doctest::Contains("one generator per sample"), Error);
}

TEST_CASE("Fashion-MNIST reference pipeline: 28x28 padded to 32x32 with black, normalised") {
  auto t = fashion_mnist_transforms();
  Tensor img = full({1, 28, 28}, 255, {.dtype = DType::u8});
  Generator g(0);
  Tensor y = (*t.test)(img, g);
  REQUIRE(y.sizes() == Shape{1, 32, 32});
  const float black = float((0.0 - 0.2860) / 0.3530), white = float((1.0 - 0.2860) / 0.3530);
  auto v = y.to_vector<float>();
  CHECK(v[0] == doctest::Approx(black));
  CHECK(v[2 * 32 + 2] == doctest::Approx(white));
  CHECK(v[29 * 32 + 29] == doctest::Approx(white));
  CHECK(v[30 * 32 + 30] == doctest::Approx(black));
  Tensor aug = (*t.train)(img, g);
  CHECK(aug.sizes() == Shape{1, 32, 32});
  CHECK(aug.to_vector<float>().front() == doctest::Approx(black));  // crop padding is black too
}
