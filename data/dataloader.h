// DataLoader: batches of a Dataset in sampler order, built by worker threads ahead of the training
// loop and delivered in order, as torch.utils.data.DataLoader does with worker processes.
//   kiln::data::DataLoader loader(dataset, {.batch_size = 128, .shuffle = true, .num_workers = 2});
//   for (int epoch = 0; epoch < 20; ++epoch)
//     for (auto& [x, y] : loader) { ... }   // x [128, C, H, W] float, y [128] int64
// Examples of several tensors batch each one ([B, T] inputs and [B, T] next tokens, say);
// batch[i] reaches the third and later ones.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "data/dataset.h"
#include "data/sampler.h"

namespace kiln::data {

// More worker threads than this is a typo, not a configuration.
inline constexpr int kMaxWorkers = 1024;

struct DataLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;                        // a RandomSampler over the dataset; not together with `sampler`
  std::shared_ptr<Sampler> sampler = nullptr;  // e.g. a DistributedSampler; the loader sets its epoch
  bool drop_last = false;                      // drop the last batch when it would be smaller than batch_size
  int num_workers = 0;                         // 0: batches are built in the consuming thread; at most 1024
  int prefetch_factor = 2;                     // batches in flight per worker
  bool pin_memory = false;                     // page-locked batches (Tensor::pin_memory) where a GPU is available
  // Seeds shuffling and augmentation. Unset: drawn from kiln's default generator when the loader
  // is built, so kiln::manual_seed(s) makes runs repeatable.
  std::optional<uint64_t> seed = std::nullopt;
  // Builds a batch from its examples (torch's collate_fn: padding sequences of several lengths,
  // say). Set, the loader fetches examples one by one (Dataset::fetch) and calls it in the worker
  // threads; unset, the dataset's fetch_batch and the default collate are used.
  std::function<Batch(const std::vector<Example>&)> collate_fn = nullptr;
};

// Copies a batch into page-locked memory. Unset (the default), pin_memory=true pins data and
// target with Tensor::pin_memory() where kiln::cuda::is_available(), and leaves batches in
// ordinary memory elsewhere. Setting a hook replaces that (an empty hook restores it).
using PinMemoryHook = std::function<Batch(Batch)>;
void set_pin_memory_hook(PinMemoryHook hook);

namespace detail {
class LoaderRun;
}

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;
  DataLoader(DataLoader&&) noexcept;
  DataLoader& operator=(DataLoader&&) noexcept;
  ~DataLoader();

  class Iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    Batch& operator*() const;
    Batch* operator->() const { return &**this; }
    Iterator& operator++();
    bool operator==(std::default_sentinel_t) const;

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<detail::LoaderRun> run);
    std::shared_ptr<detail::LoaderRun> run_;
  };

  // Starts a pass (an epoch) over the data. Leaving a pass early (break, exception) stops and
  // joins its workers when the iterator goes away; starting a new pass ends the previous one.
  Iterator begin();
  std::default_sentinel_t end() const { return {}; }

  // Batches per pass.
  int64_t size() const;
  // The epoch of the next pass (then +1 for each pass after it). Passes count from 0.
  void set_epoch(int64_t epoch) { next_epoch_ = epoch; }
  int64_t epoch() const { return next_epoch_; }
  const Dataset& dataset() const { return *dataset_; }
  const DataLoaderOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }

 private:
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  std::shared_ptr<Sampler> sampler_;
  uint64_t seed_;
  int64_t next_epoch_ = 0;
  std::weak_ptr<detail::LoaderRun> current_;
};

}  // namespace kiln::data
