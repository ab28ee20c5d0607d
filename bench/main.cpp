// kiln_bench: argument parsing and dispatch to the benchmark modes.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "bench.h"
#include "kiln.h"

namespace {

void usage() {
  std::cerr << "usage: kiln_bench --mode train|infer|loader|kernels|peak|attention|gpt|resnet [--device cpu|cuda]\n"
               "                  [--precision P]\n"
               "                  [--batch-size N] [--threads N] [--steps N] [--warmup N] [--repeats N]\n"
               "                  [--cuda-graphs 0|1] [--tf32 0|1]\n"
               "                  [--num-workers N] [--filter NAME] [--dataset fashion-mnist|cifar10]\n"
               "                  [--seq N] [--heads N] [--head-dim N] [--causal 0|1] [--n-layer N] [--n-embd N]\n"
               "                  [--compete N]   (attention, gpt, resnet: N busy processes alongside)\n";
}

int to_int(const std::string& flag, const char* v) {
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (!*v || *end || x < 0)
    throw kiln::Error("kiln_bench: " + flag + " expects a non-negative integer, got '" + v + "'");
  return int(x);
}

}  // namespace

int main(int argc, char** argv) {
  kiln::bench::Args a;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string f = argv[i];
      if (f == "-h" || f == "--help") {
        usage();
        return 0;
      }
      if (i + 1 >= argc) throw kiln::Error("kiln_bench: " + f + " needs a value");
      const char* v = argv[++i];
      if (f == "--mode")
        a.mode = v;
      else if (f == "--device")
        a.device = v;
      else if (f == "--precision")
        a.precision = v;
      else if (f == "--batch-size")
        a.batch_size = to_int(f, v);
      else if (f == "--threads")
        a.threads = to_int(f, v);
      else if (f == "--steps")
        a.steps = to_int(f, v);
      else if (f == "--warmup")
        a.warmup = to_int(f, v);
      else if (f == "--repeats")
        a.repeats = to_int(f, v);
      else if (f == "--cuda-graphs")
        a.cuda_graphs = to_int(f, v) != 0;
      else if (f == "--tf32")
        a.tf32 = to_int(f, v) != 0;
      else if (f == "--num-workers")
        a.num_workers = to_int(f, v);
      else if (f == "--filter")
        a.filter = v;
      else if (f == "--dataset")
        a.dataset = v;
      else if (f == "--seq")
        a.seq = to_int(f, v);
      else if (f == "--heads")
        a.heads = to_int(f, v);
      else if (f == "--head-dim")
        a.head_dim = to_int(f, v);
      else if (f == "--causal")
        a.causal = to_int(f, v) != 0;
      else if (f == "--n-layer")
        a.n_layer = to_int(f, v);
      else if (f == "--n-embd")
        a.n_embd = to_int(f, v);
      else if (f == "--compete")
        a.compete = to_int(f, v);
      else
        throw kiln::Error("kiln_bench: unknown flag " + f);
    }
    if (a.threads > 0) kiln::set_num_threads(a.threads);
    if (a.mode == "train") return kiln::bench::run_train(a);
    if (a.mode == "infer") return kiln::bench::run_infer(a);
    if (a.mode == "loader") return kiln::bench::run_loader(a);
    if (a.mode == "kernels") return kiln::bench::run_kernels(a);
    if (a.mode == "peak") return kiln::bench::run_peak(a);
    if (a.mode == "attention") return kiln::bench::run_attention(a);
    if (a.mode == "gpt") return kiln::bench::run_gpt(a);
    if (a.mode == "resnet") return kiln::bench::run_resnet(a);
    throw kiln::Error("kiln_bench: unknown --mode " + a.mode +
                      " (expected train, infer, loader, kernels, peak, attention, gpt or resnet)");
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    usage();
    return 2;
  }
}
