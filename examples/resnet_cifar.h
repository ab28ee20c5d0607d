// The CIFAR ResNet (He et al.'s ResNet-20 family): a 3x3 stem, three stages of BasicBlocks whose
// first block halves the resolution with a stride-2 conv and a 1x1 stride-2 projection shortcut,
// global average pooling and a linear head. Names and layouts match the PyTorch module of the same
// structure (conv1, bn1, layer1.0.conv1, layer2.0.shortcut.0, linear, ...), so state_dicts move
// between the two unchanged.
//   auto model = std::make_shared<ResNet>(ResNetConfig{});   // ResNet-20 for 3-channel inputs
//   auto groups = decay_groups(*model, 5e-4);                 // no decay for BatchNorm and biases
#pragma once

#include <array>
#include <string>
#include <vector>

#include "nn/nn.h"
#include "optim/optim.h"

struct ResNetConfig {
  int64_t in_channels = 3;
  int64_t num_classes = 10;
  std::array<int64_t, 3> widths = {16, 32, 64};
  std::array<int64_t, 3> blocks = {3, 3, 3};  // per stage: 3 is ResNet-20, 5 ResNet-32
};

class BasicBlock : public kiln::nn::Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride) {
    namespace nn = kiln::nn;
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(
                                         in, out, 3, nn::Conv2dOptions{.stride = stride, .padding = 1, .bias = false}));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(out));
    conv2 = register_module("conv2",
                            std::make_shared<nn::Conv2d>(out, out, 3, nn::Conv2dOptions{.padding = 1, .bias = false}));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(out));
    shortcut = register_module("shortcut", std::make_shared<nn::Sequential>());
    if (stride != 1 || in != out) {  // a 1x1 projection where the shape changes
      shortcut->push_back(std::make_shared<nn::Conv2d>(in, out, 1, nn::Conv2dOptions{.stride = stride, .bias = false}));
      shortcut->push_back(std::make_shared<nn::BatchNorm2d>(out));
    }
  }

  kiln::Tensor forward(const kiln::Tensor& x) override {
    auto h = bn1->forward(conv1->forward(x)).relu();
    h = bn2->forward(conv2->forward(h));
    return (h + shortcut->forward(x)).relu();
  }

  std::shared_ptr<kiln::nn::Conv2d> conv1, conv2;
  std::shared_ptr<kiln::nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<kiln::nn::Sequential> shortcut;  // empty: the identity
};

class ResNet : public kiln::nn::Module {
 public:
  explicit ResNet(const ResNetConfig& c = {}) {
    namespace nn = kiln::nn;
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(c.in_channels, c.widths[0], 3,
                                                                  nn::Conv2dOptions{.padding = 1, .bias = false}));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(c.widths[0]));
    int64_t in = c.widths[0];
    for (int s = 0; s < 3; ++s) {
      auto stage = std::make_shared<nn::Sequential>();
      for (int64_t b = 0; b < c.blocks[size_t(s)]; ++b) {
        const int64_t stride = s > 0 && b == 0 ? 2 : 1;
        stage->push_back(std::make_shared<BasicBlock>(in, c.widths[size_t(s)], stride));
        in = c.widths[size_t(s)];
      }
      layers.push_back(register_module("layer" + std::to_string(s + 1), stage));
    }
    linear = register_module("linear", std::make_shared<nn::Linear>(in, c.num_classes));
    // He initialisation for the convolutions, as the CIFAR ResNet recipe does.
    for (auto& m : modules())
      if (auto conv = std::dynamic_pointer_cast<nn::Conv2d>(m))
        nn::init::kaiming_normal_(conv->weight, 0.0, "fan_out", "relu");
  }

  kiln::Tensor forward(const kiln::Tensor& x) override {
    auto h = bn1->forward(conv1->forward(x)).relu();
    for (auto& stage : layers) h = stage->forward(h);
    h = h.mean({2, 3});  // global average pooling
    return linear->forward(h);
  }

  std::shared_ptr<kiln::nn::Conv2d> conv1;
  std::shared_ptr<kiln::nn::BatchNorm2d> bn1;
  std::vector<std::shared_ptr<kiln::nn::Sequential>> layers;
  std::shared_ptr<kiln::nn::Linear> linear;
};

// Two parameter groups, PyTorch style: weight decay for the conv and linear weights (the tensors
// of 2 or more dims), none for BatchNorm's weights and biases and the linear bias.
inline std::vector<kiln::optim::ParamGroup> decay_groups(const kiln::nn::Module& model, double weight_decay) {
  kiln::optim::ParamGroup decay, no_decay;
  for (const auto& [name, p] : model.named_parameters()) (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  decay.options = {{"weight_decay", weight_decay}};
  no_decay.options = {{"weight_decay", 0.0}};
  return {decay, no_decay};
}
