// The caching allocator's bookkeeping on a fake device (no GPU needed): rounding, reuse, split and
// merge, per-stream pools, empty_cache, and the out-of-memory path (release cache, retry, error).
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "core/error.h"
#include "kernels/cuda/allocator.h"

namespace {

using kiln::kernels::cuda::CachingAllocator;

class FakeMemory final : public kiln::kernels::cuda::RawMemory {
 public:
  size_t capacity = size_t(1) << 40;
  size_t used = 0;
  std::map<void*, size_t> live;
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
};

}  // namespace

TEST_CASE("cuda allocator: rounds to 512 bytes and reuses freed blocks without new segments") {
  FakeMemory raw;
  {
    CachingAllocator a(raw);
    CHECK(CachingAllocator::round_size(1) == 512);
    CHECK(CachingAllocator::round_size(512) == 512);
    CHECK(CachingAllocator::round_size(513) == 1024);
    void* p = a.allocate(1000, 1);
    CHECK(a.stats().allocated == 1024);
    CHECK(a.stats().num_device_mallocs == 1);
    a.free(p);
    CHECK(a.stats().allocated == 0);
    // Steady state: the same sizes again come from the cache.
    for (int step = 0; step < 100; ++step) {
      void* x = a.allocate(1000, 1);
      void* y = a.allocate(300000, 1);
      void* z = a.allocate(5 << 20, 1);
      a.free(y);
      a.free(x);
      a.free(z);
    }
    auto s = a.stats();
    CHECK(s.num_device_mallocs == 2);  // one small segment, one large
    CHECK(s.allocated == 0);
    CHECK(s.peak_allocated >= 1024 + 300032 + (5 << 20));
    CHECK(s.reserved == raw.used);
  }
}

TEST_CASE("cuda allocator: splits segments, merges neighbours, keeps streams apart") {
  FakeMemory raw;
  CachingAllocator a(raw);
  char* p1 = static_cast<char*>(a.allocate(4096, 1));
  char* p2 = static_cast<char*>(a.allocate(4096, 1));
  CHECK(p2 == p1 + 4096);  // carved from one 2 MiB small segment
  CHECK(a.stats().num_device_mallocs == 1);
  a.free(p1);
  a.free(p2);
  // After merging, the whole segment is one free block again: a 1 MiB request fits in place.
  void* big = a.allocate(1 << 20, 1);
  CHECK(big == p1);
  a.free(big);
  // Another stream does not take stream 1's cached blocks.
  void* other = a.allocate(4096, 2);
  CHECK(a.stats().num_device_mallocs == 2);
  a.free(other);
  a.empty_cache();
  CHECK(a.stats().reserved == 0);
  CHECK(raw.used == 0);
}

TEST_CASE("cuda allocator: out of memory releases the cache, retries, then reports") {
  FakeMemory raw;
  raw.capacity = size_t(64) << 20;
  CachingAllocator a(raw);
  void* x = a.allocate(size_t(40) << 20, 1);
  a.free(x);  // 40 MiB cached
  // 50 MiB does not fit beside the cached 40 MiB: the cache goes, the retry succeeds.
  void* y = a.allocate(size_t(50) << 20, 1);
  CHECK(y != nullptr);
  CHECK(a.stats().num_device_frees == 1);
  std::string msg;
  try {
    a.allocate(size_t(100) << 20, 1);
  } catch (const kiln::Error& e) { msg = e.what(); }
  CHECK(msg.find("out of memory") != std::string::npos);
  CHECK(msg.find("104857600 bytes") != std::string::npos);
  CHECK(msg.find("reserved") != std::string::npos);
  CHECK(a.stats().num_ooms == 1);
  a.free(y);
}

TEST_CASE("cuda allocator: a graph pool keeps its blocks apart and holds back frees until released") {
  FakeMemory raw;
  CachingAllocator a(raw);
  const uintptr_t stream = 1, pool = (uintptr_t(1) << 63) | 7;
  void* before = a.allocate(4096, stream);  // made before the capture, used by it, freed during it
  void* kept = a.allocate(4096, stream);
  a.begin_capture(pool);
  CHECK(a.capturing());
  void* inside = a.allocate(4096, pool);
  CHECK(inside != before);
  CHECK(inside != kept);
  a.free(before);  // held back: a replay may still read it
  void* again = a.allocate(4096, pool);
  CHECK(again != before);
  a.free(again);  // a block of the pool itself: reused within the capture
  void* reused = a.allocate(4096, pool);
  CHECK(reused == again);
  CHECK_THROWS_AS(a.begin_capture(pool + 1), kiln::Error);  // one capture at a time
  a.end_capture();
  CHECK_FALSE(a.capturing());
  // After the capture the held block is still not handed out, and eager work never gets the
  // pool's blocks, even once they are free.
  a.free(reused);
  void* eager = a.allocate(4096, stream);
  CHECK(eager != before);
  CHECK(eager != reused);
  CHECK(eager != inside);
  const size_t allocated = a.stats().allocated;
  // Released (the graph is gone): the held block is freed, the pool's blocks join the stream's.
  a.release_pool(pool, stream);
  CHECK(a.stats().allocated == allocated - 4096);
  const uint64_t segments = a.stats().num_device_mallocs;
  std::set<void*> seen;
  seen.insert(a.allocate(4096, stream));
  CHECK(seen.count(before) == 1);  // the held block is free again
  // Three ~1 MB blocks: two fit what is left of the stream's segment, the third only the former
  // pool's, which now serves the stream: no new segment.
  for (int i = 0; i < 3; ++i) seen.insert(a.allocate(1000000, stream));
  CHECK(a.stats().num_device_mallocs == segments);
  for (void* p : seen) a.free(p);
  a.free(inside);
  a.free(kept);
  a.free(eager);
  a.empty_cache();  // everything merged back into whole free segments
  CHECK(raw.live.empty());
  CHECK(a.stats().allocated == 0);
}
