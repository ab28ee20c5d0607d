// Devices, streams, library handles, memory and host<->device copies of the CUDA backend.
// Each device gets, lazily and once, a non-blocking kiln stream (the default current stream),
// a caching allocator over cudaMalloc, and cuBLAS/cuDNN handles. The current device and an
// optional stream override are per thread, like CUDA's own current device.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <atomic>

#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_backend.h"

namespace kiln::kernels {

namespace cuda {

void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  cudaGetLastError();  // clear a sticky launch error so the next check reports its own call
  fail("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ", call, " at ", file, ":", line);
}
void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  fail("cuBLAS error ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ") in ", call, " at ", file, ":", line);
}
void throw_cudnn(cudnnStatus_t s, const char* call, const char* file, int line) {
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof(detail));
  fail("cuDNN error ", cudnnGetErrorString(s), " in ", call, " at ", file, ":", line, detail[0] ? ": " : "", detail);
}

namespace {

constexpr int kMaxDevices = 64;

class CudaMemory final : public RawMemory {
 public:
  explicit CudaMemory(int device) : device_(device) {}
  void* malloc(size_t nbytes) override {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, nbytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return nullptr;
    }
    KILN_CUDA_CHECK(e);
    return p;
  }
  void free(void* ptr) override { KILN_CUDA_CHECK(cudaFree(ptr)); }
  void synchronize() override { KILN_CUDA_CHECK(cudaDeviceSynchronize()); }

 private:
  int device_;
};

// cuBLAS's workspace, given explicitly: its default pool would be allocated by the library
// itself, invisible to kiln's statistics and not capturable in a CUDA graph.
constexpr size_t kCublasWorkspace = size_t(32) << 20;

struct DeviceState {
  int index = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<CudaMemory> raw;
  std::unique_ptr<CachingAllocator> allocator;
  cublasHandle_t cublas = nullptr;
  cudaStream_t cublas_stream = nullptr;  // what the handle is bound to now
  void* cublas_workspace = nullptr;
  cudnnHandle_t cudnn = nullptr;
  int sms = 0;
};

std::atomic<uint64_t> g_host_syncs{0};
thread_local CaptureState* t_capture = nullptr;

std::array<std::atomic<DeviceState*>, kMaxDevices> g_states{};
std::mutex g_init_mu;
thread_local int t_device = -1;  // -1: not yet set on this thread (device 0)
thread_local cudaStream_t t_stream_override[kMaxDevices] = {};

DeviceState& state(int device) {
  DeviceState* s = g_states[size_t(device)].load(std::memory_order_acquire);
  if (s) return *s;
  std::lock_guard<std::mutex> lock(g_init_mu);
  s = g_states[size_t(device)].load(std::memory_order_relaxed);
  if (s) return *s;
  auto st = std::make_unique<DeviceState>();
  st->index = device;
  int prev = 0;
  KILN_CUDA_CHECK(cudaGetDevice(&prev));
  KILN_CUDA_CHECK(cudaSetDevice(device));
  KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
  st->raw = std::make_unique<CudaMemory>(device);
  st->allocator = std::make_unique<CachingAllocator>(*st->raw);
  KILN_CUDA_CHECK(cudaDeviceGetAttribute(&st->sms, cudaDevAttrMultiProcessorCount, device));
  KILN_CUBLAS_CHECK(cublasCreate(&st->cublas));
  // fp32 stays fp32: the default math mode uses TF32 only when asked (not yet exposed).
  KILN_CUBLAS_CHECK(cublasSetMathMode(st->cublas, CUBLAS_DEFAULT_MATH));
  KILN_CUDNN_CHECK(cudnnCreate(&st->cudnn));
  KILN_CUDA_CHECK(cudaSetDevice(prev));
  s = st.release();  // lives for the process: handles are not destroyed after the driver
  g_states[size_t(device)].store(s, std::memory_order_release);
  return *s;
}

DeviceState& current_state() { return state(current_device()); }

}  // namespace

int current_device() {
  if (t_device < 0) {
    int d = 0;
    KILN_CUDA_CHECK(cudaGetDevice(&d));
    t_device = d;
  }
  return t_device;
}

cudaStream_t current_stream() { return current_stream(current_device()); }

cudaStream_t current_stream(int device) {
  cudaStream_t s = t_stream_override[device];
  return s ? s : state(device).stream;
}

cudaStream_t default_stream(int device) { return state(device).stream; }

void set_current_stream(cudaStream_t s) { t_stream_override[current_device()] = s; }

void set_current_stream(int device, cudaStream_t s) {
  KILN_CHECK(device >= 0 && device < kMaxDevices, "cuda: device index ", device, " out of range");
  t_stream_override[device] = s == state(device).stream ? nullptr : s;
}

MemoryStats memory_stats(int device) { return state(device < 0 ? current_device() : device).allocator->stats(); }
void empty_cache(int device) { state(device < 0 ? current_device() : device).allocator->empty_cache(); }
void reset_peak_memory_stats(int device) {
  state(device < 0 ? current_device() : device).allocator->reset_peak_stats();
}
void empty_all_caches() {
  for (auto& slot : g_states)
    if (DeviceState* s = slot.load(std::memory_order_acquire)) s->allocator->empty_cache();
}

int sm_count() { return current_state().sms; }

cublasHandle_t cublas_handle() {
  DeviceState& s = current_state();
  cudaStream_t stream = current_stream();
  if (stream != s.cublas_stream || !s.cublas_workspace) {
    // Binding a stream resets cuBLAS to its own workspace pool, so kiln's is set again after.
    KILN_CUBLAS_CHECK(cublasSetStream(s.cublas, stream));
    if (!s.cublas_workspace) s.cublas_workspace = s.allocator->allocate(kCublasWorkspace, uintptr_t(s.stream));
    KILN_CUBLAS_CHECK(cublasSetWorkspace(s.cublas, s.cublas_workspace, kCublasWorkspace));
    s.cublas_stream = stream;
  }
  return s.cublas;
}
cudnnHandle_t cudnn_handle() {
  DeviceState& s = current_state();
  KILN_CUDNN_CHECK(cudnnSetStream(s.cudnn, current_stream()));
  return s.cudnn;
}

namespace {
// The allocator key for work queued on `s`: the graph's pool while it is being captured.
uintptr_t alloc_key(cudaStream_t s) {
  if (t_capture && t_capture->stream == s) return t_capture->pool;
  return uintptr_t(s);
}
}  // namespace

Workspace::Workspace(size_t nbytes) {
  if (nbytes) ptr_ = current_state().allocator->allocate(nbytes, alloc_key(current_stream()));
}
Workspace::~Workspace() {
  if (!ptr_) return;
  try {
    current_state().allocator->free(ptr_);
  } catch (...) {
    // Never throw from a destructor; the block is lost to the cache at worst.
  }
}

// ---------------------------------------------------------------- Backend: memory and copies

void* CudaBackend::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  return current_state().allocator->allocate(nbytes, alloc_key(current_stream()));
}

CaptureState* capture_state(cudaStream_t stream) {
  return t_capture && t_capture->stream == stream ? t_capture : nullptr;
}

void begin_pool_capture(int device, uintptr_t pool) { state(device).allocator->begin_capture(pool); }
void end_pool_capture(int device) { state(device).allocator->end_capture(); }
void release_pool(int device, uintptr_t pool, cudaStream_t stream) {
  state(device).allocator->release_pool(pool, uintptr_t(stream));
}
void set_thread_capture(CaptureState* c) { t_capture = c; }

uint64_t host_sync_count() { return g_host_syncs.load(std::memory_order_relaxed); }
void count_host_sync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }

DeviceError* device_error_slot() {
  // Pinned, mapped and portable: every device writes it through the same (unified) address.
  static DeviceError* slot = [] {
    void* p = nullptr;
    KILN_CUDA_CHECK(cudaHostAlloc(&p, sizeof(DeviceError), cudaHostAllocMapped | cudaHostAllocPortable));
    auto* e = static_cast<DeviceError*>(p);
    *e = DeviceError{};
    return e;
  }();
  return slot;
}

void check_device_errors() {
  volatile DeviceError* e = device_error_slot();
  if (e->code == kNoDeviceError) return;
  // The kernel sets the code first: wait for its other fields before reading them.
  KILN_CUDA_CHECK(cudaDeviceSynchronize());
  const DeviceError err{e->code, 0, e->value, e->bound};
  e->code = kNoDeviceError;
  switch (err.code) {
    case kNllTargetOutOfRange:
      fail("nll_loss/cross_entropy: target ", err.value, " is out of bounds for ", err.bound,
           " classes (expected 0 to ", err.bound - 1,
           " or ignore_index); found on the GPU by an "
           "earlier call and reported at the next synchronisation, so check the labels of the "
           "batches before this point");
    default: fail("CUDA kernel reported error code ", err.code, " (value ", err.value, ", bound ", err.bound, ")");
  }
}

void CudaBackend::deallocate(void* ptr, size_t) {
  if (!ptr) return;
  // The owning device is whichever allocator knows the pointer; usually the current one.
  int dev = current_device();
  if (cuda_device_count() > 1) {
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, ptr) == cudaSuccess && attr.type == cudaMemoryTypeDevice)
      dev = attr.device;
    else
      cudaGetLastError();
  }
  state(dev).allocator->free(ptr);
}

void CudaBackend::copy_from_host(void* dst, const void* src, size_t nbytes) {
  if (!nbytes) return;
  // From pageable memory the driver stages through its own pinned buffers and returns once
  // `src` has been read, so the caller may free it at once. From pinned memory the copy is truly
  // asynchronous: the caller keeps `src` alive until the stream has passed this point.
  KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, current_stream()));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t nbytes) {
  if (!nbytes) return;
  cudaStream_t s = current_stream();
  KILN_CHECK(!capture_state(s),
             "reading a CUDA tensor on the host (item(), to(cpu), printing, a check "
             "that needs the value) is not possible while a CUDA graph is being captured; move it out "
             "of the captured step, or read the step's outputs after replay()");
  count_host_sync();
  KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
  KILN_CUDA_CHECK(cudaStreamSynchronize(s));
  check_device_errors();
}

void CudaBackend::synchronize() {
  KILN_CHECK(!t_capture, "synchronizing the device is not possible while a CUDA graph is being captured; "
                         "move the synchronisation out of the captured step");
  count_host_sync();
  KILN_CUDA_CHECK(cudaDeviceSynchronize());
  check_device_errors();
}

void CudaBackend::set_device(int index) {
  KILN_CHECK(index >= 0 && index < kMaxDevices, "cuda: device index ", index, " out of range");
  if (t_device == index) return;
  KILN_CUDA_CHECK(cudaSetDevice(index));
  t_device = index;
}

}  // namespace cuda

Backend* cuda_backend() {
  static cuda::CudaBackend backend;
  return &backend;
}

int cuda_device_count() {
  // Asked on every dispatch to a CUDA device: the answer is cached. No driver, no GPU, or a
  // broken installation all mean "no CUDA device" here, never an exception or an abort.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

}  // namespace kiln::kernels
