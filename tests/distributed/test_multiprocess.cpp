// Multi-process tests: each starts kiln_dist_worker 2 or 3 times on loopback (through
// run_workers, kiln-run or the worker's own launch()) and checks the exit statuses. The workers
// do the numeric checks themselves and print mismatches to stderr.
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

kd::RunResult run(const std::vector<std::string>& argv, int nprocs,
                  std::map<std::string, std::string> env = {}, kd::Milliseconds timeout = 60s) {
  kd::WorkerSpec spec;
  spec.argv = argv;
  spec.nproc_per_node = nprocs;
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
    auto dir = std::filesystem::temp_directory_path() /
               ("kiln_crash_" + std::to_string(::getpid()));
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
}
