// The CIFAR-10 program of kiln's design, statement for statement as its Python original is written
// with Lightning Fabric (the README shows the two side by side): SimpleCNN, augmentation, AdamW
// with a cosine schedule, 20 epochs, validation and a checkpoint after each. It downloads CIFAR-10
// into ./data unless the files are there, and prints the original's lines:
//   Epoch 0 | Batch 0 | Loss: 2.3026 | Acc: 10.2%
//   Epoch 0 | Val Acc: 45.3%
// The launcher may choose the rest, as `fabric run` does: kiln-run --precision bf16-mixed ...
// (or LT_PRECISION=bf16-mixed ./fabric_cifar10). One deviation: validation uses ToTensor and
// Normalize only; the original reuses the augmenting training transform there, a slip.
#include "kiln.h"

namespace nn = kiln::nn;
namespace F = kiln::nn::functional;
namespace datasets = kiln::data;
namespace transforms = kiln::data::transforms;
using kiln::Fabric;
using kiln::data::DataLoader;

class SimpleCNN : public nn::Module {
 public:
  explicit SimpleCNN(int64_t in_channels = 3, int64_t num_classes = 10) : nn::Module() {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in_channels, 32, 3, nn::Conv2dOptions{.padding = 1}));
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(32, 64, 3, nn::Conv2dOptions{.padding = 1}));
    conv3 = register_module("conv3", std::make_shared<nn::Conv2d>(64, 128, 3, nn::Conv2dOptions{.padding = 1}));
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2, 2));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(128 * 4 * 4, 256));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(256, num_classes));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(0.25));
  }

  kiln::Tensor forward(const kiln::Tensor& input) override {
    auto x = (*pool)(F::relu((*conv1)(input)));
    x = (*pool)(F::relu((*conv2)(x)));
    x = (*pool)(F::relu((*conv3)(x)));
    x = kiln::flatten(x, 1);
    x = (*dropout)(F::relu((*fc1)(x)));
    x = (*fc2)(x);
    return x;
  }

  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::Dropout> dropout;
};

void train(Fabric& fabric, std::shared_ptr<SimpleCNN> model, std::shared_ptr<kiln::optim::AdamW> optimizer,
           kiln::DeviceDataLoader& train_loader, int64_t epoch) {
  model->train();
  int64_t correct = 0;
  int64_t total = 0;
  int64_t batch_idx = 0;
  for (auto& [data, target] : train_loader) {
    optimizer->zero_grad();
    auto output = (*model)(data);
    auto loss = F::cross_entropy(output, target);
    fabric.backward(loss);
    optimizer->step();
    auto pred = output.argmax(1);
    correct += kiln::eq(pred, target).sum().item<int64_t>();
    total += target.size(0);
    if (batch_idx % 100 == 0)
      fabric.print("Epoch ", epoch, " | Batch ", batch_idx, " | Loss: ", std::fixed, std::setprecision(4),
                   loss.item<double>(), " | Acc: ", std::setprecision(1), 100.0 * correct / total, "%");
    ++batch_idx;
  }
}

double validate(Fabric& fabric, std::shared_ptr<SimpleCNN> model, kiln::DeviceDataLoader& val_loader, int64_t epoch) {
  model->eval();
  int64_t correct = 0;
  int64_t total = 0;
  {
    kiln::NoGradGuard no_grad;
    for (auto& [data, target] : val_loader) {
      auto output = (*model)(data);
      auto pred = output.argmax(1);
      correct += kiln::eq(pred, target).sum().item<int64_t>();
      total += target.size(0);
    }
  }
  double acc = 100.0 * correct / total;
  fabric.print("Epoch ", epoch, " | Val Acc: ", std::fixed, std::setprecision(1), acc, "%");
  return acc;
}

int main() try {
  Fabric fabric({.accelerator = "auto", .devices = "auto"});
  fabric.launch();
  fabric.seed_everything(42);

  auto transform = std::make_shared<transforms::Compose>(
      transforms::RandomHorizontalFlip(), transforms::RandomCrop(32, 4), transforms::ToTensor(),
      transforms::Normalize({0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}));
  auto val_transform = std::make_shared<transforms::Compose>(
      transforms::ToTensor(), transforms::Normalize({0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}));
  auto train_set = std::make_shared<datasets::CIFAR10>("./data", /*train=*/true, transform, /*download=*/true);
  auto val_set = std::make_shared<datasets::CIFAR10>("./data", /*train=*/false, val_transform, /*download=*/true);
  auto train_data = std::make_shared<DataLoader>(
      train_set, kiln::data::DataLoaderOptions{.batch_size = 128, .shuffle = true, .num_workers = 2});
  auto val_data = std::make_shared<DataLoader>(
      val_set, kiln::data::DataLoaderOptions{.batch_size = 256, .shuffle = false, .num_workers = 2});

  auto model = std::make_shared<SimpleCNN>();
  auto optimizer = std::make_shared<kiln::optim::AdamW>(model->parameters(),
                                                        kiln::optim::AdamWOptions{.lr = 3e-4, .weight_decay = 1e-2});
  auto scheduler = std::make_shared<kiln::optim::CosineAnnealingLR>(*optimizer, /*T_max=*/20);

  std::tie(model, optimizer) = fabric.setup(model, optimizer);
  auto [train_loader, val_loader] = fabric.setup_dataloaders(train_data, val_data);

  for (int64_t epoch = 0; epoch < 20; ++epoch) {
    train(fabric, model, optimizer, *train_loader, epoch);
    validate(fabric, model, *val_loader, epoch);
    scheduler->step();
    fabric.save("checkpoint.ckpt", {{"model", model}, {"optimizer", optimizer}, {"epoch", epoch}});
  }
} catch (const kiln::Error& e) {  // a bad setting or missing data: say why, and fail
  std::cerr << "fabric_cifar10: " << e.what() << "\n";
  return 1;
}
