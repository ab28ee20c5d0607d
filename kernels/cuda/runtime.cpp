// kernels::DeviceRuntime over the CUDA runtime: what core/cuda.h offers (devices, streams, events,
// pinned host memory, memory statistics) as thin checked calls, plus the pinned host allocator
// over cudaHostAlloc and CUDA events. Every status goes through KILN_CUDA_CHECK.
#include <cuda_runtime.h>

#include <array>
#include <mutex>

#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/host_allocator.h"
#include "kernels/runtime.h"

namespace kiln::kernels {
namespace cuda {
namespace {

cudaStream_t as_stream(StreamHandle s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t as_event(EventHandle e) { return static_cast<cudaEvent_t>(e); }

// Makes `device` current for a scope and restores the previous device (without throwing).
class DeviceSwitch {
 public:
  explicit DeviceSwitch(int device) {
    KILN_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) KILN_CUDA_CHECK(cudaSetDevice(device));
    switched_ = prev_ != device;
  }
  ~DeviceSwitch() {
    if (switched_ && cudaSetDevice(prev_) != cudaSuccess) cudaGetLastError();
  }
  DeviceSwitch(const DeviceSwitch&) = delete;
  DeviceSwitch& operator=(const DeviceSwitch&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

int stream_device(cudaStream_t s) {
  int device = 0;
#if CUDART_VERSION >= 12080
  KILN_CUDA_CHECK(cudaStreamGetDevice(s, &device));
#else
  (void)s;
  KILN_CUDA_CHECK(cudaGetDevice(&device));
#endif
  return device;
}

// Pinned blocks from cudaHostAlloc (portable: pinned for every device), events without timing.
class CudaHostMemory final : public HostRawMemory {
 public:
  void* malloc(size_t nbytes) override {
    void* p = nullptr;
    cudaError_t e = cudaHostAlloc(&p, nbytes, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return nullptr;
    }
    KILN_CUDA_CHECK(e);
    return p;
  }
  void free(void* ptr) override { KILN_CUDA_CHECK(cudaFreeHost(ptr)); }
  void* record_event(uintptr_t stream) override {
    cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    DeviceSwitch on(stream_device(s));
    cudaEvent_t e = nullptr;
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    cudaError_t rec = cudaEventRecord(e, s);
    if (rec != cudaSuccess) cudaEventDestroy(e);
    KILN_CUDA_CHECK(rec);
    return e;
  }
  bool event_done(void* event) override {
    cudaError_t e = cudaEventQuery(as_event(event));
    if (e == cudaErrorNotReady) {
      cudaGetLastError();
      return false;
    }
    KILN_CUDA_CHECK(e);
    return true;
  }
  void destroy_event(void* event) override { KILN_CUDA_CHECK(cudaEventDestroy(as_event(event))); }
};

class CudaRuntime final : public DeviceRuntime {
 public:
  int device_count() override { return cuda_device_count(); }
  int current_device() override { return cuda::current_device(); }
  void set_device(int device) override { cuda_backend()->set_device(device); }
  void synchronize_device(int device) override {
    DeviceSwitch on(device);
    count_host_sync();
    KILN_CUDA_CHECK(cudaDeviceSynchronize());
    check_device_errors();
  }

  StreamHandle default_stream(int device) override { return cuda::default_stream(device); }
  StreamHandle current_stream(int device) override { return cuda::current_stream(device); }
  void set_current_stream(int device, StreamHandle stream) override {
    cuda::set_current_stream(device, as_stream(stream));
  }
  StreamHandle create_stream(int device, bool high_priority) override {
    KILN_CHECK(device >= 0 && device < kMaxPoolDevices, "cuda: device index ", device, " out of range");
    StreamPool& pool = pools_[size_t(device)][high_priority ? 1 : 0];
    std::lock_guard<std::mutex> lock(pool.mu);
    const size_t i = pool.next++ % kPoolSize;
    if (!pool.streams[i]) {
      DeviceSwitch on(device);
      int least = 0, greatest = 0;
      KILN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      KILN_CUDA_CHECK(
          cudaStreamCreateWithPriority(&pool.streams[i], cudaStreamNonBlocking, high_priority ? greatest : least));
    }
    return pool.streams[i];
  }
  bool stream_query(StreamHandle stream) override {
    cudaError_t e = cudaStreamQuery(as_stream(stream));
    if (e == cudaErrorNotReady) {
      cudaGetLastError();
      return false;
    }
    KILN_CUDA_CHECK(e);
    return true;
  }
  void stream_synchronize(StreamHandle stream) override {
    count_host_sync();
    KILN_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
    check_device_errors();
  }
  void stream_wait_event(StreamHandle stream, EventHandle event) override {
    KILN_CUDA_CHECK(cudaStreamWaitEvent(as_stream(stream), as_event(event), 0));
  }

  EventHandle create_event(int device, bool enable_timing) override {
    DeviceSwitch on(device);
    cudaEvent_t e = nullptr;
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&e, enable_timing ? cudaEventDefault : cudaEventDisableTiming));
    return e;
  }
  void destroy_event(int device, EventHandle event) noexcept override {
    (void)device;
    if (cudaEventDestroy(as_event(event)) != cudaSuccess) cudaGetLastError();
  }
  void record_event(EventHandle event, StreamHandle stream) override {
    KILN_CUDA_CHECK(cudaEventRecord(as_event(event), as_stream(stream)));
  }
  bool event_query(EventHandle event) override {
    cudaError_t e = cudaEventQuery(as_event(event));
    if (e == cudaErrorNotReady) {
      cudaGetLastError();
      return false;
    }
    KILN_CUDA_CHECK(e);
    return true;
  }
  void event_synchronize(EventHandle event) override {
    count_host_sync();
    KILN_CUDA_CHECK(cudaEventSynchronize(as_event(event)));
    check_device_errors();
  }
  float event_elapsed_ms(EventHandle start, EventHandle end) override {
    float ms = 0;
    KILN_CUDA_CHECK(cudaEventElapsedTime(&ms, as_event(start), as_event(end)));
    return ms;
  }

  MemoryStats memory_stats(int device) override { return cuda::memory_stats(device); }
  void reset_peak_memory_stats(int device) override { cuda::reset_peak_memory_stats(device); }
  void empty_cache() override {
    empty_all_caches();
    host_.empty_cache();
  }

  void* host_allocate(size_t nbytes) override { return host_.allocate(nbytes); }
  void host_deallocate(void* ptr) override { host_.free(ptr); }
  bool is_pinned(const void* ptr) override {
    if (!ptr) return false;
    if (host_.owns(ptr)) return true;
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return attr.type == cudaMemoryTypeHost;
  }
  void host_record_use(const void* ptr, StreamHandle stream) override {
    host_.record_use(ptr, reinterpret_cast<uintptr_t>(stream));
  }
  HostMemoryStats host_memory_stats() override { return host_.stats(); }

  void copy_async(void* dst, const void* src, size_t nbytes, bool to_device, StreamHandle stream) override {
    if (!nbytes) return;
    KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                    as_stream(stream)));
  }

  uint64_t host_sync_count() override { return cuda::host_sync_count(); }

  GraphHandle graph_capture_begin(int device, StreamHandle stream) override {
    DeviceSwitch on(device);
    return cuda::graph_capture_begin(device, as_stream(stream));
  }
  void graph_capture_end(GraphHandle graph) override { cuda::graph_capture_end(graph); }
  void graph_capture_abort(GraphHandle graph) noexcept override { cuda::graph_capture_abort(graph); }
  void graph_replay(GraphHandle graph, StreamHandle stream) override { cuda::graph_replay(graph, as_stream(stream)); }
  void graph_destroy(GraphHandle graph) noexcept override { cuda::graph_destroy(graph); }

 private:
  static constexpr size_t kPoolSize = 32;
  static constexpr int kMaxPoolDevices = 64;
  struct StreamPool {
    std::mutex mu;
    std::array<cudaStream_t, kPoolSize> streams{};
    size_t next = 0;
  };
  std::array<std::array<StreamPool, 2>, kMaxPoolDevices> pools_;  // [device][high priority]
  CudaHostMemory host_raw_;
  HostCachingAllocator host_{host_raw_};
};

}  // namespace
}  // namespace cuda

DeviceRuntime* cuda_runtime() {
  // Lives for the process (like the device states): pinned blocks are left to the driver at exit.
  static auto* runtime = new cuda::CudaRuntime();
  return runtime;
}

}  // namespace kiln::kernels
