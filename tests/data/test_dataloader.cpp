// DataLoader: order, batching, determinism across worker counts, errors and early exits.
#include <atomic>
#include <thread>

#include "data/data.h"
#include "helpers.h"

using namespace kiln;
using namespace kiln::data;

namespace {

std::shared_ptr<TensorDataset> numbered(int64_t n) {
  return std::make_shared<TensorDataset>(arange(n, {.dtype = DType::f32}).reshape({n, 1}), arange(n));
}

std::vector<int64_t> targets_of(DataLoader& loader, std::vector<int64_t>* sizes = nullptr) {
  std::vector<int64_t> all;
  for (auto& [x, y] : loader) {
    auto v = y.to_vector<int64_t>();
    all.insert(all.end(), v.begin(), v.end());
    if (sizes) sizes->push_back(x.size(0));
  }
  return all;
}

// Throws for one index; counts fetches so tests can see workers stop.
class Faulty : public Dataset {
 public:
  explicit Faulty(int64_t bad) : bad_(bad) {}
  int64_t size() const override { return 64; }
  Example get(int64_t i) const override {
    ++fetched;
    if (i == bad_) throw Error("Faulty: cannot read example " + std::to_string(i));
    return {full({2}, double(i)), i};
  }
  mutable std::atomic<int> fetched{0};

 private:
  int64_t bad_;
};

}  // namespace

TEST_CASE("in order without shuffle, partial last batch, drop_last") {
  for (int workers : {0, 1, 3}) {
    DataLoader loader(numbered(10), {.batch_size = 4, .num_workers = workers});
    CHECK(loader.size() == 3);
    std::vector<int64_t> sizes;
    std::vector<int64_t> expect{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    CHECK(targets_of(loader, &sizes) == expect);
    CHECK(sizes == std::vector<int64_t>{4, 4, 2});
    DataLoader dropping(numbered(10), {.batch_size = 4, .drop_last = true, .num_workers = workers});
    CHECK(dropping.size() == 2);
    CHECK(targets_of(dropping).size() == 8);
  }
  DataLoader loader(numbered(3), {.batch_size = 2});
  auto it = loader.begin();
  CHECK(it->data.to_vector<float>() == std::vector<float>{0, 1});
  CHECK_THROWS_AS(DataLoader(numbered(3), {.batch_size = 0}), Error);
  CHECK_THROWS_WITH_AS(DataLoader(numbered(3), {.shuffle = true, .sampler = std::make_shared<SequentialSampler>(3)}),
                       doctest::Contains("cannot be combined"), Error);
}

TEST_CASE("shuffle reshuffles per epoch; same seed gives the same augmented epochs for any worker count") {
  auto images = randint(0, 256, {50, 3, 32, 32}, {.dtype = DType::u8});
  auto ds = std::make_shared<VisionDataset>(images, arange(50), cifar10_transforms().train);
  std::vector<std::vector<Tensor>> runs;
  for (int workers : {0, 1, 2, 4}) {
    DataLoader loader(ds, {.batch_size = 8, .shuffle = true, .num_workers = workers, .seed = 42});
    std::vector<Tensor> epochs;
    for (int e = 0; e < 2; ++e) {
      std::vector<Tensor> xs, ys;
      for (auto& [x, y] : loader) xs.push_back(x), ys.push_back(y);
      epochs.push_back(cat(xs, 0));
      epochs.push_back(cat(ys, 0));
    }
    runs.push_back(epochs);
  }
  for (size_t r = 1; r < runs.size(); ++r)
    for (size_t k = 0; k < runs[0].size(); ++k) CHECK(equal(runs[r][k], runs[0][k]));
  CHECK(!equal(runs[0][1], runs[0][3]));  // epoch 1 visits another order
  auto order = runs[0][1].to_vector<int64_t>();
  std::sort(order.begin(), order.end());
  CHECK(order == arange(50).to_vector<int64_t>());
  // set_epoch replays an epoch.
  DataLoader loader(ds, {.batch_size = 8, .shuffle = true, .num_workers = 2, .seed = 42});
  loader.set_epoch(1);
  std::vector<Tensor> xs;
  for (auto& [x, y] : loader) xs.push_back(x);
  CHECK(equal(cat(xs, 0), runs[0][2]));
  CHECK(loader.epoch() == 2);
}

TEST_CASE("a sampler drives the order and gets the epoch") {
  auto sampler = std::make_shared<DistributedSampler>(
      10, DistributedSamplerOptions{.num_replicas = 2, .rank = 1, .shuffle = false});
  DataLoader loader(numbered(10), {.batch_size = 2, .sampler = sampler, .num_workers = 2});
  CHECK(loader.size() == 3);
  CHECK(targets_of(loader) == std::vector<int64_t>{1, 3, 5, 7, 9});
  CHECK(sampler->epoch() == 0);
  targets_of(loader);
  CHECK(sampler->epoch() == 1);
}

TEST_CASE("a worker's exception reaches the consumer, in order") {
  for (int workers : {0, 2}) {
    auto ds = std::make_shared<Faulty>(21);
    DataLoader loader(ds, {.batch_size = 4, .num_workers = workers});
    int seen = 0;
    CHECK_THROWS_WITH_AS(
        [&] {
          for (auto& [x, y] : loader) {
            CHECK(y.to_vector<int64_t>()[0] == seen * 4);
            ++seen;
          }
        }(),
        doctest::Contains("cannot read example 21"), Error);
    CHECK(seen == 5);  // batches 0..4 arrived before the failing batch 5
    // The loader is usable again afterwards.
    loader.set_epoch(0);
    auto it = loader.begin();
    CHECK(it->target.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
  }
}

TEST_CASE("leaving a pass early stops the workers") {
  auto ds = std::make_shared<Faulty>(-1);
  {
    DataLoader loader(ds, {.batch_size = 2, .num_workers = 3, .prefetch_factor = 1});
    for (auto& [x, y] : loader) {
      (void)x;
      break;
    }
    int after_break = ds->fetched.load();
    CHECK(after_break < 64);  // the window kept workers from running ahead through the epoch
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(ds->fetched.load() == after_break);  // nobody is still fetching
    // A new pass while an old iterator is alive ends the old one.
    auto first = loader.begin();
    auto second = loader.begin();
    CHECK(first == std::default_sentinel);
    CHECK(second->target.to_vector<int64_t>() == std::vector<int64_t>{0, 1});
  }
  // The loader can go away while an iterator from it is mid-pass.
  {
    auto it = [&] {
      DataLoader loader(ds, {.batch_size = 2, .num_workers = 2});
      return loader.begin();
    }();
    ++it;
    CHECK(it->target.to_vector<int64_t>() == std::vector<int64_t>{2, 3});
  }  // the iterator ends its pass with the loader gone
}

TEST_CASE("pin_memory goes through the installed hook") {
  std::atomic<int> pinned{0};
  set_pin_memory_hook([&](Batch b) {
    ++pinned;
    return b;
  });
  DataLoader loader(numbered(10), {.batch_size = 5, .num_workers = 1, .pin_memory = true});
  CHECK(targets_of(loader).size() == 10);
  CHECK(pinned == 2);
  set_pin_memory_hook(nullptr);
  DataLoader plain(numbered(10), {.batch_size = 5, .pin_memory = true});
  CHECK(targets_of(plain).size() == 10);
}

TEST_CASE("DataLoader pin_memory=true without a GPU gives ordinary batches" *
          doctest::skip(kiln::cuda::is_available())) {
  auto ds = std::make_shared<data::TensorDataset>(randn({10, 3}), arange(10.0));
  data::DataLoader loader(ds, {.batch_size = 4, .pin_memory = true});
  int64_t batches = 0;
  for (auto& [x, y] : loader) {
    CHECK_FALSE(x.is_pinned());
    CHECK(x.size(1) == 3);
    ++batches;
  }
  CHECK(batches == 3);
}
