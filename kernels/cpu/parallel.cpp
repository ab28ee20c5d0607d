// The pool behind parallel.h. One region runs at a time: the caller publishes the job (function,
// context, thread count), bumps an epoch counter and runs share 0; every worker acknowledges every
// epoch (running its share when it has one), so a job is never overwritten while a worker may still
// read it. Waiting, on either side, spins for a bounded time and then sleeps on the counter (a
// futex through std::atomic::wait).
#include "kernels/cpu/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KILN_CPU_RELAX() _mm_pause()
#else
#define KILN_CPU_RELAX() std::this_thread::yield()
#endif

namespace kiln::kernels::cpu {
namespace {

thread_local bool tls_in_region = false;

// The first integer of a variable such as OMP_NUM_THREADS ("4" or "4,2"), or 0.
int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return end != v && n > 0 && n < 4096 ? int(n) : 0;
}

int default_threads() {
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

// Nanoseconds a waiting thread spins before it sleeps.
int64_t spin_ns() {
  if (const char* v = std::getenv("KILN_SPIN_US")) {
    char* end = nullptr;
    double us = std::strtod(v, &end);
    if (end != v && us >= 0) return int64_t(us * 1000);
  }
  if (const char* p = std::getenv("OMP_WAIT_POLICY")) {
    std::string s(p);
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (s == "passive") return 0;
    if (s == "active") return 10'000'000;
  }
  return 50'000;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until `a` no longer holds `old`: spins for up to `budget` ns, then sleeps.
template <class T>
T wait_change(const std::atomic<T>& a, T old, int64_t budget) {
  T v = a.load(std::memory_order_acquire);
  if (v != old) return v;
  if (budget > 0) {
    const int64_t start = now_ns();
    for (int i = 1;; ++i) {
      KILN_CPU_RELAX();
      v = a.load(std::memory_order_acquire);
      if (v != old) return v;
      if ((i & 63) == 0 && now_ns() - start > budget) break;
    }
  }
  for (;;) {
    a.wait(old, std::memory_order_acquire);
    v = a.load(std::memory_order_acquire);
    if (v != old) return v;
  }
}

class Pool {
 public:
  static Pool& get() {
    // Never destroyed: workers may still be asleep when static destructors run at exit.
    static Pool* pool = [] {
      auto* p = new Pool;
      pthread_atfork(nullptr, nullptr, [] { get().after_fork_in_child(); });
      return p;
    }();
    return *pool;
  }

  int size() const { return threads_.load(std::memory_order_relaxed); }

  void resize(int n) {
    std::lock_guard<std::mutex> submit(submit_);
    stop_workers();
    threads_.store(n);
  }

  void run(int threads, detail::RegionFn fn, void* ctx) {
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock()) return fn(ctx, 0, 1);  // another thread's region is running
    start_workers();
    const int nt = std::min<int>(threads, int(workers_.size()) + 1);
    if (nt <= 1) return fn(ctx, 0, 1);
    fn_ = fn;
    ctx_ = ctx;
    nt_ = nt;
    error_ = nullptr;
    pending_.store(int(workers_.size()), std::memory_order_relaxed);
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_all();
    tls_in_region = true;
    try {
      fn(ctx, 0, nt);
    } catch (...) { record_error(); }
    tls_in_region = false;
    for (int left = pending_.load(std::memory_order_acquire); left != 0;) left = wait_change(pending_, left, spin_ns_);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  Pool() : threads_(default_threads()), spin_ns_(spin_ns()) {}

  void start_workers() {
    const int n = threads_.load();
    if (!workers_.empty() || n <= 1) return;
    stop_.store(false);
    const uint32_t epoch = epoch_.load();
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this, i, epoch] { work(i + 1, epoch); });
  }

  void stop_workers() {
    if (workers_.empty()) return;
    stop_.store(true);
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  void work(int t, uint32_t seen) {
    tls_in_region = true;
    for (;;) {
      seen = wait_change(epoch_, seen, spin_ns_);
      if (stop_.load(std::memory_order_acquire)) return;
      if (t < nt_) {
        try {
          fn_(ctx_, t, nt_);
        } catch (...) { record_error(); }
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  void record_error() {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (!error_) error_ = std::current_exception();
  }

  // The child of a fork has none of the parent's workers: forget them (their std::thread objects
  // cannot be joined there) and start afresh on the next region.
  void after_fork_in_child() {
    new (&submit_) std::mutex;
    new (&error_mu_) std::mutex;
    new std::vector<std::thread>(std::move(workers_));  // leaked on purpose
    tls_in_region = false;
  }

  std::mutex submit_;  // one region at a time; guards the worker set
  std::vector<std::thread> workers_;
  std::atomic<int> threads_;
  const int64_t spin_ns_;
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> epoch_{0};
  std::atomic<int> pending_{0};
  detail::RegionFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int nt_ = 1;
  std::mutex error_mu_;
  std::exception_ptr error_;
};

}  // namespace

int max_threads() { return Pool::get().size(); }
bool in_parallel() { return tls_in_region; }

void detail::run_region(int threads, RegionFn fn, void* ctx) { Pool::get().run(threads, fn, ctx); }

}  // namespace kiln::kernels::cpu

namespace kiln::kernels {

void set_num_threads(int n) {
  KILN_CHECK(n >= 1, "set_num_threads: expected a thread count >= 1, got ", n);
  KILN_CHECK(!cpu::in_parallel(), "set_num_threads: called from inside a parallel CPU kernel");
  cpu::Pool::get().resize(n);
}
int get_num_threads() { return cpu::max_threads(); }

}  // namespace kiln::kernels
