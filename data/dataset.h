// Datasets: a Dataset maps an index to one example, an (image, label) pair or a tuple of tensors;
// a DataLoader groups examples into batches. VisionDataset keeps uint8 images in memory
// ([N, C, H, W]) and applies a transform.
//   kiln::data::TensorDataset ds(kiln::rand({100, 3, 8, 8}), kiln::randint(0, 10, {100}));
//   auto ex = ds.get(7);              // ex.data: [3, 8, 8] float, ex.target: the int64_t label
//   kiln::data::TensorDataset lm({inputs, next_tokens});   // two [N, T] int64 tensors
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <tuple>
#include <vector>

#include "core/tensor.h"

namespace kiln::data {

class Transform;  // data/transforms.h

// One sample: an image tensor (usually [C, H, W]) and its class index, or, like a Python tuple
// from a torch Dataset, several tensors (a sequence and the sequence after it, say).
//   return {image, label};                        // Example(Tensor, int64_t)
//   return {tokens.narrow(0, i, t), tokens.narrow(0, i + 1, t)};   // two tensors
struct Example {
  Example() = default;
  Example(Tensor data, int64_t target) : data(std::move(data)), target(target) {}
  Example(std::initializer_list<Tensor> tensors) : tensors(tensors) {}
  explicit Example(std::vector<Tensor> tensors) : tensors(std::move(tensors)) {}

  Tensor data;
  int64_t target = 0;
  std::vector<Tensor> tensors;  // when not empty, the example (data and target are unused)

  // `auto [image, label] = ds.get(i)` binds data and target.
  template <size_t I>
  auto& get() {
    if constexpr (I == 0)
      return data;
    else
      return target;
  }
  template <size_t I>
  const auto& get() const {
    if constexpr (I == 0)
      return data;
    else
      return target;
  }
};

// A batch: data [B, C, H, W] (float once ToTensor ran) and target [B] int64; for examples of
// several tensors, each one stacked: data the first, target the second, rest the others.
// `for (auto& [x, y] : loader)` binds data and target; batch[i] reaches every tensor.
struct Batch {
  Batch() = default;
  Batch(Tensor data, Tensor target = {}, std::vector<Tensor> rest = {})
      : data(std::move(data)), target(std::move(target)), rest(std::move(rest)) {}

  Tensor data;
  Tensor target;
  std::vector<Tensor> rest;

  size_t size() const { return !rest.empty() ? 2 + rest.size() : target.defined() ? 2 : data.defined() ? 1 : 0; }
  Tensor& operator[](size_t i) { return i == 0 ? data : i == 1 ? target : rest.at(i - 2); }
  const Tensor& operator[](size_t i) const { return i == 0 ? data : i == 1 ? target : rest.at(i - 2); }
  template <size_t I>
  Tensor& get() {
    return I == 0 ? data : target;
  }
  template <size_t I>
  const Tensor& get() const {
    return I == 0 ? data : target;
  }
};

// torch's default collation: examples of one shape stacked into a Batch (image examples: their
// labels into an int64 [B] target; examples of several tensors: each position stacked).
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

// Like torch's TensorDataset: example i is row i of every tensor (all share their first dim).
// With two tensors where the second is 1-D integer, that is an (input, class index) pair and
// get() returns Example(row, label); otherwise examples are tuples of rows.
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor data, Tensor targets);
  explicit TensorDataset(std::vector<Tensor> tensors);
  int64_t size() const override { return tensors_[0].size(0); }
  Example get(int64_t index) const override;
  Batch fetch_batch(std::span<const int64_t> indices, std::span<Generator> gens) const override;
  const Tensor& data() const { return tensors_[0]; }
  const Tensor& targets() const { return tensors_.size() > 1 ? tensors_[1] : tensors_[0]; }
  const std::vector<Tensor>& tensors() const { return tensors_; }

 private:
  std::vector<Tensor> tensors_;  // contiguous, on the CPU
  bool labels_ = false;          // two tensors, the second int64 class indices [N]
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

// Example and Batch bind as two values (data, target) in structured bindings.
template <>
struct std::tuple_size<kiln::data::Example> : std::integral_constant<size_t, 2> {};
template <>
struct std::tuple_element<0, kiln::data::Example> {
  using type = kiln::Tensor;
};
template <>
struct std::tuple_element<1, kiln::data::Example> {
  using type = int64_t;
};
template <>
struct std::tuple_size<kiln::data::Batch> : std::integral_constant<size_t, 2> {};
template <size_t I>
struct std::tuple_element<I, kiln::data::Batch> {
  using type = kiln::Tensor;
};
