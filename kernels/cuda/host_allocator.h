// The pinned (page-locked) host allocator, written against a small raw-memory-and-events interface
// so its bookkeeping can be tested without a GPU (cudaHostAlloc and CUDA events in the backend).
// PyTorch's CachingHostAllocator design: sizes round up to a power of two (at least 512 bytes), so
// a few size classes serve batches of every size; one cudaHostAlloc per block, kept for reuse. A
// block that stream work reads or writes (record_use: an asynchronous copy) gets, when it is
// freed, one event per such stream, and it is reused only once all of them have completed, so a
// copy in flight never sees its source overwritten. Events are polled on allocation, never
// waited for. Out of pinned memory: the free blocks go back to the driver and the allocation is
// retried once, then a kiln::Error.
//   HostCachingAllocator alloc(raw);  void* p = alloc.allocate(n);
//   alloc.record_use(p, stream);  alloc.free(p);   // reused after the stream passes this point
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/runtime.h"

namespace kiln::kernels::cuda {

// Where pinned blocks and events come from.
class HostRawMemory {
 public:
  virtual ~HostRawMemory() = default;
  virtual void* malloc(size_t nbytes) = 0;  // nullptr when no more memory can be pinned
  virtual void free(void* ptr) = 0;
  // A new event, recorded on `stream` (created on the stream's device).
  virtual void* record_event(uintptr_t stream) = 0;
  virtual bool event_done(void* event) = 0;  // the work queued before it has finished
  virtual void destroy_event(void* event) = 0;
};

class HostCachingAllocator {
 public:
  static constexpr size_t kMinBlock = 512;

  explicit HostCachingAllocator(HostRawMemory& raw) : raw_(raw) {}
  ~HostCachingAllocator();
  HostCachingAllocator(const HostCachingAllocator&) = delete;
  HostCachingAllocator& operator=(const HostCachingAllocator&) = delete;

  void* allocate(size_t nbytes);  // nullptr for 0 bytes
  void free(void* ptr);
  // Notes that work queued on `stream` uses the block holding `ptr` (any address inside it).
  // Returns false, doing nothing, for memory this allocator did not hand out.
  bool record_use(const void* ptr, uintptr_t stream);
  // Whether `ptr` lies inside a block handed out and not yet freed.
  bool owns(const void* ptr) const;
  void empty_cache();  // returns every free block to the driver (blocks in flight stay)
  HostMemoryStats stats() const;

  static size_t round_size(size_t nbytes);

 private:
  struct Block {
    char* ptr;
    size_t size;
    bool allocated = true;
    std::vector<uintptr_t> streams;  // streams that used it since it was handed out
    int pending_events = 0;          // events still to complete before it is free
  };

  Block* find_locked(const void* ptr) const;
  void process_events_locked();  // moves blocks whose uses have completed to the free lists
  void release_free_locked();

  HostRawMemory& raw_;
  mutable std::mutex mu_;
  std::map<char*, Block*> blocks_;                 // every block by address
  std::map<size_t, std::vector<Block*>> free_;     // size -> free blocks
  std::vector<std::pair<void*, Block*>> pending_;  // recorded events and the block they guard
  HostMemoryStats stats_;
};

}  // namespace kiln::kernels::cuda
