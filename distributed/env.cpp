#include "distributed/env.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "core/error.h"
#include "distributed/store.h"

namespace kiln::distributed {

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

EnvLookup map_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

namespace {

int parse_int(const EnvLookup& env, const std::string& name, int min_value) {
  auto v = env(name);
  KILN_CHECK(v.has_value(), "distributed environment: ", name, " is not set");
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v->c_str(), &end, 10);
  KILN_CHECK(!v->empty() && end && *end == '\0' && errno == 0 && x >= min_value && x <= (1 << 30),
             "distributed environment: ", name, "='", *v, "' is not an integer >= ", min_value);
  return int(x);
}

int parse_or(const EnvLookup& env, const std::string& name, int min_value, int fallback) {
  return env(name) ? parse_int(env, name, min_value) : fallback;
}

// SLURM_NODELIST like "node[01-04,07],login2" -> "node01": the first host becomes the master.
std::string first_slurm_host(const std::string& list) {
  std::string host;
  size_t i = 0;
  while (i < list.size() && list[i] != ',' && list[i] != '[') host += list[i++];
  if (i < list.size() && list[i] == '[') {
    ++i;
    while (i < list.size() && std::isdigit(static_cast<unsigned char>(list[i]))) host += list[i++];
  }
  return host;
}

// SLURM_TASKS_PER_NODE like "4(x2),3": the task count of node `node` (0 when it cannot tell).
int slurm_tasks_on_node(const std::string& spec, int node) {
  int index = 0;
  size_t i = 0;
  while (i < spec.size()) {
    size_t end = spec.find(',', i);
    std::string part = spec.substr(i, end == std::string::npos ? std::string::npos : end - i);
    int count = std::atoi(part.c_str()), repeat = 1;
    if (auto x = part.find("(x"); x != std::string::npos) repeat = std::atoi(part.c_str() + x + 2);
    if (count <= 0 || repeat <= 0) return 0;
    if (node < index + repeat) return count;
    index += repeat;
    if (end == std::string::npos) break;
    i = end + 1;
  }
  return 0;
}

bool is_loopback(const std::string& a) { return a == "localhost" || a == "::1" || a.rfind("127.", 0) == 0; }

void validate(const Environment& e) {
  KILN_CHECK(e.world_size >= 1, "distributed environment (", e.source, "): WORLD_SIZE=", e.world_size,
             " must be at least 1");
  KILN_CHECK(e.rank < e.world_size, "distributed environment (", e.source, "): RANK=", e.rank,
             " is not below WORLD_SIZE=", e.world_size);
  KILN_CHECK(e.local_world_size >= 1 && e.local_world_size <= e.world_size, "distributed environment (", e.source,
             "): LOCAL_WORLD_SIZE=", e.local_world_size, " must be between 1 and WORLD_SIZE=", e.world_size);
  KILN_CHECK(e.local_rank < e.local_world_size, "distributed environment (", e.source, "): LOCAL_RANK=", e.local_rank,
             " is not below LOCAL_WORLD_SIZE=", e.local_world_size);
  KILN_CHECK(e.master_port >= 1 && e.master_port <= 65535, "distributed environment (", e.source,
             "): MASTER_PORT=", e.master_port, " is not a TCP port (1-65535)");
  KILN_CHECK(!e.master_addr.empty(), "distributed environment (", e.source, "): MASTER_ADDR is empty");
}

}  // namespace

std::optional<Environment> detect_environment(const EnvLookup& env) {
  Environment e;
  if (env("RANK") || env("WORLD_SIZE") || env("MASTER_ADDR") || env("LOCAL_RANK")) {
    e.source = "torchrun";
    for (const char* name : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"})
      KILN_CHECK(env(name).has_value(), "distributed environment (torchrun): ", name,
                 " is not set, but some of RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK "
                 "are; set all four (LOCAL_RANK defaults to RANK) or none");
    e.rank = parse_int(env, "RANK", 0);
    e.world_size = parse_int(env, "WORLD_SIZE", 1);
    e.local_rank = parse_or(env, "LOCAL_RANK", 0, e.rank);
    e.local_world_size = parse_or(env, "LOCAL_WORLD_SIZE", 1, e.world_size);
    e.node_rank = parse_or(env, "NODE_RANK", 0, e.rank / e.local_world_size);
    e.master_addr = *env("MASTER_ADDR");
    e.master_port = parse_int(env, "MASTER_PORT", 0);
    e.single_node =
        (env("LOCAL_WORLD_SIZE") && e.local_world_size == e.world_size) || parse_or(env, "GROUP_WORLD_SIZE", 1, 0) == 1;
    e.agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    e.restart_count = parse_or(env, "TORCHELASTIC_RESTART_COUNT", 0, 0);
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    e.source = "slurm";
    e.rank = parse_int(env, "SLURM_PROCID", 0);
    e.world_size = parse_int(env, "SLURM_NTASKS", 1);
    e.local_rank = parse_or(env, "SLURM_LOCALID", 0, 0);
    e.node_rank = parse_or(env, "SLURM_NODEID", 0, 0);
    int num_nodes = parse_or(env, "SLURM_STEP_NUM_NODES", 1,
                             parse_or(env, "SLURM_NNODES", 1, parse_or(env, "SLURM_JOB_NUM_NODES", 1, 0)));
    int here = 0;
    if (auto t = env("SLURM_STEP_TASKS_PER_NODE") ? env("SLURM_STEP_TASKS_PER_NODE") : env("SLURM_TASKS_PER_NODE"))
      here = slurm_tasks_on_node(*t, e.node_rank);
    e.local_world_size = parse_or(env, "SLURM_NTASKS_PER_NODE", 1, here > 0 ? here : e.world_size);
    e.single_node = num_nodes == 1;
    auto nodes = env("SLURM_STEP_NODELIST") ? env("SLURM_STEP_NODELIST") : env("SLURM_NODELIST");
    e.master_addr = nodes ? first_slurm_host(*nodes) : "127.0.0.1";
    // SLURM has no port of its own: one derived from the job id keeps concurrent jobs apart.
    e.master_port = parse_or(env, "SLURM_JOB_ID", 0, 0) % 20000 + 20000;
    if (env("MASTER_PORT")) e.master_port = parse_int(env, "MASTER_PORT", 1);
  } else if (env("OMPI_COMM_WORLD_RANK") && env("OMPI_COMM_WORLD_SIZE")) {
    e.source = "openmpi";
    e.rank = parse_int(env, "OMPI_COMM_WORLD_RANK", 0);
    e.world_size = parse_int(env, "OMPI_COMM_WORLD_SIZE", 1);
    e.local_rank = parse_or(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 0);
    e.local_world_size = parse_or(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, e.world_size);
    e.node_rank = parse_or(env, "OMPI_COMM_WORLD_NODE_RANK", 0, 0);
    e.master_addr = "127.0.0.1";
    e.master_port = 29500;
    e.single_node = env("OMPI_COMM_WORLD_LOCAL_SIZE") && e.local_world_size == e.world_size;
    KILN_CHECK(e.world_size == e.local_world_size || env("MASTER_ADDR"),
               "distributed environment (openmpi): a multi-node mpirun needs MASTER_ADDR (the "
               "host of rank 0) and MASTER_PORT set with mpirun -x");
  } else {
    return std::nullopt;
  }
  if (e.source != "torchrun") {
    if (auto a = env("MASTER_ADDR")) e.master_addr = *a;
    if (env("MASTER_PORT")) e.master_port = parse_int(env, "MASTER_PORT", 1);
  }
  e.single_node = e.single_node || is_loopback(e.master_addr) || e.world_size == 1;
  e.store_token = env(kStoreTokenVariable).value_or("");
  KILN_CHECK(e.store_token.size() <= kStoreMaxTokenBytes, "distributed environment: ", kStoreTokenVariable, " has ",
             e.store_token.size(), " characters; the limit is ", kStoreMaxTokenBytes);
  validate(e);
  return e;
}

std::map<std::string, std::string> environment_variables(const Environment& e) {
  std::map<std::string, std::string> vars = {{"RANK", std::to_string(e.rank)},
                                             {"WORLD_SIZE", std::to_string(e.world_size)},
                                             {"LOCAL_RANK", std::to_string(e.local_rank)},
                                             {"LOCAL_WORLD_SIZE", std::to_string(e.local_world_size)},
                                             {"NODE_RANK", std::to_string(e.node_rank)},
                                             {"GROUP_RANK", std::to_string(e.node_rank)},
                                             {"MASTER_ADDR", e.master_addr},
                                             {"MASTER_PORT", std::to_string(e.master_port)}};
  if (!e.store_token.empty()) vars[kStoreTokenVariable] = e.store_token;
  return vars;
}

}  // namespace kiln::distributed
