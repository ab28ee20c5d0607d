// The CUDA caching allocator, written against a small raw-memory interface so its bookkeeping
// can be tested without a GPU. PyTorch's design: sizes rounded to 512 bytes; a small pool
// (<= 1 MiB requests, carved from 2 MiB segments) and a large pool; best fit, splitting the
// remainder off a cached block and merging free neighbours back; blocks are reused only by the
// stream they were freed on (stream order makes that safe without events); on OOM the unused
// cache is released and the allocation retried once, then a kiln::Error with the statistics.
// CUDA graphs get private pools: while a graph is captured its allocations come from its pool
// (a key of their own in place of the stream, so eager work never reuses a block a replay will
// write), and blocks of other pools freed during the capture are held back until the graph is
// released, because the graph may still read them on every replay.
//   CachingAllocator alloc(raw);  void* p = alloc.allocate(n, stream);  alloc.free(p);
//   alloc.begin_capture(pool);  ... allocate(n, pool) ...  alloc.end_capture();
//   alloc.release_pool(pool, stream);  // after the graph is gone: its blocks become stream's
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/runtime.h"

namespace kiln::kernels::cuda {

// Where segments come from: cudaMalloc/cudaFree in the backend, a fake in the tests.
class RawMemory {
 public:
  virtual ~RawMemory() = default;
  virtual void* malloc(size_t nbytes) = 0;  // nullptr when the device is out of memory
  virtual void free(void* ptr) = 0;
  virtual void synchronize() {}  // before segments go back to the device
};

using MemoryStats = kernels::MemoryStats;  // kernels/runtime.h

class CachingAllocator {
 public:
  static constexpr size_t kRound = 512;
  static constexpr size_t kSmallRequest = size_t(1) << 20;  // <= this: small pool
  static constexpr size_t kSmallSegment = size_t(2) << 20;
  static constexpr size_t kLargeSegmentMin = size_t(20) << 20;  // large requests below this
                                                                // share 20 MiB segments
  explicit CachingAllocator(RawMemory& raw) : raw_(raw) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t nbytes, uintptr_t stream);
  void free(void* ptr);

  // Graph pools. `pool` is a key that no stream has (see CaptureState); at most one capture at a
  // time per allocator. release_pool requires the graph's work to have finished.
  void begin_capture(uintptr_t pool);
  void end_capture();
  void release_pool(uintptr_t pool, uintptr_t stream);
  bool capturing() const;
  void empty_cache();       // returns every wholly free segment to the device
  void reset_peak_stats();  // peaks restart from what is allocated and reserved now
  MemoryStats stats() const;
  static size_t round_size(size_t nbytes) { return (nbytes + kRound - 1) / kRound * kRound; }

 private:
  struct Block {
    uintptr_t stream;
    size_t size;
    char* ptr;
    bool allocated = false;
    bool small;
    Block* prev = nullptr;  // neighbours inside one segment
    Block* next = nullptr;
  };
  struct Less {
    bool operator()(const Block* a, const Block* b) const {
      if (a->stream != b->stream) return a->stream < b->stream;
      if (a->size != b->size) return a->size < b->size;
      return a->ptr < b->ptr;
    }
  };
  using Pool = std::set<Block*, Less>;

  Block* find_free(Pool& pool, uintptr_t stream, size_t size);
  void release_cached();  // frees whole unused segments; caller holds the lock
  Block* new_segment(size_t size, uintptr_t stream, bool small);

  void free_locked(Block* b);

  RawMemory& raw_;
  mutable std::mutex mu_;
  Pool small_, large_;
  std::unordered_map<void*, Block*> live_;
  MemoryStats stats_;
  uintptr_t capture_pool_ = 0;                               // the pool being captured into, 0 when none
  std::unordered_map<uintptr_t, std::vector<Block*>> held_;  // frees held back per graph pool
};

}  // namespace kiln::kernels::cuda
