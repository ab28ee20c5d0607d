// Datasets and collation. In-memory image datasets gather a batch with one memcpy per image into
// one buffer, then transform the whole batch: no per-image tensors on the loader's hot path.
#include "data/dataset.h"

#include <cstring>

#include "core/ops.h"
#include "data/transforms.h"

namespace kiln::data {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

Tensor labels_tensor(std::span<const int64_t> indices, const int64_t* labels) {
  Tensor target = empty({int64_t(indices.size())}, {.dtype = DType::i64});
  int64_t* t = target.data_ptr<int64_t>();
  for (size_t k = 0; k < indices.size(); ++k) t[k] = labels[indices[k]];
  return target;
}

// Copies rows `indices` of a contiguous [N, ...] tensor into a new [B, ...] tensor.
Tensor gather_rows(const Tensor& src, std::span<const int64_t> indices) {
  Shape shape = src.sizes();
  shape[0] = int64_t(indices.size());
  Tensor out = empty(shape, {.dtype = src.dtype()});
  const size_t row = size_t(src.numel() / std::max<int64_t>(src.size(0), 1)) * src.element_size();
  const auto* s = static_cast<const char*>(src.raw_data());
  auto* d = static_cast<char*>(out.raw_data());
  for (size_t k = 0; k < indices.size(); ++k) std::memcpy(d + k * row, s + size_t(indices[k]) * row, row);
  return out;
}

void check_indices(std::span<const int64_t> indices, int64_t size, const char* name) {
  for (int64_t i : indices)
    KILN_CHECK(i >= 0 && i < size, name, ": index ", i, " is out of range for a dataset of ", size, " examples");
}

}  // namespace

Generator sample_generator(uint64_t seed, int64_t epoch, int64_t index) {
  return Generator(splitmix64(splitmix64(splitmix64(seed) ^ uint64_t(epoch)) ^ uint64_t(index)));
}

Batch collate(const std::vector<Example>& examples) {
  KILN_CHECK(!examples.empty(), "collate: no examples to collate");
  std::vector<Tensor> data;
  data.reserve(examples.size());
  Tensor target = empty({int64_t(examples.size())}, {.dtype = DType::i64});
  int64_t* t = target.data_ptr<int64_t>();
  for (size_t k = 0; k < examples.size(); ++k) {
    KILN_CHECK(examples[k].data.defined(), "collate: example ", k, " has no data");
    KILN_CHECK(examples[k].data.sizes() == examples[0].data.sizes(), "collate: example ", k, " has shape ",
               examples[k].data.sizes(), " but example 0 has ", examples[0].data.sizes(),
               "; resize or crop the images to one size before batching");
    data.push_back(examples[k].data);
    t[k] = examples[k].target;
  }
  return {stack(data), target};
}

void Dataset::check_index(int64_t index) const {
  KILN_CHECK(index >= 0 && index < size(), "Dataset: index ", index, " is out of range for a dataset of ",
             size(), " examples");
}

Batch Dataset::fetch_batch(std::span<const int64_t> indices, std::span<Generator> gens) const {
  KILN_CHECK(indices.size() == gens.size(), "Dataset::fetch_batch: ", indices.size(), " indices but ",
             gens.size(), " generators");
  std::vector<Example> examples;
  examples.reserve(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) examples.push_back(fetch(indices[k], gens[k]));
  return collate(examples);
}

TensorDataset::TensorDataset(Tensor data, Tensor targets) {
  KILN_CHECK(data.defined() && targets.defined(), "TensorDataset: data and targets must be defined tensors");
  KILN_CHECK(data.dim() >= 1, "TensorDataset: data needs a leading example dimension, got a 0-d tensor");
  KILN_CHECK(targets.dim() == 1 && targets.size(0) == data.size(0), "TensorDataset: targets must be 1-D with one "
             "entry per example: data has ", data.size(0), " examples, targets have shape ", targets.sizes());
  KILN_CHECK(!is_floating(targets.dtype()) && targets.dtype() != DType::boolean,
             "TensorDataset: targets must hold integer class indices, got ", targets.dtype());
  data_ = data.to(Device::cpu()).contiguous();
  targets_ = targets.to(Device::cpu(), DType::i64).contiguous();
}

Example TensorDataset::get(int64_t index) const {
  check_index(index);
  return {data_[index], targets_.data_ptr<int64_t>()[index]};
}

Batch TensorDataset::fetch_batch(std::span<const int64_t> indices, std::span<Generator>) const {
  check_indices(indices, size(), "TensorDataset");
  return {gather_rows(data_, indices), labels_tensor(indices, targets_.data_ptr<int64_t>())};
}

VisionDataset::VisionDataset(Tensor images, Tensor labels, std::shared_ptr<const Transform> transform)
    : transform_(std::move(transform)) {
  KILN_CHECK(images.defined(), "VisionDataset: images must be a defined uint8 [N, C, H, W] tensor");
  KILN_CHECK(images.dim() == 4 && images.dtype() == DType::u8, "VisionDataset: images must be uint8 "
             "[N, C, H, W], got ", images.dtype(), " ", images.sizes());
  KILN_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == images.size(0),
             "VisionDataset: labels must be 1-D with one entry per image (", images.size(0), ")");
  images_ = images.to(Device::cpu()).contiguous();
  labels_ = labels.to(Device::cpu(), DType::i64).contiguous();
}

Example VisionDataset::get(int64_t index) const {
  Generator gen = sample_generator(0, 0, index);
  return fetch(index, gen);
}

Example VisionDataset::fetch(int64_t index, Generator& gen) const {
  check_index(index);
  Tensor image = images_[index];
  if (transform_) image = (*transform_)(image, gen);
  return {image, labels_.data_ptr<int64_t>()[index]};
}

Batch VisionDataset::fetch_batch(std::span<const int64_t> indices, std::span<Generator> gens) const {
  check_indices(indices, size(), "VisionDataset");
  KILN_CHECK(indices.size() == gens.size(), "VisionDataset::fetch_batch: ", indices.size(), " indices but ",
             gens.size(), " generators");
  Tensor images = gather_rows(images_, indices);
  if (transform_) images = transform_->apply_batch(images, gens);
  return {images, labels_tensor(indices, labels_.data_ptr<int64_t>())};
}

}  // namespace kiln::data
