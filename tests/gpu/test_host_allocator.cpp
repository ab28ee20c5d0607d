// The pinned host allocator's bookkeeping on a fake device (no GPU needed): power-of-two size
// classes, reuse of freed blocks, no reuse while a copy that used the block may still run (its
// event not yet complete), interior pointers, empty_cache, and the out-of-memory path.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "core/error.h"
#include "kernels/cuda/host_allocator.h"

namespace {

using kiln::kernels::cuda::HostCachingAllocator;

// Events complete only when the test says so: done_up_to[stream] is the last event id finished.
class FakeHost final : public kiln::kernels::cuda::HostRawMemory {
 public:
  size_t capacity = size_t(1) << 30;
  size_t used = 0;
  std::map<void*, size_t> live;
  struct Event {
    uintptr_t stream;
    int id;
  };
  std::map<void*, Event> events;
  std::map<uintptr_t, int> recorded, finished;
  int destroyed = 0;

  void* malloc(size_t n) override {
    if (used + n > capacity) return nullptr;
    void* p = std::malloc(n);
    live[p] = n;
    used += n;
    return p;
  }
  void free(void* p) override {
    used -= live.at(p);
    live.erase(p);
    std::free(p);
  }
  void* record_event(uintptr_t stream) override {
    auto* key = new char;
    events[key] = {stream, ++recorded[stream]};
    return key;
  }
  bool event_done(void* e) override {
    const Event& ev = events.at(e);
    return finished[ev.stream] >= ev.id;
  }
  void destroy_event(void* e) override {
    events.erase(e);
    delete static_cast<char*>(e);
    ++destroyed;
  }
  // The stream has run everything queued so far.
  void finish(uintptr_t stream) { finished[stream] = recorded[stream]; }
};

}  // namespace

TEST_CASE("pinned host allocator: power-of-two size classes, reuse of freed blocks") {
  CHECK(HostCachingAllocator::round_size(1) == 512);
  CHECK(HostCachingAllocator::round_size(512) == 512);
  CHECK(HostCachingAllocator::round_size(513) == 1024);
  CHECK(HostCachingAllocator::round_size((size_t(3) << 20) + 5) == size_t(4) << 20);
  FakeHost raw;
  {
    HostCachingAllocator a(raw);
    CHECK(a.allocate(0) == nullptr);
    void* p = a.allocate(1000);
    CHECK(raw.live.at(p) == 1024);
    CHECK(a.owns(p));
    CHECK(a.owns(static_cast<char*>(p) + 1023));
    CHECK_FALSE(a.owns(static_cast<char*>(p) + 1024));
    a.free(p);
    CHECK_FALSE(a.owns(p));
    // Same size class, never used by a stream: the block comes straight back.
    void* q = a.allocate(900);
    CHECK(q == p);
    CHECK(a.stats().num_host_allocs == 1);
    // Another size class is a new block.
    void* r = a.allocate(5000);
    CHECK(r != q);
    CHECK(a.stats().allocated == 1024 + 8192);
    CHECK(a.stats().reserved == 1024 + 8192);
    a.free(q);
    a.free(r);
    CHECK(a.stats().allocated == 0);
    CHECK(a.stats().cached_blocks == 2);
    a.empty_cache();
    CHECK(raw.live.empty());
    CHECK(a.stats().reserved == 0);
    CHECK(a.stats().num_host_frees == 2);
  }
}

TEST_CASE("pinned host allocator: a block is not reused while a copy that used it is in flight") {
  FakeHost raw;
  HostCachingAllocator a(raw);
  const uintptr_t s1 = 0x1000, s2 = 0x2000;
  void* p = a.allocate(4096);
  CHECK(a.record_use(p, s1));
  CHECK(a.record_use(static_cast<char*>(p) + 100, s2));  // interior pointer, second stream
  CHECK(a.record_use(p, s1));                            // once per stream
  int dummy = 0;
  CHECK_FALSE(a.record_use(&dummy, s1));  // not ours: ignored
  a.free(p);
  CHECK(raw.events.size() == 2);  // one event per stream that used it
  CHECK(a.stats().in_flight_blocks == 1);
  CHECK(a.stats().cached_blocks == 0);

  // Neither copy finished: a new allocation of that size must not get p.
  void* q = a.allocate(4096);
  CHECK(q != p);
  a.free(q);  // q was never used by a stream: free at once
  raw.finish(s1);
  void* r = a.allocate(4096);
  CHECK(r == q);  // p still waits for s2
  raw.finish(s2);
  void* t = a.allocate(4096);
  CHECK(t == p);  // both uses done: p is back
  CHECK(raw.destroyed == 2);
  CHECK(raw.events.empty());
  CHECK(a.stats().in_flight_blocks == 0);
  // The reused block starts with no recorded uses.
  a.free(t);
  CHECK(raw.events.empty());
  a.free(r);
  CHECK(a.stats().num_host_allocs == 2);
}

TEST_CASE("pinned host allocator: empty_cache keeps blocks in flight; errors are clear") {
  FakeHost raw;
  HostCachingAllocator a(raw);
  void* busy = a.allocate(1 << 20);
  a.record_use(busy, 7);
  a.free(busy);
  void* idle = a.allocate(1 << 16);
  a.free(idle);
  a.empty_cache();
  CHECK(raw.live.size() == 1);  // the block in flight stays
  CHECK(raw.live.count(busy) == 1);
  raw.finish(7);
  a.empty_cache();
  CHECK(raw.live.empty());

  // Double free and foreign pointers.
  void* p = a.allocate(100);
  a.free(p);
  CHECK_THROWS_WITH_AS(a.free(p), doctest::Contains("did not hand out"), kiln::Error);
  int x = 0;
  CHECK_THROWS_AS(a.free(&x), kiln::Error);

  // Out of pinned memory: the cache is released and the allocation retried once, then an error.
  raw.capacity = raw.used + 4096;
  void* cached = a.allocate(2048);  // p's block (512) is cached; this is a new 2048 block
  a.free(cached);
  void* big = a.allocate(4096);  // needs the 2048 (and 512) cached blocks released first
  CHECK(big != nullptr);
  CHECK(raw.live.size() == 1);
  try {
    a.allocate(size_t(1) << 20);
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    const std::string what = e.what();
    CHECK(what.find("cannot page-lock 1048576 bytes") != std::string::npos);
    CHECK(what.find("pin_memory=false") != std::string::npos);
  }
  a.free(big);
}
