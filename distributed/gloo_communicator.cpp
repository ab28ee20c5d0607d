// The Gloo backend: CPU tensors over TCP. Gloo rendezvous through kiln's TCPStore (GlooStore
// below), every call carries the communicator's timeout, and Gloo's exceptions come back as
// kiln::Errors naming the call. Reduce-scatter is kiln's own ring over Gloo's point-to-point
// buffers (Gloo's reduce-scatter handles float only). Calls are serialised by a mutex and tagged
// with a running count, so a DDP communication thread and the main thread never interleave one
// collective's messages.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>

#include "core/autograd.h"
#include "distributed/communicator.h"
#include "distributed/debug_check.h"
#include "distributed/launch.h"

namespace kiln::distributed {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

ReduceOp parse_reduce_op(const std::string& name) {
  if (name == "sum") return ReduceOp::sum;
  if (name == "mean" || name == "avg") return ReduceOp::avg;
  if (name == "max") return ReduceOp::max;
  if (name == "min") return ReduceOp::min;
  fail("all_reduce: unknown reduce op '", name, "'; use \"sum\", \"mean\", \"max\" or \"min\"");
}

namespace {

// Gloo's rendezvous Store over kiln's: get() waits for the key with kiln's timeout.
class GlooStore : public gloo::rendezvous::Store {
 public:
  explicit GlooStore(std::shared_ptr<kiln::distributed::Store> s) : s_(std::move(s)) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    s_->set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    auto v = s_->get(key);
    return {v.begin(), v.end()};
  }
  void wait(const std::vector<std::string>& keys) override { s_->wait(keys); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& t) override { s_->wait(keys, t); }

 private:
  std::shared_ptr<kiln::distributed::Store> s_;
};

// Gloo's own collectives use slot prefixes 0x01..0x08; kiln's ring reduce-scatter uses its own.
constexpr uint8_t kReduceScatterSlotPrefix = 0x20;

template <class T>
void reduce_fn(ReduceOp op, void* c_, const void* a_, const void* b_, size_t n) {
  T* c = static_cast<T*>(c_);
  const T* a = static_cast<const T*>(a_);
  const T* b = static_cast<const T*>(b_);
  using Acc =
      std::conditional_t<std::is_integral_v<T>, T, std::conditional_t<std::is_same_v<T, double>, double, float>>;
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg:
      for (size_t i = 0; i < n; ++i) c[i] = T(Acc(a[i]) + Acc(b[i]));
      break;
    case ReduceOp::max:
      for (size_t i = 0; i < n; ++i) c[i] = Acc(a[i]) >= Acc(b[i]) ? a[i] : b[i];
      break;
    case ReduceOp::min:
      for (size_t i = 0; i < n; ++i) c[i] = Acc(a[i]) <= Acc(b[i]) ? a[i] : b[i];
      break;
  }
}

void check_dtype(const char* call, DType d) {
  KILN_CHECK(
      d == DType::f32 || d == DType::f64 || d == DType::f16 || d == DType::bf16 || d == DType::i32 || d == DType::i64,
      call, ": dtype ", d,
      " is not supported; use float32, float64, float16, bfloat16, "
      "int32 or int64");
}

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(std::shared_ptr<Store> store, int rank, int world, const ProcessGroupOptions& o,
                   const std::string& hostname, int instance)
      : store_(std::move(store)), rank_(rank), world_(world), timeout_(o.timeout) {
    check_timeout("init_process_group", timeout_);
    KILN_CHECK(world >= 1 && rank >= 0 && rank < world, "init_process_group: rank ", rank, " is not in a world of ",
               world);
    std::string prefix = "gloo/" + std::to_string(instance);
    store_barrier(*store_, "kiln/join/" + std::to_string(instance), rank, world, timeout_);
    gloo::transport::tcp::attr attr;
    attr.hostname = hostname;
    try {
      auto dev = gloo::transport::tcp::CreateDevice(attr);
      auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, world);
      ctx->setTimeout(timeout_);
      auto gs = std::make_shared<GlooStore>(std::make_shared<PrefixStore>(prefix, store_));
      ctx->connectFullMesh(*gs, dev);
      ctx_ = ctx;
    } catch (const Error&) { throw; } catch (const std::exception& e) {
      fail("init_process_group (gloo, rank ", rank, " of ", world, ", host ", hostname,
           "): connecting to the other ranks failed: ", e.what());
    }
    bool dbg = o.debug.value_or(debug_from_env());
    if (dbg) debug_ = std::make_unique<DebugCheck>(std::make_shared<PrefixStore>(prefix + "/dbg", store_), rank, world);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "gloo"; }
  Milliseconds timeout() const override { return timeout_; }
  void set_timeout(Milliseconds t) override {
    check_timeout("Communicator::set_timeout", t);
    std::lock_guard<std::mutex> g(mu_);
    timeout_ = t;
    ctx_->setTimeout(t);
  }
  std::shared_ptr<Store> store() const override { return store_; }

  void all_reduce(Tensor& t, ReduceOp op) override {
    std::lock_guard<std::mutex> g(mu_);
    check("all_reduce", t);
    step("all_reduce", t, reduce_op_name(op));
    if (world_ == 1) return finish_avg(t, op);
    Tensor buf = t.is_contiguous() ? t : t.contiguous();
    guarded("all_reduce", t, [&] {
      KILN_DISPATCH_ALL(buf.dtype(), "all_reduce", [&](auto tag) {
        using T = decltype(tag);
        gloo::AllreduceOptions opts(ctx_);
        opts.setOutput<T>(static_cast<T*>(buf.raw_data()), size_t(buf.numel()));
        opts.setReduceFunction([op](void* c, const void* a, const void* b, size_t n) { reduce_fn<T>(op, c, a, b, n); });
        opts.setTag(next_tag());
        opts.setTimeout(timeout_);
        gloo::allreduce(opts);
      });
    });
    if (!buf.is_same(t)) copy_back(t, buf);
    finish_avg(t, op);
    t.bump_version();
  }

  void broadcast(Tensor& t, int src) override {
    std::lock_guard<std::mutex> g(mu_);
    check("broadcast", t);
    KILN_CHECK(src >= 0 && src < world_, "broadcast: src rank ", src, " is not in a world of ", world_);
    step("broadcast", t, "src " + std::to_string(src));
    if (world_ == 1) return;
    Tensor buf = t.is_contiguous() ? t : t.contiguous();
    guarded("broadcast", t, [&] {
      gloo::BroadcastOptions opts(ctx_);
      opts.setOutput<uint8_t>(static_cast<uint8_t*>(buf.raw_data()), buf.numel() * buf.element_size());
      opts.setRoot(src);
      opts.setTag(next_tag());
      opts.setTimeout(timeout_);
      gloo::broadcast(opts);
    });
    if (!buf.is_same(t)) copy_back(t, buf);
    t.bump_version();
  }

  Tensor all_gather(const Tensor& t) override {
    std::lock_guard<std::mutex> g(mu_);
    check("all_gather", t);
    step("all_gather", t, "");
    Shape shape = t.sizes();
    shape.insert(shape.begin(), world_);
    Tensor out = empty(shape, t.options());
    Tensor in = t.is_contiguous() ? t : t.contiguous();
    size_t nbytes = in.numel() * in.element_size();
    if (world_ == 1) {
      std::memcpy(out.raw_data(), in.raw_data(), nbytes);
      return out;
    }
    guarded("all_gather", t, [&] {
      gloo::AllgatherOptions opts(ctx_);
      opts.setInput<uint8_t>(static_cast<uint8_t*>(in.raw_data()), nbytes);
      opts.setOutput<uint8_t>(static_cast<uint8_t*>(out.raw_data()), nbytes * world_);
      opts.setTag(next_tag());
      opts.setTimeout(timeout_);
      gloo::allgather(opts);
    });
    return out;
  }

  Tensor reduce_scatter(const Tensor& t, ReduceOp op) override {
    KILN_CHECK(t.dim() >= 1 && t.size(0) % world_ == 0,
               "reduce_scatter: dim 0 of a tensor of "
               "shape ",
               t.sizes(), " is not divisible by the world size ", world_, "; pad it, or pass per-rank row counts");
    return reduce_scatter(t, std::vector<int64_t>(size_t(world_), t.size(0) / world_), op);
  }

  Tensor reduce_scatter(const Tensor& t, const std::vector<int64_t>& counts, ReduceOp op) override {
    int64_t first = check_reduce_scatter_counts(t, counts, rank_, world_);
    std::lock_guard<std::mutex> g(mu_);
    check("reduce_scatter", t);
    std::string extra = reduce_op_name(op);
    for (int64_t c : counts) {
      extra += ' ';
      extra += std::to_string(c);
    }
    step("reduce_scatter", t, extra);
    // The ring reduces in place in a private copy; this rank's part ends up reduced in it.
    Tensor work = t.contiguous().clone();
    int64_t row = t.size(0) ? t.numel() / t.size(0) : 0;
    if (world_ > 1) {
      guarded("reduce_scatter", t, [&] {
        KILN_DISPATCH_ALL(work.dtype(), "reduce_scatter", [&](auto tag) {
          using T = decltype(tag);
          std::vector<size_t> elems;
          for (int64_t c : counts) elems.push_back(size_t(c * row));
          ring_reduce_scatter<T>(static_cast<T*>(work.raw_data()), elems, op);
        });
      });
    }
    Tensor mine = work.narrow(0, first, counts[size_t(rank_)]);
    finish_avg(mine, op);
    return mine.clone();
  }

  void barrier() override {
    std::lock_guard<std::mutex> g(mu_);
    step("barrier", Tensor(), "");
    if (world_ == 1) return;
    guarded("barrier", Tensor(), [&] {
      gloo::BarrierOptions opts(ctx_);
      opts.setTag(next_tag());
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    });
  }

 private:
  uint32_t next_tag() { return tag_++; }

  // Ring reduce-scatter over Gloo's point-to-point buffers: in N-1 steps each rank sends one part
  // to the next rank and adds the part arriving from the previous one, so part q travels
  // q+1 -> q+2 -> ... -> q collecting every rank's contribution and ends, complete, on rank q.
  // Every rank sends and receives (N-1)/N of the data once: half the traffic of all_reduce.
  // Accumulates as reduce_fn does (float for f16/bf16). Parts of zero elements send nothing.
  template <class T>
  void ring_reduce_scatter(T* data, const std::vector<size_t>& elems, ReduceOp op) {
    const int n = world_;
    std::vector<size_t> offset(size_t(n), 0);
    size_t largest = 0;
    for (int q = 1; q < n; ++q) offset[size_t(q)] = offset[size_t(q) - 1] + elems[size_t(q) - 1];
    for (size_t e : elems) largest = std::max(largest, e);
    size_t total = offset.back() + elems.back();
    if (largest == 0) return;
    auto incoming = std::make_unique<T[]>(largest);
    auto whole = ctx_->createUnboundBuffer(data, total * sizeof(T));
    auto in = ctx_->createUnboundBuffer(incoming.get(), largest * sizeof(T));
    const auto slot = gloo::Slot::build(kReduceScatterSlotPrefix, next_tag());
    const int next = (rank_ + 1) % n, prev = (rank_ + n - 1) % n;
    for (int s = 0; s < n - 1; ++s) {
      // Rank r sends part r-s-1 (which it completed adding to last step) and receives part r-s-2.
      size_t out_part = size_t((rank_ - s - 1 + 2 * n) % n);
      size_t in_part = size_t((rank_ - s - 2 + 2 * n) % n);
      if (elems[out_part]) whole->send(next, slot, offset[out_part] * sizeof(T), elems[out_part] * sizeof(T));
      if (elems[in_part]) in->recv(prev, slot, 0, elems[in_part] * sizeof(T));
      if (elems[out_part] && !whole->waitSend(timeout_))
        fail("reduce_scatter: the send to rank ", next, " was aborted");
      if (elems[in_part]) {
        if (!in->waitRecv(timeout_)) fail("reduce_scatter: the receive from rank ", prev, " was aborted");
        T* acc = data + offset[in_part];
        reduce_fn<T>(op, acc, acc, incoming.get(), elems[in_part]);
      }
    }
  }

  void check(const char* call, const Tensor& t) {
    KILN_CHECK(t.defined(), call, ": the tensor is undefined");
    KILN_CHECK(!t.is_cuda(), call, ": the Gloo communicator handles CPU tensors, this one is on ", t.device(),
               "; move it with .to(kiln::Device::cpu()) or use the NCCL backend");
    check_dtype(call, t.dtype());
  }

  void step(const char* call, const Tensor& t, const std::string& extra) {
    ++calls_;
    if (debug_) debug_->check(call, t, extra, timeout_);
  }

  template <class F>
  void guarded(const char* call, const Tensor& t, F&& f) {
    try {
      f();
    } catch (const Error&) { throw; } catch (const std::exception& e) {
      std::string child = launched_worker_failure();
      if (!child.empty()) child = " Launched worker " + child + ".";
      fail(call, " (gloo, rank ", rank_, " of ", world_,
           t.defined() ? kiln::detail::concat(", ", t.dtype(), " ", t.sizes()) : std::string(), ", collective #",
           calls_, ") failed: ", e.what(),
           ". Another rank has probably exited, crashed or not reached this collective within the "
           "timeout of ",
           timeout_.count(),
           " ms (set KILN_DISTRIBUTED_DEBUG=1 to check that every "
           "rank calls the same collectives)",
           child);
    }
  }

  static void copy_back(Tensor& t, const Tensor& buf) {
    NoGradGuard ng;
    t.copy_(buf);
  }

  void finish_avg(Tensor& t, ReduceOp op) {
    if (op != ReduceOp::avg || world_ == 1) return;
    Tensor buf = t.is_contiguous() ? t : t.contiguous();
    KILN_DISPATCH_ALL(buf.dtype(), "all_reduce", [&](auto tag) {
      using T = decltype(tag);
      T* p = static_cast<T*>(buf.raw_data());
      int64_t n = buf.numel();
      if constexpr (std::is_integral_v<T>) {
        for (int64_t i = 0; i < n; ++i) p[i] = T(p[i] / T(world_));
      } else if constexpr (std::is_same_v<T, double>) {
        for (int64_t i = 0; i < n; ++i) p[i] /= double(world_);
      } else {
        for (int64_t i = 0; i < n; ++i) p[i] = T(float(p[i]) / float(world_));
      }
    });
    if (!buf.is_same(t)) copy_back(t, buf);
  }

  std::shared_ptr<Store> store_;
  int rank_, world_;
  Milliseconds timeout_;
  std::shared_ptr<gloo::Context> ctx_;
  std::unique_ptr<DebugCheck> debug_;
  std::mutex mu_;
  uint32_t tag_ = 0;
  uint64_t calls_ = 0;
};

}  // namespace

std::shared_ptr<Communicator> make_gloo_communicator(std::shared_ptr<Store> store, int rank, int world_size,
                                                     const ProcessGroupOptions& options, const std::string& hostname) {
  static std::atomic<int> instances{0};
  return std::make_shared<GlooCommunicator>(std::move(store), rank, world_size, options, hostname, instances++);
}

}  // namespace kiln::distributed
