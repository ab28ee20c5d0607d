// The CUDA caching allocator, written against a small raw-memory interface so its bookkeeping
// can be tested without a GPU. PyTorch's design: sizes rounded to 512 bytes; a small pool
// (<= 1 MiB requests, carved from 2 MiB segments) and a large pool; best fit, splitting the
// remainder off a cached block and merging free neighbours back; blocks are reused only by the
// stream they were freed on (stream order makes that safe without events); on OOM the unused
// cache is released and the allocation retried once, then a kiln::Error with the statistics.
//   CachingAllocator alloc(raw);  void* p = alloc.allocate(n, stream);  alloc.free(p);
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "kernels/runtime.h"

namespace kiln::kernels::cuda {

// Where segments come from: cudaMalloc/cudaFree in the backend, a fake in the tests.
class RawMemory {
 public:
  virtual ~RawMemory() = default;
  virtual void* malloc(size_t nbytes) = 0;  // nullptr when the device is out of memory
  virtual void free(void* ptr) = 0;
  virtual void synchronize() {}             // before segments go back to the device
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
  void empty_cache();  // returns every wholly free segment to the device
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

  RawMemory& raw_;
  mutable std::mutex mu_;
  Pool small_, large_;
  std::unordered_map<void*, Block*> live_;
  MemoryStats stats_;
};

}  // namespace kiln::kernels::cuda
