// A CIFAR ResNet (examples/resnet_cifar.h; ResNet-20 by default) trained on Debian's
// Fashion-MNIST padded to 32x32, with the recipe's ingredients of the CIFAR literature: SGD with
// nesterov momentum, weight decay on the conv and linear weights only (a second parameter group
// for BatchNorm and biases), and a one-cycle learning rate stepped every batch.
//   resnet_cifar                                  # 2 epochs of ResNet-20 on the CPU
//   resnet_cifar --epochs 10 --depth 32 --device cuda
//   resnet_cifar --max-train-batches 20 --max-eval-batches 5     # a quick look
// The last line is a JSON summary (test accuracy, images per second).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "data/data.h"
#include "examples/resnet_cifar.h"
#include "kiln.h"

namespace {

struct Args {
  std::string data_dir, device = "cpu";
  int64_t epochs = 2, batch_size = 128, depth = 20, seed = 0, threads = 0, num_workers = 2;
  int64_t max_train_batches = -1, max_eval_batches = -1;
  double lr = 0.1, weight_decay = 5e-4;
};

const char* kUsage = R"(usage: resnet_cifar [--epochs N] [--batch-size N] [--depth 20|32|44|56] [--lr MAX_LR]
                    [--weight-decay X] [--data-dir DIR] [--device cpu|cuda] [--threads N]
                    [--num-workers N] [--seed N] [--max-train-batches N] [--max-eval-batches N]
)";

// 0: go on; 1: --help was printed; 2: a bad flag (reported).
int parse(int argc, char** argv, Args& a) {
  std::map<std::string, int64_t*> ints{{"--epochs", &a.epochs},
                                       {"--batch-size", &a.batch_size},
                                       {"--depth", &a.depth},
                                       {"--seed", &a.seed},
                                       {"--threads", &a.threads},
                                       {"--num-workers", &a.num_workers},
                                       {"--max-train-batches", &a.max_train_batches},
                                       {"--max-eval-batches", &a.max_eval_batches}};
  std::map<std::string, double*> reals{{"--lr", &a.lr}, {"--weight-decay", &a.weight_decay}};
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") return std::cout << kUsage, 1;
    if (i + 1 >= argc) return std::cerr << f << " needs a value\n" << kUsage, 2;
    const std::string v = argv[++i];
    try {
      if (f == "--data-dir")
        a.data_dir = v;
      else if (f == "--device")
        a.device = v;
      else if (ints.count(f))
        *ints[f] = std::stoll(v);
      else if (reals.count(f))
        *reals[f] = std::stod(v);
      else
        return std::cerr << "unknown flag " << f << "\n" << kUsage, 2;
    } catch (const std::exception&) { return std::cerr << f << " expects a number, got '" << v << "'\n" << kUsage, 2; }
  }
  if ((a.depth - 2) % 6 != 0 || a.depth < 8) return std::cerr << "--depth must be 6n + 2 (20, 32, 44, 56)\n", 2;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (int status = parse(argc, argv, a)) return status == 1 ? 0 : 2;
  try {
    if (a.threads > 0) kiln::set_num_threads(int(a.threads));
    kiln::manual_seed(uint64_t(a.seed));
    const kiln::Device device = kiln::Device::parse(a.device);
    auto data = kiln::data::reference_data({.dataset = "fashion-mnist",
                                            .root = a.data_dir,
                                            .train_batch_size = a.batch_size,
                                            .num_workers = int(a.num_workers),
                                            .seed = uint64_t(a.seed)});
    const int64_t n = (a.depth - 2) / 6;
    ResNet model({.in_channels = data.in_channels, .num_classes = data.num_classes, .blocks = {n, n, n}});
    model.to(device);

    const int64_t steps_per_epoch =
        a.max_train_batches > 0 ? std::min(a.max_train_batches, data.train->size()) : data.train->size();
    kiln::optim::SGD opt(decay_groups(model, a.weight_decay), {.lr = a.lr, .momentum = 0.9, .nesterov = true});
    kiln::optim::OneCycleLR sched(opt, a.lr, {.epochs = a.epochs, .steps_per_epoch = steps_per_epoch});
    std::printf(
        "resnet_cifar: ResNet-%lld, %zu parameters, %lld steps per epoch, %s\n", (long long)a.depth,
        [&] {
          size_t c = 0;
          for (auto& p : model.parameters()) c += size_t(p.numel());
          return c;
        }(),
        (long long)steps_per_epoch, device.str().c_str());

    double accuracy = 0, images = 0, seconds = 0;
    for (int64_t epoch = 0; epoch < a.epochs; ++epoch) {
      model.train();
      const auto start = std::chrono::steady_clock::now();
      int64_t step = 0;
      for (auto& [x, y] : *data.train) {
        if (step == steps_per_epoch) break;
        auto loss = kiln::cross_entropy(model.forward(x.to(device)), y.to(device));
        opt.zero_grad();
        loss.backward();
        opt.step();
        sched.step();
        images += double(x.size(0));
        if (++step % 50 == 0)
          std::printf("epoch %lld step %lld: loss %.4f, lr %.4f\n", (long long)epoch + 1, (long long)step, loss.item(),
                      opt.lr());
      }
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

      kiln::NoGradGuard no_grad;
      model.eval();
      int64_t correct = 0, seen = 0, batches = 0;
      for (auto& [x, y] : *data.test) {
        if (batches++ == a.max_eval_batches) break;
        correct += (model.forward(x.to(device)).argmax(1) == y.to(device)).sum().item<int64_t>();
        seen += y.size(0);
      }
      accuracy = seen ? 100.0 * double(correct) / double(seen) : 0.0;
      std::printf("epoch %lld: test accuracy %.2f%%\n", (long long)epoch + 1, accuracy);
    }
    std::printf("{\"test_accuracy\": %.2f, \"images_per_second\": %.1f, \"epochs\": %lld}\n", accuracy,
                seconds > 0 ? images / seconds : 0.0, (long long)a.epochs);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
