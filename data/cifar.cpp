// CIFAR-10 binary reader and installer. Records are copied straight into one [N, 3, 32, 32] uint8
// buffer; any inconsistency in a file is an error naming it, never a short dataset.
#include "data/cifar.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/file.h"
#include "core/ops.h"
#include "data/archive.h"

namespace kiln::data {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kRecord = 1 + 3 * 32 * 32;
constexpr uint64_t kMaxBatchBytes = uint64_t(10) * 10000 * kRecord;
constexpr const char* kFolder = "cifar-10-batches-bin";

std::vector<std::string> batch_files(bool train) {
  if (!train) return {"test_batch.bin"};
  return {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"};
}

// std::filesystem's calls, with their errors as kiln::Error naming the step.
void fs_ok(const std::error_code& ec, const std::string& what) {
  KILN_CHECK(!ec, "download_cifar10: ", what, " failed: ", ec.message());
}

fs::path batches_dir(const std::string& root) {
  std::error_code ec;
  if (fs::exists(fs::path(root) / "data_batch_1.bin", ec) || fs::exists(fs::path(root) / "test_batch.bin", ec))
    return root;
  return fs::path(root) / kFolder;
}

bool complete(const fs::path& dir) {
  for (bool train : {true, false})
    for (const auto& f : batch_files(train))
      if (std::error_code ec; !fs::is_regular_file(dir / f, ec)) return false;
  return true;
}

std::string where_to_put(const std::string& root) {
  return "Put the binary version of CIFAR-10 in place by hand: download " + cifar10_source().url + " (md5 " +
         cifar10_source().md5 + ") into " + (fs::path(root) / cifar10_source().filename).string() +
         " and call download_cifar10 again, or extract it so that " + (fs::path(root) / kFolder).string() +
         "/data_batch_1.bin exists.";
}

}  // namespace

const ArchiveSource& cifar10_source() {
  static const ArchiveSource s{"https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "cifar-10-binary.tar.gz",
                               "c32a1d4ab5d03f1284b67883e8d87530"};
  return s;
}

const char* const CIFAR10::classes[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                          "dog",      "frog",       "horse", "ship", "truck"};

std::pair<Tensor, Tensor> read_cifar10_file(const std::string& path) {
  std::error_code ec;
  KILN_CHECK(fs::exists(path, ec), "CIFAR10: ", path, " does not exist; download_cifar10(root) fetches it");
  auto file = kiln::detail::RegularFile::open(path, "CIFAR10");
  const uint64_t bytes = file.size();
  // A batch file holds 10,000 records (30.7 MB); ten times that is not CIFAR-10.
  KILN_CHECK(bytes <= kMaxBatchBytes, "CIFAR10: ", path, " is ", kiln::detail::bytes_str(bytes),
             ", far more than a CIFAR-10 batch file (30.7 MB); the path names the wrong file");
  KILN_CHECK(bytes > 0 && bytes % kRecord == 0, "CIFAR10: ", path, " has ", bytes, " bytes, not a whole number of ",
             kRecord,
             "-byte records; the file is truncated or not CIFAR-10's binary version (delete it and download again)");
  const int64_t n = int64_t(bytes / kRecord);
  std::string raw = file.read_all(kMaxBatchBytes);
  KILN_CHECK(raw.size() == bytes, "CIFAR10: ", path, " shrank while it was read (", raw.size(), " of ", bytes,
             " bytes)");
  Tensor images = empty({n, 3, 32, 32}, {.dtype = DType::u8});
  Tensor labels = empty({n}, {.dtype = DType::i64});
  uint8_t* img = images.data_ptr<uint8_t>();
  int64_t* lab = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const char* rec = raw.data() + i * kRecord;
    const auto label = uint8_t(rec[0]);
    KILN_CHECK(label <= 9, "CIFAR10: ", path, ": record ", i, " has label ", int(label),
               " (labels are 0..9); the file is damaged or not CIFAR-10");
    lab[i] = label;
    std::memcpy(img + i * (kRecord - 1), rec + 1, size_t(kRecord - 1));
  }
  return {images, labels};
}

static std::pair<Tensor, Tensor> load_cifar10(const std::string& root, bool train, bool download) {
  if (download) download_cifar10(root);
  const fs::path dir = batches_dir(root);
  std::vector<Tensor> images, labels;
  for (const auto& f : batch_files(train)) {
    const fs::path path = dir / f;
    std::error_code ec;
    KILN_CHECK(fs::exists(path, ec), "CIFAR10: ", path.string(),
               " not found. Pass download = true, or: ", where_to_put(root));
    auto [x, y] = read_cifar10_file(path.string());
    images.push_back(x);
    labels.push_back(y);
  }
  return {cat(images, 0), cat(labels, 0)};
}

CIFAR10::CIFAR10(const std::string& root, bool train, TransformPtr transform, bool download)
    : CIFAR10(load_cifar10(root, train, download), std::move(transform)) {}

CIFAR10::CIFAR10(std::pair<Tensor, Tensor> data, TransformPtr transform)
    : VisionDataset(std::move(data.first), std::move(data.second), std::move(transform)) {}

void download_cifar10(const std::string& root, const ArchiveSource& source) {
  const fs::path dest = fs::path(root) / kFolder;
  if (complete(batches_dir(root))) return;
  std::error_code ec;
  fs::create_directories(root, ec);
  fs_ok(ec, "creating " + root);
  const std::string archive = (fs::path(root) / source.filename).string();
  if (!check_integrity(archive, source.md5)) {
    // Fetched beside the archive and renamed only once its MD5 is right.
    const std::string fresh = archive + ".download";
    download_url(source.url, fresh, where_to_put(root));
    if (!check_integrity(fresh, source.md5)) {
      std::string got = md5_file(fresh);
      fs::remove(fresh, ec);
      fail("download_cifar10: ", source.url, " arrived with md5 ", got, ", expected ", source.md5,
           "; the download is corrupt (it was deleted). ", where_to_put(root));
    }
    fs::rename(fresh, archive, ec);
    fs_ok(ec, "renaming " + fresh + " to " + archive);
  }
  const fs::path staging = fs::path(root) / ".cifar-10-extract";
  fs::remove_all(staging, ec);
  fs_ok(ec, "removing " + staging.string());
  try {
    extract_tar_gz(archive, staging.string());
    KILN_CHECK(complete(staging / kFolder), "download_cifar10: ", archive, " does not contain ", kFolder,
               "/ with the six batch files; ", where_to_put(root));
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
  fs::remove_all(dest, ec);
  fs_ok(ec, "removing " + dest.string());
  fs::rename(staging / kFolder, dest, ec);
  fs_ok(ec, "moving the extracted files to " + dest.string());
  fs::remove_all(staging, ec);
}

}  // namespace kiln::data
