// The command line of train_cifar10, parsed apart from the program so that it can be tested and
// fuzzed on its own. Every numeric flag is range-checked; a bad flag is a kiln::Error naming it.
//   Args a = parse_args(argc, argv);   // throws kiln::Error; a.help when --help was given
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace train_cifar10 {

extern const char* const kUsage;

struct Args {
  std::string dataset, data_dir = "data", accelerator = "auto", devices = "auto";
  std::string strategy = "auto", precision = "32-true", checkpoint = "checkpoints/last.safetensors";
  std::string resume, log_dir = "logs", loader = "auto", cuda_graphs = "auto";
  bool download = false, help = false;
  int64_t epochs = 20, batch_size = 128, seed = 42, num_workers = 2;
  int64_t max_train_batches = -1, max_eval_batches = -1, max_steps = -1;
  double lr = 3e-4;
};

// The limits of the numeric flags (far beyond any sensible run, far below overflow).
inline constexpr int64_t kMaxEpochs = 100000;
inline constexpr int64_t kMaxBatchSize = int64_t(1) << 20;
inline constexpr int64_t kMaxDevices = 4096;

// Flags only; the dataset default (which looks at --data-dir) is chosen by the program.
Args parse_args(const std::vector<std::string>& argv);
Args parse_args(int argc, char** argv);

// The epoch a checkpoint says it finished, checked against the run that saved it: 0 <= epoch <
// its planned --epochs (when the checkpoint records them), else 0 <= epoch < kMaxEpochs.
void check_resumed_epoch(const std::string& path, int64_t epoch, const int64_t* planned_epochs);

}  // namespace train_cifar10
