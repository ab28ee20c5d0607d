// kiln_bench_dist: distributed benchmarks on this machine (loopback Gloo).
//   kiln_bench_dist allreduce [nprocs]     bus bandwidth of all_reduce vs message size
//   kiln_bench_dist reducescatter [nprocs] the same for reduce_scatter (input size)
//   kiln_bench_dist ddp [nprocs]           MLP training samples/s, and backward time with the
//                                          Reducer's overlap vs reducing after backward
//   kiln_bench_dist zero [nprocs]          MLP AdamW step under DDP vs ZeRO-2 (ShardedDataParallel):
//                                          ms/step and the elements each rank holds
// Starts its own processes through kiln::distributed::launch; rank 0 prints.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "distributed/distributed.h"
#include "kiln.h"
#include "optim/adam.h"

namespace kd = kiln::distributed;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Bus bandwidth as nccl-tests defines it: all-reduce moves 2(n-1)/n of the data per rank,
// reduce-scatter (n-1)/n of its input.
int bench_collective(kd::Communicator& comm, bool reduce_scatter) {
  int w = comm.world_size();
  if (comm.rank() == 0)
    std::printf("%s\n| bytes | time (us) | algbw (GB/s) | busbw (GB/s) |\n|---|---|---|---|\n",
                reduce_scatter ? "reduce_scatter" : "all_reduce");
  for (int64_t bytes = 4 << 10; bytes <= (64 << 20); bytes *= 4) {
    auto t = kiln::ones({bytes / 4 / w * w});
    auto run = [&] {
      if (reduce_scatter)
        comm.reduce_scatter(t);
      else
        comm.all_reduce(t);
    };
    for (int i = 0; i < 3; ++i) run();
    int iters = bytes < (1 << 20) ? 200 : bytes < (16 << 20) ? 20 : 5;
    comm.barrier();
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) run();
    double us = ms_since(t0) * 1000 / iters;
    double alg = bytes / us / 1e3;
    if (comm.rank() == 0)
      std::printf("| %lld | %.1f | %.3f | %.3f |\n", (long long)bytes, us, alg,
                  alg * (reduce_scatter ? 1.0 : 2.0) * (w - 1) / w);
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

// The same MLP as a Module, for the wrappers that take one.
struct MlpModule : kiln::nn::Module {
  Mlp mlp;
  MlpModule(int width, int depth) : mlp(width, depth) {
    for (size_t i = 0; i < mlp.p.size(); ++i) register_parameter(std::to_string(i), mlp.p[i]);
  }
};

int bench_zero(std::shared_ptr<kd::Communicator> comm) {
  const int batch = 64, steps = 10, warm = 3;
  auto x = kiln::randn({batch, 784}), y = kiln::randn({batch, 10});
  for (bool sharded : {false, true}) {
    auto m = std::make_shared<MlpModule>(2048, 4);
    auto opt = std::make_shared<kiln::optim::AdamW>(m->parameters(), 1e-4);
    std::unique_ptr<kd::DistributedDataParallel> ddp;
    std::unique_ptr<kd::ShardedDataParallel> zero;
    if (sharded)
      zero = std::make_unique<kd::ShardedDataParallel>(m, opt, comm);
    else
      ddp = std::make_unique<kd::DistributedDataParallel>(m, comm);
    double total = 0;
    int64_t grads = 0;
    for (int s = 0; s < warm + steps; ++s) {
      opt->zero_grad();
      auto t0 = Clock::now();
      m->mlp.loss(x, y).backward();
      if (sharded) {
        zero->finalize();
        grads = zero->local_grad_numel();
        zero->step();
      } else {
        ddp->finalize();
        grads = 0;
        for (auto& p : m->parameters()) grads += p.grad().numel();
        opt->step();
      }
      if (s >= warm) total += ms_since(t0);
    }
    int64_t state = 0, params = 0;
    for (auto& [name, t] : opt->state_tensors()) state += t.dim() > 0 ? t.numel() : 0;
    for (auto& p : m->parameters()) params += p.numel();
    double per = total / steps;
    if (comm->rank() == 0)
      std::printf("%s procs=%d: backward+reduce+AdamW %.1f ms/step, %.0f samples/s (global); per rank: "
                  "%lld parameters, %lld gradient, %lld optimizer-state, %lld master elements\n",
                  sharded ? "zero2" : "ddp  ", comm->world_size(), per, batch * comm->world_size() * 1000.0 / per,
                  (long long)params, (long long)grads, (long long)state,
                  (long long)(sharded ? zero->local_master_numel() : 0));
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
    int rc = mode == "ddp"             ? bench_ddp(comm)
             : mode == "zero"          ? bench_zero(comm)
             : mode == "reducescatter" ? bench_collective(*comm, true)
                                       : bench_collective(*comm, false);
    comm->barrier();
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_bench_dist: %s\n", e.what());
    return 1;
  }
}
