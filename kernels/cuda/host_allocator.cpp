// Bookkeeping of the pinned host allocator (see host_allocator.h); no CUDA calls here.
#include "kernels/cuda/host_allocator.h"

#include <algorithm>
#include <bit>

#include "core/error.h"

namespace kiln::kernels::cuda {

size_t HostCachingAllocator::round_size(size_t nbytes) { return std::max(kMinBlock, std::bit_ceil(nbytes)); }

HostCachingAllocator::~HostCachingAllocator() {
  // Process exit: the driver may already be gone, so the pinned memory and events are left to it.
  for (auto& [p, b] : blocks_) delete b;
}

HostCachingAllocator::Block* HostCachingAllocator::find_locked(const void* ptr) const {
  auto* p = static_cast<char*>(const_cast<void*>(ptr));
  auto it = blocks_.upper_bound(p);
  if (it == blocks_.begin()) return nullptr;
  Block* b = std::prev(it)->second;
  return p < b->ptr + b->size ? b : nullptr;
}

void HostCachingAllocator::process_events_locked() {
  auto done = std::remove_if(pending_.begin(), pending_.end(), [&](const std::pair<void*, Block*>& e) {
    if (!raw_.event_done(e.first)) return false;
    raw_.destroy_event(e.first);
    Block* b = e.second;
    if (--b->pending_events == 0) free_[b->size].push_back(b);
    return true;
  });
  pending_.erase(done, pending_.end());
}

void HostCachingAllocator::release_free_locked() {
  for (auto& [size, list] : free_) {
    for (Block* b : list) {
      raw_.free(b->ptr);
      blocks_.erase(b->ptr);
      stats_.reserved -= b->size;
      ++stats_.num_host_frees;
      delete b;
    }
  }
  free_.clear();
}

void* HostCachingAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  process_events_locked();
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    Block* b = it->second.back();
    it->second.pop_back();
    b->allocated = true;
    b->streams.clear();
    stats_.allocated += size;
    return b->ptr;
  }
  void* p = raw_.malloc(size);
  if (!p) {
    release_free_locked();
    p = raw_.malloc(size);
  }
  KILN_CHECK(p, "pinned host memory: cannot page-lock ", nbytes, " bytes (", size,
             " rounded); "
             "kiln holds ",
             stats_.reserved, " bytes of pinned memory (", stats_.allocated,
             " in use) and released its unused cache. Free pinned tensors, or use pin_memory=false");
  auto* b = new Block{static_cast<char*>(p), size, true, {}, 0};
  blocks_[b->ptr] = b;
  stats_.reserved += size;
  stats_.allocated += size;
  ++stats_.num_host_allocs;
  return p;
}

void HostCachingAllocator::free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(static_cast<char*>(ptr));
  KILN_CHECK(it != blocks_.end() && it->second->allocated,
             "pinned host allocator: free of a pointer it did not hand out (or freed twice)");
  Block* b = it->second;
  b->allocated = false;
  stats_.allocated -= b->size;
  for (uintptr_t s : b->streams) {
    pending_.emplace_back(raw_.record_event(s), b);
    ++b->pending_events;
  }
  b->streams.clear();
  if (b->pending_events == 0) free_[b->size].push_back(b);
}

bool HostCachingAllocator::record_use(const void* ptr, uintptr_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  Block* b = find_locked(ptr);
  if (!b || !b->allocated) return false;
  if (std::find(b->streams.begin(), b->streams.end(), stream) == b->streams.end()) b->streams.push_back(stream);
  return true;
}

bool HostCachingAllocator::owns(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  Block* b = find_locked(ptr);
  return b && b->allocated;
}

void HostCachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  process_events_locked();
  release_free_locked();
}

HostMemoryStats HostCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  HostMemoryStats s = stats_;
  s.cached_blocks = 0;
  for (const auto& [size, list] : free_) s.cached_blocks += list.size();
  s.in_flight_blocks = 0;
  for (const auto& [p, b] : blocks_) s.in_flight_blocks += (!b->allocated && b->pending_events > 0);
  return s;
}

}  // namespace kiln::kernels::cuda
