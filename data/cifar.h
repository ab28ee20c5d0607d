// CIFAR-10, binary version: cifar-10-batches-bin/data_batch_{1..5}.bin (train, 50,000 images) and
// test_batch.bin (10,000); each record is 1 label byte and 3072 pixel bytes, channel-major 32x32.
//   kiln::data::download_cifar10("datasets");   // no-op when the files are already there
//   auto train = std::make_shared<kiln::data::CIFAR10>("datasets", /*train=*/true, transform);
#pragma once

#include <string>
#include <utility>

#include "data/dataset.h"
#include "data/transforms.h"

namespace kiln::data {

// Where an archive comes from and what it must hash to.
struct ArchiveSource {
  std::string url;
  std::string filename;  // saved under this name in the root directory
  std::string md5;
};
const ArchiveSource& cifar10_source();  // the official address of cifar-10-binary.tar.gz

// Images uint8 [N, 3, 32, 32] and labels int64 [N] of one CIFAR-10 batch file. Throws, naming the
// file, when it is missing, empty, not a whole number of records, or holds a label above 9.
std::pair<Tensor, Tensor> read_cifar10_file(const std::string& path);

class CIFAR10 : public VisionDataset {
 public:
  // `root` holds cifar-10-batches-bin/ (or is that folder). With download = true, missing files
  // are fetched and verified first (see download_cifar10).
  explicit CIFAR10(const std::string& root, bool train = true, TransformPtr transform = nullptr, bool download = false);
  static const char* const classes[10];

 private:
  CIFAR10(std::pair<Tensor, Tensor> data, TransformPtr transform);
};

// Makes sure root/cifar-10-batches-bin/ holds the six batch files: fetches the archive (curl or
// wget) unless a copy with the right MD5 is already in `root`, checks the MD5 before extracting,
// extracts to a temporary folder and moves it into place only when complete. Without network it
// fails fast, saying where to put the files.
void download_cifar10(const std::string& root, const ArchiveSource& source = cifar10_source());

}  // namespace kiln::data
