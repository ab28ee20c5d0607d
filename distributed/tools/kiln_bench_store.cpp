// kiln_bench_store: the rendezvous store's cost on this machine (bench/RESULTS.md, "Rendezvous
// store"). Starts its own processes through kiln::distributed::launch; rank 0 serves the store and
// prints one markdown row.
//   kiln_bench_store rendezvous N [reps]          N processes each connect a fresh client and pass
//                                                 a store barrier, `reps` times: median and worst
//                                                 time from the first connect to the last rank out
//   kiln_bench_store hostile N [reps] [hostile]   the same after another process made `hostile`
//                                                 (default 1000) hostile connections (40% silent and
//                                                 5% stalled, both still held during the reps; 20%
//                                                 garbage, 15% 4 GiB lengths, 20% churn); adds rank
//                                                 0's memory and descriptors (before, peak) and the
//                                                 store's counters
// Run on a quiet machine; a loaded one measures its scheduler.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "distributed/distributed.h"
#include "distributed/tools/hostile_clients.h"

extern char** environ;

namespace kd = kiln::distributed;
using namespace std::chrono_literals;

namespace {

int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // one clock for every process of this machine
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

size_t open_fds() {
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// VmRSS or VmHWM (the peak) of this process, in MiB.
double memory_mib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string key;
  double kb = 0;
  while (f >> key) {
    if (key == field) {
      f >> kb;
      break;
    }
    std::string rest;
    std::getline(f, rest);
  }
  return kb / 1024.0;
}

kd::tools::HostileMix mix_of(int total) {
  // 40% silent, 20% garbage, 15% 4 GiB lengths, 5% stalled, 20% churn.
  kd::tools::HostileMix m;
  m.silent = total * 40 / 100;
  m.garbage = total * 20 / 100;
  m.huge = total * 15 / 100;
  m.stalled = total * 5 / 100;
  m.churn = total - m.silent - m.garbage - m.huge - m.stalled;
  return m;
}

// The hostile process: runs the mix, says so on stdout, holds its connections until SIGTERM.
int hostile_main(int port, int total) {
  kd::tools::HostileClients h("127.0.0.1", port);
  h.start(mix_of(total));
  h.finish();
  std::printf("ready\n");
  std::fflush(stdout);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  ::sigwait(&set, &sig);
  h.stop();
  return 0;
}

struct HostileProcess {
  pid_t pid = -1;
  FILE* out = nullptr;
  HostileProcess(int port, int total) {
    int pipefd[2];
    if (::pipe(pipefd) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    std::string p = std::to_string(port), t = std::to_string(total);
    std::vector<char*> argv = {const_cast<char*>("kiln_bench_store"), const_cast<char*>("_hostile"), p.data(), t.data(),
                               nullptr};
    // The hostile process is not a rank: it gets none of the launcher's variables.
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      std::string kv = *e;
      if (kv.rfind("RANK=", 0) && kv.rfind("WORLD_SIZE=", 0) && kv.rfind("MASTER_", 0) && kv.rfind("KILN_STORE", 0))
        env.push_back(kv);
    }
    std::vector<char*> envp;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    if (::posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), envp.data()) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(pipefd[1]);
    out = ::fdopen(pipefd[0], "r");
    char line[64];
    if (out && !std::fgets(line, sizeof line, out))
      std::fprintf(stderr, "kiln_bench_store: the hostile process failed\n");
  }
  ~HostileProcess() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
    if (out) std::fclose(out);
  }
};

int bench(int n, int reps, int hostile) {
  auto env = kd::launch(n);
  const int rank = env.rank;
  const std::string host = "127.0.0.1";
  kd::TCPStoreOptions client_opts{.timeout = 300s, .token = env.store_token};
  std::unique_ptr<kd::TCPStore> server;
  std::unique_ptr<HostileProcess> attack;
  std::atomic<bool> sampling{true};
  std::atomic<size_t> peak_fds{0};
  std::thread sampler;
  double rss_before = 0;
  size_t fds_before = 0;
  if (rank == 0) {
    kd::TCPStoreOptions o = client_opts;
    o.is_server = true;
    server = std::make_unique<kd::TCPStore>(host, env.master_port, o);
    rss_before = memory_mib("VmRSS:");
    fds_before = open_fds();
    if (hostile > 0) attack = std::make_unique<HostileProcess>(env.master_port, hostile);
    sampler = std::thread([&] {
      while (sampling) {
        peak_fds = std::max<size_t>(peak_fds, open_fds());
        std::this_thread::sleep_for(10ms);
      }
    });
  }
  // Every rank passes the same barrier before the timed reps (the processes have all started).
  {
    kd::TCPStore warm(host, env.master_port, client_opts);
    kd::store_barrier(warm, "start", rank, n);
  }
  for (int i = 0; i < reps; ++i) {
    int64_t t0 = now_ns();
    kd::TCPStore client(host, env.master_port, client_opts);
    kd::store_barrier(client, "rep" + std::to_string(i), rank, n);
    int64_t t1 = now_ns();
    client.set("time/" + std::to_string(i) + "/" + std::to_string(rank), std::to_string(t0) + " " + std::to_string(t1));
  }
  if (rank != 0) return 0;
  std::vector<double> spans;
  for (int i = 0; i < reps; ++i) {
    int64_t first = INT64_MAX, last = 0;
    for (int r = 0; r < n; ++r) {
      std::string v = server->get("time/" + std::to_string(i) + "/" + std::to_string(r));
      int64_t a = std::stoll(v), b = std::stoll(v.substr(v.find(' ') + 1));
      first = std::min(first, a);
      last = std::max(last, b);
    }
    spans.push_back(double(last - first) / 1e6);
  }
  sampling = false;
  sampler.join();
  std::sort(spans.begin(), spans.end());
  auto st = *server->server_stats();
  if (hostile == 0) {
    std::printf("| %d | %d | %.2f | %.2f |\n", n, reps, spans[spans.size() / 2], spans.back());
  } else {
    std::printf(
        "| %d | %d | %.2f | %.2f | %.1f -> %.1f (peak %.1f) | %zu -> %zu | %llu | %llu | %llu / %llu / %llu / %llu |\n",
        n, hostile, spans[spans.size() / 2], spans.back(), rss_before, memory_mib("VmRSS:"), memory_mib("VmHWM:"),
        fds_before, size_t(peak_fds), (unsigned long long)st.peak_buffered_bytes, (unsigned long long)st.accepted,
        (unsigned long long)st.closed_misbehaving, (unsigned long long)st.refused_token,
        (unsigned long long)st.closed_timeout, (unsigned long long)st.closed_evicted);
  }
  return 0;
}

int usage() {
  std::fprintf(stderr, "usage: kiln_bench_store rendezvous N [reps]\n"
                       "       kiln_bench_store hostile N [reps] [hostile connections]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 4 && std::string(argv[1]) == "_hostile") return hostile_main(std::atoi(argv[2]), std::atoi(argv[3]));
    if (argc < 3) return usage();
    std::string mode = argv[1];
    int n = std::atoi(argv[2]);
    int reps = argc > 3 ? std::atoi(argv[3]) : 10;
    int hostile = argc > 4 ? std::atoi(argv[4]) : 1000;
    if (n < 1 || reps < 1 || hostile < 0) return usage();
    bool header = !std::getenv("RANK");
    if (mode == "rendezvous") {
      if (header) std::printf("| processes | reps | median (ms) | worst (ms) |\n|---|---|---|---|\n");
      return bench(n, reps, 0);
    }
    if (mode == "hostile") {
      if (header)
        std::printf("| processes | hostile connections | median (ms) | worst (ms) | rank 0 RSS (MiB) | rank 0 "
                    "descriptors | peak buffered (B) | accepted | misbehaving / no token / timed out / evicted |\n"
                    "|---|---|---|---|---|---|---|---|---|\n");
      return bench(n, reps, hostile);
    }
    return usage();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_bench_store: %s\n", e.what());
    return 1;
  }
}
