// The loader's engine. A pass is a LoaderRun: the batches' index lists, worker threads that claim
// batch numbers in order and fill numbered slots, and a consumer that takes slot after slot. A
// window of num_workers * prefetch_factor batches bounds the memory held ahead of the consumer.
#include "data/dataloader.h"

#include <condition_variable>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "core/ops.h"

namespace kiln::data {
namespace {

std::mutex& hook_mutex() {
  static std::mutex m;
  return m;
}
PinMemoryHook& pin_hook() {
  static PinMemoryHook hook;
  return hook;
}

Batch pin_batch(Batch b) {
  if (b.data.defined()) b.data = b.data.pin_memory();
  if (b.target.defined()) b.target = b.target.pin_memory();
  for (Tensor& t : b.rest)
    if (t.defined()) t = t.pin_memory();
  return b;
}

}  // namespace

void set_pin_memory_hook(PinMemoryHook hook) {
  std::lock_guard<std::mutex> lock(hook_mutex());
  pin_hook() = std::move(hook);
}

namespace detail {

class LoaderRun {
 public:
  using Collate = std::function<Batch(const std::vector<Example>&)>;
  LoaderRun(std::shared_ptr<const Dataset> dataset, std::vector<std::vector<int64_t>> batches, uint64_t seed,
            int64_t epoch, int num_workers, int prefetch_factor, PinMemoryHook pin, Collate collate)
      : dataset_(std::move(dataset)),
        batches_(std::move(batches)),
        seed_(seed),
        epoch_(epoch),
        pin_(std::move(pin)),
        collate_(std::move(collate)),
        slots_(batches_.size()),
        window_(size_t(num_workers) * size_t(prefetch_factor)) {
    workers_.reserve(size_t(num_workers));
    try {
      for (int w = 0; w < num_workers; ++w) workers_.emplace_back([this] { work(); });
    } catch (const std::system_error& e) {
      const size_t started = workers_.size();
      stop();
      fail("DataLoader: could not start worker thread ", started + 1, " of ", num_workers, " (", e.what(),
           "); use fewer num_workers (the machine has ", std::thread::hardware_concurrency(), " hardware threads)");
    } catch (...) {
      stop();
      throw;
    }
  }
  LoaderRun(const LoaderRun&) = delete;
  LoaderRun& operator=(const LoaderRun&) = delete;
  ~LoaderRun() { stop(); }

  bool finished() const { return pos_ >= batches_.size(); }
  Batch& current() {
    KILN_CHECK(!finished(), "DataLoader: dereferenced an iterator that is at the end of its pass");
    return current_;
  }

  // Makes batch pos_ current (waiting for a worker if there are any); rethrows a worker's error.
  void load() {
    if (finished()) return;
    if (workers_.empty()) {
      try {
        current_ = produce(pos_);
      } catch (...) {
        pos_ = batches_.size();
        throw;
      }
      return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    ready_cv_.wait(lock, [&] { return slots_[pos_].ready; });
    Slot slot = std::move(slots_[pos_]);
    slots_[pos_] = Slot{};
    if (slot.error) {
      lock.unlock();
      stop();
      std::rethrow_exception(slot.error);
    }
    current_ = std::move(slot.batch);
  }

  void next() {
    if (finished()) return;
    current_ = Batch{};
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++pos_;  // frees a place in the window
    }
    work_cv_.notify_all();
    load();
  }

  // Ends the pass: workers finish the batch in hand, then exit and are joined.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      pos_ = batches_.size();
    }
    work_cv_.notify_all();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    current_ = Batch{};
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
    bool ready = false;
  };

  Batch produce(size_t k) const {
    const auto& indices = batches_[k];
    std::vector<Generator> gens;
    gens.reserve(indices.size());
    for (int64_t i : indices) gens.push_back(sample_generator(seed_, epoch_, i));
    Batch b;
    if (collate_) {
      std::vector<Example> examples;
      examples.reserve(indices.size());
      for (size_t k = 0; k < indices.size(); ++k) examples.push_back(dataset_->fetch(indices[k], gens[k]));
      b = collate_(examples);
      KILN_CHECK(b.data.defined(), "DataLoader: collate_fn returned a batch without data");
    } else {
      b = dataset_->fetch_batch(indices, gens);
      const int64_t n = int64_t(indices.size());
      bool ok = b.data.defined() && b.data.dim() > 0 && b.data.size(0) == n;
      for (size_t i = 1; ok && i < b.size(); ++i) ok = !b[i].defined() || (b[i].dim() > 0 && b[i].size(0) == n);
      KILN_CHECK(ok, "DataLoader: the dataset's fetch_batch returned a batch that does not hold ", n,
                 " examples in each of its tensors");
    }
    return pin_ ? pin_(std::move(b)) : b;
  }

  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stopping_ || next_claim_ >= batches_.size() || next_claim_ < pos_ + window_; });
      if (stopping_ || next_claim_ >= batches_.size()) return;
      size_t k = next_claim_++;
      lock.unlock();
      Slot slot;
      try {
        slot.batch = produce(k);
      } catch (...) { slot.error = std::current_exception(); }
      slot.ready = true;
      lock.lock();
      slots_[k] = std::move(slot);
      ready_cv_.notify_all();
    }
  }

  std::shared_ptr<const Dataset> dataset_;
  std::vector<std::vector<int64_t>> batches_;
  uint64_t seed_;
  int64_t epoch_;
  PinMemoryHook pin_;
  Collate collate_;
  std::vector<Slot> slots_;
  size_t window_;
  Batch current_;

  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  size_t pos_ = 0;         // the batch the consumer holds or waits for
  size_t next_claim_ = 0;  // the next batch a worker will build
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace detail

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  KILN_CHECK(dataset_ != nullptr, "DataLoader: dataset is null");
  KILN_CHECK(options_.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", options_.batch_size);
  KILN_CHECK(options_.num_workers >= 0 && options_.num_workers <= kMaxWorkers,
             "DataLoader: num_workers must be in [0, ", kMaxWorkers, "], got ", options_.num_workers,
             "; a few per core is plenty");
  KILN_CHECK(options_.prefetch_factor <= 1024, "DataLoader: prefetch_factor must be <= 1024, got ",
             options_.prefetch_factor);
  KILN_CHECK(options_.prefetch_factor >= 1, "DataLoader: prefetch_factor must be >= 1, got ", options_.prefetch_factor);
  KILN_CHECK(!(options_.shuffle && options_.sampler),
             "DataLoader: shuffle = true cannot be combined with a "
             "sampler; shuffle inside the sampler (DistributedSampler's shuffle option) instead");
  seed_ = options_.seed ? *options_.seed
                        : uint64_t(kiln::randint(0, std::numeric_limits<int64_t>::max(), {1}).to_vector<int64_t>()[0]);
  if (options_.sampler)
    sampler_ = options_.sampler;
  else if (options_.shuffle)
    sampler_ = std::make_shared<RandomSampler>(dataset_->size(), seed_);
  else
    sampler_ = std::make_shared<SequentialSampler>(dataset_->size());
}

DataLoader::DataLoader(DataLoader&&) noexcept = default;
DataLoader& DataLoader::operator=(DataLoader&&) noexcept = default;

DataLoader::~DataLoader() = default;

int64_t DataLoader::size() const {
  const int64_t n = sampler_->size(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

DataLoader::Iterator DataLoader::begin() {
  if (auto previous = current_.lock()) previous->stop();
  const int64_t epoch = next_epoch_++;
  sampler_->set_epoch(epoch);
  std::vector<int64_t> order = sampler_->indices();
  const size_t b = size_t(options_.batch_size);
  std::vector<std::vector<int64_t>> batches;
  for (size_t start = 0; start < order.size(); start += b) {
    size_t end = std::min(order.size(), start + b);
    if (end - start < b && options_.drop_last) break;
    batches.emplace_back(order.begin() + std::ptrdiff_t(start), order.begin() + std::ptrdiff_t(end));
  }
  PinMemoryHook pin;
  if (options_.pin_memory) {
    std::lock_guard<std::mutex> lock(hook_mutex());
    pin = pin_hook();
    if (!pin && cuda::is_available()) pin = pin_batch;
  }
  auto run = std::make_shared<detail::LoaderRun>(dataset_, std::move(batches), seed_, epoch, options_.num_workers,
                                                 options_.prefetch_factor, std::move(pin), options_.collate_fn);
  current_ = run;
  return Iterator(std::move(run));
}

DataLoader::Iterator::Iterator(std::shared_ptr<detail::LoaderRun> run) : run_(std::move(run)) { run_->load(); }

Batch& DataLoader::Iterator::operator*() const { return run_->current(); }

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  run_->next();
  return *this;
}

bool DataLoader::Iterator::operator==(std::default_sentinel_t) const { return !run_ || run_->finished(); }

}  // namespace kiln::data
