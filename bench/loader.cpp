// kiln_bench --mode loader: images/second of the reference training pipeline (flip, crop with
// padding 4, ToTensor, Normalize, batches of 128) through the DataLoader, the way training uses it.
//   kiln_bench --mode loader --dataset fashion-mnist --num-workers 2 --batch-size 128 --steps 100
// Datasets: fashion-mnist (Debian's real files) or cifar10 (real files under datasets/ or
// $KILN_CIFAR10_ROOT when present, otherwise 50,000 generated CIFAR-shaped images).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "bench.h"
#include "data/data.h"
#include "kiln.h"

namespace kiln::bench {
namespace {

struct Source {
  std::shared_ptr<data::VisionDataset> dataset;
  std::string origin;
};

Source make_source(const std::string& name) {
  if (name == "fashion-mnist") {
    return {std::make_shared<data::FashionMNIST>("", true, data::fashion_mnist_transforms().train),
            data::default_fashion_mnist_root()};
  }
  if (name == "cifar10") {
    const char* env = std::getenv("KILN_CIFAR10_ROOT");
    std::string root = env ? env : "datasets";
    auto train = data::cifar10_transforms().train;
    if (std::filesystem::exists(std::filesystem::path(root) / "cifar-10-batches-bin" / "data_batch_1.bin"))
      return {std::make_shared<data::CIFAR10>(root, true, train), root};
    Generator gen(1);
    Tensor images = randint(0, 256, {50000, 3, 32, 32}, {.dtype = DType::u8}, &gen);
    Tensor labels = randint(0, 10, {50000}, {.dtype = DType::i64}, &gen);
    return {std::make_shared<data::VisionDataset>(images, labels, train), "generated"};
  }
  fail("kiln_bench: --dataset ", name, " is not known to the loader mode; use fashion-mnist or cifar10");
}

}  // namespace

int run_loader(const Args& args) {
  const std::string name = args.dataset.empty() ? "fashion-mnist" : args.dataset;
  Source src = make_source(name);
  data::DataLoader loader(
      src.dataset,
      {.batch_size = args.batch_size, .shuffle = true, .drop_last = true, .num_workers = args.num_workers, .seed = 0});
  KILN_CHECK(loader.size() > 0, "kiln_bench: batch size ", args.batch_size, " exceeds the dataset");
  const int repeats = 5;
  const int steps = std::max(args.steps, 1);

  // One continuous stream of batches across epochs, as a training loop sees it.
  auto it = loader.begin();
  auto next_batch = [&]() -> data::Batch {
    if (it == std::default_sentinel) it = loader.begin();
    data::Batch b = *it;
    ++it;
    return b;
  };
  double checksum = 0;
  for (int i = 0; i < args.warmup; ++i) checksum += double(next_batch().data.numel());
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    int64_t images = 0;
    for (int s = 0; s < steps; ++s) {
      data::Batch b = next_batch();
      images += b.data.size(0);
      checksum += double(b.data.data_ptr<float>()[0]);  // the batch is really there
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(double(images) / secs);
    std::printf("repeat %d: %.0f images/s\n", r, rates.back());
  }
  std::sort(rates.begin(), rates.end());
  std::printf("{\"bench\":\"loader\",\"dataset\":\"%s\",\"source\":\"%s\",\"batch_size\":%d,\"num_workers\":%d,"
              "\"steps\":%d,\"repeats\":%d,\"images_per_s\":%.0f,\"checksum\":%.3g}\n",
              name.c_str(), src.origin.c_str(), args.batch_size, args.num_workers, steps, repeats,
              rates[rates.size() / 2], checksum);
  return 0;
}

}  // namespace kiln::bench
