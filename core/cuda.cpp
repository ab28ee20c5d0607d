// kiln::cuda over kernels::DeviceRuntime (kernels/runtime.h). Every entry point first asks for
// the runtime, which throws a kiln::Error naming the call when the build or machine lacks CUDA.
#include "core/cuda.h"

#include <utility>

#include "core/error.h"
#include "kernels/backend.h"

namespace kiln::cuda {
namespace {

kernels::DeviceRuntime& runtime(const char* what) {
  kernels::DeviceRuntime* rt = kernels::cuda_runtime();
  KILN_CHECK(rt, "kiln::cuda::", what,
             ": this build of kiln has no CUDA backend; rebuild with "
             "-Dcuda=enabled on a machine with the CUDA Toolkit, or check "
             "kiln::cuda::is_available() and stay on the CPU");
  KILN_CHECK(rt->device_count() > 0, "kiln::cuda::", what,
             ": no CUDA GPU is available on this "
             "machine; check kiln::cuda::is_available() and stay on the CPU");
  return *rt;
}

int resolve(kernels::DeviceRuntime& rt, int device, const char* what) {
  if (device < 0) return rt.current_device();
  const int count = rt.device_count();
  KILN_CHECK(device < count, "kiln::cuda::", what, ": device ", device,
             " does not exist; this "
             "machine has ",
             count, " CUDA device(s), 0 to ", count - 1);
  return device;
}

}  // namespace

int current_device() { return runtime("current_device").current_device(); }

void set_device(int device) {
  auto& rt = runtime("set_device");
  rt.set_device(resolve(rt, device, "set_device"));
}

void synchronize(int device) {
  auto& rt = runtime("synchronize");
  rt.synchronize_device(resolve(rt, device, "synchronize"));
}

DeviceGuard::DeviceGuard(int device) : previous_(current_device()) { set_device(device); }
DeviceGuard::DeviceGuard(Device device) : previous_(current_device()) {
  KILN_CHECK(device.is_cuda(), "kiln::cuda::DeviceGuard: expected a CUDA device, got ", device);
  set_device(device.index);
}
DeviceGuard::~DeviceGuard() {
  try {
    set_device(previous_);
  } catch (...) {
    // Never throw from a destructor; the device stays as the scope left it.
  }
}

Stream Stream::create(int device, bool high_priority) {
  auto& rt = runtime("Stream::create");
  const int d = resolve(rt, device, "Stream::create");
  return Stream(d, rt.create_stream(d, high_priority));
}

bool Stream::query() const { return runtime("Stream::query").stream_query(handle_); }
void Stream::synchronize() const { runtime("Stream::synchronize").stream_synchronize(handle_); }
void Stream::wait(const Event& event) const { event.wait(*this); }

Stream current_stream(int device) {
  auto& rt = runtime("current_stream");
  const int d = resolve(rt, device, "current_stream");
  return Stream(d, rt.current_stream(d));
}

Stream default_stream(int device) {
  auto& rt = runtime("default_stream");
  const int d = resolve(rt, device, "default_stream");
  return Stream(d, rt.default_stream(d));
}

void set_current_stream(const Stream& stream) {
  runtime("set_current_stream").set_current_stream(stream.device_index(), stream.handle());
}

StreamGuard::StreamGuard(const Stream& stream) : previous_(current_stream(stream.device_index())) {
  set_current_stream(stream);
}
StreamGuard::~StreamGuard() {
  try {
    set_current_stream(previous_);
  } catch (...) {
    // Never throw from a destructor.
  }
}

Event::~Event() {
  if (handle_) kernels::cuda_runtime()->destroy_event(device_, handle_);
}

Event::Event(Event&& other) noexcept
    : enable_timing_(other.enable_timing_), device_(other.device_), handle_(std::exchange(other.handle_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (handle_) kernels::cuda_runtime()->destroy_event(device_, handle_);
    enable_timing_ = other.enable_timing_;
    device_ = other.device_;
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

void Event::record() { record(current_stream()); }

void Event::record(const Stream& stream) {
  auto& rt = runtime("Event::record");
  if (!handle_) {
    handle_ = rt.create_event(stream.device_index(), enable_timing_);
    device_ = stream.device_index();
  }
  KILN_CHECK(device_ == stream.device_index(), "kiln::cuda::Event::record: the event belongs to cuda:", device_,
             " but the stream to cuda:", stream.device_index(), "; use one event per device");
  rt.record_event(handle_, stream.handle());
}

void Event::wait(const Stream& stream) const {
  auto& rt = runtime("Event::wait");
  if (handle_) rt.stream_wait_event(stream.handle(), handle_);
}

bool Event::query() const { return !handle_ || runtime("Event::query").event_query(handle_); }

void Event::synchronize() const {
  if (handle_) runtime("Event::synchronize").event_synchronize(handle_);
}

float Event::elapsed_time(const Event& end) const {
  auto& rt = runtime("Event::elapsed_time");
  KILN_CHECK(enable_timing_ && end.enable_timing_,
             "kiln::cuda::Event::elapsed_time: both events "
             "need timing; create them as kiln::cuda::Event(/*enable_timing=*/true)");
  KILN_CHECK(handle_ && end.handle_, "kiln::cuda::Event::elapsed_time: both events must be "
                                     "recorded first (record() them on a stream)");
  return rt.event_elapsed_ms(handle_, end.handle_);
}

Graph::~Graph() { reset(); }

Graph::Graph(Graph&& other) noexcept : device_(other.device_), handle_(std::exchange(other.handle_, nullptr)) {}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    reset();
    device_ = other.device_;
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

void Graph::reset() {
  if (handle_) kernels::cuda_runtime()->graph_destroy(std::exchange(handle_, nullptr));
}

void Graph::capture(const std::function<void()>& fn) {
  auto& rt = runtime("Graph::capture");
  KILN_CHECK(!handle_, "kiln::cuda::Graph::capture: this graph is already captured; reset() it first "
                       "or use another Graph");
  const int device = rt.current_device();
  // Work queued before the capture must not race with the side stream's first kernels.
  rt.synchronize_device(device);
  Stream side = Stream::create(device);
  StreamGuard on(side);
  kernels::GraphHandle g = rt.graph_capture_begin(device, side.handle());
  try {
    fn();
  } catch (...) {
    rt.graph_capture_abort(g);
    throw;
  }
  rt.graph_capture_end(g);  // discards the graph itself if instantiation fails
  handle_ = g;
  device_ = device;
}

void Graph::replay() {
  KILN_CHECK(handle_, "kiln::cuda::Graph::replay: nothing captured yet; call capture() first");
  auto& rt = runtime("Graph::replay");
  rt.graph_replay(handle_, rt.current_stream(device_));
}

void set_conv_allow_tf32(bool on) { kernels::set_conv_tf32(on); }
bool conv_allow_tf32() { return kernels::conv_tf32(); }

uint64_t host_sync_count() {
  kernels::DeviceRuntime* rt = kernels::cuda_runtime();
  return rt ? rt->host_sync_count() : 0;
}

MemoryStats memory_stats(int device) {
  auto& rt = runtime("memory_stats");
  return rt.memory_stats(resolve(rt, device, "memory_stats"));
}

void reset_peak_memory_stats(int device) {
  auto& rt = runtime("reset_peak_memory_stats");
  rt.reset_peak_memory_stats(resolve(rt, device, "reset_peak_memory_stats"));
}

HostMemoryStats host_memory_stats() { return runtime("host_memory_stats").host_memory_stats(); }

void empty_cache() {
  kernels::DeviceRuntime* rt = kernels::cuda_runtime();
  if (rt && rt->device_count() > 0) rt->empty_cache();
}

}  // namespace kiln::cuda
