// init_process_group: the store (rank 0 serves), the join barrier and the backend communicator.
#include <unistd.h>

#include <mutex>

#include "core/error.h"
#include "distributed/communicator.h"

namespace kiln::distributed {

namespace {

std::mutex g_mu;
std::shared_ptr<Communicator> g_default;

bool is_loopback(const std::string& a) {
  return a == "localhost" || a == "::1" || a.rfind("127.", 0) == 0;
}

// The address Gloo listens on: loopback for single-host jobs, else this host's name (as PyTorch).
std::string gloo_hostname(const Environment& env) {
  if (const char* h = std::getenv("KILN_GLOO_HOSTNAME")) return h;
  if (is_loopback(env.master_addr)) return "127.0.0.1";
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) == 0 && buf[0]) return buf;
  return "127.0.0.1";
}

}  // namespace

std::shared_ptr<Communicator> init_process_group(const Environment& env,
                                                 const ProcessGroupOptions& options) {
  std::string backend = options.backend;
  if (backend == "auto") backend = "gloo";
  KILN_CHECK(backend == "gloo", "init_process_group: backend '", backend, "' is not available in "
             "this build; use \"gloo\" (CPU tensors)");
  auto store = std::make_shared<TCPStore>(env.master_addr, env.master_port, env.rank == 0,
                                          options.timeout);
  auto comm = make_gloo_communicator(store, env.rank, env.world_size, options, gloo_hostname(env));
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
    auto store = std::make_shared<TCPStore>("127.0.0.1", 0, true, options.timeout);
    auto comm = make_gloo_communicator(store, 0, 1, options);
    std::lock_guard<std::mutex> g(g_mu);
    g_default = comm;
    return comm;
  }
  return init_process_group(*env, options);
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
