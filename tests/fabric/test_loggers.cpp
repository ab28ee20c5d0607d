// CSVLogger and TensorBoardLogger: Lightning's folder layout, CSV header growth, and event files
// parsed back by an independent TFRecord/protobuf reader that checks every CRC.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fabric/loggers.h"
#include "helpers.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kiln_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

// Reference CRC32C, bit by bit (independent of the table in the logger).
uint32_t crc_ref(const std::string& s) {
  uint32_t c = ~0u;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}
uint32_t mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

struct Scalar {
  int64_t step;
  std::string tag;
  float value;
  std::string file_version;
};

uint64_t read_varint(const std::string& s, size_t& i) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    uint8_t b = uint8_t(s.at(i++));
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
}

// Decodes the fields this test cares about from an Event message.
Scalar decode_event(const std::string& e) {
  Scalar out{0, "", 0.f, ""};
  size_t i = 0;
  while (i < e.size()) {
    uint64_t key = read_varint(e, i);
    int field = int(key >> 3), wire = int(key & 7);
    if (wire == 1) {
      i += 8;
    } else if (wire == 0) {
      uint64_t v = read_varint(e, i);
      if (field == 2) out.step = int64_t(v);
    } else if (wire == 2) {
      size_t n = read_varint(e, i);
      std::string sub = e.substr(i, n);
      i += n;
      if (field == 3) out.file_version = sub;
      if (field == 5) {  // Summary -> Value
        size_t j = 0;
        REQUIRE(read_varint(sub, j) == (1 << 3 | 2));
        size_t vn = read_varint(sub, j);
        std::string val = sub.substr(j, vn);
        size_t k = 0;
        while (k < val.size()) {
          uint64_t vk = read_varint(val, k);
          if (vk == (1 << 3 | 2)) {
            size_t tn = read_varint(val, k);
            out.tag = val.substr(k, tn);
            k += tn;
          } else {
            REQUIRE(vk == (2 << 3 | 5));
            std::memcpy(&out.value, val.data() + k, 4);
            k += 4;
          }
        }
      }
    } else {
      FAIL("unexpected wire type " << wire);
    }
  }
  return out;
}

std::vector<Scalar> read_events(const fs::path& p) {
  std::string s = slurp(p);
  std::vector<Scalar> out;
  size_t i = 0;
  while (i < s.size()) {
    REQUIRE(i + 12 <= s.size());
    uint64_t len;
    uint32_t lcrc, dcrc;
    std::memcpy(&len, s.data() + i, 8);
    std::memcpy(&lcrc, s.data() + i + 8, 4);
    CHECK(lcrc == mask(crc_ref(s.substr(i, 8))));
    std::string data = s.substr(i + 12, len);
    std::memcpy(&dcrc, s.data() + i + 12 + len, 4);
    CHECK(dcrc == mask(crc_ref(data)));
    out.push_back(decode_event(data));
    i += 12 + len + 4;
  }
  return out;
}

}  // namespace

TEST_CASE("loggers: CRC32C matches the standard check value") {
  CHECK(detail::crc32c("123456789", 9) == 0xE3069283u);
  CHECK(crc_ref("123456789") == 0xE3069283u);
}

TEST_CASE("CSVLogger: version folders, growing header, hparams.yaml") {
  auto root = fresh_dir("csv");
  {
    CSVLogger log(root.string(), "exp");
    CHECK(log.version() == 0);
    log.log_hyperparams({{"lr", 0.0003}, {"batch_size", 128}, {"name", "cnn"}});
    log.log_metrics({{"train_loss", 2.5}}, 0);
    log.log_metrics({{"train_loss", 1.25}}, 1);
    CHECK(slurp(log.metrics_path()) == "step,train_loss\n0,2.5\n1,1.25\n");
    log.log_metrics({{"val_acc", 0.5}, {"epoch", 0}}, 1);
    CHECK(slurp(log.metrics_path()) == "step,epoch,train_loss,val_acc\n0,,2.5,\n1,,1.25,\n1,0,,0.5\n");
    std::string y = slurp(fs::path(log.log_dir()) / "hparams.yaml");
    CHECK(y.find("\"lr\": 0.0003") != std::string::npos);
    CHECK(y.find("\"name\": \"cnn\"") != std::string::npos);
    CHECK_THROWS_AS(log.log_metrics({{"a,b", 1}}, 2), Error);
  }
  CSVLogger second(root.string(), "exp");
  CHECK(second.version() == 1);
  CHECK(second.log_dir() == (root / "exp" / "version_1").string());
  CHECK(!fs::exists(second.log_dir()));  // created on the first write only
  fs::remove_all(root);
}

TEST_CASE("TensorBoardLogger: event file records with valid CRCs and scalar summaries") {
  auto root = fresh_dir("tb");
  TensorBoardLogger log(root.string(), "exp");
  log.log_metrics({{"loss", 0.75}, {"acc", 0.5}}, 3);
  log.log_metrics({{"loss", 0.5}}, 4);
  log.finalize();
  REQUIRE(!log.event_file().empty());
  CHECK(fs::path(log.event_file()).filename().string().rfind("events.out.tfevents.", 0) == 0);
  CHECK(fs::path(log.event_file()).parent_path() == root / "exp" / "version_0");
  auto ev = read_events(log.event_file());
  REQUIRE(ev.size() == 4);
  CHECK(ev[0].file_version == "brain.Event:2");
  CHECK((ev[1].tag == "acc" && ev[1].step == 3 && ev[1].value == 0.5f));
  CHECK((ev[2].tag == "loss" && ev[2].step == 3 && ev[2].value == 0.75f));
  CHECK((ev[3].tag == "loss" && ev[3].step == 4 && ev[3].value == 0.5f));
  fs::remove_all(root);
}
