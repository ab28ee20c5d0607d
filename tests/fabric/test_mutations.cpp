// The public loaders under randomly mutated valid files (a fixed seed, so a failure repeats):
// each either loads or throws kiln::Error; no other exception leaves the library, nothing
// crashes. Mutations flip bits, cut, insert, delete and duplicate bytes, and swap numbers in JSON
// text for extreme ones, so both the framing and the validation behind a well-formed header are
// exercised. (The fuzzers in fuzz/ do the same at length; this is the quick guard in the suite.
// KILN_MUT_N and KILN_MUT_SEED run more of them, or others, by hand.)
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <typeinfo>

#include "data/data.h"
#include "fabric/checkpoint.h"
#include "fabric/safetensors.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}
std::string gzip(const std::string& data) {
  uLongf n = compressBound(uLong(data.size())) + 32;
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(n, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = uInt(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}
  size_t below(size_t n) { return n ? size_t(rng_() % n) : 0; }

  std::string mutate(std::string s) {
    const int rounds = 1 + int(below(3));
    for (int r = 0; r < rounds; ++r) {
      if (s.empty()) s = "x";
      switch (below(8)) {
        case 0:  // flip bits
          for (int k = 0, n = 1 + int(below(4)); k < n; ++k) s[below(s.size())] ^= char(1 << below(8));
          break;
        case 1: {  // an interesting byte
          static const char kBytes[] = {'\0', '\xff', '\x7f', '\x80', '9', '-', '"', '[', '{', ',', ' '};
          s[below(s.size())] = kBytes[below(sizeof kBytes)];
          break;
        }
        case 2:  // truncate
          s.resize(below(s.size()));
          break;
        case 3:  // insert random bytes
          s.insert(below(s.size() + 1), std::string(1 + below(16), char(below(256))));
          break;
        case 4: {  // delete a range
          size_t at = below(s.size());
          s.erase(at, 1 + below(std::min<size_t>(64, s.size() - at)));
          break;
        }
        case 5: {  // duplicate a range
          size_t at = below(s.size());
          std::string piece = s.substr(at, 1 + below(64));
          s.insert(below(s.size() + 1), piece);
          break;
        }
        default: {  // a number in text (JSON) swapped for an extreme one
          static const char* kNumbers[] = {"0",
                                           "-1",
                                           "1e400",
                                           "99999999999999999999",
                                           "-9223372036854775808",
                                           "18446744073709551615",
                                           "2305843009213693953",
                                           "1.5",
                                           "\"7\"",
                                           "null",
                                           "[]",
                                           "{}",
                                           "4294967296"};
          std::vector<size_t> starts;
          for (size_t i = 0; i < s.size(); ++i)
            if (std::isdigit(static_cast<unsigned char>(s[i])) &&
                (i == 0 || !std::isalnum(static_cast<unsigned char>(s[i - 1]))) &&
                (i == 0 || s[i - 1] == ':' || s[i - 1] == '[' || s[i - 1] == ',' || s[i - 1] == ' '))
              starts.push_back(i);
          if (starts.empty()) break;
          size_t at = starts[below(starts.size())], end = at;
          while (end < s.size() &&
                 (std::isdigit(static_cast<unsigned char>(s[end])) || s[end] == '.' || s[end] == 'e' || s[end] == '-'))
            ++end;
          std::string repl = kNumbers[below(std::size(kNumbers))];
          s.replace(at, end - at, repl);
          fix_header_length(s, int64_t(repl.size()) - int64_t(end - at), at);
          break;
        }
      }
    }
    return s;
  }

 private:
  // A safetensors file whose JSON text changed length inside its header keeps a consistent
  // length prefix (sometimes), so that validation, not only framing, sees the change.
  void fix_header_length(std::string& s, int64_t delta, size_t at) {
    if (s.size() < 8 || below(2)) return;
    uint64_t n;
    std::memcpy(&n, s.data(), 8);
    if (at < 8 || at >= 8 + n || n > s.size()) return;
    n = uint64_t(int64_t(n) + delta);
    std::memcpy(s.data(), &n, 8);
  }
  std::mt19937_64 rng_;
};

struct Seed {
  std::string name;  // the file the loader reads (relative to the case's folder)
  std::string loader;
  std::map<std::string, std::string> files;  // every file of the case, by name
};

// Loads; "" on success, the message of a kiln::Error, or FAILs for any other exception.
std::string outcome(const std::string& loader, const fs::path& path, const fs::path& scratch) {
  try {
    if (loader == "checkpoint") {
      auto model = std::make_shared<nn::Linear>(2, 2);
      auto opt = std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
      auto sched = std::make_shared<optim::StepLR>(*opt, 2, 0.5);
      auto scaler = std::make_shared<optim::GradScaler>();
      State st{{"model", model}, {"optimizer", opt}, {"scheduler", sched}, {"scaler", scaler}, {"epoch", int64_t(0)}};
      load_checkpoint(path.string(), st, /*strict=*/false);
      if (is_sharded_checkpoint(path.string()))
        consolidate_checkpoint(path.string(), (scratch / "full.safetensors").string());
    } else if (loader == "adam") {
      auto model = std::make_shared<nn::Linear>(3, 2);
      auto opt = std::make_shared<optim::AdamW>(model->parameters(), 0.01);
      auto sched = std::make_shared<optim::CosineAnnealingLR>(*opt, 10);
      State st{{"model", model}, {"optimizer", opt}, {"scheduler", sched}, {"best", 0.0}, {"tag", std::string()}};
      load_checkpoint(path.string(), st);
      load_safetensors(path.string());
    } else if (loader == "idx") {
      data::read_idx(path.string());
    } else if (loader == "cifar") {
      data::read_cifar10_file(path.string());
    } else if (loader == "tar") {
      data::extract_tar_gz(path.string(), (scratch / "out").string());
      data::read_file_maybe_gzip(path.string());
    }
  } catch (const Error& e) { return e.what(); } catch (const std::exception& e) {
    FAIL("a " << typeid(e).name() << " escaped the " << loader << " loader: " << e.what());
  }
  return "";
}

std::vector<Seed> seeds(const fs::path& scratch) {
  const char* root = std::getenv("KILN_SOURCE_ROOT");
  const fs::path hostile = fs::path(root ? root : ".") / "tests" / "hostile" / "files";
  std::vector<Seed> out;
  out.push_back({"c.safetensors", "checkpoint", {{"c.safetensors", read_bytes(hostile / "valid.safetensors")}}});
  Seed sharded{"last.safetensors", "checkpoint", {}};
  for (const auto& e : fs::directory_iterator(hostile / "sharded_valid"))
    sharded.files[e.path().filename().string()] = read_bytes(e.path());
  out.push_back(sharded);
  {  // A checkpoint written by kiln itself: AdamW state with step counts, a cosine schedule.
    manual_seed(3);
    auto model = std::make_shared<nn::Linear>(3, 2);
    auto opt = std::make_shared<optim::AdamW>(model->parameters(), 0.01);
    auto sched = std::make_shared<optim::CosineAnnealingLR>(*opt, 10);
    model->forward(ones({2, 3})).sum().backward();
    opt->step();
    sched->step();
    const fs::path p = scratch / "adam.safetensors";
    save_checkpoint(
        p.string(),
        {{"model", model}, {"optimizer", opt}, {"scheduler", sched}, {"best", 0.5}, {"tag", std::string("run")}});
    out.push_back({"a.safetensors", "adam", {{"a.safetensors", read_bytes(p)}}});
  }
  std::string idx{'\0', '\0', '\x08', '\x03', '\0', '\0', '\0', '\x02',
                  '\0', '\0', '\0',   '\x03', '\0', '\0', '\0', '\x03'};
  for (int i = 0; i < 18; ++i) idx += char(i * 13);
  out.push_back({"i", "idx", {{"i", idx}}});
  out.push_back({"i.gz", "idx", {{"i.gz", gzip(idx)}}});
  std::string cifar;
  for (int r = 0; r < 2; ++r) {
    cifar += char(r + 3);
    for (int j = 0; j < 3072; ++j) cifar += char((r * 7 + j) % 256);
  }
  out.push_back({"b.bin", "cifar", {{"b.bin", cifar}}});
  // A ustar archive with a folder and two files.
  std::string tar;
  auto member = [&](const std::string& name, const std::string& content, char type) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.c_str());
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 124, 12, "%011o", unsigned(content.size()));
    h[156] = type;
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (char c : h) sum += uint8_t(c);
    std::snprintf(h + 148, 8, "%06o", sum);
    tar.append(h, 512);
    tar += content;
    tar.resize((tar.size() + 511) / 512 * 512, '\0');
  };
  member("d/", "", '5');
  member("d/one.txt", "hello", '0');
  member("d/two.bin", std::string(700, '\3'), '0');
  tar.resize(tar.size() + 1024, '\0');
  out.push_back({"t.tar.gz", "tar", {{"t.tar.gz", gzip(tar)}}});
  return out;
}

}  // namespace

TEST_CASE("mutations: the public loaders either load a mutated file or throw kiln::Error") {
  const fs::path scratch = fs::temp_directory_path() / ("kiln_mutations_" + std::to_string(::getpid()));
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  auto all = seeds(scratch);
  for (const auto& s : all) {  // the unmutated seeds load
    const fs::path dir = scratch / "seed";
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& [name, bytes] : s.files) write_bytes(dir / name, bytes);
    INFO(s.loader << " " << s.name);
    CHECK(outcome(s.loader, dir / s.name, dir) == "");
  }
  Mutator m(std::getenv("KILN_MUT_SEED") ? std::atoll(std::getenv("KILN_MUT_SEED")) : 20240601);
  int errors = 0, loaded = 0;
  const int kMutations = std::getenv("KILN_MUT_N") ? std::atoi(std::getenv("KILN_MUT_N")) : 700;
  for (int i = 0; i < kMutations; ++i) {
    const Seed& s = all[size_t(i) % all.size()];
    const fs::path dir = scratch / "case";
    fs::remove_all(dir);
    fs::create_directories(dir);
    // One file of the case is mutated (a shard, say, or the index).
    size_t which = m.below(s.files.size()), k = 0;
    for (const auto& [name, bytes] : s.files) write_bytes(dir / name, k++ == which ? m.mutate(bytes) : bytes);
    INFO("mutation " << i << " of " << s.loader << " " << s.name);
    std::string err = outcome(s.loader, dir / s.name, dir);
    err.empty() ? ++loaded : ++errors;
  }
  MESSAGE(kMutations << " mutated files: " << errors << " refused with kiln::Error, " << loaded << " loaded");
  CHECK(errors > kMutations / 2);
  fs::remove_all(scratch);
}
