// Collective communication between the ranks of a job: one interface, a backend per device kind
// (Gloo for CPU tensors here; NCCL for CUDA tensors where the CUDA backend is built). Every call is
// blocking with a timeout; a dead or out-of-step peer ends in a kiln::Error, never a hang.
//   auto comm = kiln::distributed::init_process_group();   // from RANK, WORLD_SIZE, MASTER_*
//   comm->all_reduce(t, ReduceOp::avg);  auto all = comm->all_gather(t);  // [world, ...]
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "distributed/env.h"
#include "distributed/store.h"

namespace kiln::distributed {

// avg divides the sum by the world size (truncating toward zero for integer tensors, as NCCL does).
enum class ReduceOp { sum, avg, max, min };
const char* reduce_op_name(ReduceOp op);
// Fabric's and PyTorch's spellings: "sum", "mean" / "avg", "max", "min".
ReduceOp parse_reduce_op(const std::string& name);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;

  // In place on every rank.
  virtual void all_reduce(Tensor& tensor, ReduceOp op = ReduceOp::sum) = 0;
  // Overwrites `tensor` on every rank with src's.
  virtual void broadcast(Tensor& tensor, int src = 0) = 0;
  // Stacks every rank's tensor (same shape and dtype everywhere): [world_size, ...tensor.sizes()].
  virtual Tensor all_gather(const Tensor& tensor) = 0;
  // Reduces `tensor` (dim 0 divisible by world_size) over ranks and returns this rank's slice of
  // dim 0: [size(0) / world_size, ...].
  virtual Tensor reduce_scatter(const Tensor& tensor, ReduceOp op = ReduceOp::sum) = 0;
  // Uneven (MPI's Reduce_scatter with recvcounts): rank q gets rows [counts[0] + ... +
  // counts[q-1], + counts[q]) of dim 0 of the reduction. counts has one entry per rank (zeros
  // allowed) and sums to size(0). The default goes through all_reduce; Gloo's is a ring.
  virtual Tensor reduce_scatter(const Tensor& tensor, const std::vector<int64_t>& counts, ReduceOp op = ReduceOp::sum);
  virtual void barrier() = 0;

  virtual Milliseconds timeout() const = 0;
  virtual void set_timeout(Milliseconds timeout) = 0;
  // The store the group rendezvoused through (rank 0 serves it).
  virtual std::shared_ptr<Store> store() const = 0;
};

struct ProcessGroupOptions {
  // "gloo" (CPU tensors), "nccl" (CUDA tensors) or "auto": Gloo for CPU tensors and, where kiln
  // was built with NCCL and a GPU is present, NCCL for CUDA tensors (PyTorch's
  // "cpu:gloo,cuda:nccl"); the NCCL communicator is created by the first collective on a CUDA
  // tensor, on that tensor's device.
  std::string backend = "auto";
  Milliseconds timeout = kDefaultTimeout;
  // Before each collective every rank publishes (call, dtype, shape) through the store and checks
  // that all ranks agree: a collective called out of step fails naming the call and the ranks.
  // Default: on when KILN_DISTRIBUTED_DEBUG is set to anything but 0.
  std::optional<bool> debug = std::nullopt;
};

// Joins the job described by `env` (rank 0 serves the store) and returns its communicator, which
// also becomes the default one. Errors name the ranks that did not join within the timeout.
std::shared_ptr<Communicator> init_process_group(const Environment& env, const ProcessGroupOptions& options = {});
// From the process environment; a single process (no variables set) gets a world of one.
std::shared_ptr<Communicator> init_process_group(const ProcessGroupOptions& options = {});

bool is_initialized();
std::shared_ptr<Communicator> default_communicator();  // throws when none was initialised
void destroy_process_group();

// A communicator over an existing store (for tests and for backends sharing one store).
// Checks `counts` for Communicator::reduce_scatter (one non-negative count per rank, summing to
// dim 0) and returns the first row of `rank`'s part.
int64_t check_reduce_scatter_counts(const Tensor& tensor, const std::vector<int64_t>& counts, int rank, int world_size);

std::shared_ptr<Communicator> make_gloo_communicator(std::shared_ptr<Store> store, int rank, int world_size,
                                                     const ProcessGroupOptions& options = {},
                                                     const std::string& hostname = "127.0.0.1");

// NCCL for CUDA tensors on CUDA device `device` (-1: the current one); rank 0 shares the unique id
// through `store`. Built with the CUDA backend where NCCL is found; elsewhere nccl_is_built() is
// false and make_nccl_communicator is an error that says so.
bool nccl_is_built();
std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Store> store, int rank, int world_size,
                                                     const ProcessGroupOptions& options = {}, int device = -1);

}  // namespace kiln::distributed
