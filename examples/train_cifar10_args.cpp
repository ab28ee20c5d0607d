#include "examples/train_cifar10_args.h"

#include <map>

#include "core/error.h"
#include "core/parse.h"
#include "data/dataloader.h"

namespace train_cifar10 {

const char* const kUsage = R"(usage: train_cifar10 [flags]
  --dataset cifar10|fashion-mnist  default: cifar10 if its files are in --data-dir, else fashion-mnist
  --data-dir DIR             CIFAR-10 root (holds cifar-10-batches-bin/) or Fashion-MNIST IDX folder
  --download                 fetch CIFAR-10 into --data-dir first
  --epochs N (20)  --batch-size N (128)  --lr X (3e-4)  --seed N (42)  --num-workers N (2)
  --accelerator auto|cpu|gpu|cuda  --devices auto|N|ID,ID,...
  --strategy auto|single_device|ddp|zero|deepspeed|deepspeed_stage_2|fsdp
                             the last four: ZeRO-2 (gradients and optimizer state sharded); the
                             checkpoint is then an index plus one file per rank (kiln-consolidate)
  --precision 32-true|64-true|bf16-mixed|bf16-true|16-true|16-mixed (32-true)
  --checkpoint PATH (checkpoints/last.safetensors)  --resume PATH  --log-dir DIR (logs)
  --max-train-batches N  --max-eval-batches N    limit each epoch, for quick runs
  --max-steps N              stop after N optimizer steps (the epoch still ends with eval and checkpoint)
  --loader auto|cpu|device   device: the dataset is uploaded once and batches are built and augmented
                             on the training device (auto: on a GPU); cpu: worker threads
  --cuda-graphs auto|on|off  replay the training step as a CUDA graph (auto: on a GPU, one process)
)";

Args parse_args(const std::vector<std::string>& argv) {
  Args a;
  std::map<std::string, std::string*> strings{
      {"--dataset", &a.dataset},       {"--data-dir", &a.data_dir},      {"--accelerator", &a.accelerator},
      {"--devices", &a.devices},       {"--strategy", &a.strategy},      {"--precision", &a.precision},
      {"--checkpoint", &a.checkpoint}, {"--resume", &a.resume},          {"--log-dir", &a.log_dir},
      {"--loader", &a.loader},         {"--cuda-graphs", &a.cuda_graphs}};
  struct IntFlag {
    int64_t* value;
    int64_t lo, hi;
  };
  constexpr int64_t kMax = INT64_MAX;
  std::map<std::string, IntFlag> ints{{"--epochs", {&a.epochs, 1, kMaxEpochs}},
                                      {"--batch-size", {&a.batch_size, 1, kMaxBatchSize}},
                                      {"--seed", {&a.seed, 0, kMax}},
                                      {"--num-workers", {&a.num_workers, 0, kiln::data::kMaxWorkers}},
                                      {"--max-train-batches", {&a.max_train_batches, -1, kMax}},
                                      {"--max-eval-batches", {&a.max_eval_batches, -1, kMax}},
                                      {"--max-steps", {&a.max_steps, -1, kMax}}};
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      a.help = true;
      return a;
    }
    if (flag == "--download") {
      a.download = true;
      continue;
    }
    if (strings.count(flag) == 0 && ints.count(flag) == 0 && flag != "--lr")
      kiln::fail("unknown flag '", flag.substr(0, 80), "'; --help lists the flags");
    KILN_CHECK(i + 1 < argv.size(), flag, " needs a value");
    const std::string& value = argv[++i];
    if (auto s = strings.find(flag); s != strings.end()) {
      KILN_CHECK(!value.empty(), flag, " needs a value, got an empty string");
      *s->second = value;
    } else if (auto n = ints.find(flag); n != ints.end()) {
      *n->second.value = kiln::detail::parse_int(value, flag, n->second.lo, n->second.hi);
    } else {
      a.lr = kiln::detail::parse_double(value, "--lr", 0.0, 1e6);
      KILN_CHECK(a.lr > 0, "--lr must be positive, got '", value, "'");
    }
  }
  KILN_CHECK(a.dataset.empty() || a.dataset == "cifar10" || a.dataset == "fashion-mnist",
             "--dataset must be cifar10 or fashion-mnist, got '", a.dataset.substr(0, 80), "'");
  KILN_CHECK(a.loader == "auto" || a.loader == "cpu" || a.loader == "device",
             "--loader must be auto, cpu or device, got '", a.loader.substr(0, 80), "'");
  KILN_CHECK(a.cuda_graphs == "auto" || a.cuda_graphs == "on" || a.cuda_graphs == "off",
             "--cuda-graphs must be auto, on or off, got '", a.cuda_graphs.substr(0, 80), "'");
  // A device count (a list of ids is Fabric's to check).
  if (a.devices != "auto" && a.devices.find_first_not_of("0123456789") == std::string::npos)
    kiln::detail::parse_int(a.devices, "--devices", 1, kMaxDevices);
  return a;
}

Args parse_args(int argc, char** argv) { return parse_args(std::vector<std::string>(argv, argv + argc)); }

void check_resumed_epoch(const std::string& path, int64_t epoch, const int64_t* planned) {
  if (planned)
    KILN_CHECK(*planned >= 1 && *planned <= kMaxEpochs, "--resume ", path, ": the checkpoint records a run of ",
               *planned, " epochs, outside 1..", kMaxEpochs, "; the file is damaged");
  const int64_t end = planned ? *planned : kMaxEpochs;
  KILN_CHECK(epoch >= 0 && epoch < end, "--resume ", path, ": the checkpoint says it finished epoch ", epoch,
             planned ? ", but it was saved by a run of " + std::to_string(*planned) + " epochs (0.." +
                           std::to_string(*planned - 1) + ")"
                     : ", outside 0.." + std::to_string(kMaxEpochs - 1),
             "; the file is damaged or not a train_cifar10 checkpoint. Resume from another checkpoint");
}

}  // namespace train_cifar10
