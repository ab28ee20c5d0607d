// Bookkeeping of the caching allocator (see allocator.h); no CUDA calls here.
#include "kernels/cuda/allocator.h"

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace kiln::kernels::cuda {

CachingAllocator::~CachingAllocator() {
  // Process exit: the driver may already be gone, so leave the segments to it.
  for (Pool* pool : {&small_, &large_})
    for (Block* b : *pool) delete b;
  for (auto& [p, b] : live_) delete b;
}

CachingAllocator::Block* CachingAllocator::find_free(Pool& pool, uintptr_t stream, size_t size) {
  Block key{stream, size, nullptr, false, false};
  auto it = pool.lower_bound(&key);
  if (it == pool.end() || (*it)->stream != stream) return nullptr;
  Block* b = *it;
  pool.erase(it);
  return b;
}

CachingAllocator::Block* CachingAllocator::new_segment(size_t size, uintptr_t stream, bool small) {
  size_t seg =
      small ? kSmallSegment
            : (size < kLargeSegmentMin ? kLargeSegmentMin : (size + kSmallSegment - 1) / kSmallSegment * kSmallSegment);
  void* p = raw_.malloc(seg);
  if (!p) {
    release_cached();
    p = raw_.malloc(seg);
    if (!p && seg != size) {  // the rounding itself may not fit
      seg = size;
      p = raw_.malloc(seg);
    }
    if (!p) return nullptr;
  }
  stats_.reserved += seg;
  stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
  ++stats_.num_device_mallocs;
  auto* b = new Block{stream, seg, static_cast<char*>(p), false, small};
  return b;
}

void* CachingAllocator::allocate(size_t nbytes, uintptr_t stream) {
  if (nbytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  const size_t size = round_size(nbytes);
  const bool small = size <= kSmallRequest;
  Pool& pool = small ? small_ : large_;
  Block* b = find_free(pool, stream, size);
  if (!b) b = new_segment(size, stream, small);
  if (!b) {
    ++stats_.num_ooms;
    fail("CUDA out of memory: tried to allocate ", nbytes, " bytes (", size,
         " rounded); caching allocator: ", stats_.str(),
         ". Reduce the batch size or free tensors; kiln already released its unused cache");
  }
  // Split when the remainder is worth keeping: any remainder in the small pool, > 1 MiB in large.
  const size_t rest = b->size - size;
  if ((small && rest >= kRound) || (!small && rest > kSmallRequest)) {
    auto* r = new Block{stream, rest, b->ptr + size, false, small};
    r->prev = b;
    r->next = b->next;
    if (b->next) b->next->prev = r;
    b->next = r;
    b->size = size;
    pool.insert(r);
  }
  b->allocated = true;
  live_[b->ptr] = b;
  stats_.allocated += b->size;
  stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  return b->ptr;
}

void CachingAllocator::free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  KILN_CHECK(it != live_.end(), "CUDA caching allocator: free of a pointer it did not allocate");
  Block* b = it->second;
  if (capture_pool_ && b->stream != capture_pool_) {
    held_[capture_pool_].push_back(b);  // the graph being captured may read it on every replay
    return;
  }
  live_.erase(it);
  free_locked(b);
}

void CachingAllocator::free_locked(Block* b) {
  b->allocated = false;
  stats_.allocated -= b->size;
  Pool& pool = b->small ? small_ : large_;
  // Merge with free neighbours of the same segment (they are in the pool by construction).
  if (b->prev && !b->prev->allocated) {
    Block* p = b->prev;
    pool.erase(p);
    p->size += b->size;
    p->next = b->next;
    if (b->next) b->next->prev = p;
    delete b;
    b = p;
  }
  if (b->next && !b->next->allocated) {
    Block* n = b->next;
    pool.erase(n);
    b->size += n->size;
    b->next = n->next;
    if (n->next) n->next->prev = b;
    delete n;
  }
  pool.insert(b);
}

void CachingAllocator::begin_capture(uintptr_t pool) {
  std::lock_guard<std::mutex> lock(mu_);
  KILN_CHECK(!capture_pool_, "CUDA caching allocator: a graph is already being captured on this device; "
                             "capture one graph at a time");
  capture_pool_ = pool;
}

void CachingAllocator::end_capture() {
  std::lock_guard<std::mutex> lock(mu_);
  capture_pool_ = 0;
}

bool CachingAllocator::capturing() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capture_pool_ != 0;
}

void CachingAllocator::release_pool(uintptr_t pool, uintptr_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  // The pool's blocks become ordinary blocks of `stream`: free ones move to its free lists (their
  // key changes, so they leave and re-enter the ordered pools), live ones are freed there later.
  for (Pool* p : {&small_, &large_}) {
    std::vector<Block*> moved;
    for (auto it = p->begin(); it != p->end();) {
      if ((*it)->stream == pool) {
        moved.push_back(*it);
        it = p->erase(it);
      } else {
        ++it;
      }
    }
    for (Block* b : moved) {
      b->stream = stream;
      p->insert(b);
    }
  }
  for (auto& [ptr, b] : live_)
    if (b->stream == pool) b->stream = stream;
  if (auto it = held_.find(pool); it != held_.end()) {
    std::vector<Block*> held = std::move(it->second);
    held_.erase(it);
    for (Block* b : held) {
      live_.erase(b->ptr);
      free_locked(b);
    }
  }
}

void CachingAllocator::release_cached() {
  std::vector<Block*> whole;
  for (Pool* pool : {&small_, &large_})
    for (Block* b : *pool)
      if (!b->prev && !b->next) whole.push_back(b);
  if (whole.empty()) return;
  raw_.synchronize();
  for (Block* b : whole) {
    (b->small ? small_ : large_).erase(b);
    raw_.free(b->ptr);
    stats_.reserved -= b->size;
    ++stats_.num_device_frees;
    delete b;
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached();
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
  stats_.peak_reserved = stats_.reserved;
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace kiln::kernels::cuda
