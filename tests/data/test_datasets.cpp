// TensorDataset, VisionDataset and collation.
#include "data/data.h"
#include "helpers.h"

using namespace kiln;
using namespace kiln::data;

TEST_CASE("TensorDataset returns rows and collates them") {
  Tensor x = arange(24, {.dtype = DType::f32}).reshape({4, 1, 2, 3});
  TensorDataset ds(x, tensor(std::vector<int32_t>{3, 1, 4, 1}));
  CHECK(ds.size() == 4);
  auto [img, label] = ds.get(2);
  CHECK(equal(img, x[2]));
  CHECK(label == 4);
  Batch b = collate({ds.get(3), ds.get(0)});
  CHECK(b.data.sizes() == Shape{2, 1, 2, 3});
  CHECK(equal(b.data[0], x[3]));
  CHECK(b.target.dtype() == DType::i64);
  CHECK(b.target.to_vector<int64_t>() == std::vector<int64_t>{1, 3});
  CHECK_THROWS_WITH_AS(ds.get(4), doctest::Contains("out of range"), Error);
  CHECK_THROWS_WITH_AS(TensorDataset(x, zeros({3}, {.dtype = DType::i64})), doctest::Contains("one row per example"),
                       Error);
  // Floating targets are no class labels: examples are (row, row) tuples, as torch's TensorDataset's.
  CHECK(TensorDataset(x, zeros({4})).get(1).tensors.size() == 2);
  CHECK_THROWS_WITH_AS(collate({ds.get(0), {zeros({2}), 0}}), doctest::Contains("has shape"), Error);
}

TEST_CASE("VisionDataset applies its transform, per image and per batch alike") {
  Tensor images = randint(0, 256, {5, 3, 8, 8}, {.dtype = DType::u8});
  auto t = std::make_shared<transforms::Compose>(transforms::RandomCrop(8, 2), transforms::ToTensor());
  VisionDataset ds(images, tensor(std::vector<int64_t>{0, 1, 2, 3, 4}), t);
  CHECK(equal(ds.get(1).data, ds.get(1).data));  // get(i) is reproducible
  std::vector<int64_t> idx{4, 1};
  std::vector<Generator> gens{sample_generator(1, 0, 4), sample_generator(1, 0, 1)};
  Batch b = ds.fetch_batch(idx, gens);
  CHECK(b.data.sizes() == Shape{2, 3, 8, 8});
  CHECK(b.target.to_vector<int64_t>() == std::vector<int64_t>{4, 1});
  Generator g = sample_generator(1, 0, 1);
  CHECK(equal(b.data[1], ds.fetch(1, g).data));
  VisionDataset raw(images, zeros({5}, {.dtype = DType::i64}));
  CHECK(raw.get(0).data.dtype() == DType::u8);
  CHECK_THROWS_WITH_AS(VisionDataset(zeros({5, 3, 8, 8}), zeros({5}, {.dtype = DType::i64})),
                       doctest::Contains("uint8"), Error);
}
