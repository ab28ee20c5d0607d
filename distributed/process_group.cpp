// init_process_group: the store (rank 0 serves), the join barrier and the backend communicator.
#include <unistd.h>

#include <mutex>

#include "core/device.h"
#include "core/error.h"
#include "distributed/communicator.h"

namespace kiln::distributed {

namespace {

std::mutex g_mu;
std::shared_ptr<Communicator> g_default;

bool is_loopback(const std::string& a) { return a == "localhost" || a == "::1" || a.rfind("127.", 0) == 0; }

// The address Gloo listens on: loopback for single-host jobs, else this host's name (as PyTorch).
std::string gloo_hostname(const Environment& env) {
  if (const char* h = std::getenv("KILN_GLOO_HOSTNAME")) return h;
  if (env.single_node || is_loopback(env.master_addr)) return "127.0.0.1";
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) == 0 && buf[0]) return buf;
  return "127.0.0.1";
}

// Backend "auto" with NCCL built and a GPU present: CPU tensors through Gloo, CUDA tensors through
// NCCL. Ranks call collectives in the same order, so creating the NCCL communicator at the first
// CUDA collective happens on every rank at the same point; it lives on that tensor's device.
class DeviceDispatchCommunicator final : public Communicator {
 public:
  DeviceDispatchCommunicator(std::shared_ptr<Communicator> gloo, ProcessGroupOptions options)
      : gloo_(std::move(gloo)), options_(std::move(options)) {}

  int rank() const override { return gloo_->rank(); }
  int world_size() const override { return gloo_->world_size(); }
  std::string backend() const override { return "cpu:gloo,cuda:nccl"; }
  void all_reduce(Tensor& t, ReduceOp op) override { pick(t).all_reduce(t, op); }
  void broadcast(Tensor& t, int src) override { pick(t).broadcast(t, src); }
  Tensor all_gather(const Tensor& t) override { return pick(t).all_gather(t); }
  Tensor reduce_scatter(const Tensor& t, ReduceOp op) override { return pick(t).reduce_scatter(t, op); }
  Tensor reduce_scatter(const Tensor& t, const std::vector<int64_t>& counts, ReduceOp op) override {
    return pick(t).reduce_scatter(t, counts, op);
  }
  void barrier() override { gloo_->barrier(); }
  Milliseconds timeout() const override { return gloo_->timeout(); }
  void set_timeout(Milliseconds t) override {
    std::lock_guard<std::mutex> g(mu_);
    gloo_->set_timeout(t);
    if (nccl_) nccl_->set_timeout(t);
    options_.timeout = t;
  }
  std::shared_ptr<Store> store() const override { return gloo_->store(); }

 private:
  Communicator& pick(const Tensor& t) {
    if (!t.defined() || !t.is_cuda()) return *gloo_;
    std::lock_guard<std::mutex> g(mu_);
    if (!nccl_) {
      nccl_ = make_nccl_communicator(gloo_->store(), rank(), world_size(), options_, t.device().index);
      nccl_device_ = t.device().index;
    }
    KILN_CHECK(t.device().index == nccl_device_,
               "distributed: this rank's NCCL communicator is on "
               "cuda:",
               nccl_device_, " but a collective got a tensor on ", t.device(),
               "; keep "
               "each rank's tensors on one device (Fabric uses cuda:LOCAL_RANK)");
    return *nccl_;
  }

  std::shared_ptr<Communicator> gloo_, nccl_;
  ProcessGroupOptions options_;
  int nccl_device_ = -1;
  std::mutex mu_;
};

// The job's store. Under torchrun's agent store every rank is a client of the agent's, under this
// restart's keys (as PyTorch's workers are). Otherwise rank 0 serves it with the job's token: on
// loopback when every rank is on this host, else on MASTER_ADDR's addresses (KILN_STORE_LISTEN
// overrides: an address, or "*" for every interface).
std::shared_ptr<Store> make_store(const Environment& env, Milliseconds timeout) {
  if (env.agent_store) {
    TCPStoreOptions o{.timeout = timeout, .protocol = StoreProtocol::detect};
    auto agent = std::make_shared<TCPStore>(env.master_addr, env.master_port, o);
    return std::make_shared<PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), agent);
  }
  TCPStoreOptions o{.is_server = env.rank == 0, .timeout = timeout, .token = env.store_token};
  std::string host = env.single_node ? "127.0.0.1" : env.master_addr;
  if (const char* l = std::getenv("KILN_STORE_LISTEN"); l && *l) o.listen_address = l;
  return std::make_shared<TCPStore>(host, env.master_port, o);
}

std::shared_ptr<Communicator> make_communicator(std::shared_ptr<Store> store, int rank, int world,
                                                const ProcessGroupOptions& options, const std::string& hostname) {
  const std::string& backend = options.backend;
  KILN_CHECK(backend == "auto" || backend == "gloo" || backend == "nccl",
             "init_process_group: "
             "unknown backend \"",
             backend,
             "\"; use \"gloo\" (CPU tensors), \"nccl\" (CUDA "
             "tensors) or \"auto\" (both, each for its tensors)");
  if (backend == "nccl") {
    // A build without NCCL says so (make_nccl_communicator's error) before the GPU is looked for.
    KILN_CHECK(!nccl_is_built() || cuda::is_available(), "init_process_group: backend \"nccl\" needs a GPU, and this "
                                                         "machine has none that kiln can use; use \"gloo\"");
    return make_nccl_communicator(store, rank, world, options);
  }
  auto gloo = make_gloo_communicator(store, rank, world, options, hostname);
  if (backend == "auto" && nccl_is_built() && cuda::is_available())
    return std::make_shared<DeviceDispatchCommunicator>(gloo, options);
  return gloo;
}

}  // namespace

std::shared_ptr<Communicator> init_process_group(const Environment& env, const ProcessGroupOptions& options) {
  check_timeout("init_process_group", options.timeout);
  auto store = make_store(env, options.timeout);
  auto comm = make_communicator(store, env.rank, env.world_size, options, gloo_hostname(env));
  std::lock_guard<std::mutex> g(g_mu);
  g_default = comm;
  return comm;
}

std::shared_ptr<Communicator> init_process_group(const ProcessGroupOptions& options) {
  auto env = detect_environment();
  if (!env) {
    Environment single;
    single.source = "single process";
    single.master_port = 0;
    check_timeout("init_process_group", options.timeout);
    auto store = std::make_shared<TCPStore>("127.0.0.1", 0, true, options.timeout);
    auto comm = make_communicator(store, 0, 1, options, "127.0.0.1");
    std::lock_guard<std::mutex> g(g_mu);
    g_default = comm;
    return comm;
  }
  return init_process_group(*env, options);
}

Tensor Communicator::reduce_scatter(const Tensor& tensor, const std::vector<int64_t>& counts, ReduceOp op) {
  int64_t start = check_reduce_scatter_counts(tensor, counts, rank(), world_size());
  Tensor full = tensor.clone();
  all_reduce(full, op);
  return full.narrow(0, start, counts[size_t(rank())]).clone();
}

int64_t check_reduce_scatter_counts(const Tensor& tensor, const std::vector<int64_t>& counts, int rank,
                                    int world_size) {
  KILN_CHECK(tensor.defined() && tensor.dim() >= 1,
             "reduce_scatter: expected a tensor with at "
             "least one dimension to split, got ",
             tensor.defined() ? shape_str(tensor.sizes()) : std::string("an undefined tensor"));
  KILN_CHECK(counts.size() == size_t(world_size), "reduce_scatter: ", counts.size(), " counts for a world of ",
             world_size, "; pass one count of dim-0 rows per rank");
  int64_t total = 0;
  for (int64_t c : counts) {
    KILN_CHECK(c >= 0, "reduce_scatter: negative count ", c);
    total += c;
  }
  KILN_CHECK(total == tensor.size(0), "reduce_scatter: the counts add up to ", total,
             " rows but dim 0 of the tensor (shape ", tensor.sizes(), ") has ", tensor.size(0));
  int64_t start = 0;
  for (int q = 0; q < rank; ++q) start += counts[size_t(q)];
  return start;
}

bool is_initialized() {
  std::lock_guard<std::mutex> g(g_mu);
  return g_default != nullptr;
}

std::shared_ptr<Communicator> default_communicator() {
  std::lock_guard<std::mutex> g(g_mu);
  KILN_CHECK(g_default, "distributed: no process group; call kiln::distributed::init_process_group() "
                        "(Fabric does so in launch())");
  return g_default;
}

void destroy_process_group() {
  std::lock_guard<std::mutex> g(g_mu);
  g_default.reset();
}

}  // namespace kiln::distributed
