// kiln_bench: one program, several modes. Each mode lives in its own file and registers a
// function with this signature; the last line it prints is one JSON object.
//   kiln_bench --mode train --device cpu --precision 32-true --batch-size 128 --threads 2 --steps 30
#pragma once

#include <string>

namespace kiln::bench {

struct Args {
  std::string mode = "train";  // train | infer | loader | kernels | peak | attention | gpt | resnet
  std::string device = "cpu";  // cpu | cuda
  std::string precision = "32-true";
  int batch_size = 128;
  int threads = 0;  // 0: kiln's default (all cores)
  int steps = 30;
  int warmup = 5;
  int repeats = 3;           // train/infer on a GPU: timed runs of `steps` steps, median
  bool cuda_graphs = false;  // train on a GPU: capture the step once, then replay it
  bool tf32 = false;         // float32 convolutions on TF32 tensor cores (PyTorch's default)
  int num_workers = 2;
  std::string filter;   // kernels mode: run only benchmarks whose name contains this
  std::string dataset;  // loader mode: fashion-mnist (default) | cifar10
  // attention, gpt and resnet modes (models.cpp)
  int seq = 64;  // attention: T; gpt: the context length
  int heads = 4;
  int head_dim = 64;              // attention
  bool causal = true;             // attention
  int n_layer = 2, n_embd = 128;  // gpt
  int compete = 0;                // busy processes running beside the timed steps
};

// Implemented in train.cpp (train, infer), loader.cpp (loader), kernels.cpp (kernels), peak.cpp
// (peak), models.cpp (attention, gpt, resnet).
int run_train(const Args& args);
int run_infer(const Args& args);
int run_loader(const Args& args);
int run_kernels(const Args& args);
int run_peak(const Args& args);
int run_attention(const Args& args);
int run_gpt(const Args& args);
int run_resnet(const Args& args);

// The measured f32 FMA ceiling of `threads` threads (peak.cpp): 0 GFLOP/s where kiln has no vector
// kernels for this CPU.
struct Peak {
  double gflops;
  int threads;
  std::string isa;  // avx512, avx2 or generic
};
Peak measure_peak(int threads);

}  // namespace kiln::bench
