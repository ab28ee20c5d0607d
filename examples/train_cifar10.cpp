// The reference program of kiln's design: the SimpleCNN trained on CIFAR-10 (or Fashion-MNIST padded
// to 32x32, which Debian ships) with AdamW + cosine annealing, augmentation, per-epoch evaluation
// without augmentation, a checkpoint every epoch, CSV and TensorBoard logs, and exact resume.
//   train_cifar10 --epochs 3                          # Fashion-MNIST unless CIFAR-10 is in --data-dir
//   train_cifar10 --resume checkpoints/last.safetensors --epochs 4
//   train_cifar10 --accelerator gpu --precision 16-mixed --data-dir /usr/share/datasets/fashion-mnist
//   train_cifar10 --accelerator cpu --devices 2 --strategy ddp     # two processes, Gloo
//   train_cifar10 --accelerator cpu --devices 2 --strategy zero    # ZeRO-2: sharded checkpoints
//   kiln-run --nproc_per_node 2 train_cifar10 --accelerator cpu --strategy zero
// The last line of output is one JSON object with the test accuracy and the training speed.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "data/data.h"
#include "examples/simple_cnn.h"
#include "examples/train_cifar10_args.h"
#include "fabric/fabric.h"
#include "kiln.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
namespace T = kiln::data::transforms;
using Clock = std::chrono::steady_clock;

namespace {

using train_cifar10::Args;

// --dataset's default: CIFAR-10 when its files are in --data-dir (or --download fetches them).
void choose_dataset(Args& a) {
  if (!a.dataset.empty()) return;
  std::error_code ec;
  bool cifar = fs::exists(fs::path(a.data_dir) / "cifar-10-batches-bin" / "data_batch_1.bin", ec) ||
               fs::exists(fs::path(a.data_dir) / "data_batch_1.bin", ec) || a.download;
  a.dataset = cifar ? "cifar10" : "fashion-mnist";
  if (!cifar) std::cout << "CIFAR-10 not found in " << a.data_dir << "; training on Fashion-MNIST\n";
}

struct Data {
  std::shared_ptr<kiln::data::VisionDataset> train, test;
  int64_t channels;
  // The same recipe for kiln::data::DeviceImageLoader (training; evaluation drops flip and crop).
  kiln::data::ImageAugment augment;
};

// The folder with the IDX files (train-images-idx3-ubyte[.gz], ...): --data-dir itself, or its
// fashion-mnist/ or FashionMNIST/raw/ (torchvision's layout). The default --data-dir, when it holds
// none, means Debian's dataset-fashion-mnist package ("" to the reader).
std::string fashion_mnist_root(const std::string& dir) {
  for (fs::path p : {fs::path(dir), fs::path(dir) / "fashion-mnist", fs::path(dir) / "FashionMNIST" / "raw"})
    if (std::error_code ec;
        fs::exists(p / "train-images-idx3-ubyte", ec) || fs::exists(p / "train-images-idx3-ubyte.gz", ec))
      return p.string();
  return dir == "data" ? "" : dir;
}

Data make_data(const Args& a) {
  using kiln::data::TransformPtr;
  if (a.dataset == "cifar10") {
    auto norm = T::Normalize({0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616});
    TransformPtr train_tf =
        std::make_shared<T::Compose>(T::RandomHorizontalFlip(), T::RandomCrop(32, 4), T::ToTensor(), norm);
    TransformPtr test_tf = std::make_shared<T::Compose>(T::ToTensor(), norm);
    return {std::make_shared<kiln::data::CIFAR10>(a.data_dir, true, train_tf, a.download),
            std::make_shared<kiln::data::CIFAR10>(a.data_dir, false, test_tf),
            3,
            {.crop_padding = 4,
             .random_flip = true,
             .random_crop = true,
             .size = 32,
             .mean = {0.4914, 0.4822, 0.4465},
             .std = {0.2470, 0.2435, 0.2616}}};
  }
  // Fashion-MNIST: 28x28 padded with black to 32x32, then the CIFAR recipe.
  auto norm = T::Normalize({0.2860}, {0.3530});
  TransformPtr train_tf =
      std::make_shared<T::Compose>(T::Pad(2), T::RandomHorizontalFlip(), T::RandomCrop(32, 4), T::ToTensor(), norm);
  TransformPtr test_tf = std::make_shared<T::Compose>(T::Pad(2), T::ToTensor(), norm);
  std::string root = fashion_mnist_root(a.data_dir);
  return {std::make_shared<kiln::data::FashionMNIST>(root, true, train_tf),
          std::make_shared<kiln::data::FashionMNIST>(root, false, test_tf),
          1,
          {.pad = 2,
           .crop_padding = 4,
           .random_flip = true,
           .random_crop = true,
           .size = 32,
           .mean = {0.2860},
           .std = {0.3530}}};
}

// Counts stay on the device until the end: one synchronisation per evaluation.
template <class Loader>
double evaluate(kiln::Fabric& fabric, SimpleCNN& model, Loader& loader, int64_t max_batches) {
  kiln::NoGradGuard no_grad;
  model.eval();
  int64_t total = 0, batches = 0;
  kiln::Tensor hits = kiln::zeros({}, {.dtype = kiln::DType::i64, .device = fabric.device()});
  for (auto& batch : loader) {
    if (max_batches >= 0 && batches++ >= max_batches) break;
    auto [x, y] = fabric.to_device(batch);
    kiln::Tensor logits;
    {
      auto ac = fabric.autocast();
      logits = model.forward(x);
    }
    hits.add_(kiln::eq(logits.argmax(1), y).sum());
    total += y.size(0);
  }
  const int64_t correct = hits.item<int64_t>();
  model.train();
  // Each rank evaluated its share of the test set.
  kiln::Tensor counts =
      fabric.all_reduce(kiln::tensor(std::vector<double>{double(correct), double(total)}, {2}), "sum");
  double c = counts[0].item<double>(), n = counts[1].item<double>();
  return n > 0 ? 100.0 * c / n : 0.0;
}

int run(const Args& a) {
  auto csv = std::make_shared<kiln::CSVLogger>(a.log_dir, "train_cifar10");
  auto tb = std::make_shared<kiln::TensorBoardLogger>(a.log_dir, "train_cifar10", csv->version());
  const bool gpu_wanted =
      a.accelerator == "gpu" || a.accelerator == "cuda" || (a.accelerator == "auto" && kiln::cuda::is_available());
  kiln::Fabric fabric({.accelerator = a.accelerator,
                       .devices = a.devices,
                       .precision = a.precision,
                       .strategy = a.strategy,
                       .loggers = {csv, tb},
                       .cuda_graphs = a.cuda_graphs == "on" || (a.cuda_graphs == "auto" && gpu_wanted)});
  fabric.launch();
  kiln::Fabric::seed_everything(uint64_t(a.seed));

  Data data = make_data(a);
  auto model = std::make_shared<SimpleCNN>(data.channels, 10);
  auto optimizer = std::make_shared<kiln::optim::AdamW>(model->parameters(),
                                                        kiln::optim::AdamWOptions{.lr = a.lr, .weight_decay = 1e-2});
  auto scheduler = std::make_shared<kiln::optim::CosineAnnealingLR>(*optimizer, a.epochs);
  std::tie(model, optimizer) = fabric.setup(model, optimizer);
  // On a GPU the whole input pipeline runs there by default (kiln::data::DeviceImageLoader): the
  // dataset is uploaded once and each batch is one kernel. With --loader cpu worker threads build
  // the batches in pinned memory and Fabric's loader copies them asynchronously.
  // It builds float32 batches: the "-true" precisions of other dtypes take the CPU loader's.
  const bool f32_input = a.precision == "32-true" || a.precision == "bf16-mixed" || a.precision == "16-mixed";
  if (a.loader == "device" && !f32_input)
    throw kiln::Error("train_cifar10: --loader device builds float32 batches; with --precision " + a.precision +
                      " use --loader cpu");
  const bool on_device = a.loader == "device" || (a.loader == "auto" && fabric.device().is_cuda() && f32_input);
  const bool pin = fabric.device().is_cuda();
  std::shared_ptr<kiln::DeviceDataLoader> train_loader, test_loader;
  std::shared_ptr<kiln::data::DeviceImageLoader> train_images, test_images;
  if (on_device) {
    kiln::data::ImageAugment eval_aug = data.augment;
    eval_aug.random_flip = eval_aug.random_crop = false;
    eval_aug.crop_padding = 0;
    train_images = std::make_shared<kiln::data::DeviceImageLoader>(
        *data.train, fabric.device(),
        kiln::data::DeviceImageLoaderOptions{.batch_size = a.batch_size,
                                             .shuffle = true,
                                             .augment = data.augment,
                                             .seed = uint64_t(a.seed),
                                             .rank = fabric.global_rank(),
                                             .world_size = fabric.world_size()});
    test_images = std::make_shared<kiln::data::DeviceImageLoader>(
        *data.test, fabric.device(),
        kiln::data::DeviceImageLoaderOptions{
            .batch_size = 256, .augment = eval_aug, .rank = fabric.global_rank(), .world_size = fabric.world_size()});
  } else {
    train_loader = fabric.setup_dataloaders(std::make_shared<kiln::data::DataLoader>(
        data.train,
        kiln::data::DataLoaderOptions{
            .batch_size = a.batch_size, .shuffle = true, .num_workers = int(a.num_workers), .pin_memory = pin}));
    test_loader = fabric.setup_dataloaders(std::make_shared<kiln::data::DataLoader>(
        data.test,
        kiln::data::DataLoaderOptions{.batch_size = 256, .num_workers = int(a.num_workers), .pin_memory = pin}));
  }
  auto run_eval = [&] {
    return on_device ? evaluate(fabric, *model, *test_images, a.max_eval_batches)
                     : evaluate(fabric, *model, *test_loader, a.max_eval_batches);
  };
  // The step as a function of the batch: with CUDA graphs it is captured once per learning rate
  // and replayed. It returns the loss and the number of correct predictions, kept on the device
  // and added up there, so the host reads them only when it prints.
  auto train_step = fabric.compile_step([&](const std::vector<kiln::Tensor>& in) {
    optimizer->zero_grad();
    kiln::Tensor logits, loss;
    {
      auto ac = fabric.autocast();
      logits = model->forward(in[0]);
      loss = kiln::cross_entropy(logits, in[1]);
    }
    fabric.backward(loss);
    fabric.step(optimizer);
    kiln::NoGradGuard no_grad;
    return std::vector<kiln::Tensor>{loss.detach().to(kiln::DType::f32), kiln::eq(logits.argmax(1), in[1]).sum()};
  });

  int64_t start_epoch = 0;
  if (!a.resume.empty()) {
    kiln::State state{{"model", model},      {"optimizer", optimizer}, {"scheduler", scheduler},
                      {"epoch", int64_t(0)}, {"rng_seed", int64_t(0)}, {"rng_offset", int64_t(0)}};
    if (auto scaler = fabric.grad_scaler()) state["grad_scaler"] = scaler;
    kiln::State rest = fabric.load(a.resume, state);
    kiln::default_generator().manual_seed(uint64_t(std::get<int64_t>(state["rng_seed"])));
    kiln::default_generator().set_offset(uint64_t(std::get<int64_t>(state["rng_offset"])));
    auto planned = rest.find("epochs");
    const int64_t* planned_epochs = nullptr;
    if (planned != rest.end() && std::holds_alternative<int64_t>(planned->second))
      planned_epochs = &std::get<int64_t>(planned->second);
    train_cifar10::check_resumed_epoch(a.resume, std::get<int64_t>(state["epoch"]), planned_epochs);
    start_epoch = std::get<int64_t>(state["epoch"]) + 1;
    fabric.print("Resumed from ", a.resume, " after epoch ", start_epoch - 1);
    // The cosine schedule spans --epochs. Resuming with the --epochs the checkpoint was trained
    // for continues it exactly; with another value the schedule is re-planned over the new total
    // and its rate applies from the next epoch on (otherwise that epoch would run at the old
    // plan's rate, near zero at its end).
    if (planned_epochs && *planned_epochs != a.epochs && start_epoch < a.epochs) {
      const double before = optimizer->lr();
      scheduler->set_epoch(scheduler->last_epoch());
      char b[200];
      std::snprintf(b, sizeof b,
                    "The checkpoint was trained for --epochs %lld; the cosine schedule now spans "
                    "%lld epochs: lr %.3g -> %.3g for epoch %lld",
                    (long long)*planned_epochs, (long long)a.epochs, before, optimizer->lr(), (long long)start_epoch);
      fabric.print(b);
    }
  }
  if (fabric.is_global_zero())
    fabric.logger()->log_hyperparams({{"dataset", a.dataset},
                                      {"epochs", a.epochs},
                                      {"batch_size", a.batch_size},
                                      {"lr", a.lr},
                                      {"precision", a.precision},
                                      {"seed", a.seed}});
  if (const fs::path dir = fs::path(a.checkpoint).parent_path(); !dir.empty()) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    KILN_CHECK(!ec, "--checkpoint ", a.checkpoint, ": cannot create the folder ", dir.string(), " (", ec.message(),
               "); pass a path in a folder you can write to");
  }

  // A live progress line on rank 0 when stdout is a terminal; logs and pipes get the plain lines.
  const bool progress = fabric.is_global_zero() && ::isatty(STDOUT_FILENO);
  if (start_epoch >= a.epochs)
    fabric.print("Nothing to train: the checkpoint holds epoch ", start_epoch - 1, " (0-based) and --epochs is ",
                 a.epochs, "; pass a larger --epochs to train on. Evaluating the checkpoint's model.");
  int64_t batches = on_device ? train_images->size() : train_loader->size();
  if (a.max_train_batches >= 0) batches = std::min(batches, a.max_train_batches);
  double acc = 0;
  int64_t steps = 0;
  // Training speed over the epochs after the first (warm-up: allocator, cuDNN and autotuning),
  // or over the only one.
  double timed_secs = 0, first_secs = 0;
  int64_t timed_images = 0, first_images = 0;
  for (int64_t epoch = start_epoch; epoch < a.epochs; ++epoch) {
    if (on_device)
      train_images->set_epoch(epoch);
    else
      train_loader->set_epoch(epoch);
    model->train();
    auto t0 = Clock::now();
    kiln::Tensor loss_sum = kiln::zeros({}, {.device = fabric.device()});
    kiln::Tensor correct = kiln::zeros({}, {.dtype = kiln::DType::i64, .device = fabric.device()});
    int64_t seen = 0, i = 0;
    auto train_epoch = [&](auto& loader) {
      for (auto& batch : loader) {
        if (i >= batches || (a.max_steps >= 0 && steps >= a.max_steps)) break;
        auto [x, y] = fabric.to_device(batch);
        std::vector<kiln::Tensor> out = train_step({x, y});
        loss_sum.add_(out[0]);
        correct.add_(out[1]);
        ++steps;
        seen += y.size(0);
        // The original program's line: 0-based epoch and batch, this batch's loss, running accuracy.
        if (i % 100 == 0) {
          char b[128];
          std::snprintf(b, sizeof b, "Epoch %lld | Batch %lld | Loss: %.4f | Acc: %.1f%%", (long long)epoch,
                        (long long)i, out[0].item<double>(), 100.0 * double(correct.item<int64_t>()) / double(seen));
          fabric.print(b);
        }
        ++i;
        if (i % 50 == 0) fabric.log_dict({{"train_loss", out[0].item<double>()}}, epoch * batches + i);
        if (progress && i % 10 == 0) {
          double secs = std::chrono::duration<double>(Clock::now() - t0).count();
          std::printf("\r  Epoch %lld/%lld  %lld/%lld  %.0f img/s  loss %.4f  %.0fs left   ", (long long)(epoch + 1),
                      (long long)a.epochs, (long long)i, (long long)batches, double(seen) * fabric.world_size() / secs,
                      out[0].item<double>(), secs / double(i) * double(batches - i));
          std::fflush(stdout);
        }
      }
    };
    if (on_device)
      train_epoch(*train_images);
    else
      train_epoch(*train_loader);
    if (progress) std::printf("\r%*s\r", 90, "");
    scheduler->step();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (epoch == start_epoch) {
      first_secs = secs;
      first_images = seen;
    } else {
      timed_secs += secs;
      timed_images += seen;
    }
    acc = run_eval();
    char line[128];
    std::snprintf(line, sizeof line, "Epoch %lld | Val Acc: %.1f%%", (long long)epoch, acc);
    fabric.print(line);
    fabric.print("  epoch ", epoch, ": ", int64_t(secs), " s, ", int64_t(double(seen) / secs), " img/s");
    fabric.log_dict({{"val_acc", acc},
                     {"epoch", double(epoch)},
                     {"lr", optimizer->lr()},
                     {"train_loss_epoch", i ? loss_sum.item<double>() / double(i) : 0.0}},
                    (epoch + 1) * batches);
    kiln::State state{{"model", model},
                      {"optimizer", optimizer},
                      {"scheduler", scheduler},
                      {"epoch", epoch},
                      {"epochs", a.epochs},
                      {"rng_seed", int64_t(kiln::default_generator().seed())},
                      {"rng_offset", int64_t(kiln::default_generator().offset())}};
    if (auto scaler = fabric.grad_scaler()) state["grad_scaler"] = scaler;
    fabric.save(a.checkpoint, state);
    if (a.max_steps >= 0 && steps >= a.max_steps) break;
  }
  if (start_epoch >= a.epochs) acc = run_eval();
  char line[64];
  std::snprintf(line, sizeof line, "Test accuracy: %.2f%%", acc);
  fabric.print(line);
  if (timed_images == 0) {
    timed_secs = first_secs;
    timed_images = first_images;
  }
  // Every rank trains as many batches as the others (the sampler pads), so the job's speed is
  // this rank's times the world size.
  double images_per_s = timed_secs > 0 ? double(timed_images) * fabric.world_size() / timed_secs : 0.0;
  nlohmann::json summary{{"test_acc", std::round(acc * 100) / 100},
                         {"images_per_s", std::round(images_per_s)},
                         {"steps", steps},
                         {"epochs", a.epochs - start_epoch},
                         {"dataset", a.dataset},
                         {"precision", a.precision},
                         {"device", fabric.device().str()},
                         {"world_size", fabric.world_size()},
                         {"batch_size", a.batch_size}};
  if (auto scaler = fabric.grad_scaler()) summary["loss_scale"] = scaler->get_scale();
  if (fabric.world_size() > 1) {
    // DDP and ZeRO-2 keep the replicas identical: compare a checksum of the parameters over the
    // ranks.
    kiln::NoGradGuard no_grad;
    kiln::Tensor sum = kiln::zeros({1}, {.dtype = kiln::DType::f64});
    for (const auto& p : model->parameters()) sum = sum + p.to(kiln::Device::cpu(), kiln::DType::f64).abs().sum();
    kiln::Tensor all = fabric.all_gather(sum);
    summary["ranks_in_sync"] = (all.max() - all.min()).item<double>() == 0.0;
  }
  fabric.print(summary.dump());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = train_cifar10::parse_args(argc, argv);
  } catch (const kiln::Error& e) {
    std::cerr << "train_cifar10: " << e.what() << "\n" << train_cifar10::kUsage;
    return 2;
  }
  if (args.help) {
    std::cout << train_cifar10::kUsage;
    return 0;
  }
  try {
    choose_dataset(args);
    return run(args);
  } catch (const kiln::Error& e) {
    std::cerr << "train_cifar10: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {  // not kiln's own: still a message and a status, never an abort
    std::cerr << "train_cifar10: " << e.what() << "\n";
    return 1;
  }
}
