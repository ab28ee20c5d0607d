// The distributed environment a process was started in: torchrun's variables (MASTER_ADDR,
// MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK), SLURM's (srun) or
// Open MPI's (mpirun). A malformed or inconsistent environment is a kiln::Error naming the variable.
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
  std::string source;  // "torchrun", "slurm", "openmpi"
};

// Looks a variable up; returns nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();
EnvLookup map_env(std::map<std::string, std::string> vars);

// nullopt when none of the launchers' variables is set (a plain single process). Throws when the
// variables that are set are malformed or contradict each other.
std::optional<Environment> detect_environment(const EnvLookup& lookup = process_env());

// The variables a child process of rank `env.rank` needs (torchrun's names).
std::map<std::string, std::string> environment_variables(const Environment& env);

}  // namespace kiln::distributed
