// The reference pipelines, spelled with the public transforms so that they read like torchvision.
#include "data/reference.h"

#include "data/cifar.h"
#include "data/idx.h"

namespace kiln::data {

using namespace transforms;

ReferenceTransforms cifar10_transforms() {
  const std::vector<double> mean{0.4914, 0.4822, 0.4465}, std{0.2470, 0.2435, 0.2616};
  return {std::make_shared<Compose>(RandomHorizontalFlip(0.5), RandomCrop(32, 4), ToTensor(), Normalize(mean, std)),
          std::make_shared<Compose>(ToTensor(), Normalize(mean, std))};
}

ReferenceTransforms fashion_mnist_transforms() {
  const std::vector<double> mean{0.2860}, std{0.3530};
  return {
      std::make_shared<Compose>(Pad(2), RandomHorizontalFlip(0.5), RandomCrop(32, 4), ToTensor(), Normalize(mean, std)),
      std::make_shared<Compose>(Pad(2), ToTensor(), Normalize(mean, std))};
}

ReferenceData reference_data(const ReferenceDataOptions& o) {
  ReferenceData d;
  ReferenceTransforms t;
  if (o.dataset == "cifar10") {
    t = cifar10_transforms();
    const std::string root = o.root.empty() ? "datasets" : o.root;
    d.train_set = std::make_shared<CIFAR10>(root, true, t.train, o.download);
    d.test_set = std::make_shared<CIFAR10>(root, false, t.test);
    d.in_channels = 3;
  } else if (o.dataset == "fashion-mnist") {
    t = fashion_mnist_transforms();
    d.train_set = std::make_shared<FashionMNIST>(o.root, true, t.train);
    d.test_set = std::make_shared<FashionMNIST>(o.root, false, t.test);
    d.in_channels = 1;
  } else {
    fail("reference_data: unknown dataset '", o.dataset, "'; use \"cifar10\" or \"fashion-mnist\"");
  }
  d.train = std::make_shared<DataLoader>(d.train_set, DataLoaderOptions{.batch_size = o.train_batch_size,
                                                                        .shuffle = o.train_sampler == nullptr,
                                                                        .sampler = o.train_sampler,
                                                                        .num_workers = o.num_workers,
                                                                        .seed = o.seed});
  d.test = std::make_shared<DataLoader>(
      d.test_set,
      DataLoaderOptions{
          .batch_size = o.eval_batch_size, .sampler = o.eval_sampler, .num_workers = o.num_workers, .seed = o.seed});
  return d;
}

}  // namespace kiln::data
