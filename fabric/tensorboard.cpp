// TensorBoard event files: a sequence of TFRecords (uint64 length, masked CRC32C of the length,
// the bytes, masked CRC32C of the bytes), each holding one tensorflow.Event protobuf. The protobuf
// is encoded by hand: Event{1: wall_time double, 2: step int64, 3: file_version string,
// 5: summary Summary{1: value Value{1: tag string, 2: simple_value float}}}.
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "core/error.h"
#include "fabric/loggers.h"

namespace kiln {
namespace detail {
namespace {

void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char(uint8_t(v) | 0x80);
    v >>= 7;
  }
  out += char(uint8_t(v));
}
void tag(std::string& out, int field, int wire) { varint(out, uint64_t(field) << 3 | uint64_t(wire)); }
template <class T>
void fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void bytes_field(std::string& out, int field, const std::string& s) {
  tag(out, field, 2);
  varint(out, s.size());
  out += s;
}
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  tag(e, 1, 1);
  fixed(e, wall_time);
  if (step != 0) {
    tag(e, 2, 0);
    varint(e, uint64_t(step));
  }
  return e;
}

const uint32_t* crc_table() {
  static uint32_t table[256] = {};
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  return table;
}

double now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const uint32_t* t = crc_table();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& data) {
  std::string out;
  uint64_t len = data.size();
  fixed(out, len);
  fixed(out, masked_crc32c(&len, 8));
  out += data;
  fixed(out, masked_crc32c(data.data(), data.size()));
  return out;
}

std::string file_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  bytes_field(e, 3, "brain.Event:2");
  return e;
}

std::string scalar_event(double wall_time, int64_t step, const std::string& name, float value) {
  std::string v;
  bytes_field(v, 1, name);
  tag(v, 2, 5);
  fixed(v, value);
  std::string summary;
  bytes_field(summary, 1, v);
  std::string e = event_head(wall_time, step);
  bytes_field(e, 5, summary);
  return e;
}

}  // namespace detail

TensorBoardLogger::TensorBoardLogger(std::string root_dir, std::string name, std::optional<int> version)
    : Logger(std::move(root_dir), std::move(name), version) {}

TensorBoardLogger::~TensorBoardLogger() {
  if (file_) std::fclose(file_);
}

void TensorBoardLogger::finalize() {
  if (file_) std::fflush(file_);
}

void TensorBoardLogger::write_record(const std::string& data) {
  if (!file_) {
    char host[256] = "localhost";
    ::gethostname(host, sizeof host - 1);
    double t = detail::now();
    event_path_ = ensure_log_dir() + "/events.out.tfevents." + std::to_string(int64_t(t)) + "." + host + "." +
                  std::to_string(::getpid()) + ".0";
    file_ = std::fopen(event_path_.c_str(), "ab");
    KILN_CHECK(file_, "TensorBoardLogger: cannot create ", event_path_, ": ", std::strerror(errno));
    std::string first = detail::tfrecord(detail::file_version_event(t));
    std::fwrite(first.data(), 1, first.size(), file_);
  }
  std::string rec = detail::tfrecord(data);
  KILN_CHECK(std::fwrite(rec.data(), 1, rec.size(), file_) == rec.size() && std::fflush(file_) == 0,
             "TensorBoardLogger: write to ", event_path_, " failed: ", std::strerror(errno));
}

void TensorBoardLogger::log_metrics(const std::map<std::string, double>& metrics, int64_t step) {
  double t = detail::now();
  for (const auto& [name, value] : metrics) write_record(detail::scalar_event(t, step, name, float(value)));
}

}  // namespace kiln
