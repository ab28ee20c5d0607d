// CUDA graphs for kiln::cuda::Graph: capture of the work queued on one stream, instantiation and
// replay. Around a capture the device's caching allocator serves the stream from the graph's own
// pool and holds back frees of other blocks (allocator.h), and random kernels read their Philox
// offset from a device counter that the graph's last node advances by what one replay draws, so
// every replay of a step with dropout draws fresh numbers. Released graphs hand their pool back
// to the stream they were captured on.
#include <cuda_runtime.h>

#include <atomic>

#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_backend.h"

namespace kiln::kernels::cuda {
namespace {

// Philox offsets of replays start far beyond what eager draws reach (2^62 counters), each graph
// in its own 2^44-counter range, so replays and eager work never draw the same numbers.
constexpr unsigned long long kGraphOffsetBase = 1ull << 62;
constexpr unsigned long long kGraphOffsetRange = 1ull << 44;

std::atomic<uint64_t> g_graph_serial{0};

__global__ void advance_offset(unsigned long long* base, unsigned long long counters) { *base += counters; }

struct Graph {
  CaptureState capture;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool pool_active = false;
};

// Ends the capture on the allocator and the thread, whatever happened.
void stop_capturing(Graph& g) noexcept {
  set_thread_capture(nullptr);
  if (g.pool_active) {
    end_pool_capture(g.capture.device);
    g.pool_active = false;
  }
}

}  // namespace

void* graph_capture_begin(int device, cudaStream_t stream) {
  KILN_CHECK(!capture_state(stream), "CUDA graph: this stream is already being captured; captures do not nest");
  auto g = std::make_unique<Graph>();
  const uint64_t serial = g_graph_serial.fetch_add(1);
  g->capture.device = device;
  g->capture.stream = stream;
  g->capture.pool = (uintptr_t(1) << 63) | uintptr_t(serial + 1);
  KILN_CUDA_CHECK(cudaMalloc(&g->capture.offset_base, sizeof(unsigned long long)));
  const unsigned long long start = kGraphOffsetBase + (serial % (1ull << 17)) * kGraphOffsetRange;
  KILN_CUDA_CHECK(cudaMemcpy(g->capture.offset_base, &start, sizeof start, cudaMemcpyHostToDevice));
  begin_pool_capture(device, g->capture.pool);
  g->pool_active = true;
  cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    stop_capturing(*g);
    cudaFree(g->capture.offset_base);
    KILN_CUDA_CHECK(e);
  }
  set_thread_capture(&g->capture);
  return g.release();
}

void graph_capture_abort(void* handle) noexcept {
  auto* g = static_cast<Graph*>(handle);
  cudaGraph_t partial = nullptr;
  if (cudaStreamEndCapture(g->capture.stream, &partial) == cudaSuccess && partial) cudaGraphDestroy(partial);
  cudaGetLastError();
  stop_capturing(*g);
  // Nothing of the capture ran, so its pool and held-back blocks go back at once.
  try {
    release_pool(g->capture.device, g->capture.pool, default_stream(g->capture.device));
  } catch (...) {}
  cudaFree(g->capture.offset_base);
  delete g;
}

void graph_capture_end(void* handle) {
  auto* g = static_cast<Graph*>(handle);
  // The graph's last node moves the Philox offset on by what one replay draws.
  if (g->capture.counters) {
    advance_offset<<<1, 1, 0, g->capture.stream>>>(g->capture.offset_base, g->capture.counters);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
      graph_capture_abort(handle);
      throw_cuda(e, "launch of advance_offset", __FILE__, __LINE__);
    }
  }
  cudaError_t e = cudaStreamEndCapture(g->capture.stream, &g->graph);
  stop_capturing(*g);
  if (e == cudaSuccess) e = cudaGraphInstantiateWithFlags(&g->exec, g->graph, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (g->graph) cudaGraphDestroy(g->graph);
    g->graph = nullptr;
    try {
      release_pool(g->capture.device, g->capture.pool, default_stream(g->capture.device));
    } catch (...) {}
    cudaFree(g->capture.offset_base);
    delete g;
    fail("CUDA graph: capture failed with ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
         "); the captured code must queue only device work on the capturing stream: no host "
         "reads, synchronisations, or work on other streams that is not joined back");
  }
}

void graph_replay(void* handle, cudaStream_t stream) {
  auto* g = static_cast<Graph*>(handle);
  KILN_CHECK(g->exec, "CUDA graph: replay before a successful capture");
  KILN_CUDA_CHECK(cudaGraphLaunch(g->exec, stream));
}

void graph_destroy(void* handle) noexcept {
  auto* g = static_cast<Graph*>(handle);
  if (!g) return;
  // Replays may still run on any stream: wait for the device before the pool's blocks become
  // ordinary blocks of the device's default stream, where eager work will use them.
  int prev = 0;
  if (cudaGetDevice(&prev) != cudaSuccess || cudaSetDevice(g->capture.device) != cudaSuccess ||
      cudaDeviceSynchronize() != cudaSuccess)
    cudaGetLastError();
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  try {
    release_pool(g->capture.device, g->capture.pool, default_stream(g->capture.device));
  } catch (...) {}
  if (cudaSetDevice(prev) != cudaSuccess) cudaGetLastError();
  cudaFree(g->capture.offset_base);
  delete g;
}

}  // namespace kiln::kernels::cuda
