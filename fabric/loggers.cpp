#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "core/json.h"
#include "fabric/atomic_file.h"
#include "fabric/loggers.h"

namespace kiln {
namespace fs = std::filesystem;

Logger::Logger(std::string root_dir, std::string name, std::optional<int> version)
    : root_dir_(std::move(root_dir)), name_(std::move(name)), version_(version) {
  KILN_CHECK(!root_dir_.empty(), "Logger: root_dir is empty; pass a folder such as \"logs\"");
  KILN_CHECK(!version || *version >= 0, "Logger: version must be >= 0, got ", *version);
}

namespace {

// Versions claimed by the live loggers of this process, per root_dir/name: a CSVLogger and a
// TensorBoardLogger of one run write into one version_N, whichever writes first.
struct VersionClaims {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<const int>> by_dir;
};
VersionClaims& claims() {
  static VersionClaims c;
  return c;
}

}  // namespace

int Logger::version() const {
  if (version_) return *version_;
  const std::string key = (fs::path(root_dir_) / name_).lexically_normal().string();
  VersionClaims& c = claims();
  std::lock_guard<std::mutex> lock(c.mu);
  if (auto shared = c.by_dir[key].lock()) {
    claim_ = shared;
    version_ = *shared;
    return *version_;
  }
  int next = 0;
  fs::path dir = fs::path(root_dir_) / name_;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string n = e.path().filename().string();
      if (!e.is_directory() || n.rfind("version_", 0) != 0) continue;
      int v = 0;
      auto [p, err] = std::from_chars(n.data() + 8, n.data() + n.size(), v);
      if (err == std::errc() && p == n.data() + n.size()) next = std::max(next, v + 1);
    }
  }
  version_ = next;
  auto claim = std::make_shared<const int>(next);
  c.by_dir[key] = claim;
  claim_ = claim;
  return next;
}

std::string Logger::log_dir() const {
  return (fs::path(root_dir_) / name_ / ("version_" + std::to_string(version()))).string();
}

std::string Logger::ensure_log_dir() {
  std::string dir = log_dir();
  std::error_code ec;
  fs::create_directories(dir, ec);
  KILN_CHECK(!ec, "Logger: cannot create log folder ", dir, ": ", ec.message());
  return dir;
}

void Logger::log_hyperparams(const nlohmann::json& params) {
  KILN_CHECK(params.is_object(), "log_hyperparams: expected a JSON object of name -> value, got ",
             detail::json_brief(params));
  write_file_atomic(ensure_log_dir() + "/hparams.yaml", detail::to_yaml(params));
}

namespace detail {
// YAML is a superset of JSON, so each value can be written in JSON's flow style.
std::string to_yaml(const nlohmann::json& params) {
  std::string out;
  for (auto it = params.begin(); it != params.end(); ++it)
    out +=
        dump_json(nlohmann::json(it.key()), "log_hyperparams") + ": " + dump_json(it.value(), "log_hyperparams") + "\n";
  return out;
}
}  // namespace detail

// ---- CSVLogger ----

namespace {
std::string format_double(double v) {
  char buf[64];
  auto [p, err] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, p);
}
}  // namespace

CSVLogger::CSVLogger(std::string root_dir, std::string name, std::optional<int> version)
    : Logger(std::move(root_dir), std::move(name), version) {}

CSVLogger::~CSVLogger() {
  if (file_) std::fclose(file_);
}

void CSVLogger::finalize() {
  if (file_) std::fflush(file_);
}

static std::string csv_row(const std::vector<std::string>& keys, int64_t step, const std::map<std::string, double>& m) {
  std::string line = std::to_string(step);
  for (const auto& k : keys) {
    line += ',';
    if (auto it = m.find(k); it != m.end()) line += format_double(it->second);
  }
  return line + "\n";
}

static std::string csv_header(const std::vector<std::string>& keys) {
  std::string line = "step";
  for (const auto& k : keys) {
    KILN_CHECK(k.find_first_of(",\"\n") == std::string::npos, "CSVLogger: metric name '", k,
               "' contains a comma, quote or newline; use a plain name such as train_loss");
    line += "," + k;
  }
  return line + "\n";
}

void CSVLogger::rewrite() {
  if (file_) std::fclose(file_);
  file_ = nullptr;
  std::string all = csv_header(keys_);
  for (const auto& [step, m] : rows_) all += csv_row(keys_, step, m);
  write_file_atomic(metrics_path(), all);
  file_ = std::fopen(metrics_path().c_str(), "a");
  KILN_CHECK(file_, "CSVLogger: cannot append to ", metrics_path(), ": ", std::strerror(errno));
}

void CSVLogger::log_metrics(const std::map<std::string, double>& metrics, int64_t step) {
  KILN_CHECK(!metrics.count("step"), "CSVLogger: 'step' is the step column; rename the metric");
  ensure_log_dir();
  rows_.emplace_back(step, metrics);
  bool grew = false;
  for (const auto& [k, v] : metrics) {
    if (std::find(keys_.begin(), keys_.end(), k) == keys_.end()) {
      keys_.push_back(k);
      grew = true;
    }
  }
  if (grew || !file_) {
    std::sort(keys_.begin(), keys_.end());
    csv_header(keys_);  // validates names before anything is written
    rewrite();
    return;
  }
  std::string line = csv_row(keys_, step, metrics);
  KILN_CHECK(std::fputs(line.c_str(), file_) >= 0 && std::fflush(file_) == 0, "CSVLogger: write to ", metrics_path(),
             " failed: ", std::strerror(errno));
}

}  // namespace kiln
