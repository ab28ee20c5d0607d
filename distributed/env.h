// The distributed environment a process was started in: torchrun's variables (MASTER_ADDR,
// MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, and its agent store's
// TORCHELASTIC_USE_AGENT_STORE and TORCHELASTIC_RESTART_COUNT), SLURM's (srun) or Open MPI's
// (mpirun), plus kiln's job token KILN_STORE_TOKEN. A malformed or inconsistent environment is a
// kiln::Error naming the variable.
//   if (auto env = kiln::distributed::detect_environment()) init_process_group(*env);
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

namespace kiln::distributed {

struct Environment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  std::string source;  // "torchrun", "slurm", "openmpi", "kiln launch"
  // Every rank runs on this host (then the store and Gloo listen on loopback only).
  bool single_node = false;
  // torchrun's agent serves the store at MASTER_ADDR:MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE):
  // every rank joins it as a client, under the keys of this restart (TORCHELASTIC_RESTART_COUNT).
  bool agent_store = false;
  int restart_count = 0;
  // This job's store token (KILN_STORE_TOKEN), set by kiln's launchers; empty: none.
  std::string store_token;
};

// Looks a variable up; returns nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();
EnvLookup map_env(std::map<std::string, std::string> vars);

// nullopt when none of the launchers' variables is set (a plain single process). Throws when the
// variables that are set are malformed or contradict each other.
std::optional<Environment> detect_environment(const EnvLookup& lookup = process_env());

// The variables a child process of rank `env.rank` needs (torchrun's names, and the job token).
std::map<std::string, std::string> environment_variables(const Environment& env);

}  // namespace kiln::distributed
