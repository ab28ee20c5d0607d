// The NCCL backend: CUDA tensors, one communicator per process on its current device. The unique
// id travels through kiln's store (rank 0 creates it). The communicator is created non-blocking and
// every call is enqueued on the caller's current stream, then waited for by polling the stream's
// event and NCCL's asynchronous error state against the timeout: a peer that died or never
// arrives aborts the communicator and ends in a kiln::Error naming the call, never in a hang.
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/autograd.h"
#include "core/cuda.h"
#include "distributed/communicator.h"
#include "distributed/debug_check.h"
#include "distributed/launch.h"

namespace kiln::distributed {
namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_dtype(const char* call, DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    default:
      fail(call, ": dtype ", d,
           " is not supported; use float32, float64, float16, bfloat16, int32 "
           "or int64");
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;  // integer tensors: truncated toward zero
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("nccl communicator: ", what, " failed: ", cudaGetErrorString(e), " (", int(e), ")");
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Store> store, int rank, int world, const ProcessGroupOptions& o, int device,
                   int instance)
      : store_(std::move(store)), rank_(rank), world_(world), timeout_(o.timeout) {
    check_timeout("init_process_group", timeout_);
    KILN_CHECK(world >= 1 && rank >= 0 && rank < world, "init_process_group: rank ", rank, " is not in a world of ",
               world);
    int count = 0;
    KILN_CHECK(cudaGetDeviceCount(&count) == cudaSuccess && count > 0,
               "init_process_group (nccl): "
               "no CUDA device is visible to rank ",
               rank, "; use the \"gloo\" backend for CPU tensors");
    KILN_CHECK(device < count, "init_process_group (nccl): rank ", rank, " asks for cuda:", device,
               " but this machine has ", count, " CUDA devices");
    int current = 0;
    check_cuda(cudaGetDevice(&current), "cudaGetDevice");
    device_ = device >= 0 ? device : current;
    // NCCL binds the communicator to the current device; restore the caller's afterwards.
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    struct Restore {
      int d;
      ~Restore() { cudaSetDevice(d); }
    } restore{current};
    const std::string prefix = "nccl/" + std::to_string(instance);
    ncclUniqueId id;
    if (rank == 0) {
      check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
      store_->set(prefix + "/id", std::string(reinterpret_cast<const char*>(&id), sizeof id));
    } else {
      std::string s = store_->get(prefix + "/id");  // waits, with the store's timeout
      KILN_CHECK(s.size() == sizeof id, "init_process_group (nccl): rank 0 published a unique id of ", s.size(),
                 " bytes, expected ", sizeof id, "; are all ranks running the same kiln build?");
      std::memcpy(&id, s.data(), sizeof id);
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&comm_, world, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) check_nccl(r, "ncclCommInitRankConfig");
    wait_ready("init_process_group", Tensor());
    bool dbg = o.debug.value_or(debug_from_env());
    if (dbg) debug_ = std::make_unique<DebugCheck>(std::make_shared<PrefixStore>(prefix + "/dbg", store_), rank, world);
    check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }

  ~NcclCommunicator() override {
    if (done_) cudaEventDestroy(done_);
    if (!comm_ || aborted_) return;
    // Finalize flushes outstanding work; a peer that is gone may keep it from completing, so past
    // the timeout the communicator is aborted instead of waited for.
    ncclResult_t state = ncclCommFinalize(comm_);
    const auto deadline = Clock::now() + timeout_;
    while ((state == ncclSuccess || state == ncclInProgress) && ncclCommGetAsyncError(comm_, &state) == ncclSuccess &&
           state == ncclInProgress && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    if (state == ncclSuccess)
      ncclCommDestroy(comm_);
    else
      ncclCommAbort(comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "nccl"; }
  Milliseconds timeout() const override { return timeout_; }
  void set_timeout(Milliseconds t) override {
    check_timeout("Communicator::set_timeout", t);
    std::lock_guard<std::mutex> g(mu_);
    timeout_ = t;
  }
  std::shared_ptr<Store> store() const override { return store_; }

  void all_reduce(Tensor& t, ReduceOp op) override {
    std::lock_guard<std::mutex> g(mu_);
    auto dt = check("all_reduce", t);
    step("all_reduce", t, reduce_op_name(op));
    Tensor buf = contiguous(t);
    run("all_reduce", t, [&](cudaStream_t s) {
      return ncclAllReduce(buf.raw_data(), buf.raw_data(), size_t(buf.numel()), dt, nccl_op(op), comm_, s);
    });
    copy_back(t, buf);
  }

  void broadcast(Tensor& t, int src) override {
    std::lock_guard<std::mutex> g(mu_);
    auto dt = check("broadcast", t);
    KILN_CHECK(src >= 0 && src < world_, "broadcast: src rank ", src, " is not in a world of ", world_);
    step("broadcast", t, "src " + std::to_string(src));
    Tensor buf = contiguous(t);
    run("broadcast", t, [&](cudaStream_t s) {
      return ncclBroadcast(buf.raw_data(), buf.raw_data(), size_t(buf.numel()), dt, src, comm_, s);
    });
    copy_back(t, buf);
  }

  Tensor all_gather(const Tensor& t) override {
    std::lock_guard<std::mutex> g(mu_);
    auto dt = check("all_gather", t);
    step("all_gather", t, "");
    Shape shape = t.sizes();
    shape.insert(shape.begin(), world_);
    Tensor out = empty(shape, t.options());
    Tensor in = t.is_contiguous() ? t : t.contiguous();
    run("all_gather", t,
        [&](cudaStream_t s) { return ncclAllGather(in.raw_data(), out.raw_data(), size_t(in.numel()), dt, comm_, s); });
    return out;
  }

  Tensor reduce_scatter(const Tensor& t, ReduceOp op) override {
    std::lock_guard<std::mutex> g(mu_);
    auto dt = check("reduce_scatter", t);
    KILN_CHECK(t.dim() >= 1 && t.size(0) % world_ == 0, "reduce_scatter: dim 0 of a tensor of shape ", t.sizes(),
               " is not divisible by the world size ", world_);
    step("reduce_scatter", t, reduce_op_name(op));
    Shape shape = t.sizes();
    shape[0] /= world_;
    Tensor out = empty(shape, t.options());
    Tensor in = t.is_contiguous() ? t : t.contiguous();
    run("reduce_scatter", t, [&](cudaStream_t s) {
      return ncclReduceScatter(in.raw_data(), out.raw_data(), size_t(out.numel()), dt, nccl_op(op), comm_, s);
    });
    return out;
  }

  void barrier() override {
    std::lock_guard<std::mutex> g(mu_);
    step("barrier", Tensor(), "");
    if (!token_.defined()) token_ = zeros({1}, {.dtype = DType::f32, .device = Device::cuda(device_)});
    run("barrier", Tensor(), [&](cudaStream_t s) {
      return ncclAllReduce(token_.raw_data(), token_.raw_data(), 1, ncclFloat32, ncclSum, comm_, s);
    });
  }

 private:
  ncclDataType_t check(const char* call, const Tensor& t) {
    KILN_CHECK(t.defined(), call, ": the tensor is undefined");
    KILN_CHECK(t.is_cuda(), call, ": the NCCL communicator handles CUDA tensors, this one is on ", t.device(),
               "; move it with .to(kiln::Device::cuda(", device_, ")) or use the Gloo backend");
    KILN_CHECK(t.device().index == device_, call, ": the tensor is on ", t.device(),
               " but this rank's "
               "NCCL communicator was created on cuda:",
               device_, "; move it there");
    KILN_CHECK(!aborted_, call, ": the NCCL communicator was aborted by an earlier failure (", abort_reason_,
               "); the process group cannot be used any more");
    return nccl_dtype(call, t.dtype());
  }

  void step(const char* call, const Tensor& t, const std::string& extra) {
    ++calls_;
    if (debug_) debug_->check(call, t, extra, timeout_);
  }

  static Tensor contiguous(const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }
  static void copy_back(Tensor& t, const Tensor& buf) {
    if (!buf.is_same(t)) {
      NoGradGuard ng;
      t.copy_(buf);
    }
    t.bump_version();
  }

  // Enqueues one collective on the current stream and waits for it within the timeout.
  template <class F>
  void run(const char* call, const Tensor& t, F&& enqueue) {
    int prev = -1;
    check_cuda(cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != device_) check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    cudaStream_t s = static_cast<cudaStream_t>(kiln::cuda::current_stream().handle());
    ncclResult_t r = enqueue(s);
    if (r != ncclSuccess && r != ncclInProgress) failed(call, t, r);
    wait_ready(call, t);
    check_cuda(cudaEventRecord(done_, s), "cudaEventRecord");
    const auto deadline = Clock::now() + timeout_;
    for (;;) {
      cudaError_t e = cudaEventQuery(done_);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) check_cuda(e, call);
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress) failed(call, t, state);
      if (Clock::now() > deadline) timed_out(call, t);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    if (prev != device_) cudaSetDevice(prev);
  }

  // A non-blocking communicator answers ncclInProgress until the last call is fully enqueued.
  void wait_ready(const char* call, const Tensor& t) {
    const auto deadline = Clock::now() + timeout_;
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) failed(call, t, r);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) failed(call, t, state);
      if (Clock::now() > deadline) timed_out(call, t);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  [[noreturn]] void failed(const char* call, const Tensor& t, ncclResult_t r) {
    std::string last = comm_ ? ncclGetLastError(comm_) : "";
    abort(std::string(ncclGetErrorString(r)) + (last.empty() ? "" : " (" + last + ")"));
    fail(call, " (nccl, rank ", rank_, " of ", world_, describe(t), ", collective #", calls_,
         ") failed: ", abort_reason_, ". Another rank has probably exited or crashed", worker_hint());
  }

  [[noreturn]] void timed_out(const char* call, const Tensor& t) {
    abort("timed out after " + std::to_string(timeout_.count()) + " ms");
    fail(call, " (nccl, rank ", rank_, " of ", world_, describe(t), ", collective #", calls_,
         ") did not complete within the timeout of ", timeout_.count(),
         " ms: another rank has "
         "probably exited, crashed or not reached this collective (set KILN_DISTRIBUTED_DEBUG=1 to "
         "check that every rank calls the same collectives)",
         worker_hint());
  }

  void abort(std::string reason) {
    abort_reason_ = std::move(reason);
    if (comm_ && !aborted_) ncclCommAbort(comm_);
    aborted_ = true;
  }

  static std::string describe(const Tensor& t) {
    return t.defined() ? kiln::detail::concat(", ", t.dtype(), " ", t.sizes()) : std::string();
  }
  static std::string worker_hint() {
    std::string child = launched_worker_failure();
    return child.empty() ? std::string() : ". Launched worker " + child;
  }
  void check_nccl(ncclResult_t r, const char* what) {
    if (r != ncclSuccess)
      fail("init_process_group (nccl, rank ", rank_, " of ", world_, "): ", what, " failed: ", ncclGetErrorString(r));
  }

  std::shared_ptr<Store> store_;
  int rank_, world_;
  Milliseconds timeout_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaEvent_t done_ = nullptr;
  Tensor token_;
  std::unique_ptr<DebugCheck> debug_;
  std::mutex mu_;
  uint64_t calls_ = 0;
  bool aborted_ = false;
  std::string abort_reason_;
};

}  // namespace

bool nccl_is_built() { return true; }

std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Store> store, int rank, int world_size,
                                                     const ProcessGroupOptions& options, int device) {
  static std::atomic<int> instances{0};
  return std::make_shared<NcclCommunicator>(std::move(store), rank, world_size, options, device, instances++);
}

}  // namespace kiln::distributed
