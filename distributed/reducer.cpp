#include "distributed/reducer.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "core/autograd.h"
#include "core/error.h"

namespace kiln::distributed {

namespace detail {

using Clock = std::chrono::steady_clock;

struct Bucket {
  std::vector<size_t> params;
  DType dtype = DType::f32;
  int64_t numel = 0;
  size_t pending = 0;  // parameters not ready yet this step
  bool ready = false;  // every parameter ready: the thread may reduce it
  bool done = false;
  Tensor flat;
};

struct ReducerState {
  std::shared_ptr<Communicator> comm;
  int world_size = 1;
  std::vector<Tensor> params;
  std::vector<size_t> param_bucket;
  std::vector<bool> param_ready;
  std::vector<Bucket> buckets;
  std::function<void(size_t, const std::vector<size_t>&)> reduce_bucket;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool sync = true;
  bool active = false;  // a step's gradients started arriving
  bool stop = false;
  size_t next = 0;  // next bucket the thread reduces
  std::string error;
  double comm_ms = 0;
  ReducerStats stats;
  std::thread thread;

  void mark_ready(size_t i) {
    std::lock_guard<std::mutex> g(mu);
    if (!sync || (world_size == 1 && !reduce_bucket)) return;  // one process: nothing to average
    KILN_CHECK(!param_ready[i], "DDP: the gradient of parameter ", i,
               " became ready twice before "
               "the optimizer step; run one backward per step, or run the earlier ones inside "
               "no_backward_sync(model) / reducer.no_sync()");
    active = true;
    param_ready[i] = true;
    Bucket& b = buckets[param_bucket[i]];
    if (--b.pending == 0) {
      b.ready = true;
      cv.notify_all();
    }
  }

  void reduce(Bucket& b) {
    int64_t off = 0;
    size_t es = element_size(b.dtype);
    auto* base = static_cast<char*>(b.flat.raw_data());
    for (size_t i : b.params) {
      Tensor g = params[i].grad();
      int64_t n = params[i].numel();
      if (g.is_contiguous() && g.dtype() == b.dtype) {
        std::memcpy(base + off * es, g.raw_data(), n * es);
      } else {
        b.flat.narrow(0, off, n).view(g.sizes()).copy_(g);
      }
      off += n;
    }
    comm->all_reduce(b.flat, ReduceOp::avg);
    off = 0;
    for (size_t i : b.params) {
      Tensor g = params[i].grad();
      int64_t n = params[i].numel();
      if (g.is_contiguous() && g.dtype() == b.dtype) {
        std::memcpy(g.raw_data(), base + off * es, n * es);
      } else {
        g.copy_(b.flat.narrow(0, off, n).view(g.sizes()));
      }
      g.bump_version();
      off += n;
    }
  }

  void run() {
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stop || (next < buckets.size() && buckets[next].ready); });
      if (stop) return;
      Bucket& b = buckets[next];
      lk.unlock();
      auto t0 = Clock::now();
      std::string err;
      try {
        if (reduce_bucket)
          reduce_bucket(next, b.params);
        else
          reduce(b);
      } catch (const std::exception& e) { err = e.what(); }
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      lk.lock();
      comm_ms += ms;
      if (!err.empty() && error.empty()) error = err;
      b.done = true;
      ++next;
      cv.notify_all();
    }
  }
};

}  // namespace detail

Reducer::Reducer(std::shared_ptr<Communicator> comm, std::vector<Tensor> parameters, ReducerOptions options)
    : state_(std::make_shared<detail::ReducerState>()) {
  auto& s = *state_;
  s.comm = std::move(comm);
  KILN_CHECK(s.comm, "Reducer: no communicator");
  s.world_size = s.comm->world_size();
  s.params = std::move(parameters);
  s.param_bucket.resize(s.params.size());
  s.param_ready.assign(s.params.size(), false);
  s.reduce_bucket = std::move(options.reduce_bucket);
  const auto& keys = options.bucket_keys;
  KILN_CHECK(keys.empty() || keys.size() == s.params.size(), "Reducer: ", keys.size(), " bucket keys for ",
             s.params.size(), " parameters; pass one per parameter or none");
  // Reverse parameter order; a new bucket at the size cap or when the dtype or key changes.
  int last_key = 0;
  for (size_t k = s.params.size(); k-- > 0;) {
    const Tensor& p = s.params[k];
    KILN_CHECK(p.defined() && p.requires_grad(), "Reducer: parameter ", k,
               " is undefined or does not require a gradient");
    size_t bytes = p.numel() * p.element_size();
    int key = keys.empty() ? 0 : keys[k];
    bool fresh = s.buckets.empty() || s.buckets.back().dtype != p.dtype() || key != last_key ||
                 (s.buckets.back().numel * element_size(s.buckets.back().dtype) + bytes > options.bucket_cap_bytes &&
                  !s.buckets.back().params.empty());
    if (fresh) {
      s.buckets.emplace_back();
      s.buckets.back().dtype = p.dtype();
    }
    last_key = key;
    auto& b = s.buckets.back();
    b.params.push_back(k);
    b.numel += p.numel();
    s.param_bucket[k] = s.buckets.size() - 1;
  }
  for (auto& b : s.buckets) {
    b.pending = b.params.size();
    // A custom reduction brings its own buffers (the sharded strategy keeps no full-size one).
    if (!s.reduce_bucket) b.flat = empty({b.numel}, {.dtype = b.dtype, .device = s.params[b.params[0]].device()});
  }
  std::weak_ptr<detail::ReducerState> weak = state_;
  for (size_t k = 0; k < s.params.size(); ++k)
    s.params[k].register_post_accumulate_grad_hook([weak, k](Tensor&) {
      if (auto st = weak.lock()) st->mark_ready(k);
    });
  s.stats.buckets = s.buckets.size();
  s.thread = std::thread([st = state_.get()] { st->run(); });
}

Reducer::~Reducer() {
  {
    std::lock_guard<std::mutex> g(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  state_->thread.join();
}

bool Reducer::finalize() {
  auto& s = *state_;
  auto t0 = detail::Clock::now();
  std::unique_lock<std::mutex> lk(s.mu);
  if (!s.active) return false;
  // Parameters without a gradient this step join as zeros, so every rank reduces every bucket.
  for (auto& b : s.buckets) {
    if (b.ready) continue;
    for (size_t i : b.params)
      if (!s.param_ready[i]) {
        if (!s.params[i].grad().defined()) s.params[i].set_grad(zeros_like(s.params[i]).detach());
        s.param_ready[i] = true;
      }
    b.pending = 0;
    b.ready = true;
  }
  s.cv.notify_all();
  s.cv.wait(lk, [&] { return s.next == s.buckets.size(); });
  s.stats.wait_ms = std::chrono::duration<double, std::milli>(detail::Clock::now() - t0).count();
  s.stats.comm_ms = s.comm_ms;
  s.stats.steps++;
  s.comm_ms = 0;
  s.next = 0;
  s.active = false;
  for (auto& b : s.buckets) {
    b.pending = b.params.size();
    b.ready = b.done = false;
  }
  s.param_ready.assign(s.params.size(), false);
  if (!s.error.empty()) {
    std::string e = s.error;
    s.error.clear();
    fail(s.reduce_bucket ? "sharded" : "DDP", " gradient reduction failed: ", e);
  }
  return true;
}

Reducer::NoSyncGuard::NoSyncGuard(Reducer& r) : r_(r), prev_(r.sync_enabled()) { r_.set_sync_enabled(false); }
Reducer::NoSyncGuard::~NoSyncGuard() { r_.set_sync_enabled(prev_); }

bool Reducer::sync_enabled() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->sync;
}
void Reducer::set_sync_enabled(bool enabled) {
  std::lock_guard<std::mutex> g(state_->mu);
  state_->sync = enabled;
}

std::vector<std::vector<size_t>> Reducer::bucket_indices() const {
  std::vector<std::vector<size_t>> out;
  for (auto& b : state_->buckets) out.push_back(b.params);
  return out;
}

ReducerStats Reducer::stats() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->stats;
}

void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors, int src) {
  if (comm.world_size() == 1 || tensors.empty()) return;
  NoGradGuard ng;
  std::map<std::pair<DType, std::string>, std::vector<Tensor>> groups;
  for (auto& t : tensors) groups[{t.dtype(), t.device().str()}].push_back(t);
  for (auto& [key, ts] : groups) {
    int64_t total = 0;
    for (auto& t : ts) total += t.numel();
    Tensor flat = empty({total}, ts[0].options());
    int64_t off = 0;
    for (auto& t : ts) {
      flat.narrow(0, off, t.numel()).view(t.sizes()).copy_(t.detach());
      off += t.numel();
    }
    comm.broadcast(flat, src);
    off = 0;
    for (auto& t : ts) {
      Tensor d = t.detach();
      d.copy_(flat.narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }
}

}  // namespace kiln::distributed
