// DDP's gradient Reducer: parameters are grouped into buckets (about 25 MB, in reverse parameter
// order, which is roughly the order backward produces gradients in); each parameter's
// post-accumulate hook marks it ready, and a full bucket is all-reduced (averaged) on a
// communication thread while backward goes on. finalize() waits for the last bucket: call it after
// backward and before the optimizer step (Fabric's backward does).
//   Reducer reducer(comm, model->parameters());
//   loss.backward();  reducer.finalize();  optimizer.step();
//   { auto g = reducer.no_sync(); loss2.backward(); }   // accumulate locally, no communication
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "distributed/communicator.h"

namespace kiln::distributed {

struct ReducerOptions {
  size_t bucket_cap_bytes = 25u << 20;
  // Parameters with different keys never share a bucket (one per parameter; empty: all alike).
  // The sharded strategy keys by optimizer param group, so each bucket has one set of options.
  std::vector<int> bucket_keys = {};
  // What becomes of a bucket once all its gradients are ready, called on the communication
  // thread with the bucket's index and its parameters' indices. Unset: the gradients are
  // flattened, all-reduced (averaged) and copied back, as DDP does. Set, it also runs with one
  // process (the sharded strategy reduce-scatters here, into gradient shards).
  std::function<void(size_t bucket, const std::vector<size_t>& params)> reduce_bucket = {};
};

struct ReducerStats {
  double comm_ms = 0;  // time the communication thread spent reducing buckets (last step)
  double wait_ms = 0;  // time finalize() blocked waiting for it (last step)
  size_t buckets = 0;
  size_t steps = 0;
};

namespace detail {
struct ReducerState;
}

class Reducer {
 public:
  Reducer(std::shared_ptr<Communicator> comm, std::vector<Tensor> parameters, ReducerOptions options = {});
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Waits until every bucket of this step is reduced; parameters that got no gradient this step
  // are reduced as zeros (so every rank runs the same collectives). Throws the communication
  // thread's error, if any. A no-op when no gradient became ready since the last call. Returns
  // whether buckets were reduced (false after a backward under no_sync, or none at all).
  bool finalize();

  // While the guard lives, gradients accumulate locally; the next backward outside it reduces
  // the accumulated sum (PyTorch's no_sync, Fabric's no_backward_sync).
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(Reducer& r);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    Reducer& r_;
    bool prev_;
  };
  NoSyncGuard no_sync() { return NoSyncGuard(*this); }
  bool sync_enabled() const;
  void set_sync_enabled(bool enabled);

  // Parameter indices of each bucket, in reduction order.
  std::vector<std::vector<size_t>> bucket_indices() const;
  ReducerStats stats() const;

 private:
  std::shared_ptr<detail::ReducerState> state_;
};

// Overwrites `tensors` on every rank with src's, coalescing them into one message per dtype.
// DDP's setup uses it for parameters and buffers.
void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors, int src = 0);

}  // namespace kiln::distributed
