// kiln_bench_dist: distributed benchmarks on this machine (loopback Gloo).
//   kiln_bench_dist allreduce [nprocs]   bus bandwidth of all_reduce vs message size
//   kiln_bench_dist ddp [nprocs]         MLP training samples/s, and backward time with the
//                                        Reducer's overlap vs reducing after backward
// Starts its own processes through kiln::distributed::launch; rank 0 prints.
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <string>

#include "distributed/distributed.h"
#include "kiln.h"

namespace kd = kiln::distributed;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int bench_allreduce(kd::Communicator& comm) {
  int w = comm.world_size();
  if (comm.rank() == 0)
    std::printf("| bytes | time (us) | algbw (GB/s) | busbw (GB/s) |\n|---|---|---|---|\n");
  for (int64_t bytes = 4 << 10; bytes <= (64 << 20); bytes *= 4) {
    auto t = kiln::ones({bytes / 4});
    for (int i = 0; i < 3; ++i) comm.all_reduce(t);
    int iters = bytes < (1 << 20) ? 200 : bytes < (16 << 20) ? 20 : 5;
    comm.barrier();
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) comm.all_reduce(t);
    double us = ms_since(t0) * 1000 / iters;
    double alg = bytes / us / 1e3;
    if (comm.rank() == 0)
      std::printf("| %lld | %.1f | %.3f | %.3f |\n", (long long)bytes, us, alg,
                  alg * 2.0 * (w - 1) / w);
  }
  return 0;
}

struct Mlp {
  std::vector<kiln::Tensor> p;
  explicit Mlp(int width, int depth) {
    kiln::Generator g(1);
    int in = 784;
    for (int l = 0; l < depth; ++l) {
      int out = l + 1 == depth ? 10 : width;
      p.push_back(kiln::randn({out, in}, {}, &g).mul_(1.0 / std::sqrt(double(in))).requires_grad_());
      p.push_back(kiln::zeros({out}).requires_grad_());
      in = out;
    }
  }
  kiln::Tensor loss(const kiln::Tensor& x, const kiln::Tensor& y) const {
    kiln::Tensor h = x;
    for (size_t l = 0; l < p.size(); l += 2) {
      h = kiln::linear(h, p[l], p[l + 1]);
      if (l + 2 < p.size()) h = kiln::relu(h);
    }
    return kiln::mse_loss(h, y);
  }
};

int bench_ddp(std::shared_ptr<kd::Communicator> comm) {
  const int batch = 64, steps = 15, warm = 3;
  Mlp m(2048, 4);
  kd::broadcast_tensors(*comm, m.p);
  kd::Reducer reducer(comm, m.p);
  auto x = kiln::randn({batch, 784}), y = kiln::randn({batch, 10});
  auto step = [&](bool overlap) {
    for (auto& t : m.p) t.mutable_grad() = kiln::Tensor();
    auto t0 = Clock::now();
    if (overlap) {
      m.loss(x, y).backward();
      reducer.finalize();
    } else {
      {
        auto g = reducer.no_sync();
        m.loss(x, y).backward();
      }
      // After backward, one coalesced all-reduce of every gradient: no overlap.
      std::vector<kiln::Tensor> flat;
      for (auto& t : m.p) flat.push_back(t.grad().reshape({-1}));
      auto all = kiln::cat(flat);
      comm->all_reduce(all, kd::ReduceOp::avg);
      int64_t off = 0;
      kiln::NoGradGuard ng;
      for (auto& t : m.p) {
        t.mutable_grad().copy_(all.narrow(0, off, t.numel()).view(t.sizes()));
        off += t.numel();
      }
    }
    return ms_since(t0);
  };
  for (bool overlap : {true, false}) {
    double total = 0;
    for (int s = 0; s < warm + steps; ++s) {
      double ms = step(overlap);
      if (s >= warm) total += ms;
    }
    double per = total / steps;
    if (comm->rank() == 0)
      std::printf("ddp procs=%d overlap=%d: forward+backward+reduce %.1f ms/step, %.0f samples/s "
                  "(global), finalize wait %.1f ms, comm %.1f ms\n",
                  comm->world_size(), int(overlap), per, batch * comm->world_size() * 1000.0 / per,
                  overlap ? reducer.stats().wait_ms : 0.0, overlap ? reducer.stats().comm_ms : 0.0);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "allreduce";
  int n = argc > 2 ? std::atoi(argv[2]) : 2;
  try {
    auto env = kd::launch(n);
    auto comm = kd::init_process_group(env);
    int rc = mode == "ddp" ? bench_ddp(comm) : bench_allreduce(*comm);
    comm->barrier();
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_bench_dist: %s\n", e.what());
    return 1;
  }
}
