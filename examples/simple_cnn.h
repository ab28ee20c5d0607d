// SimpleCNN: the reference CIFAR-10 network of kiln's design, written as a user would write it.
// Its state_dict() keys and shapes equal PyTorch's for the same model (conv1.weight [32, 3, 3, 3]
// ... fc2.bias [10]), so weights move between the two unchanged.
//   auto model = std::make_shared<SimpleCNN>();          // in_channels 3, num_classes 10
//   auto logits = model->forward(images);                 // images [N, 3, 32, 32] -> [N, 10]
#pragma once

#include "nn/nn.h"

class SimpleCNN : public kiln::nn::Module {
 public:
  explicit SimpleCNN(int64_t in_channels = 3, int64_t num_classes = 10)
      : conv1(conv("conv1", in_channels, 32)),
        conv2(conv("conv2", 32, 64)),
        conv3(conv("conv3", 64, 128)),
        pool(register_module("pool", std::make_shared<kiln::nn::MaxPool2d>(2, 2))),
        fc1(register_module("fc1", std::make_shared<kiln::nn::Linear>(128 * 4 * 4, 256))),
        fc2(register_module("fc2", std::make_shared<kiln::nn::Linear>(256, num_classes))),
        dropout(register_module("dropout", std::make_shared<kiln::nn::Dropout>(0.25))) {}

  kiln::Tensor forward(const kiln::Tensor& x) override {
    namespace F = kiln::nn::functional;
    auto h = pool->forward(F::relu(conv1->forward(x)));
    h = pool->forward(F::relu(conv2->forward(h)));
    h = pool->forward(F::relu(conv3->forward(h)));
    h = F::flatten(h, 1);
    h = dropout->forward(F::relu(fc1->forward(h)));
    return fc2->forward(h);
  }

  // Declared in PyTorch's registration order: members are initialised, and so registered, in
  // this order, which fixes the order of parameters() and state_dict().
  std::shared_ptr<kiln::nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<kiln::nn::MaxPool2d> pool;
  std::shared_ptr<kiln::nn::Linear> fc1, fc2;
  std::shared_ptr<kiln::nn::Dropout> dropout;

 private:
  std::shared_ptr<kiln::nn::Conv2d> conv(const char* name, int64_t in, int64_t out) {
    return register_module(name, std::make_shared<kiln::nn::Conv2d>(in, out, 3, kiln::nn::Conv2dOptions{.padding = 1}));
  }
};
