// kiln's CPU thread pool and the parallel loops of the CPU kernels.
//
// Why not OpenMP: libgomp reads its wait policy once, when it is loaded, and its default lets idle
// workers spin for milliseconds after every parallel region. Inside a host application, or next to
// another busy process, those spinning threads take the cores the working ones need. kiln's pool
// spins for a short, bounded time (KILN_SPIN_US microseconds, 50 by default; OMP_WAIT_POLICY=passive
// makes it 0) and then sleeps on a futex until the next region.
//
// Threads: set_num_threads(n), else OMP_NUM_THREADS, else the CPUs this process may run on. A region
// started while another runs (a second user thread, a nested loop) runs on its caller alone.
//   parallel_for(0, rows, threads_for(rows * cols), [&](int64_t r) { ... });
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace kiln::kernels::cpu {

// Threads a region may use: the pool's workers and the calling thread.
int max_threads();
// True on a pool worker or in the caller while it runs a region.
bool in_parallel();

// Work below this many elements runs on one thread.
constexpr int64_t kParallelGrain = 32768;
// max_threads() for `work` elements of work, 1 below kParallelGrain.
inline int threads_for(int64_t work) { return work >= kParallelGrain ? max_threads() : 1; }

namespace detail {
using RegionFn = void (*)(void* ctx, int thread, int num_threads);
void run_region(int threads, RegionFn fn, void* ctx);
}  // namespace detail

// Calls body(t, nt) once on each of nt threads (t = 0 is the caller), nt <= threads. nt may be 1,
// in which case body(0, 1) must do all the work.
template <class F>
void parallel_region(int threads, F&& body) {
  if (threads <= 1 || in_parallel()) return body(0, 1);
  using Fn = std::remove_reference_t<F>;
  detail::run_region(
      threads, [](void* ctx, int t, int nt) { (*static_cast<Fn*>(ctx))(t, nt); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// Thread t's share [begin, end) of [0, n) when n is split into nt contiguous ranges.
inline void static_range(int64_t n, int t, int nt, int64_t& begin, int64_t& end) {
  begin = n * t / nt;
  end = n * (t + 1) / nt;
}

// body(begin, end) on contiguous ranges of [0, n), one per thread (a static schedule).
template <class F>
void parallel_chunks(int64_t n, int threads, F&& body) {
  if (n <= 0) return;
  threads = int(std::min<int64_t>(threads, n));
  parallel_region(threads, [&](int t, int nt) {
    int64_t b, e;
    static_range(n, t, nt, b, e);
    if (e > b) body(b, e);
  });
}

// body(i) for every i in [begin, end), split statically over up to `threads` threads.
template <class F>
void parallel_for(int64_t begin, int64_t end, int threads, F&& body) {
  parallel_chunks(end - begin, threads, [&](int64_t b, int64_t e) {
    for (int64_t i = begin + b; i < begin + e; ++i) body(i);
  });
}

}  // namespace kiln::kernels::cpu
