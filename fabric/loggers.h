// Experiment loggers with Lightning's directory layout: root_dir/name/version_N/ where N is the next
// free number, shared by the loggers of one root_dir/name alive in the process (a CSVLogger and a
// TensorBoardLogger of one run write into the same version_N). CSVLogger writes metrics.csv (a "step" column plus one
// per metric, the header grows as new names appear) and hparams.yaml; TensorBoardLogger writes real TensorBoard event
// files. Folders are created on the first write, so a logger built on every rank costs nothing.
//   auto csv = std::make_shared<kiln::CSVLogger>("logs", "cifar");
//   csv->log_hyperparams({{"lr", 3e-4}, {"batch_size", 128}});
//   csv->log_metrics({{"train_loss", 0.71}}, /*step=*/100);   // logs/cifar/version_0/metrics.csv
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

class Logger {
 public:
  Logger(std::string root_dir, std::string name, std::optional<int> version);
  virtual ~Logger() = default;
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  virtual void log_metrics(const std::map<std::string, double>& metrics, int64_t step) = 0;
  virtual void log_hyperparams(const nlohmann::json& params);
  virtual void finalize() {}

  const std::string& root_dir() const { return root_dir_; }
  const std::string& name() const { return name_; }
  int version() const;          // the next free version_N under root_dir/name, fixed on first use
  std::string log_dir() const;  // root_dir/name/version_N

 protected:
  std::string ensure_log_dir();  // creates log_dir() and returns it

 private:
  std::string root_dir_, name_;
  mutable std::optional<int> version_;
  mutable std::shared_ptr<const int> claim_;  // shared with the live loggers of the same folder
};

class CSVLogger : public Logger {
 public:
  explicit CSVLogger(std::string root_dir = "logs", std::string name = "lightning_logs",
                     std::optional<int> version = std::nullopt);
  ~CSVLogger() override;
  void log_metrics(const std::map<std::string, double>& metrics, int64_t step) override;
  void finalize() override;
  std::string metrics_path() const { return log_dir() + "/metrics.csv"; }

 private:
  void rewrite();
  std::vector<std::string> keys_;  // metric columns after "step", sorted
  std::vector<std::pair<int64_t, std::map<std::string, double>>> rows_;
  std::FILE* file_ = nullptr;
};

class TensorBoardLogger : public Logger {
 public:
  explicit TensorBoardLogger(std::string root_dir = "logs", std::string name = "lightning_logs",
                             std::optional<int> version = std::nullopt);
  ~TensorBoardLogger() override;
  void log_metrics(const std::map<std::string, double>& metrics, int64_t step) override;
  void finalize() override;
  const std::string& event_file() const { return event_path_; }  // empty before the first write

 private:
  void write_record(const std::string& data);
  std::string event_path_;
  std::FILE* file_ = nullptr;
};

namespace detail {
// TensorBoard's on-disk pieces, exposed for tests.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);
std::string tfrecord(const std::string& data);  // length, masked CRC, data, masked CRC
std::string scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
std::string file_version_event(double wall_time);
std::string to_yaml(const nlohmann::json& params);
}  // namespace detail

}  // namespace kiln
