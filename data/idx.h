// IDX files (MNIST, Fashion-MNIST): big-endian header (magic 0x0000 08 NDIM, then NDIM sizes) and
// uint8 data, plain or gzipped. Fashion-MNIST is read from Debian's dataset-fashion-mnist by default.
//   auto train = std::make_shared<kiln::data::FashionMNIST>("", /*train=*/true, transform);
//   Tensor raw = kiln::data::read_idx("t10k-labels-idx1-ubyte.gz");   // uint8 [10000]
#pragma once

#include <string>
#include <utility>

#include "data/dataset.h"
#include "data/transforms.h"

namespace kiln::data {

// A uint8 tensor with the file's dimensions. `path` may name the file with or without ".gz";
// both spellings are tried. Throws, naming the file, on a bad magic number, an unsupported
// element type, or a size that does not match the header.
Tensor read_idx(const std::string& path);

// Images [N, 1, H, W] and labels [N] from an images/labels pair, checked against each other.
std::pair<Tensor, Tensor> read_idx_pair(const std::string& images_path, const std::string& labels_path,
                                        int64_t num_classes = 10);

// MNIST layout: root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
class MNIST : public VisionDataset {
 public:
  explicit MNIST(const std::string& root, bool train = true, TransformPtr transform = nullptr);

 protected:
  MNIST(std::pair<Tensor, Tensor> data, TransformPtr transform);
  static std::pair<Tensor, Tensor> load(const std::string& root, bool train, const char* name);
};

// The same layout; an empty root means Debian's /usr/share/datasets/fashion-mnist.
class FashionMNIST : public MNIST {
 public:
  explicit FashionMNIST(const std::string& root = "", bool train = true, TransformPtr transform = nullptr);
  static const char* const classes[10];
};

const char* default_fashion_mnist_root();

}  // namespace kiln::data
