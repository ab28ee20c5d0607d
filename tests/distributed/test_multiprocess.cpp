// Multi-process tests: each starts kiln_dist_worker 2 or 3 times on loopback (through
// run_workers, kiln-run or the worker's own launch()) and checks the exit statuses. The workers
// do the numeric checks themselves and print mismatches to stderr.
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "distributed/distributed.h"
#include "helpers.h"

namespace kd = kiln::distributed;
using namespace std::chrono_literals;

namespace {

std::string build_root() {
  const char* b = std::getenv("KILN_BUILD_ROOT");
  return b ? b : ".";
}
std::string worker() { return build_root() + "/tests/distributed/kiln_dist_worker"; }
std::string kiln_run() { return build_root() + "/distributed/tools/kiln-run"; }

kd::RunResult run(const std::vector<std::string>& argv, int nprocs, std::map<std::string, std::string> env = {},
                  kd::Milliseconds timeout = 180s, int master_port = 0) {
  kd::WorkerSpec spec;
  spec.argv = argv;
  spec.nproc_per_node = nprocs;
  spec.master_port = master_port;
  spec.extra_env = std::move(env);
  spec.timeout = timeout;
  spec.kill_grace = 10s;
  auto r = kd::run_workers(spec);
  if (r.exit_code != 0) MESSAGE("workers: ", r.message);
  return r;
}

}  // namespace

TEST_CASE("every collective and dtype with 2 and 3 processes") {
  for (int n : {2, 3}) {
    CAPTURE(n);
    CHECK(run({worker(), "collectives"}, n).exit_code == 0);
  }
}

TEST_CASE("DDP gradients equal the single-process gradient of the whole batch (f64)") {
  for (int n : {2, 3}) {
    CAPTURE(n);
    CHECK(run({worker(), "ddp"}, n).exit_code == 0);
  }
}

TEST_CASE("DDP on the reference CNN: 3 AdamW steps equal one process with the whole batch") {
  CHECK(run({worker(), "cnn"}, 2).exit_code == 0);
}

TEST_CASE("the sharded optimizer equals DDP and splits the optimizer state") {
  for (int n : {2, 3}) {
    CAPTURE(n);
    CHECK(run({worker(), "zero"}, n).exit_code == 0);
  }
}

TEST_CASE("ZeRO-2 equals DDP, and each rank holds 1/N of the gradients and optimizer state") {
  for (int n : {2, 3}) {
    CAPTURE(n);
    CHECK(run({worker(), "zero2"}, n).exit_code == 0);
  }
  CHECK(run({worker(), "zero2_errors"}, 2).exit_code == 0);
}

TEST_CASE("Fabric strategy zero: DDP's results, sharded checkpoints, consolidation and resume") {
  // The 3-process run also loads the 2-process run's checkpoint (another world size).
  auto dir = [](int n) {
    return std::filesystem::temp_directory_path() /
           ("kiln_fabric_zero_" + std::to_string(::getpid()) + "_" + std::to_string(n));
  };
  for (int n : {2, 3}) {
    CAPTURE(n);
    std::filesystem::create_directories(dir(n));
    std::map<std::string, std::string> env{{"KILN_TEST_OUT", dir(n).string()}};
    if (n == 3) env["KILN_TEST_PREV"] = dir(2).string();
    CHECK(run({worker(), "fabric_zero"}, n, env).exit_code == 0);
  }
  for (int n : {2, 3}) std::filesystem::remove_all(dir(n));
}

TEST_CASE("Fabric ddp and zero: the seed's loop written literally equals explicit DDP; broadcast of "
          "strings and JSON, rank_zero_first, a loader's own sampler cut into shares") {
  auto dir = std::filesystem::temp_directory_path() / ("kiln_fabric_literal_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const char* strategy : {"ddp", "zero"}) {
    CAPTURE(strategy);
    CHECK(run({worker(), "fabric_literal"}, 2, {{"KILN_TEST_STRATEGY", strategy}, {"KILN_TEST_OUT", dir.string()}})
              .exit_code == 0);
  }
  CHECK(run({worker(), "fabric_literal"}, 3, {{"KILN_TEST_STRATEGY", "zero"}, {"KILN_TEST_OUT", dir.string()}})
            .exit_code == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a killed rank ends the others with an error, not a hang") {
  for (std::string call : {"all_reduce", "reduce_scatter"}) {
    CAPTURE(call);
    auto dir = std::filesystem::temp_directory_path() / ("kiln_crash_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    auto t0 = std::chrono::steady_clock::now();
    std::string scenario = call == "all_reduce" ? "crash" : "crash_reduce_scatter";
    auto r = run({worker(), scenario}, 3, {{"KILN_TEST_OUT", dir.string()}}, 60s);
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(r.failed_rank == 2);
    CHECK(r.exit_code == 3);
    CHECK(r.message.find("rank 2") != std::string::npos);
    CHECK(secs < 30);
    // The survivors ignored the supervisor's SIGTERM and still ended, with their own error.
    for (int rank : {0, 1}) {
      std::ifstream f(dir / ("rank" + std::to_string(rank) + ".err"));
      std::stringstream ss;
      ss << f.rdbuf();
      CAPTURE(rank);
      CHECK(ss.str().find(call) != std::string::npos);
    }
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("debug mode names collectives called out of step") {
  CHECK(run({worker(), "out_of_step"}, 2).exit_code == 0);
}

TEST_CASE("launch() re-executes the program; a failing child's status comes back") {
  CHECK(run({worker(), "launch"}, 1).exit_code == 0);
  auto r = run({worker(), "launch_fail"}, 1);
  CHECK(r.exit_code == 5);
}

TEST_CASE("kiln-run starts the workers like torchrun") {
  CHECK(run({kiln_run(), "--nproc_per_node", "2", worker(), "collectives"}, 1).exit_code == 0);
  CHECK(run({kiln_run(), "--nproc-per-node=3", "--standalone", worker(), "ddp"}, 1).exit_code == 0);
  // A failing worker: kiln-run exits with its status.
  auto r = run({kiln_run(), "--nproc_per_node", "2", worker(), "no_such_scenario"}, 1);
  CHECK(r.exit_code == 2);
  // Flags out of range are refused before anything starts.
  CHECK(run({kiln_run(), "--nproc_per_node", "99999999999", worker(), "collectives"}, 1).exit_code == 2);
  CHECK(run({kiln_run(), "--master_port", "70000", worker(), "collectives"}, 1).exit_code == 2);
  // --rdzv_id is the job token the ranks get (here it must match on both ranks to rendezvous).
  CHECK(run({kiln_run(), "--nproc_per_node", "2", "--rdzv_id", "job-42", worker(), "collectives"}, 1).exit_code == 0);
  // Lightning's `fabric run` flags: the device count is the process count, the rest reach Fabric.
  CHECK(run({kiln_run(), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--precision", "bf16-mixed",
             worker(), "fabric_env"},
            1)
            .exit_code == 0);
  CHECK(run({kiln_run(), "--devices", "", worker(), "fabric_env"}, 1).exit_code == 2);
}

TEST_CASE("launchers give every rank the job token, and OMP_NUM_THREADS = CPUs / processes unless set") {
  // The suite sets OMP_NUM_THREADS: the workers keep it.
  std::string suite_omp = std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "";
  if (!suite_omp.empty()) {
    CHECK(run({worker(), "env_check"}, 2, {{"KILN_TEST_EXPECT_OMP", suite_omp}}).exit_code == 0);
  }
  // Unset: the CPUs this process may use, split between the node's processes.
  cpu_set_t set;
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  int cpus = CPU_COUNT(&set);
  ::unsetenv("OMP_NUM_THREADS");
  CHECK(run({worker(), "env_check"}, 2, {{"KILN_TEST_EXPECT_OMP", std::to_string(std::max(1, cpus / 2))}}).exit_code ==
        0);
  CHECK(run({worker(), "launch"}, 1, {{"KILN_TEST_EXPECT_OMP", std::to_string(std::max(1, cpus / 3))}}).exit_code == 0);
  if (!suite_omp.empty()) ::setenv("OMP_NUM_THREADS", suite_omp.c_str(), 1);
}

TEST_CASE("under torchrun's agent store every rank is a client, under this restart's keys") {
  // A kiln store stands in for torchrun's agent here (the real one: the integration suite).
  kd::TCPStore agent("127.0.0.1", 0, true, 30s);
  auto r = run({worker(), "collectives"}, 2,
               {{"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "3"}}, 180s, agent.port());
  CHECK(r.exit_code == 0);
  // The ranks' keys sit under "/worker/attempt_3/", as PyTorch's workers put theirs.
  CHECK(agent.missing({"/worker/attempt_3/kiln/join/0/0", "/worker/attempt_3/kiln/join/0/1"}).empty());
}
