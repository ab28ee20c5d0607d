// kiln_bench --mode peak: this machine's f32 FMA ceiling, measured. Every thread runs independent
// chains of vector FMAs in the widest instruction set kiln's CPU kernels use here
// (kernels/cpu/simd_kernels.h; KILN_CPU_ISA caps it) for about 0.2 s; the best of 5 runs counts.
// The CPU training profile (KILN_BENCH_PROFILE=1 --mode train|infer) prints each layer's achieved
// GFLOP/s as a share of this figure, so the distance to the hardware is on record.
//   kiln_bench --mode peak --threads 2
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>

#include "bench.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd_kernels.h"
#include "kiln.h"

namespace kiln::bench {

Peak measure_peak(int threads) {
  using Clock = std::chrono::steady_clock;
  const kernels::cpu::SimdKernels* k = kernels::cpu::simd_kernels();
  Peak p{0.0, threads, kernels::cpu::simd_kernels_isa()};
  if (!k) return p;  // no vector FMA kernels on this CPU: nothing to compare with
  auto run = [&](int64_t rounds) {
    std::atomic<double> flops = 0;
    const auto t0 = Clock::now();
    kernels::cpu::parallel_region(threads, [&](int, int) {
      const double mine = k->fma_probe(rounds);
      double seen = flops.load();
      while (!flops.compare_exchange_weak(seen, seen + mine)) {}
    });
    return std::make_pair(flops.load(), std::chrono::duration<double>(Clock::now() - t0).count());
  };
  int64_t rounds = 1 << 20;
  const double first = run(rounds).second;
  rounds = std::max<int64_t>(1, int64_t(double(rounds) * 0.2 / std::max(first, 1e-6)));
  for (int i = 0; i < 5; ++i) {
    const auto [flops, seconds] = run(rounds);
    p.gflops = std::max(p.gflops, flops / seconds * 1e-9);
  }
  return p;
}

int run_peak(const Args& a) {
  const int threads = a.threads > 0 ? a.threads : kiln::get_num_threads();
  const Peak all = measure_peak(threads), one = measure_peak(1);
  std::printf("f32 FMA peak (%s): %.1f GFLOP/s on %d threads, %.1f on one\n", all.isa.c_str(), all.gflops, threads,
              one.gflops);
  std::printf("{\"bench\":\"peak\",\"isa\":\"%s\",\"threads\":%d,\"gflops\":%.1f,\"gflops_one_thread\":%.1f}\n",
              all.isa.c_str(), threads, all.gflops, one.gflops);
  return 0;
}

}  // namespace kiln::bench
