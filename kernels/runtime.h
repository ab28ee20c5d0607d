// The device runtime behind kiln::cuda (core/cuda.h): devices, streams, events, pinned host memory
// and memory statistics, with streams and events as opaque handles so that core/ needs no CUDA
// header. kernels/cuda implements it; cuda_runtime() is null in a build without CUDA, and core/
// turns that into a clear error. Handles are created and destroyed only through this interface.
//   kernels::DeviceRuntime* rt = kernels::cuda_runtime();
//   void* ev = rt->create_event(0, false);  rt->record_event(ev, rt->current_stream(0));
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

namespace kiln::kernels {

using StreamHandle = void*;  // cudaStream_t
using EventHandle = void*;   // cudaEvent_t
using GraphHandle = void*;   // a captured, instantiated graph

// Device memory held by a device's caching allocator.
struct MemoryStats {
  size_t allocated = 0;  // bytes in blocks handed out (rounded sizes)
  size_t reserved = 0;   // bytes in segments obtained from the device
  size_t peak_allocated = 0;
  size_t peak_reserved = 0;
  uint64_t num_device_mallocs = 0;  // segments ever obtained (steady state: constant)
  uint64_t num_device_frees = 0;
  uint64_t num_ooms = 0;
  std::string str() const {
    std::ostringstream os;
    os << "allocated " << allocated << " B, reserved " << reserved << " B, peak allocated " << peak_allocated
       << " B, peak reserved " << peak_reserved << " B, device mallocs " << num_device_mallocs << ", device frees "
       << num_device_frees;
    return os.str();
  }
};

// Page-locked host memory held by the pinned host allocator.
struct HostMemoryStats {
  size_t allocated = 0;         // bytes in blocks handed out (rounded sizes)
  size_t reserved = 0;          // bytes obtained from the driver (cudaHostAlloc)
  size_t cached_blocks = 0;     // free and ready for reuse
  size_t in_flight_blocks = 0;  // freed, but a copy that uses them may still be running
  uint64_t num_host_allocs = 0;
  uint64_t num_host_frees = 0;
};

class DeviceRuntime {
 public:
  virtual ~DeviceRuntime() = default;

  virtual int device_count() = 0;
  virtual int current_device() = 0;  // of this thread
  virtual void set_device(int device) = 0;
  virtual void synchronize_device(int device) = 0;

  // Streams. Each device has one default kiln stream (non-blocking with respect to the legacy
  // null stream); the current stream is per thread and device and starts as the default.
  virtual StreamHandle default_stream(int device) = 0;
  virtual StreamHandle current_stream(int device) = 0;
  virtual void set_current_stream(int device, StreamHandle stream) = 0;
  // A stream from the device's pool (32 per priority, handed out round-robin and never
  // destroyed, as PyTorch does), so a stream can never be destroyed while it is current.
  virtual StreamHandle create_stream(int device, bool high_priority) = 0;
  virtual bool stream_query(StreamHandle stream) = 0;  // true when all its work has finished
  virtual void stream_synchronize(StreamHandle stream) = 0;
  virtual void stream_wait_event(StreamHandle stream, EventHandle event) = 0;

  // Events.
  virtual EventHandle create_event(int device, bool enable_timing) = 0;
  virtual void destroy_event(int device, EventHandle event) noexcept = 0;
  virtual void record_event(EventHandle event, StreamHandle stream) = 0;
  virtual bool event_query(EventHandle event) = 0;  // true when the recorded work has finished
  virtual void event_synchronize(EventHandle event) = 0;
  virtual float event_elapsed_ms(EventHandle start, EventHandle end) = 0;

  // Device memory.
  virtual MemoryStats memory_stats(int device) = 0;
  virtual void reset_peak_memory_stats(int device) = 0;
  virtual void empty_cache() = 0;  // every device's unused segments and the unused pinned blocks

  // Pinned (page-locked) host memory from a caching allocator. A block freed while copies that
  // use it are in flight (see host_record_use) is reused only once those copies have finished.
  virtual void* host_allocate(size_t nbytes) = 0;
  virtual void host_deallocate(void* ptr) = 0;
  virtual bool is_pinned(const void* ptr) = 0;  // any page-locked memory, not only kiln's
  // Notes that work on `stream` reads or writes the pinned block that holds `ptr`.
  virtual void host_record_use(const void* ptr, StreamHandle stream) = 0;
  virtual HostMemoryStats host_memory_stats() = 0;

  // A contiguous byte copy host -> device (to_device) or device -> host queued on `stream`,
  // returning without waiting for it. Truly asynchronous only from or to pinned memory.
  virtual void copy_async(void* dst, const void* src, size_t nbytes, bool to_device, StreamHandle stream) = 0;

  // Host synchronisations so far, every device together (device -> host copies that wait,
  // stream, event and device synchronisations).
  virtual uint64_t host_sync_count() = 0;

  // CUDA graphs (kiln::cuda::Graph): capture of the work queued on `stream` (the caller makes it
  // current), instantiated at the end; a handle names the graph until graph_destroy. A failed
  // capture_end discards the graph and throws.
  virtual GraphHandle graph_capture_begin(int device, StreamHandle stream) = 0;
  virtual void graph_capture_end(GraphHandle graph) = 0;
  virtual void graph_capture_abort(GraphHandle graph) noexcept = 0;
  virtual void graph_replay(GraphHandle graph, StreamHandle stream) = 0;
  virtual void graph_destroy(GraphHandle graph) noexcept = 0;
};

// The CUDA runtime: null when kiln was built without its CUDA backend.
DeviceRuntime* cuda_runtime();

}  // namespace kiln::kernels
