// Datasets: a Dataset maps an index to one (image, label) example; a DataLoader groups examples
// into batches. VisionDataset keeps uint8 images in memory ([N, C, H, W]) and applies a transform.
//   kiln::data::TensorDataset ds(kiln::rand({100, 3, 8, 8}), kiln::randint(0, 10, {100}));
//   auto [x, y] = ds.get(7);          // x: [3, 8, 8] float, y: the int64_t label
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/tensor.h"

namespace kiln::data {

class Transform;  // data/transforms.h

// One sample: an image tensor (usually [C, H, W]) and its class index.
struct Example {
  Tensor data;
  int64_t target = 0;
};

// A batch: data [B, C, H, W] (float once ToTensor ran) and target [B] int64.
// `for (auto& [x, y] : loader)` binds these two members.
struct Batch {
  Tensor data;
  Tensor target;
};

// Stacks examples of one shape into a Batch (the default collation of torch's DataLoader).
Batch collate(const std::vector<Example>& examples);

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Example `index` (0 <= index < size()). Random transforms draw from a generator fixed by the
  // index, so get(i) always returns the same thing; loaders call fetch with a per-epoch stream.
  virtual Example get(int64_t index) const = 0;
  // What a DataLoader calls: `gen` is the random stream of this sample for this epoch.
  virtual Example fetch(int64_t index, Generator& /*gen*/) const { return get(index); }
  // A whole batch; gens[k] belongs to indices[k]. The default fetches one example at a time and
  // collates; in-memory image datasets override it to gather and transform a batch in one go.
  virtual Batch fetch_batch(std::span<const int64_t> indices, std::span<Generator> gens) const;

 protected:
  void check_index(int64_t index) const;
};

// Rows of `data` paired with entries of `targets` (1-D integer tensor), like torch's TensorDataset.
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor data, Tensor targets);
  int64_t size() const override { return data_.size(0); }
  Example get(int64_t index) const override;
  Batch fetch_batch(std::span<const int64_t> indices, std::span<Generator> gens) const override;
  const Tensor& data() const { return data_; }
  const Tensor& targets() const { return targets_; }

 private:
  Tensor data_;     // contiguous, on the CPU
  Tensor targets_;  // int64 [N]
};

// uint8 images [N, C, H, W] with int64 labels [N], both held in memory, plus an optional
// transform (see data/transforms.h). Without a transform, examples stay uint8 [C, H, W].
class VisionDataset : public Dataset {
 public:
  VisionDataset(Tensor images, Tensor labels, std::shared_ptr<const Transform> transform = nullptr);
  int64_t size() const override { return images_.size(0); }
  Example get(int64_t index) const override;
  Example fetch(int64_t index, Generator& gen) const override;
  Batch fetch_batch(std::span<const int64_t> indices, std::span<Generator> gens) const override;

  const Tensor& images() const { return images_; }  // uint8 [N, C, H, W]
  const Tensor& labels() const { return labels_; }  // int64 [N]
  const std::shared_ptr<const Transform>& transform() const { return transform_; }
  void set_transform(std::shared_ptr<const Transform> transform) { transform_ = std::move(transform); }

 private:
  Tensor images_;
  Tensor labels_;
  std::shared_ptr<const Transform> transform_;
};

// The random stream of sample `index` in epoch `epoch` of a run seeded with `seed`. It depends on
// nothing else, which is why the augmented epoch is the same for any number of workers.
Generator sample_generator(uint64_t seed, int64_t epoch, int64_t index);

}  // namespace kiln::data
