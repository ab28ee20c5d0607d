// The reference recipe's data pipelines (see DESIGN.md): CIFAR-10 and the Fashion-MNIST variant,
// as transforms and as ready-made train/test loaders.
//   auto data = kiln::data::reference_data({.dataset = "fashion-mnist", .num_workers = 2});
//   for (auto& [x, y] : *data.train) { ... }   // x [128, 1, 32, 32], normalised
#pragma once

#include <memory>
#include <string>

#include "data/dataloader.h"
#include "data/transforms.h"

namespace kiln::data {

struct ReferenceTransforms {
  TransformPtr train;  // augmentation + ToTensor + Normalize
  TransformPtr test;   // ToTensor + Normalize only
};

// CIFAR-10: RandomHorizontalFlip, RandomCrop(32, padding 4), ToTensor,
// Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)).
ReferenceTransforms cifar10_transforms();
// Fashion-MNIST: Pad 28x28 to 32x32 with black, then the same with Normalize(0.2860, 0.3530).
ReferenceTransforms fashion_mnist_transforms();

struct ReferenceDataOptions {
  std::string dataset = "fashion-mnist";  // or "cifar10"
  std::string root = "";                  // "" : Debian's Fashion-MNIST, or "datasets" for CIFAR-10
  bool download = false;                  // CIFAR-10 only
  int64_t train_batch_size = 128;
  int64_t eval_batch_size = 256;
  int num_workers = 2;
  std::optional<uint64_t> seed = std::nullopt;
  std::shared_ptr<Sampler> train_sampler = nullptr;  // e.g. a DistributedSampler; otherwise shuffled
  std::shared_ptr<Sampler> eval_sampler = nullptr;
};

struct ReferenceData {
  std::shared_ptr<VisionDataset> train_set, test_set;
  std::shared_ptr<DataLoader> train, test;
  int64_t in_channels = 0;
  int64_t num_classes = 10;
};

ReferenceData reference_data(const ReferenceDataOptions& options = {});

}  // namespace kiln::data
