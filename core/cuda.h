// kiln::cuda: devices, streams, events, synchronisation and memory statistics, as in torch.cuda.
// CUDA-agnostic: it compiles in every build, and where kiln has no CUDA backend or the machine no
// GPU every call that needs one throws a kiln::Error that says so (check is_available() first).
//   kiln::cuda::Stream side = kiln::cuda::Stream::create();
//   { kiln::cuda::StreamGuard on(side); y = x.to(kiln::Device::cuda(), /*non_blocking=*/true); }
//   kiln::cuda::Event ready;  ready.record(side);  kiln::cuda::current_stream().wait(ready);
#pragma once

#include <cstdint>
#include <functional>

#include "core/device.h"
#include "kernels/runtime.h"

namespace kiln::cuda {

using MemoryStats = kernels::MemoryStats;
using HostMemoryStats = kernels::HostMemoryStats;

// (is_available(), device_count() and synchronize() of the current device are in core/device.h.)
int current_device();
void set_device(int device);
void synchronize(int device);

// Makes a device current for a scope, then restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  explicit DeviceGuard(Device device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

class Event;

// A queue of device work; a cheap handle (copies name the same stream).
class Stream {
 public:
  // A non-blocking stream on `device` (-1: the current device) other than the default one. As in
  // PyTorch, streams come from a pool (32 per device and priority, handed out round-robin) and
  // live for the process, so the 33rd create() shares a stream with the first.
  static Stream create(int device = -1, bool high_priority = false);

  int device_index() const { return device_; }
  Device device() const { return Device::cuda(device_); }
  kernels::StreamHandle handle() const { return handle_; }  // the cudaStream_t
  bool query() const;                                       // true when all work queued so far has finished
  void synchronize() const;                                 // waits on the host for all work queued so far
  void wait(const Event& event) const;                      // later work on this stream waits for the event
  bool operator==(const Stream& other) const { return handle_ == other.handle_ && device_ == other.device_; }

 private:
  friend Stream current_stream(int);
  friend Stream default_stream(int);
  Stream(int device, kernels::StreamHandle handle) : device_(device), handle_(handle) {}
  int device_;
  kernels::StreamHandle handle_;
};

// This thread's current stream on `device` (-1: the current device); kernels and copies on that
// device are queued on it.
Stream current_stream(int device = -1);
// The device's default kiln stream (what current_stream() is until changed).
Stream default_stream(int device = -1);
// Makes `stream` this thread's current stream on its device.
void set_current_stream(const Stream& stream);

// Makes a stream current (on its device) for a scope, then restores the previous one.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream previous_;
};

// A marker in a stream's work. Created on the device of the first stream it is recorded on.
class Event {
 public:
  explicit Event(bool enable_timing = false) : enable_timing_(enable_timing) {}
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record();                          // on the current stream of the current device
  void record(const Stream& stream);      // captures the work queued on `stream` so far
  void wait(const Stream& stream) const;  // later work on `stream` waits for this event
  bool query() const;                     // true when the captured work has finished (or never recorded)
  void synchronize() const;               // waits on the host for the captured work (no-op if never recorded)
  // Milliseconds from this event to `end`; both recorded, both made with enable_timing.
  float elapsed_time(const Event& end) const;
  bool is_recorded() const { return handle_ != nullptr; }
  kernels::EventHandle handle() const { return handle_; }

 private:
  bool enable_timing_;
  int device_ = -1;
  kernels::EventHandle handle_ = nullptr;
};

// A CUDA graph: the device work of a piece of code recorded once and then run again with one
// launch, as torch.cuda.CUDAGraph. capture() runs `fn` on a side stream of the current device
// while recording: nothing runs then, and `fn` must only queue device work (no item(), no
// printing of CUDA tensors, no synchronisation: those are a kiln::Error naming the capture).
// Tensors that `fn` allocates come from the graph's private memory and stay valid; every replay
// rewrites them and whatever else the recorded kernels write (parameters, optimizer state), from
// whatever the inputs hold at that moment, so feed it by copying into tensors made before the
// capture. Random ops (dropout) draw new numbers on each replay. Run `fn` eagerly once or twice
// first: one-time work (cuDNN's algorithm search, optimizer state creation) cannot be captured.
//   kiln::cuda::Graph graph;
//   graph.capture([&] { loss = train_step(static_x, static_y); });
//   for (auto& [x, y] : loader) { static_x.copy_(x); static_y.copy_(y); graph.replay(); }
class Graph {
 public:
  Graph() = default;
  ~Graph();  // waits for the device, then gives the graph's memory back to ordinary use
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Records `fn`; if it throws, nothing is kept and the exception goes on. Only once per Graph
  // (reset() first to record again).
  void capture(const std::function<void()>& fn);
  // Runs the recorded work on the current stream of the graph's device.
  void replay();
  bool is_captured() const { return handle_ != nullptr; }
  int device_index() const { return device_; }
  void reset();

 private:
  int device_ = -1;
  kernels::GraphHandle handle_ = nullptr;
};

// Whether float32 convolutions may run on TF32 tensor cores (10-bit mantissa products, f32
// accumulation), as torch.backends.cudnn.allow_tf32. kiln keeps it off by default, so float32
// means float32 (PyTorch turns it on by default for convolutions); turn it on to compare like
// with like or for speed. Applies to the convolution shapes first run after the call.
void set_conv_allow_tf32(bool on);
bool conv_allow_tf32();

// Host synchronisations since the process started, every device together: copies to the host
// that wait (item(), to(cpu)), and stream, event and device synchronisations. A training step
// written for the GPU should add none.
uint64_t host_sync_count();

// Device memory of the caching allocator of `device` (-1: the current device).
MemoryStats memory_stats(int device = -1);
// Makes the peaks of memory_stats(device) start again from the current use (as
// torch.cuda.reset_peak_memory_stats), e.g. to measure a steady-state step after warm-up.
void reset_peak_memory_stats(int device = -1);
// Pinned host memory of the pinned allocator (Tensor::pin_memory, pin_memory=true loaders).
HostMemoryStats host_memory_stats();
// Returns unused cached device segments and pinned blocks to the driver (a no-op without CUDA).
void empty_cache();

}  // namespace kiln::cuda
