// A training step that Fabric replays as a CUDA graph (FabricOptions::cuda_graphs): what
// torch.compile(mode="reduce-overhead") does for a PyTorch step. `fn` holds the whole step
// (zero_grad, forward, loss, fabric.backward, the optimizer step), takes the batch's tensors and
// returns the tensors the loop reads afterwards (the loss, a count of correct predictions, ...).
// For each shape of inputs the first calls run eagerly (warm-up: cuDNN's algorithm search, the
// optimizer's state), then the step is captured once (kiln::cuda::Graph) and every later call
// copies the inputs into the graph's own buffers and replays it: one launch instead of hundreds,
// and no host work per step. The outputs are then the graph's tensors, valid until the next call
// (clone() what must outlive it; reading them, e.g. item(), waits for the step). When the
// learning rates change (a scheduler stepped) the step is captured again. Without a GPU, or with
// cuda_graphs off, a call simply runs `fn`.
//   auto step = fabric.compile_step([&](const std::vector<kiln::Tensor>& in) {
//     optimizer->zero_grad();
//     kiln::Tensor loss = kiln::cross_entropy(model->forward(in[0]), in[1]);
//     fabric.backward(loss);
//     fabric.step(optimizer);
//     return std::vector<kiln::Tensor>{loss};
//   });
//   for (auto& [x, y] : *loader) kiln::Tensor loss = step({x, y})[0];
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/cuda.h"
#include "core/tensor.h"

namespace kiln {

class CompiledStep {
 public:
  using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
  using Version = std::function<std::vector<double>()>;

  // `version` (optional) says what the captured graph bakes in and must be re-captured for
  // (Fabric passes the optimizers' learning rates); `warmup` eager calls per input shape.
  CompiledStep(Fn fn, bool cuda_graphs, Version version = {}, int warmup = 2);

  std::vector<Tensor> operator()(const std::vector<Tensor>& inputs);

  bool uses_cuda_graphs() const { return graphs_; }
  int64_t captures() const { return captures_; }  // graphs recorded so far
  int64_t replays() const { return replays_; }

 private:
  struct Entry {
    int calls = 0;
    std::vector<Tensor> inputs, outputs;  // the graph's static buffers
    std::vector<double> version;
    cuda::Graph graph;
  };
  Fn fn_;
  bool graphs_;
  Version version_;
  int warmup_;
  std::map<std::string, Entry> entries_;  // by the inputs' shapes, dtypes and devices
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace kiln
