// IDX reader: the whole file is inflated into memory once, its header checked against its length,
// and the payload copied into one tensor.
#include "data/idx.h"

#include <cstring>
#include <filesystem>

#include "data/archive.h"

namespace kiln::data {
namespace fs = std::filesystem;
namespace {

std::string resolve(const std::string& path) {
  if (fs::is_regular_file(path)) return path;
  if (fs::is_regular_file(path + ".gz")) return path + ".gz";
  if (path.ends_with(".gz") && fs::is_regular_file(path.substr(0, path.size() - 3))) return path.substr(0, path.size() - 3);
  fail("read_idx: ", path, " not found (also tried ", path, ".gz)");
}

}  // namespace

const char* default_fashion_mnist_root() { return "/usr/share/datasets/fashion-mnist"; }

Tensor read_idx(const std::string& given) {
  const std::string path = resolve(given);
  const std::vector<uint8_t> bytes = read_file_maybe_gzip(path);
  KILN_CHECK(bytes.size() >= 4, "read_idx: ", path, " has only ", bytes.size(), " bytes, too short for an IDX header");
  KILN_CHECK(bytes[0] == 0 && bytes[1] == 0, "read_idx: ", path, " does not start with an IDX magic number "
             "(first bytes must be 0x00 0x00); it is not an IDX file");
  KILN_CHECK(bytes[2] == 0x08, "read_idx: ", path, " holds element type 0x", std::hex, int(bytes[2]),
             "; only unsigned bytes (0x08), as in MNIST and Fashion-MNIST, are supported");
  const int ndim = bytes[3];
  KILN_CHECK(ndim >= 1 && ndim <= 4, "read_idx: ", path, " declares ", ndim, " dimensions; expected 1 to 4");
  const size_t header = 4 + 4 * size_t(ndim);
  KILN_CHECK(bytes.size() >= header, "read_idx: ", path, " is truncated inside its header");
  Shape shape;
  uint64_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    const uint64_t n = uint64_t(p[0]) << 24 | uint64_t(p[1]) << 16 | uint64_t(p[2]) << 8 | p[3];
    shape.push_back(int64_t(n));
    count *= n;
  }
  KILN_CHECK(bytes.size() - header == count, "read_idx: ", path, " header declares shape ", shape, " (", count,
             " bytes of data) but the file holds ", bytes.size() - header, "; the file is truncated or damaged");
  Tensor out = empty(shape, {.dtype = DType::u8});
  if (count) std::memcpy(out.data_ptr<uint8_t>(), bytes.data() + header, count);
  return out;
}

std::pair<Tensor, Tensor> read_idx_pair(const std::string& images_path, const std::string& labels_path,
                                        int64_t num_classes) {
  Tensor images = read_idx(images_path);
  Tensor labels = read_idx(labels_path);
  KILN_CHECK(images.dim() == 3, "read_idx_pair: ", images_path, " has shape ", images.sizes(),
             "; image files are [N, H, W] (idx3)");
  KILN_CHECK(labels.dim() == 1, "read_idx_pair: ", labels_path, " has shape ", labels.sizes(),
             "; label files are [N] (idx1)");
  KILN_CHECK(images.size(0) == labels.size(0), "read_idx_pair: ", images_path, " holds ", images.size(0),
             " images but ", labels_path, " holds ", labels.size(0), " labels");
  const uint8_t* l = labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < labels.size(0); ++i)
    KILN_CHECK(l[i] < num_classes, "read_idx_pair: ", labels_path, ": label ", int(l[i]), " at index ", i,
               " is outside 0..", num_classes - 1);
  return {images.unsqueeze(1), labels.to(DType::i64)};
}

std::pair<Tensor, Tensor> MNIST::load(const std::string& root, bool train, const char* name) {
  KILN_CHECK(fs::is_directory(root), name, ": data folder ", root, " does not exist; pass the folder that holds ",
             "train-images-idx3-ubyte[.gz] and the other three files");
  const std::string split = train ? "train" : "t10k";
  return read_idx_pair((fs::path(root) / (split + "-images-idx3-ubyte")).string(),
                       (fs::path(root) / (split + "-labels-idx1-ubyte")).string());
}

MNIST::MNIST(const std::string& root, bool train, TransformPtr transform)
    : MNIST(load(root, train, "MNIST"), std::move(transform)) {}

MNIST::MNIST(std::pair<Tensor, Tensor> data, TransformPtr transform)
    : VisionDataset(std::move(data.first), std::move(data.second), std::move(transform)) {}

const char* const FashionMNIST::classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

FashionMNIST::FashionMNIST(const std::string& root, bool train, TransformPtr transform)
    : MNIST(load(root.empty() ? default_fashion_mnist_root() : root, train, "FashionMNIST"), std::move(transform)) {}

}  // namespace kiln::data
