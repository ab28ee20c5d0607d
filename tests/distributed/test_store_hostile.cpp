// Faults from the network: store clients that send garbage or a 4 GiB length, connect and stay
// silent, stall half-way, or churn connections do not disturb a running rendezvous; the store's
// memory and descriptors stay bounded; a store out of descriptors still admits the job's ranks.
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "distributed/distributed.h"
#include "distributed/tools/hostile_clients.h"
#include "helpers.h"

namespace kd = kiln::distributed;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

size_t open_fds() {
  size_t n = 0;
  for (auto& e : fs::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

size_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string key;
  size_t kb = 0;
  while (f >> key) {
    if (key == "VmRSS:") {
      f >> kb;
      break;
    }
    std::string rest;
    std::getline(f, rest);
  }
  return kb * 1024;
}

std::string build_root() {
  const char* b = std::getenv("KILN_BUILD_ROOT");
  return b ? b : ".";
}

}  // namespace

TEST_CASE("hostile clients do not disturb a rendezvous; the store's memory and descriptors stay bounded") {
  const size_t fds_before = open_fds();
  const size_t rss_before = rss_bytes();
  {
    kd::TCPStoreOptions server_opts{
        .is_server = true, .timeout = 60s, .token = "this-job", .handshake_timeout = 2s, .message_timeout = 2s};
    kd::TCPStore server("127.0.0.1", 0, server_opts);
    kd::tools::HostileClients hostile("127.0.0.1", server.port());
    hostile.start({.silent = 300, .garbage = 200, .huge = 150, .stalled = 20, .churn = 1000});

    // Four ranks rendezvous 20 times while that goes on.
    constexpr int kRanks = 4, kRounds = 20;
    std::atomic<int> failures{0};
    std::vector<std::thread> ranks;
    for (int r = 0; r < kRanks; ++r)
      ranks.emplace_back([&, r] {
        try {
          kd::TCPStore store("127.0.0.1", server.port(), kd::TCPStoreOptions{.timeout = 60s, .token = "this-job"});
          for (int round = 0; round < kRounds; ++round) {
            std::string key = "round" + std::to_string(round);
            store.set(key + "/value" + std::to_string(r), std::to_string(round * 100 + r));
            kd::store_barrier(store, key, r, kRanks);
            for (int q = 0; q < kRanks; ++q)
              if (store.get(key + "/value" + std::to_string(q)) != std::to_string(round * 100 + q)) ++failures;
          }
        } catch (const kiln::Error& e) {
          MESSAGE("rank " << r << ": " << e.what());
          ++failures;
        }
      });
    for (auto& t : ranks) t.join();
    CHECK(failures == 0);
    hostile.finish();

    // Every hostile connection that spoke, or stayed silent past the handshake, is closed.
    auto deadline = std::chrono::steady_clock::now() + 15s;
    kd::StoreServerStats stats;
    do {
      std::this_thread::sleep_for(100ms);
      stats = *server.server_stats();
    } while (stats.open > 1 && std::chrono::steady_clock::now() < deadline);
    INFO("accepted " << stats.accepted << ", open " << stats.open << ", misbehaving " << stats.closed_misbehaving
                     << ", timeout " << stats.closed_timeout << ", evicted " << stats.closed_evicted << ", token "
                     << stats.refused_token << ", peak buffered " << stats.peak_buffered_bytes);
    CHECK(stats.open == 1);  // the server's own client
    // Silent ones time out (or make room), the rest are refused for want of the token or closed for
    // what they sent; churned ones just leave.
    CHECK(stats.closed_misbehaving + stats.refused_token + stats.closed_timeout + stats.closed_evicted >=
          300 + 200 + 150 + 20);
    CHECK(stats.peak_buffered_bytes < (1u << 20));
    // Memory did not grow by anything like a 4 GiB allocation.
    CHECK(rss_bytes() < rss_before + (64u << 20));
    hostile.stop();
  }
  // The store and the test's own sockets are closed: descriptors are back where they were.
  CHECK(open_fds() == fds_before);
}

TEST_CASE("a job's processes train while hostile clients hammer their store's port") {
  const std::string worker = build_root() + "/tests/distributed/kiln_dist_worker";
  int port = kd::find_free_port();
  kd::tools::HostileClients hostile("127.0.0.1", port);
  hostile.start({.silent = 100, .garbage = 100, .huge = 60, .stalled = 10, .churn = 500});
  kd::WorkerSpec spec;
  spec.argv = {worker, "collectives"};
  spec.nproc_per_node = 2;
  spec.master_port = port;
  spec.timeout = 180s;
  spec.kill_grace = 10s;
  auto r = kd::run_workers(spec);
  hostile.stop();
  if (r.exit_code != 0) MESSAGE("workers: " << r.message);
  CHECK(r.exit_code == 0);
}

TEST_CASE("a store out of descriptors still admits the job's ranks") {
  // The store runs in its own process with a soft limit of 64 descriptors (the worker's
  // store_serve scenario); 200 silent connections exhaust it.
  const std::string worker = build_root() + "/tests/distributed/kiln_dist_worker";
  auto dir = fs::temp_directory_path() / ("kiln_store_fds_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string token = kd::make_store_token();
  kd::RunResult served;
  std::thread store_process([&] {
    kd::WorkerSpec spec;
    spec.argv = {worker, "store_serve"};
    spec.extra_env = {{"KILN_TEST_OUT", dir.string()}, {"KILN_STORE_TOKEN", token}};
    spec.timeout = 180s;
    served = kd::run_workers(spec);
  });
  int port = 0;
  for (int i = 0; i < 6000 && port == 0; ++i) {
    std::ifstream f(dir / "port");
    if (!(f >> port)) port = 0;
    if (port == 0) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(port > 0);
  kd::tools::HostileClients hostile("127.0.0.1", port);
  hostile.start({.silent = 200});
  hostile.finish();
  {
    kd::TCPStore rank("127.0.0.1", port, kd::TCPStoreOptions{.timeout = 60s, .token = token});
    rank.set("hello", "1");
    CHECK(rank.get("hello") == "1");
    rank.set("stop", "1");
  }
  store_process.join();
  hostile.stop();
  CHECK(served.exit_code == 0);
  std::ifstream stats(dir / "stats");
  uint64_t accepted = 0, evicted = 0, refused = 0;
  stats >> accepted >> evicted >> refused;
  MESSAGE("store out of descriptors: accepted " << accepted << ", evicted " << evicted << ", refused " << refused);
  CHECK(evicted + refused > 0);
  fs::remove_all(dir);
}
