// Starting the processes of a job on this machine, as torchrun does. run_workers() supervises N
// worker processes (kiln-run is a thin command line over it); launch() is what Fabric::launch()
// calls: without a distributed environment it re-executes this program for ranks 1..N-1, becomes
// rank 0 itself and watches the others; with one, it starts nothing.
//   auto env = kiln::distributed::launch(2);   // env.rank is 0 here, 1 in the child
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "distributed/env.h"
#include "distributed/store.h"

namespace kiln::distributed {

struct WorkerSpec {
  std::vector<std::string> argv;  // program and its arguments (argv[0] is looked up in PATH)
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port (single node only)
  std::map<std::string, std::string> extra_env;
  // The job token every worker gets (kStoreTokenVariable). Empty: the launching environment's,
  // else a fresh one on a single node, else none (a multi-node job's nodes must agree on it).
  std::string store_token;
  Milliseconds timeout{0};                            // 0: none; else stop every worker after it
  Milliseconds kill_grace = std::chrono::seconds(5);  // SIGTERM, then SIGKILL after this
};

struct RunResult {
  int exit_code = 0;     // 0, the failing worker's exit status, or 128 + its signal
  int failed_rank = -1;  // global rank of the first worker that failed
  std::string message;   // what happened, for the user
};

// Starts the workers with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR,
// MASTER_PORT and the job token set (and OMP_NUM_THREADS = CPUs / nproc_per_node unless it is
// set), waits for all of them; when one fails, stops the rest and reports it.
RunResult run_workers(const WorkerSpec& spec);

struct LaunchOptions {
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port
  std::map<std::string, std::string> extra_env;
  Milliseconds kill_grace = std::chrono::seconds(5);
};

// With a distributed environment set (torchrun, kiln-run, SLURM, mpirun, or an earlier launch):
// returns it and starts nothing. Otherwise, with nprocs > 1: re-executes /proc/self/exe with this
// process's arguments as ranks 1..nprocs-1, sets this process's own environment to rank 0 and
// returns that. Every rank gets the job token, and OMP_NUM_THREADS = CPUs / nprocs unless set. A watcher thread stops
// the other children as soon as one of them fails; the collectives of rank 0 then fail with an error naming that rank
// and its exit status.
Environment launch(int nprocs, const LaunchOptions& options = {});

// For error messages: "rank 2 (pid 123) exited with status 3", or empty while all is well.
std::string launched_worker_failure();
// Exit status of the first failed child (0 if none): a program may return it from main.
int launched_worker_exit_code();

}  // namespace kiln::distributed
