// kiln's CPU thread pool (kernels/cpu/parallel.h): thread counts, static ranges, nesting, several
// submitting threads, errors, and idle workers that go to sleep instead of spinning.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kiln.h"

using namespace kiln;
using namespace kiln::kernels::cpu;

namespace {

// Restores the thread count a test changed.
struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

double cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

}  // namespace

TEST_CASE("thread pool: set_num_threads sets the threads a region runs on") {
  ThreadsGuard guard;
  for (int n : {1, 3, 2}) {
    set_num_threads(n);
    CHECK(get_num_threads() == n);
    std::mutex mu;
    std::set<std::thread::id> ids;
    std::vector<int> seen(size_t(n), 0);
    parallel_region(n, [&](int t, int nt) {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
      CHECK(nt == n);
      ++seen[size_t(t)];
    });
    CHECK(int(ids.size()) == n);
    for (int v : seen) CHECK(v == 1);
  }
  CHECK_THROWS_AS(set_num_threads(0), Error);
}

TEST_CASE("thread pool: parallel_for covers every index once; nested loops run serially") {
  ThreadsGuard guard;
  set_num_threads(3);
  std::vector<std::atomic<int>> hits(1001);
  std::atomic<int> nested_parallel{0};
  parallel_for(0, 1001, 3, [&](int64_t i) {
    hits[size_t(i)]++;
    if (i % 100 == 0) parallel_region(3, [&](int, int nt) { nested_parallel += nt > 1; });
  });
  for (auto& h : hits) CHECK(h.load() == 1);
  CHECK(nested_parallel.load() == 0);
  int64_t b, e, covered = 0;
  for (int t = 0; t < 7; ++t) {
    static_range(100, t, 7, b, e);
    CHECK(b == covered);
    covered = e;
  }
  CHECK(covered == 100);
}

TEST_CASE("thread pool: regions from several threads at once all complete correctly") {
  ThreadsGuard guard;
  set_num_threads(2);
  std::vector<std::thread> users;
  std::atomic<int> wrong{0};
  for (int u = 0; u < 4; ++u) {
    users.emplace_back([&, u] {
      for (int rep = 0; rep < 50; ++rep) {
        Tensor x = full({40000}, double(u + 1));
        if ((x * 2).sum().item<double>() != 80000.0 * (u + 1)) ++wrong;
      }
    });
  }
  for (auto& t : users) t.join();
  CHECK(wrong.load() == 0);
}

TEST_CASE("thread pool: an exception in a worker reaches the caller") {
  ThreadsGuard guard;
  set_num_threads(2);
  CHECK_THROWS_AS(parallel_region(2,
                                  [](int t, int) {
                                    if (t == 1) throw std::runtime_error("from the worker");
                                  }),
                  std::runtime_error);
  int calls = 0;
  parallel_region(1, [&](int, int) { ++calls; });  // the pool still works afterwards
  CHECK(calls == 1);
}

TEST_CASE("thread pool: idle workers sleep instead of spinning") {
  ThreadsGuard guard;
  set_num_threads(2);
  Tensor x = randn({1 << 18});
  for (int i = 0; i < 20; ++i) x = x * 1.0001;  // wakes the workers
  const double before = cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double idle = cpu_seconds() - before;
  // A spinning worker would burn about 0.3 s here; a sleeping one next to nothing.
  CHECK_MESSAGE(idle < 0.1, "the process used " << idle << " s of CPU time while idle for 0.3 s");
}
