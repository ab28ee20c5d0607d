// Samplers decide which dataset indices an epoch visits, in what order, with torch's semantics.
// Each is a pure function of (seed, epoch): set_epoch(e) picks the epoch (a DataLoader does it
// before every pass), so any process or rank can recompute the same order.
//   kiln::data::DistributedSampler s(50000, {.num_replicas = 4, .rank = 1, .seed = 42});
//   s.set_epoch(3);
//   std::vector<int64_t> mine = s.indices();   // 12500 indices, disjoint from the other ranks'
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace kiln::data {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // The indices of the current epoch, in visiting order.
  virtual std::vector<int64_t> indices() const = 0;
  // How many indices indices() returns.
  virtual int64_t size() const = 0;
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }

 protected:
  int64_t epoch_ = 0;
};

// 0, 1, ..., n - 1.
class SequentialSampler : public Sampler {
 public:
  explicit SequentialSampler(int64_t dataset_size);
  std::vector<int64_t> indices() const override;
  int64_t size() const override { return n_; }

 private:
  int64_t n_;
};

// A fresh permutation of 0..n-1 each epoch, drawn from (seed, epoch).
class RandomSampler : public Sampler {
 public:
  explicit RandomSampler(int64_t dataset_size, uint64_t seed = 0);
  std::vector<int64_t> indices() const override;
  int64_t size() const override { return n_; }

 private:
  int64_t n_;
  uint64_t seed_;
};

struct DistributedSamplerOptions {
  int64_t num_replicas = 1;
  int64_t rank = 0;
  bool shuffle = true;
  uint64_t seed = 0;
  bool drop_last = false;
};

// This rank's share of the dataset, as torch.utils.data.DistributedSampler: every rank shuffles
// the same permutation (seed + epoch), pads it by repeating indices from its start until it
// divides evenly (or, with drop_last, cuts the tail), and takes every num_replicas-th index from
// position `rank`. All ranks therefore get the same count.
class DistributedSampler : public Sampler {
 public:
  DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options);
  std::vector<int64_t> indices() const override;
  int64_t size() const override { return num_samples_; }
  int64_t total_size() const { return num_samples_ * options_.num_replicas; }

 private:
  int64_t n_;
  DistributedSamplerOptions options_;
  int64_t num_samples_;
};

// Another sampler's order, cut into disjoint per-rank shares as DistributedSampler cuts a dataset
// (Lightning's DistributedSamplerWrapper): every rank computes the wrapped sampler's indices for
// the epoch (the same on each, since samplers are functions of seed and epoch) and takes the
// positions DistributedSampler(options) gives it, shuffled again when options.shuffle is set.
//   auto mine = std::make_shared<DistributedSamplerWrapper>(my_weighted_sampler,
//       DistributedSamplerOptions{.num_replicas = 2, .rank = 1, .shuffle = false});
class DistributedSamplerWrapper : public Sampler {
 public:
  DistributedSamplerWrapper(std::shared_ptr<Sampler> sampler, DistributedSamplerOptions options);
  std::vector<int64_t> indices() const override;
  int64_t size() const override { return positions_.size(); }
  const std::shared_ptr<Sampler>& sampler() const { return sampler_; }

 private:
  std::shared_ptr<Sampler> sampler_;
  DistributedSampler positions_;
};

// The permutation of 0..n-1 used by RandomSampler and DistributedSampler for (seed, epoch).
std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace kiln::data
