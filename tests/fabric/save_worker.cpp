// The program test_save_faults drives: it saves checkpoints through Fabric the way a training
// loop does, so that the test can kill it at random moments, fill its disk or make one rank's
// writes fail, and then check what is left on disk.
//   save_worker loop DIR N          single process: N saves (0: until killed), "saved i" after each
//   save_worker zero-loop DIR N     the same under ZeRO-2 with two processes (Fabric launches rank 1)
//   save_worker enospc DIR          DIR is a small tmpfs: a save fits, then after a filler one fails
//   save_worker zero-enospc DIR     the same under ZeRO-2
//   save_worker zero-fault DIR R P  ZeRO-2, rank R's writes to files whose path holds P fail (ENOSPC)
// Exit status 0 when the behaviour was the expected one; each check that fails prints why.
#include <sys/statvfs.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "fabric/atomic_file.h"
#include "fabric/fabric.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

struct Run {
  Fabric fabric;
  std::shared_ptr<nn::Module> model;
  std::shared_ptr<optim::Optimizer> opt;
  Run(bool zero, int64_t width)
      : fabric(FabricOptions{.accelerator = "cpu", .devices = zero ? "2" : "1", .strategy = zero ? "zero" : "auto"}) {
    fabric.launch();
    manual_seed(1);
    model = std::make_shared<nn::Linear>(width, width);
    opt = std::make_shared<optim::AdamW>(model->parameters(), 1e-3);
    std::tie(model, opt) = fabric.setup(model, opt);
    opt->zero_grad();
    fabric.backward(model->forward(ones({2, width})).sum());
    fabric.step(opt);
  }
  void save(const std::string& path, int64_t count) {
    fabric.save(path, {{"model", model}, {"optimizer", opt}, {"count", count}});
  }
};

int fail_check(const std::string& what) {
  std::cout << "CHECK FAILED: " << what << std::endl;
  return 1;
}

// The checkpoint at `path` loads (consolidating shards) and holds `count`.
bool holds(const std::string& path, int64_t width, int64_t count) {
  auto model = std::make_shared<nn::Linear>(width, width);
  State st{{"model", std::shared_ptr<nn::Module>(model)}, {"count", int64_t(-1)}};
  load_checkpoint(path, st, /*strict=*/false);
  return std::get<int64_t>(st["count"]) == count;
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

int loop(const std::string& dir, int64_t n, bool zero) {
  Run run(zero, 256);
  const std::string path = dir + "/last.safetensors";
  for (int64_t i = 1; n == 0 || i <= n; ++i) {
    run.save(path, i);
    if (run.fabric.is_global_zero()) std::cout << "saved " << i << std::endl;
  }
  return 0;
}

// A full disk: the first save fits; then a filler takes all but 16 KiB and the second save fails.
// The error says "no space", every rank gets it, and the first checkpoint is still there.
int enospc(const std::string& dir, bool zero) {
  const std::string path = dir + "/last.safetensors";
  Run run(zero, 128);
  run.save(path, 1);
  if (run.fabric.is_global_zero()) {
    struct statvfs st {};
    if (::statvfs(dir.c_str(), &st) != 0) return fail_check("statvfs failed");
    uint64_t free_bytes = uint64_t(st.f_bavail) * st.f_frsize;
    std::ofstream filler(dir + "/filler", std::ios::binary);
    std::string block(4096, 'f');
    for (uint64_t left = free_bytes > 16384 ? free_bytes - 16384 : 0; left >= block.size(); left -= block.size())
      filler.write(block.data(), std::streamsize(block.size()));
  }
  run.fabric.barrier();
  try {
    run.save(path, 2);
    return fail_check("a save into a full tmpfs succeeded");
  } catch (const Error& e) {
    std::string msg = e.what();
    std::cout << "rank " << run.fabric.global_rank() << ": " << msg << std::endl;
    if (msg.find("no space") == std::string::npos) return fail_check("the message does not say \"no space\"");
  }
  run.fabric.barrier();
  if (!run.fabric.is_global_zero()) return 0;
  if (!holds(path, 128, 1)) return fail_check("the previous checkpoint does not load with count 1");
  const size_t want = (zero ? 3 : 1) + 1;  // and the filler
  if (files_in(dir) != want)
    return fail_check("the folder holds " + std::to_string(files_in(dir)) + " files, not " + std::to_string(want));
  std::cout << "OK" << std::endl;
  return 0;
}

int zero_fault(const std::string& dir, int rank, const std::string& part) {
  const std::string path = dir + "/last.safetensors";
  Run run(true, 64);
  run.save(path, 1);
  if (run.fabric.global_rank() == rank) detail::set_write_fault(part, 100, ENOSPC);
  try {
    run.save(path, 2);
    return fail_check("the save with a failing rank succeeded");
  } catch (const Error& e) {
    std::string msg = e.what();
    std::cout << "rank " << run.fabric.global_rank() << ": " << msg << std::endl;
    if (msg.find("failed on rank " + std::to_string(rank) + ": ") == std::string::npos ||
        msg.find("no space") == std::string::npos)
      return fail_check("the message does not carry rank " + std::to_string(rank) + "'s \"no space\"");
  }
  detail::clear_write_fault();
  run.fabric.barrier();
  if (!run.fabric.is_global_zero()) return 0;
  if (!holds(path, 64, 1)) return fail_check("the previous checkpoint does not load with count 1");
  if (files_in(dir) != 3)
    return fail_check("the folder holds " + std::to_string(files_in(dir)) + " files, not the index and 2 shards");
  std::cout << "OK" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 2 ? argv[1] : "";
    const std::string dir = argc > 2 ? argv[2] : "";
#ifndef KILN_SAVE_WORKER_ZERO
    if (mode.starts_with("zero")) {
      std::cout << "save_worker: ZeRO-2 needs the distributed layer, which this build lacks" << std::endl;
      return 77;
    }
#endif
    if (mode == "loop" || mode == "zero-loop")
      return loop(dir, argc > 3 ? std::stoll(argv[3]) : 0, mode == "zero-loop");
    if (mode == "enospc" || mode == "zero-enospc") return enospc(dir, mode == "zero-enospc");
    if (mode == "zero-fault" && argc > 4) return zero_fault(dir, std::stoi(argv[3]), argv[4]);
    std::cerr << "usage: save_worker loop|zero-loop|enospc|zero-enospc|zero-fault DIR ...\n";
    return 2;
  } catch (const std::exception& e) {
    std::cout << "save_worker: " << e.what() << std::endl;
    return 1;
  }
}
