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

namespace {

// Examples of several tensors: position k of every example stacked into tensor k of the batch.
Batch collate_tensors(const std::vector<Example>& examples) {
  const size_t n = examples[0].tensors.size();
  std::vector<Tensor> out;
  for (size_t k = 0; k < n; ++k) {
    std::vector<Tensor> column;
    column.reserve(examples.size());
    for (size_t e = 0; e < examples.size(); ++e) {
      const auto& ts = examples[e].tensors;
      KILN_CHECK(ts.size() == n, "collate: example ", e, " has ", ts.size(), " tensors but example 0 has ", n);
      KILN_CHECK(ts[k].defined(), "collate: tensor ", k, " of example ", e, " is undefined");
      KILN_CHECK(ts[k].sizes() == examples[0].tensors[k].sizes(), "collate: tensor ", k, " of example ", e,
                 " has shape ", ts[k].sizes(), " but example 0's has ", examples[0].tensors[k].sizes(),
                 "; pad the examples to one length, or pass a collate_fn that does");
      column.push_back(ts[k]);
    }
    out.push_back(stack(column));
  }
  Batch b;
  b.data = out[0];
  if (n > 1) b.target = out[1];
  b.rest.assign(out.begin() + std::min<ptrdiff_t>(2, ptrdiff_t(n)), out.end());
  return b;
}

}  // namespace

Batch collate(const std::vector<Example>& examples) {
  KILN_CHECK(!examples.empty(), "collate: no examples to collate");
  if (!examples[0].tensors.empty()) return collate_tensors(examples);
  std::vector<Tensor> data;
  data.reserve(examples.size());
  Tensor target = empty({int64_t(examples.size())}, {.dtype = DType::i64});
  int64_t* t = target.data_ptr<int64_t>();
  for (size_t k = 0; k < examples.size(); ++k) {
    KILN_CHECK(examples[k].data.defined(), "collate: example ", k, " has no data",
               examples[k].tensors.empty() ? "" : " (it has tensors, but example 0 has none)");
    KILN_CHECK(examples[k].data.sizes() == examples[0].data.sizes(), "collate: example ", k, " has shape ",
               examples[k].data.sizes(), " but example 0 has ", examples[0].data.sizes(),
               "; resize or crop the images to one size before batching");
    data.push_back(examples[k].data);
    t[k] = examples[k].target;
  }
  return {stack(data), target};
}

void Dataset::check_index(int64_t index) const {
  KILN_CHECK(index >= 0 && index < size(), "Dataset: index ", index, " is out of range for a dataset of ", size(),
             " examples");
}

Batch Dataset::fetch_batch(std::span<const int64_t> indices, std::span<Generator> gens) const {
  KILN_CHECK(indices.size() == gens.size(), "Dataset::fetch_batch: ", indices.size(), " indices but ", gens.size(),
             " generators");
  std::vector<Example> examples;
  examples.reserve(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) examples.push_back(fetch(indices[k], gens[k]));
  return collate(examples);
}

TensorDataset::TensorDataset(std::vector<Tensor> tensors) {
  KILN_CHECK(!tensors.empty(), "TensorDataset: expected at least one tensor");
  for (size_t k = 0; k < tensors.size(); ++k) {
    KILN_CHECK(tensors[k].defined() && tensors[k].dim() >= 1, "TensorDataset: tensor ", k,
               " needs a leading "
               "example dimension",
               tensors[k].defined() ? ", got a 0-d tensor" : ", got an undefined tensor");
    KILN_CHECK(tensors[k].size(0) == tensors[0].size(0),
               "TensorDataset: every tensor needs one row per example: "
               "tensor 0 has ",
               tensors[0].size(0), ", tensor ", k, " has shape ", tensors[k].sizes());
    tensors_.push_back(tensors[k].to(Device::cpu()).contiguous());
  }
}

TensorDataset::TensorDataset(Tensor data, Tensor targets) : TensorDataset(std::vector<Tensor>{data, targets}) {
  // An input and 1-D integer labels: class indices, as int64 for the losses.
  if (targets.dim() == 1 && !is_floating(targets.dtype()) && targets.dtype() != DType::boolean) {
    labels_ = true;
    tensors_[1] = tensors_[1].to(DType::i64).contiguous();
  }
}

Example TensorDataset::get(int64_t index) const {
  check_index(index);
  if (labels_) return {tensors_[0][index], tensors_[1].data_ptr<int64_t>()[index]};
  std::vector<Tensor> rows;
  for (const Tensor& t : tensors_) rows.push_back(t[index]);
  return Example(std::move(rows));
}

Batch TensorDataset::fetch_batch(std::span<const int64_t> indices, std::span<Generator>) const {
  check_indices(indices, size(), "TensorDataset");
  Batch b;
  b.data = gather_rows(tensors_[0], indices);
  if (tensors_.size() > 1) b.target = gather_rows(tensors_[1], indices);
  for (size_t k = 2; k < tensors_.size(); ++k) b.rest.push_back(gather_rows(tensors_[k], indices));
  return b;
}

VisionDataset::VisionDataset(Tensor images, Tensor labels, std::shared_ptr<const Transform> transform)
    : transform_(std::move(transform)) {
  KILN_CHECK(images.defined(), "VisionDataset: images must be a defined uint8 [N, C, H, W] tensor");
  KILN_CHECK(images.dim() == 4 && images.dtype() == DType::u8,
             "VisionDataset: images must be uint8 "
             "[N, C, H, W], got ",
             images.dtype(), " ", images.sizes());
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
