// IDX reader: the whole file is inflated into memory once, its header checked against its length,
// and the payload copied into one tensor.
#include "data/idx.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "data/archive.h"
#include "data/gz_reader.h"

namespace kiln::data {
namespace fs = std::filesystem;
namespace {

// IDX files of kiln's datasets are unsigned bytes; the largest published (EMNIST) is 0.6 GB.
constexpr uint64_t kMaxIdxBytes = uint64_t(4) << 30;

std::string resolve(const std::string& path) {
  // A path that exists is used as it is (RegularFile refuses directories, FIFOs and devices).
  std::error_code ec;
  if (fs::exists(path, ec)) return path;
  if (fs::exists(path + ".gz", ec)) return path + ".gz";
  if (path.ends_with(".gz") && fs::exists(path.substr(0, path.size() - 3), ec)) return path.substr(0, path.size() - 3);
  fail("read_idx: ", path, " not found (also tried ", path, ".gz)");
}

}  // namespace

const char* default_fashion_mnist_root() { return "/usr/share/datasets/fashion-mnist"; }

// The header is read first; the data's size it declares is checked against what the file can
// hold (its size, or 1032 times that when gzipped) and a limit before the tensor is allocated, and
// the data is then inflated straight into it.
Tensor read_idx(const std::string& given) {
  const std::string path = resolve(given);
  detail::GzReader in(path, "read_idx");
  uint8_t head[4 + 4 * 4];
  const size_t got = in.read(head, 4);
  KILN_CHECK(got == 4, "read_idx: ", path, " has only ", got, " bytes, too short for an IDX header");
  KILN_CHECK(head[0] == 0 && head[1] == 0, "read_idx: ", path,
             " does not start with an IDX magic number "
             "(first bytes must be 0x00 0x00); it is not an IDX file");
  KILN_CHECK(head[2] == 0x08, "read_idx: ", path, " holds element type 0x", std::hex, int(head[2]),
             "; only unsigned bytes (0x08), as in MNIST and Fashion-MNIST, are supported");
  const int ndim = head[3];
  KILN_CHECK(ndim >= 1 && ndim <= 4, "read_idx: ", path, " declares ", ndim, " dimensions; expected 1 to 4");
  const size_t header = 4 + 4 * size_t(ndim);
  KILN_CHECK(in.read(head + 4, header - 4) == header - 4, "read_idx: ", path, " is truncated inside its header");
  Shape shape;
  // Four 32-bit sizes can multiply past 64 bits: the product is checked against the limit as it
  // grows, zero sizes counted as one (a tensor [0, 2^32-1, 2^32-1] is empty, but its strides are
  // not).
  uint64_t span = 1;
  bool too_big = false;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = head + 4 + 4 * d;
    const uint64_t n = uint64_t(p[0]) << 24 | uint64_t(p[1]) << 16 | uint64_t(p[2]) << 8 | p[3];
    shape.push_back(int64_t(n));
    const uint64_t m = std::max<uint64_t>(n, 1);
    if (span > kMaxIdxBytes / m)
      too_big = true;
    else
      span *= m;
  }
  const uint64_t count = std::find(shape.begin(), shape.end(), 0) != shape.end() ? 0 : span;
  KILN_CHECK(!too_big, "read_idx: ", path, " header declares shape ", shape, ", more than the ",
             kiln::detail::bytes_str(kMaxIdxBytes), " kiln reads from one IDX file; the header is damaged");
  const uint64_t room = in.max_output() - std::min(in.max_output(), uint64_t(header));
  if (in.direct())
    KILN_CHECK(count <= room, "read_idx: ", path, " header declares shape ", shape, " (", count,
               " bytes of data) but the file holds ", room, "; the file is truncated or damaged");
  KILN_CHECK(count <= room, "read_idx: ", path, " header declares shape ", shape, " (", count,
             " bytes of data) but the file (", kiln::detail::bytes_str(in.compressed_size()),
             " of gzip) can hold at most ", room, "; the file is truncated or damaged");
  Tensor out = empty(shape, {.dtype = DType::u8});
  const size_t data = count ? in.read(out.data_ptr<uint8_t>(), size_t(count)) : 0;
  // Trailing data is counted up to 64 MiB, not inflated to its end.
  constexpr uint64_t kCount = uint64_t(64) << 20;
  const uint64_t extra = data < count ? 0 : in.skip_rest(kCount);
  const uint64_t holds = data + extra;
  KILN_CHECK(holds == count, "read_idx: ", path, " header declares shape ", shape, " (", count,
             " bytes of data) but the file holds ", extra >= kCount ? "more than " : "", holds,
             "; the file is truncated or damaged");
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
  std::error_code ec;
  KILN_CHECK(fs::is_directory(root, ec), name, ": data folder ", root, " does not exist; pass the folder that holds ",
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
                                               "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

FashionMNIST::FashionMNIST(const std::string& root, bool train, TransformPtr transform)
    : MNIST(load(root.empty() ? default_fashion_mnist_root() : root, train, "FashionMNIST"), std::move(transform)) {}

}  // namespace kiln::data
