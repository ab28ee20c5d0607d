// Samplers: permutations by Fisher-Yates over a generator seeded from (seed, epoch).
#include "data/sampler.h"

#include <numeric>
#include <utility>

#include "core/error.h"
#include "core/tensor.h"
#include "data/dataset.h"

namespace kiln::data {

std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t(0));
  // The index slot -1 keeps this stream apart from every per-sample augmentation stream.
  Generator gen = sample_generator(seed, epoch, -1);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(gen.randint(0, i + 1))]);
  return p;
}

SequentialSampler::SequentialSampler(int64_t dataset_size) : n_(dataset_size) {
  KILN_CHECK(n_ >= 0, "SequentialSampler: dataset size must be >= 0, got ", n_);
}

std::vector<int64_t> SequentialSampler::indices() const {
  std::vector<int64_t> p(static_cast<size_t>(n_));
  std::iota(p.begin(), p.end(), int64_t(0));
  return p;
}

RandomSampler::RandomSampler(int64_t dataset_size, uint64_t seed) : n_(dataset_size), seed_(seed) {
  KILN_CHECK(n_ >= 0, "RandomSampler: dataset size must be >= 0, got ", n_);
}

std::vector<int64_t> RandomSampler::indices() const { return permutation(n_, seed_, epoch_); }

DistributedSampler::DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options)
    : n_(dataset_size), options_(options) {
  KILN_CHECK(n_ >= 0, "DistributedSampler: dataset size must be >= 0, got ", n_);
  KILN_CHECK(options.num_replicas >= 1, "DistributedSampler: num_replicas must be >= 1, got ", options.num_replicas);
  KILN_CHECK(options.rank >= 0 && options.rank < options.num_replicas, "DistributedSampler: rank ", options.rank,
             " is outside [0, ", options.num_replicas, ")");
  const int64_t r = options.num_replicas;
  num_samples_ = options.drop_last ? n_ / r : (n_ + r - 1) / r;
  KILN_CHECK(num_samples_ > 0 || n_ == 0, "DistributedSampler: with drop_last, ", n_, " examples over ", r,
             " replicas leave every rank empty; use fewer replicas or drop_last = false");
}

std::vector<int64_t> DistributedSampler::indices() const {
  std::vector<int64_t> all;
  if (options_.shuffle) {
    all = permutation(n_, options_.seed, epoch_);
  } else {
    all.resize(size_t(n_));
    std::iota(all.begin(), all.end(), int64_t(0));
  }
  const int64_t total = total_size();
  // Pad by repeating from the start (again and again if the dataset is smaller than the padding).
  for (int64_t i = 0; int64_t(all.size()) < total; ++i) all.push_back(all[size_t(i)]);
  all.resize(size_t(total));
  std::vector<int64_t> mine;
  mine.reserve(size_t(num_samples_));
  for (int64_t i = options_.rank; i < total; i += options_.num_replicas) mine.push_back(all[size_t(i)]);
  return mine;
}

namespace {
std::shared_ptr<Sampler> checked(std::shared_ptr<Sampler> s) {
  KILN_CHECK(s, "DistributedSamplerWrapper: the sampler to wrap is null");
  return s;
}
}  // namespace

DistributedSamplerWrapper::DistributedSamplerWrapper(std::shared_ptr<Sampler> sampler,
                                                     DistributedSamplerOptions options)
    : sampler_(checked(std::move(sampler))), positions_(sampler_->size(), options) {}

std::vector<int64_t> DistributedSamplerWrapper::indices() const {
  sampler_->set_epoch(epoch_);
  std::vector<int64_t> order = sampler_->indices();
  KILN_CHECK(int64_t(order.size()) == sampler_->size(),
             "DistributedSamplerWrapper: the wrapped sampler "
             "returned ",
             order.size(), " indices but its size() is ", sampler_->size());
  DistributedSampler positions = positions_;
  positions.set_epoch(epoch_);
  std::vector<int64_t> mine;
  for (int64_t p : positions.indices()) mine.push_back(order[size_t(p)]);
  return mine;
}

}  // namespace kiln::data
