// Process supervision through pidfds: poll() on every child's pidfd (and a pipe that stops the
// watcher) wakes exactly when a child exits, so neither the supervisor nor the rendezvous sleeps.
// Children get PR_SET_PDEATHSIG, so killing the supervisor takes its workers with it.
#include "distributed/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/device.h"
#include "core/error.h"

extern char** environ;

namespace kiln::distributed {

namespace {

using Clock = std::chrono::steady_clock;

struct Child {
  pid_t pid = -1;
  int pidfd = -1;
  int rank = 0;
  bool done = false;
  int status = 0;  // exit code or 128 + signal
};

int exit_code_of(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 1;
}

std::string describe(const Child& c) {
  std::string s = "rank " + std::to_string(c.rank) + " (pid " + std::to_string(c.pid) + ") ";
  if (c.status > 128)
    return s + "was killed by signal " + std::to_string(c.status - 128) + " (" + strsignal(c.status - 128) + ")";
  return s + "exited with status " + std::to_string(c.status);
}

// Spawns argv with the current environment plus `vars` (which override).
Child spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& vars, int rank,
            const std::string& exe) {
  // Everything the child needs is built before fork: after it only async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && vars.count(kv.substr(0, eq))) continue;
    env_strings.push_back(kv);
  }
  for (auto& [k, v] : vars) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  KILN_CHECK(pid >= 0, "launch: fork() failed for rank ", rank, ": ", std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (exe.find('/') != std::string::npos)
      ::execve(exe.c_str(), args.data(), envp.data());
    else
      ::execvpe(exe.c_str(), args.data(), envp.data());
    const char msg[] = "kiln launch: exec failed\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  Child c;
  c.pid = pid;
  c.rank = rank;
  c.pidfd = int(::syscall(SYS_pidfd_open, pid, 0));
  KILN_CHECK(c.pidfd >= 0, "launch: pidfd_open failed (Linux 5.3 or newer is needed): ", std::strerror(errno));
  return c;
}

void reap(Child& c) {
  int ws = 0;
  if (::waitpid(c.pid, &ws, 0) == c.pid) c.status = exit_code_of(ws);
  c.done = true;
  ::close(c.pidfd);
  c.pidfd = -1;
}

// Waits until one child exits or the deadline passes (or `stop_fd` becomes readable). Returns the
// index of an exited child, -1 on timeout, -2 when stopped.
int wait_any(std::vector<Child>& kids, std::optional<Clock::time_point> deadline, int stop_fd = -1) {
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<int> idx;
    for (size_t i = 0; i < kids.size(); ++i)
      if (!kids[i].done) {
        fds.push_back({kids[i].pidfd, POLLIN, 0});
        idx.push_back(int(i));
      }
    if (stop_fd >= 0) fds.push_back({stop_fd, POLLIN, 0});
    if (fds.empty()) return -1;
    int ms = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<Milliseconds>(*deadline - Clock::now()).count();
      if (left <= 0) return -1;
      ms = int(std::min<long long>(left, 1 << 30));
    }
    int r = ::poll(fds.data(), fds.size(), ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return -1;
    for (size_t j = 0; j < idx.size(); ++j)
      if (fds[j].revents) {
        reap(kids[idx[j]]);
        return idx[j];
      }
    if (stop_fd >= 0 && fds.back().revents) return -2;
  }
}

void stop_all(std::vector<Child>& kids, Milliseconds grace) {
  for (auto& c : kids)
    if (!c.done) ::kill(c.pid, SIGTERM);
  auto deadline = Clock::now() + grace;
  while (wait_any(kids, deadline) >= 0) {}
  for (auto& c : kids)
    if (!c.done) {
      ::kill(c.pid, SIGKILL);
      reap(c);
    }
}

// CPUs this process may run on (its affinity mask, which containers and taskset narrow).
int available_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

// The variables every worker of this node shares: the job token, and OMP_NUM_THREADS (the CPUs
// split between the node's processes) unless the user set it.
std::map<std::string, std::string> shared_variables(int local_processes, const std::string& token) {
  std::map<std::string, std::string> vars;
  if (!token.empty()) vars[kStoreTokenVariable] = token;
  if (!std::getenv("OMP_NUM_THREADS"))
    vars["OMP_NUM_THREADS"] = std::to_string(std::max(1, available_cpus() / std::max(1, local_processes)));
  return vars;
}

std::vector<std::string> self_argv() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == '\0') {
      out.push_back(all.substr(start, i - start));
      start = i + 1;
    }
  return out;
}

}  // namespace

RunResult run_workers(const WorkerSpec& spec) {
  KILN_CHECK(!spec.argv.empty(), "run_workers: no program to run");
  KILN_CHECK(spec.nproc_per_node >= 1 && spec.nnodes >= 1, "run_workers: nproc_per_node=", spec.nproc_per_node,
             " and nnodes=", spec.nnodes, " must be at least 1");
  KILN_CHECK(spec.node_rank >= 0 && spec.node_rank < spec.nnodes, "run_workers: node_rank=", spec.node_rank,
             " is not below nnodes=", spec.nnodes);
  if (spec.timeout.count() != 0) check_timeout("run_workers", spec.timeout);
  check_timeout("run_workers (kill_grace)", spec.kill_grace);
  int port = spec.master_port;
  if (port == 0) {
    KILN_CHECK(spec.nnodes == 1, "run_workers: a job over ", spec.nnodes,
               " nodes needs an explicit master port, the same on every node");
    port = find_free_port();
  }
  // A single node makes its own token; the nodes of a multi-node job must share one
  // (kStoreTokenVariable in every node's environment, or WorkerSpec::store_token).
  std::string token = spec.store_token;
  if (token.empty())
    if (const char* t = std::getenv(kStoreTokenVariable)) token = t;
  if (token.empty() && spec.nnodes == 1) token = make_store_token();
  KILN_CHECK(token.size() <= kStoreMaxTokenBytes, "run_workers: the job token has ", token.size(),
             " characters; the limit is ", kStoreMaxTokenBytes, " (kStoreMaxTokenBytes)");
  const auto shared = shared_variables(spec.nproc_per_node, token);
  std::vector<Child> kids;
  RunResult result;
  try {
    for (int lr = 0; lr < spec.nproc_per_node; ++lr) {
      Environment e;
      e.rank = spec.node_rank * spec.nproc_per_node + lr;
      e.world_size = spec.nnodes * spec.nproc_per_node;
      e.local_rank = lr;
      e.local_world_size = spec.nproc_per_node;
      e.node_rank = spec.node_rank;
      e.master_addr = spec.master_addr;
      e.master_port = port;
      auto vars = environment_variables(e);
      for (auto& [k, v] : shared) vars[k] = v;
      for (auto& [k, v] : spec.extra_env) vars[k] = v;
      kids.push_back(spawn(spec.argv, vars, e.rank, spec.argv[0]));
    }
  } catch (...) {
    stop_all(kids, spec.kill_grace);
    throw;
  }
  std::optional<Clock::time_point> deadline;
  if (spec.timeout.count() > 0) deadline = Clock::now() + spec.timeout;
  for (;;) {
    int i = wait_any(kids, deadline);
    if (i == -1) {
      bool all_done = true;
      for (auto& c : kids) all_done = all_done && c.done;
      if (all_done) return result;
      stop_all(kids, spec.kill_grace);
      result.exit_code = 124;
      result.message = "run_workers: the workers did not finish within " + std::to_string(spec.timeout.count()) +
                       " ms; stopped them";
      return result;
    }
    if (kids[i].status != 0) {
      result.exit_code = kids[i].status;
      result.failed_rank = kids[i].rank;
      result.message = describe(kids[i]) + "; stopped the other workers";
      stop_all(kids, spec.kill_grace);
      return result;
    }
  }
}

namespace {

// Rank 0's watch over the children it launched (one per process, lives until exit).
class Watcher {
 public:
  void start(std::vector<Child> kids, Milliseconds grace) {
    kids_ = std::move(kids);
    grace_ = grace;
    KILN_CHECK(::pipe2(stop_pipe_, O_CLOEXEC) == 0, "launch: pipe2 failed: ", std::strerror(errno));
    thread_ = std::thread([this] { run(); });
  }
  ~Watcher() {
    if (!thread_.joinable()) return;
    // Rank 0 is done: give the other ranks time to finish, then stop them. Never throws.
    char c = 1;
    ssize_t ignored = ::write(stop_pipe_[1], &c, 1);
    (void)ignored;
    thread_.join();
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (wait_any(kids_, deadline) >= 0) {}
    stop_all(kids_, grace_);
    ::close(stop_pipe_[0]);
    ::close(stop_pipe_[1]);
  }
  std::string failure() {
    std::lock_guard<std::mutex> g(mu_);
    return failure_;
  }
  int exit_code() const { return exit_code_.load(); }

 private:
  void run() {
    for (;;) {
      int i = wait_any(kids_, std::nullopt, stop_pipe_[0]);
      if (i < 0) return;  // stopped, or every child is gone
      if (kids_[i].status != 0) {
        {
          std::lock_guard<std::mutex> g(mu_);
          failure_ = describe(kids_[i]);
        }
        exit_code_ = kids_[i].status;
        stop_all(kids_, grace_);
        return;
      }
    }
  }
  std::vector<Child> kids_;
  Milliseconds grace_{5000};
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  std::string failure_;
  std::atomic<int> exit_code_{0};
};

Watcher& watcher() {
  static Watcher w;
  return w;
}

}  // namespace

Environment launch(int nprocs, const LaunchOptions& options) {
  if (auto env = detect_environment()) return *env;
  KILN_CHECK(nprocs >= 1, "launch: the number of processes must be at least 1, got ", nprocs);
  check_timeout("launch (kill_grace)", options.kill_grace);
  Environment self;
  self.source = "kiln launch";
  self.world_size = nprocs;
  self.local_world_size = nprocs;
  self.single_node = true;
  self.master_addr = options.master_addr;
  self.master_port = options.master_port ? options.master_port : find_free_port();
  if (nprocs == 1) return self;
  const char* token = std::getenv(kStoreTokenVariable);
  self.store_token = token && *token ? token : make_store_token();
  const auto shared = shared_variables(nprocs, self.store_token);
  std::vector<Child> kids;
  auto argv = self_argv();
  KILN_CHECK(!argv.empty(), "launch: cannot read this program's arguments from /proc/self/cmdline");
  try {
    for (int r = 1; r < nprocs; ++r) {
      Environment e = self;
      e.rank = e.local_rank = r;
      auto vars = environment_variables(e);
      for (auto& [k, v] : shared) vars[k] = v;
      for (auto& [k, v] : options.extra_env) vars[k] = v;
      kids.push_back(spawn(argv, vars, r, "/proc/self/exe"));
    }
  } catch (...) {
    stop_all(kids, options.kill_grace);
    throw;
  }
  for (auto& [k, v] : environment_variables(self)) ::setenv(k.c_str(), v.c_str(), 1);
  if (auto t = shared.find("OMP_NUM_THREADS"); t != shared.end()) {
    ::setenv("OMP_NUM_THREADS", t->second.c_str(), 1);
    set_num_threads(std::stoi(t->second));  // the thread pool may have been sized already
  }
  watcher().start(std::move(kids), options.kill_grace);
  return self;
}

std::string launched_worker_failure() { return watcher().failure(); }
int launched_worker_exit_code() { return watcher().exit_code(); }

}  // namespace kiln::distributed
