// CIFAR-10 and IDX readers on files written here in the exact formats, plus MD5, tar.gz
// extraction and the CIFAR-10 installer (offline, through a file:// address).
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "data/data.h"
#include "helpers.h"

using namespace kiln;
using namespace kiln::data;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

// A fresh folder per test case under the build tree (meson test sets KILN_BUILD_ROOT), else under
// the system's temporary folder: never in the source tree of a suite run by hand.
fs::path scratch(const std::string& name) {
  const char* build = std::getenv("KILN_BUILD_ROOT");
  fs::path dir = (build ? fs::path(build) / "tests" : fs::temp_directory_path() / "kiln-tests") / "data_scratch" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write(const fs::path& p, const Bytes& b, bool gzip = false) {
  if (gzip) {
    gzFile f = gzopen(p.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()));
    gzclose(f);
  } else {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
}

// CIFAR records: label i % 10, pixel j of record i = (i * 7 + j) % 256.
Bytes cifar_records(int n, int first = 0) {
  Bytes b;
  for (int i = first; i < first + n; ++i) {
    b.push_back(uint8_t(i % 10));
    for (int j = 0; j < 3072; ++j) b.push_back(uint8_t((i * 7 + j) % 256));
  }
  return b;
}

Bytes idx(uint8_t ndim, std::vector<uint32_t> dims, const Bytes& payload, uint8_t type = 0x08) {
  Bytes b{0, 0, type, ndim};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// A ustar archive of (name, content) regular files.
Bytes tar(const std::vector<std::pair<std::string, Bytes>>& files) {
  Bytes out;
  for (const auto& [name, content] : files) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.c_str());
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 124, 12, "%011o", unsigned(content.size()));
    h[156] = '0';
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (char c : h) sum += uint8_t(c);
    std::snprintf(h + 148, 8, "%06o", sum);
    out.insert(out.end(), h, h + 512);
    out.insert(out.end(), content.begin(), content.end());
    out.resize((out.size() + 511) / 512 * 512, 0);
  }
  out.resize(out.size() + 1024, 0);
  return out;
}

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

}  // namespace

TEST_CASE("CIFAR-10 binary files: exact layout and every malformed case") {
  fs::path root = scratch("cifar");
  fs::path dir = root / "cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int k = 1; k <= 5; ++k) write(dir / ("data_batch_" + std::to_string(k) + ".bin"), cifar_records(3, 3 * (k - 1)));
  write(dir / "test_batch.bin", cifar_records(2, 100));

  CIFAR10 train(root.string(), true);
  CHECK(train.size() == 15);
  auto [x, y] = train.get(13);
  CHECK(x.sizes() == Shape{3, 32, 32});
  CHECK(y == 3);
  auto px = x.to_vector<int>();
  CHECK(px[0] == (13 * 7) % 256);
  CHECK(px[1024 + 32 * 5 + 6] == (13 * 7 + 1024 + 32 * 5 + 6) % 256);  // channel 1, row 5, column 6
  CIFAR10 test(dir.string(), false, cifar10_transforms().test);        // the batches folder itself works too
  CHECK(test.size() == 2);
  CHECK(test.get(0).target == 0);
  CHECK(test.get(0).data.dtype() == DType::f32);

  auto [images, labels] = read_cifar10_file((dir / "test_batch.bin").string());
  CHECK(images.sizes() == Shape{2, 3, 32, 32});
  CHECK(labels.to_vector<int64_t>() == std::vector<int64_t>{0, 1});

  Bytes short_file = cifar_records(2);
  short_file.pop_back();
  write(root / "short.bin", short_file);
  CHECK_THROWS_WITH_AS(read_cifar10_file((root / "short.bin").string()), doctest::Contains("6145 bytes"), Error);
  Bytes bad_label = cifar_records(2);
  bad_label[3073] = 10;
  write(root / "label.bin", bad_label);
  CHECK_THROWS_WITH_AS(read_cifar10_file((root / "label.bin").string()), doctest::Contains("record 1 has label 10"),
                       Error);
  write(root / "empty.bin", {});
  CHECK_THROWS_WITH_AS(read_cifar10_file((root / "empty.bin").string()), doctest::Contains("empty.bin has 0 bytes"),
                       Error);
  CHECK_THROWS_WITH_AS(read_cifar10_file((root / "missing.bin").string()), doctest::Contains("does not exist"), Error);
  fs::remove(dir / "data_batch_4.bin");
  CHECK_THROWS_WITH_AS(CIFAR10(root.string(), true), doctest::Contains("data_batch_4.bin not found"), Error);
  CHECK_THROWS_WITH_AS(CIFAR10((root / "nowhere").string(), false), doctest::Contains("cifar-10-binary.tar.gz"), Error);
}

TEST_CASE("IDX files, plain and gzipped, and their malformed cases") {
  fs::path dir = scratch("idx");
  Bytes pixels;
  for (int i = 0; i < 3 * 2 * 4; ++i) pixels.push_back(uint8_t(i * 10));
  write(dir / "train-images-idx3-ubyte", idx(3, {3, 2, 4}, pixels));
  write(dir / "train-labels-idx1-ubyte.gz", idx(1, {3}, {7, 0, 9}), true);
  write(dir / "t10k-images-idx3-ubyte.gz", idx(3, {1, 2, 4}, Bytes(pixels.begin(), pixels.begin() + 8)), true);
  write(dir / "t10k-labels-idx1-ubyte", idx(1, {1}, {4}));

  Tensor raw = read_idx((dir / "train-images-idx3-ubyte.gz").string());  // finds the plain file
  CHECK(raw.sizes() == Shape{3, 2, 4});
  CHECK(raw.to_vector<int>()[23] == 230);
  CHECK(read_idx((dir / "train-labels-idx1-ubyte").string()).to_vector<int>() == std::vector<int>{7, 0, 9});

  MNIST train(dir.string(), true);
  CHECK(train.size() == 3);
  CHECK(train.images().sizes() == Shape{3, 1, 2, 4});
  CHECK(train.get(2).target == 9);
  CHECK(train.get(1).data.to_vector<int>()[0] == 80);
  MNIST test(dir.string(), false);
  CHECK(test.size() == 1);
  CHECK(test.get(0).target == 4);

  write(dir / "magic", idx(1, {3}, {1, 2, 3}, 0x0D));
  CHECK_THROWS_WITH_AS(read_idx((dir / "magic").string()), doctest::Contains("element type 0xd"), Error);
  Bytes not_idx = text("PK\x03\x04 not an idx file");
  write(dir / "zip", not_idx);
  CHECK_THROWS_WITH_AS(read_idx((dir / "zip").string()), doctest::Contains("magic number"), Error);
  write(dir / "short", idx(3, {3, 2, 4}, Bytes(pixels.begin(), pixels.end() - 1)));
  CHECK_THROWS_WITH_AS(read_idx((dir / "short").string()), doctest::Contains("holds 23"), Error);
  write(dir / "long.gz", idx(1, {2}, {1, 2, 3}), true);
  CHECK_THROWS_WITH_AS(read_idx((dir / "long.gz").string()), doctest::Contains("holds 3"), Error);
  // A gzip stream cut in half.
  write(dir / "whole.gz", idx(3, {3, 2, 4}, pixels), true);
  auto size = fs::file_size(dir / "whole.gz");
  fs::copy_file(dir / "whole.gz", dir / "cut.gz");
  fs::resize_file(dir / "cut.gz", size / 2);
  CHECK_THROWS_WITH_AS(read_idx((dir / "cut.gz").string()), doctest::Contains("corrupt or truncated gzip"), Error);
  CHECK_THROWS_WITH_AS(read_idx((dir / "nothing").string()), doctest::Contains("not found"), Error);
  // Images and labels that disagree.
  write(dir / "train-labels-idx1-ubyte.gz", idx(1, {2}, {7, 0}), true);
  CHECK_THROWS_WITH_AS(MNIST(dir.string(), true), doctest::Contains("3 images but"), Error);
  write(dir / "train-labels-idx1-ubyte.gz", idx(1, {3}, {7, 0, 12}), true);
  CHECK_THROWS_WITH_AS(MNIST(dir.string(), true), doctest::Contains("label 12 at index 2"), Error);
}

TEST_CASE("MD5 digests") {
  CHECK(md5({}) == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5(text("abc")) == "900150983cd24fb0d6963f7d28e17f72");
  CHECK(md5(text("The quick brown fox jumps over the lazy dog")) == "9e107d9d372bb6826bd81d3542a419d6");
  Bytes a(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = uint8_t('a' + i % 26);
  fs::path dir = scratch("md5");
  write(dir / "f", a);
  CHECK(md5_file((dir / "f").string()) == md5(a));  // the streaming path across block boundaries
  CHECK(check_integrity((dir / "f").string(), md5(a)));
  CHECK(!check_integrity((dir / "f").string(), "00000000000000000000000000000000"));
  CHECK(!check_integrity((dir / "absent").string(), md5(a)));
}

TEST_CASE("tar.gz extraction writes files and refuses escaping paths") {
  fs::path dir = scratch("tar");
  write(dir / "a.tar.gz", tar({{"top/one.txt", text("hello")}, {"./top/sub/two.bin", Bytes(700, 3)}}), true);
  auto written = extract_tar_gz((dir / "a.tar.gz").string(), (dir / "out").string());
  CHECK(written.size() == 2);
  CHECK(read_file_maybe_gzip((dir / "out/top/one.txt").string()) == text("hello"));
  CHECK(fs::file_size(dir / "out/top/sub/two.bin") == 700);
  write(dir / "evil.tar.gz", tar({{"../evil.txt", text("x")}}), true);
  CHECK_THROWS_WITH_AS(extract_tar_gz((dir / "evil.tar.gz").string(), (dir / "out2").string()),
                       doctest::Contains("leaves the target directory"), Error);
  CHECK(!fs::exists(dir / "evil.txt"));
  Bytes damaged = tar({{"f", text("data")}});
  damaged[10] ^= 1;  // the header no longer matches its checksum
  write(dir / "bad.tar.gz", damaged, true);
  CHECK_THROWS_WITH_AS(extract_tar_gz((dir / "bad.tar.gz").string(), (dir / "out3").string()),
                       doctest::Contains("checksum"), Error);
}

TEST_CASE("download_cifar10 verifies the MD5 before extracting and never replaces good data") {
  fs::path dir = scratch("install");
  std::vector<std::pair<std::string, Bytes>> members;
  for (int k = 1; k <= 5; ++k)
    members.push_back({"cifar-10-batches-bin/data_batch_" + std::to_string(k) + ".bin", cifar_records(2, k)});
  members.push_back({"cifar-10-batches-bin/test_batch.bin", cifar_records(1)});
  members.push_back({"cifar-10-batches-bin/batches.meta.txt", text("airplane\n")});
  const fs::path served = dir / "served" / "cifar-10-binary.tar.gz";
  fs::create_directories(served.parent_path());
  write(served, tar(members), true);
  const std::string good_md5 = md5_file(served.string());
  const bool have_fetcher = fs::exists("/usr/bin/curl") || fs::exists("/usr/bin/wget");

  SUBCASE("a correct archive already in root is extracted without fetching") {
    fs::path root = dir / "root1";
    fs::create_directories(root);
    fs::copy_file(served, root / "cifar-10-binary.tar.gz");
    download_cifar10(root.string(), {"http://127.0.0.1:9/unreachable", "cifar-10-binary.tar.gz", good_md5});
    CIFAR10 train(root.string(), true);
    CHECK(train.size() == 10);
    CHECK(!fs::exists(root / ".cifar-10-extract"));
  }
  SUBCASE("an archive with the wrong MD5 is fetched again; a bad fetch changes nothing") {
    fs::path root = dir / "root2";
    fs::create_directories(root);
    write(root / "cifar-10-binary.tar.gz", text("partial download"));
    // Unreachable address: fails fast with directions, leaving the partial file alone.
    CHECK_THROWS_WITH_AS(
        download_cifar10(root.string(), {"http://127.0.0.1:9/x.tar.gz", "cifar-10-binary.tar.gz", good_md5}),
        doctest::Contains("Put the binary version of CIFAR-10 in place"), Error);
    CHECK(read_file_maybe_gzip((root / "cifar-10-binary.tar.gz").string()) == text("partial download"));
    CHECK(!fs::exists(root / "cifar-10-batches-bin"));
    if (have_fetcher) {
      const std::string url = "file://" + fs::absolute(served).string();
      CHECK_THROWS_WITH_AS(download_cifar10(root.string(), {url, "cifar-10-binary.tar.gz", std::string(32, '0')}),
                           doctest::Contains("arrived with md5"), Error);
      CHECK(read_file_maybe_gzip((root / "cifar-10-binary.tar.gz").string()) == text("partial download"));
      download_cifar10(root.string(), {url, "cifar-10-binary.tar.gz", good_md5});
      CHECK(check_integrity((root / "cifar-10-binary.tar.gz").string(), good_md5));
      CHECK(CIFAR10(root.string(), false).size() == 1);
    }
  }
  SUBCASE("complete data is left as it is") {
    fs::path root = dir / "root3";
    extract_tar_gz(served.string(), root.string());
    download_cifar10(root.string(), {"http://127.0.0.1:9/unreachable", "cifar-10-binary.tar.gz", "0"});
    CHECK(CIFAR10(root.string(), true).size() == 10);
  }
}
