// Integration: two "nodes" in separate network namespaces joined by a veth pair train data
// parallel with `kiln-run --nnodes 2`; cutting the link mid-run ends both with a named error
// within the collective timeout. Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip netns`;
// skipped with the reason elsewhere.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "distributed/distributed.h"
#include "helpers.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

std::string build_root() {
  const char* b = std::getenv("KILN_BUILD_ROOT");
  return b ? b : ".";
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int progress(const fs::path& dir, int rank) {
  std::ifstream f(dir / ("progress" + std::to_string(rank)));
  int step = 0;
  f >> step;
  return step;
}

// Two namespaces and the veth pair between them; everything is removed on the way out.
struct TwoNodes {
  std::string a, b, va, vb;
  bool ok = false;
  TwoNodes() {
    std::string id = std::to_string(::getpid() % 100000);
    a = "kiln_a" + id;
    b = "kiln_b" + id;
    va = "kva" + id;
    vb = "kvb" + id;
    ok = sh("ip netns add " + a) && sh("ip netns add " + b) && sh("ip link add " + va + " type veth peer name " + vb) &&
         sh("ip link set " + va + " netns " + a) && sh("ip link set " + vb + " netns " + b) &&
         sh("ip -n " + a + " addr add 10.213.0.1/24 dev " + va) &&
         sh("ip -n " + b + " addr add 10.213.0.2/24 dev " + vb) && sh("ip -n " + a + " link set " + va + " up") &&
         sh("ip -n " + b + " link set " + vb + " up") && sh("ip -n " + a + " link set lo up") &&
         sh("ip -n " + b + " link set lo up");
  }
  ~TwoNodes() {
    sh("ip netns del " + a);
    sh("ip netns del " + b);
    sh("ip link del " + va);
  }
};

}  // namespace

TEST_CASE("two network namespaces train data parallel; cutting the link ends both with a named error") {
  if (::geteuid() != 0 || !sh("command -v ip")) {
    MESSAGE("skipped: creating network namespaces needs root and iproute2's `ip`");
    return;
  }
  TwoNodes nodes;
  if (!nodes.ok) {
    MESSAGE("skipped: this machine does not let the test create network namespaces and a veth pair "
            "(a container without CAP_NET_ADMIN/CAP_SYS_ADMIN?)");
    return;
  }
  auto dir = fs::temp_directory_path() / ("kiln_netns_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string kiln_run = build_root() + "/distributed/tools/kiln-run";
  const std::string worker = build_root() + "/tests/distributed/kiln_dist_worker";
  const int timeout_ms = 5000;
  auto node = [&](int rank, const std::string& ns, const std::string& addr) {
    // Each node's Gloo listens on its own veth address; the collectives time out after 5 s.
    return "ip netns exec " + ns + " env KILN_GLOO_HOSTNAME=" + addr + " KILN_TEST_OUT=" + dir.string() +
           " KILN_TEST_TIMEOUT_MS=" + std::to_string(timeout_ms) + " " + kiln_run + " --nnodes 2 --node_rank " +
           std::to_string(rank) +
           " --nproc_per_node 1 --master_addr 10.213.0.1 "
           "--master_port 29431 --rdzv_id netns-test --timeout 300 " +
           worker + " train_until_cut > " + (dir / ("node" + std::to_string(rank) + ".log")).string() + " 2>&1";
  };
  int status[2] = {-1, -1};
  Clock::time_point ended[2];
  std::thread n0([&] {
    status[0] = std::system(node(0, nodes.a, "10.213.0.1").c_str());
    ended[0] = Clock::now();
  });
  std::thread n1([&] {
    status[1] = std::system(node(1, nodes.b, "10.213.0.2").c_str());
    ended[1] = Clock::now();
  });
  // Both train for a few steps (starting takes a while on a loaded machine)...
  auto deadline = Clock::now() + 120s;
  while ((progress(dir, 0) < 5 || progress(dir, 1) < 5) && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
  int before0 = progress(dir, 0), before1 = progress(dir, 1);
  // ...then the link goes down.
  sh("ip -n " + nodes.a + " link set " + nodes.va + " down");
  auto cut = Clock::now();
  n0.join();
  n1.join();
  std::string log0 = slurp(dir / "node0.log"), log1 = slurp(dir / "node1.log");
  INFO("node 0:\n" << log0 << "\nnode 1:\n" << log1);
  CHECK(before0 >= 5);
  CHECK(before1 >= 5);
  for (int n : {0, 1}) {
    CAPTURE(n);
    CHECK(status[n] != 0);
    double secs = std::chrono::duration<double>(ended[n] - cut).count();
    CHECK(secs < 60);  // the 5 s timeout plus the supervisor's grace, with room for a loaded machine
  }
  // Each rank names what failed: the collective that timed out or the connection that broke.
  for (const std::string& log : {log0, log1}) {
    bool named = log.find("all_reduce") != std::string::npos || log.find("timed out") != std::string::npos ||
                 log.find("closed the connection") != std::string::npos;
    CHECK(named);
    CHECK(log.find("exited with status 3") != std::string::npos);
  }
  fs::remove_all(dir);
}
