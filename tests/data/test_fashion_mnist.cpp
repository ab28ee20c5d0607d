// The real Fashion-MNIST from Debian's dataset-fashion-mnist (installed by scripts/setup.sh).
#include <cmath>
#include <filesystem>

#include "data/data.h"
#include "helpers.h"

using namespace kiln;
using namespace kiln::data;

TEST_CASE("Fashion-MNIST: sizes, class balance and known pixels") {
  if (!std::filesystem::exists(std::string(default_fashion_mnist_root()) + "/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: dataset-fashion-mnist is not installed (scripts/setup.sh installs it)");
    return;
  }
  FashionMNIST train("", true), test("", false);
  REQUIRE(train.size() == 60000);
  REQUIRE(test.size() == 10000);
  CHECK(train.images().sizes() == Shape{60000, 1, 28, 28});
  for (auto* ds : {&train, &test}) {
    std::vector<int64_t> counts(10);
    for (int64_t l : ds->labels().to_vector<int64_t>()) ++counts[size_t(l)];
    for (int64_t c : counts) CHECK(c == ds->size() / 10);
  }
  const auto labels = train.labels().to_vector<int64_t>();
  CHECK(std::vector<int64_t>(labels.begin(), labels.begin() + 10) ==
        std::vector<int64_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5});
  auto row = [](const VisionDataset& ds, int64_t i, int64_t r) { return ds.images()[i][0][r].to_vector<int>(); };
  CHECK(row(train, 0, 14) == std::vector<int>{0,   0,   1,   4,   6,   7,   2,   0,   0,   0,   0,   0,   237, 226,
                                              217, 223, 222, 219, 222, 221, 216, 223, 229, 215, 218, 255, 77,  0});
  CHECK(train.images()[59999].sum().item<int64_t>() == 16684);
  CHECK(test.images()[0].sum().item<int64_t>() == 33456);
  CHECK(test.images()[9999].sum().item<int64_t>() == 24390);
  std::vector<int> slice = row(test, 9999, 10);
  CHECK(std::vector<int>(slice.begin() + 10, slice.begin() + 16) == std::vector<int>{0, 56, 80, 45, 54, 53});
  // Mean and std over the training set match the constants of the recipe.
  const uint8_t* px = train.images().data_ptr<uint8_t>();
  double sum = 0, sum_sq = 0;
  const int64_t n = train.images().numel();
  for (int64_t i = 0; i < n; ++i) sum += px[i], sum_sq += double(px[i]) * px[i];
  const double mean = sum / n / 255.0, stdev = std::sqrt(sum_sq / n / (255.0 * 255.0) - mean * mean);
  CHECK(mean == doctest::Approx(0.2860).epsilon(1e-3));
  CHECK(stdev == doctest::Approx(0.3530).epsilon(1e-3));
}

TEST_CASE("Fashion-MNIST reference loaders") {
  if (!std::filesystem::exists(std::string(default_fashion_mnist_root()) + "/train-images-idx3-ubyte.gz")) return;
  auto data = reference_data({.dataset = "fashion-mnist", .num_workers = 2, .seed = 1});
  CHECK(data.in_channels == 1);
  CHECK(data.train->size() == 469);
  CHECK(data.test->size() == 40);
  int n = 0;
  for (auto& [x, y] : *data.train) {
    CHECK(x.sizes() == Shape{128, 1, 32, 32});
    CHECK(y.sizes() == Shape{128});
    if (++n == 3) break;
  }
  auto it = data.test->begin();
  CHECK(it->data.sizes() == Shape{256, 1, 32, 32});
  CHECK(it->target.to_vector<int64_t>()[0] == 9);
}
