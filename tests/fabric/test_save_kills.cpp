// Saves under real faults, driven through save_worker: kill -9 at random moments of a run that
// saves over and over (one process, and ZeRO-2 with two), a full disk (a small tmpfs, where this
// machine lets a test mount one in its own namespaces), and one ZeRO-2 rank whose writes fail.
// After every kill the previous checkpoint loads; the next save removes the litter; a failure on
// any rank ends every rank with that rank's message, and the failed save's new shards are gone.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "fabric/checkpoint.h"
#include "nn/nn.h"

extern char** environ;
namespace fs = std::filesystem;
using namespace kiln;
using Clock = std::chrono::steady_clock;

namespace {

std::string worker() {
  const char* b = std::getenv("KILN_BUILD_ROOT");
  return std::string(b ? b : ".") + "/tests/fabric/save_worker";
}

fs::path fresh(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kiln_save_kills_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A child in its own process group (so that one kill reaches every rank), its output in a pipe.
struct Child {
  pid_t pid = -1;
  int out = -1;
  std::string text;
  int status = -1;

  explicit Child(const std::vector<std::string>& args) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(fds[1]);
    out = fds[0];
    REQUIRE_MESSAGE(rc == 0, "cannot start " << args[0]);
  }
  ~Child() {
    if (pid > 0 && status < 0) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    if (out >= 0) ::close(out);
  }
  // Reads what is there within `ms`; false at the end of the output.
  bool pump(int ms) {
    pollfd p{out, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return true;
    char buf[4096];
    ssize_t n = ::read(out, buf, sizeof buf);
    if (n <= 0) return false;
    text.append(buf, size_t(n));
    return true;
  }
  bool wait_for(const std::string& what, double seconds) {
    auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (text.find(what) == std::string::npos && Clock::now() < end)
      if (!pump(50)) return text.find(what) != std::string::npos;
    return text.find(what) != std::string::npos;
  }
  // Waits for the exit (killing the group after `seconds`) and the end of the output.
  int finish(double seconds) {
    auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < end && pump(100)) {}
    // The output ends as the process exits; it is reaped a moment later.
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() >= end) {
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        FAIL("save_worker did not finish within " << seconds << " s:\n" << text);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    while (pump(100)) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void kill_all() {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    // Ranks launched by this one die with it (PR_SET_PDEATHSIG) and were in its group.
    while (pump(100)) {}
  }
  int64_t last_saved() const {
    size_t at = text.rfind("saved ");
    return at == std::string::npos ? 0 : std::stoll(text.substr(at + 6));
  }
};

int64_t loaded_count(const std::string& path) {
  auto model = std::make_shared<nn::Linear>(256, 256);
  State st{{"model", std::shared_ptr<nn::Module>(model)}, {"count", int64_t(-1)}};
  load_checkpoint(path, st, /*strict=*/false);
  return std::get<int64_t>(st["count"]);
}

size_t files_in(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

std::string listing(const fs::path& dir) {
  std::string s;
  for (const auto& e : fs::directory_iterator(dir)) s += "\n  " + e.path().filename().string();
  return s;
}

// kills times: start a saving run, wait for its first save, kill it at a random moment, check.
void kill_repeatedly(bool zero, int kills) {
  auto dir = fresh(zero ? "zero" : "single");
  const std::string path = (dir / "last.safetensors").string();
  const size_t whole = zero ? 3 : 1;  // an index and two shards, or one file
  std::mt19937 rng(zero ? 7 : 3);
  size_t litter_seen = 0;
  for (int k = 0; k < kills; ++k) {
    Child c({worker(), zero ? "zero-loop" : "loop", dir.string(), "0"});
    bool saved = c.wait_for("saved 1\n", 120);
    if (c.text.find("needs the distributed layer") != std::string::npos) {
      MESSAGE("skipped: " << c.text);
      return;
    }
    REQUIRE_MESSAGE(saved, "no save within 120 s:\n" << c.text);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 150000));
    c.kill_all();
    const int64_t reported = c.last_saved();
    INFO("kill " << k << " after save " << reported);
    int64_t count = -1;
    try {
      count = loaded_count(path);
    } catch (const Error& e) { FAIL("the checkpoint does not load after kill " << k << ": " << e.what()); }
    CHECK(count >= reported);
    litter_seen += files_in(dir) - whole;
  }
  MESSAGE(kills << std::string(zero ? " ZeRO-2" : " single-process") << " kills left " << litter_seen
                << " stray files in all");
  CHECK(litter_seen > 0);  // the kills did land inside saves
  Child last({worker(), zero ? "zero-loop" : "loop", dir.string(), "1"});
  REQUIRE_MESSAGE(last.finish(180) == 0, last.text);
  CHECK(loaded_count(path) == 1);
  CHECK_MESSAGE(files_in(dir) == whole, "after a clean save the folder holds " << listing(dir));
  fs::remove_all(dir);
}

bool can_mount_tmpfs() {
  return std::system("unshare -rm sh -c 'mount -t tmpfs -o size=64k tmpfs /tmp' >/dev/null 2>&1") == 0;
}

void full_disk(bool zero) {
  if (!can_mount_tmpfs()) {
    MESSAGE("skipped: this machine does not let the test mount a tmpfs in its own namespaces "
            "(unshare -rm); the write-fault seam covers a full disk in test_save_faults");
    return;
  }
  auto dir = fresh(zero ? "enospc_zero" : "enospc");
  Child c({"unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=8m tmpfs \"$1\" && exec \"$2\" \"$3\" \"$1\"", "sh",
           dir.string(), worker(), zero ? "zero-enospc" : "enospc"});
  int status = c.finish(180);
  if (status == 77) return;
  CHECK_MESSAGE(status == 0, c.text);
  CHECK_MESSAGE(c.text.find("OK\n") != std::string::npos, c.text);
  CHECK_MESSAGE(c.text.find("no space left on the device") != std::string::npos, c.text);
  if (zero) {  // both ranks heard of it, with the same failing rank
    CHECK_MESSAGE(c.text.find("rank 0: save ") != std::string::npos, c.text);
    CHECK_MESSAGE(c.text.find("rank 1: save ") != std::string::npos, c.text);
  }
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("save kills: kill -9 during single-process saves never loses the previous checkpoint") {
  kill_repeatedly(false, 25);
}

TEST_CASE("save kills: kill -9 during ZeRO-2 saves never loses the previous checkpoint") { kill_repeatedly(true, 20); }

TEST_CASE("save kills: a full disk (tmpfs) fails the save with \"no space\" and keeps the previous one") {
  full_disk(false);
  full_disk(true);
}

TEST_CASE("save kills: under ZeRO-2 a failed write on one rank fails every rank at once with its message") {
  // Rank 1's shard, then rank 0's index: every rank ends with the failing rank's "no space" (a
  // stalled rank would end with a collective timeout instead), the failed save's new shards are
  // removed, and the previous checkpoint loads (save_worker checks and prints OK).
  for (const auto& fault : {std::pair{1, ".rank1-of-2"}, std::pair{0, "last.safetensors"}}) {
    const int rank = fault.first;
    const char* part = fault.second;
    INFO("rank " << rank << " fails writing " << std::string(part));
    auto dir = fresh("fault");
    auto start = Clock::now();
    Child c({worker(), "zero-fault", dir.string(), std::to_string(rank), part});
    int status = c.finish(180);
    if (status == 77) return;
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    CHECK_MESSAGE(status == 0, c.text);
    const std::string failed = "failed on rank " + std::to_string(rank) + ": ";
    size_t heard = 0;
    for (size_t at = c.text.find(failed); at != std::string::npos; at = c.text.find(failed, at + 1)) ++heard;
    CHECK_MESSAGE(heard == 2, c.text);
    CHECK_MESSAGE(c.text.find("rank 0: save ") != std::string::npos, c.text);
    CHECK_MESSAGE(c.text.find("rank 1: save ") != std::string::npos, c.text);
    CHECK_MESSAGE(c.text.find("OK\n") != std::string::npos, c.text);
    MESSAGE("rank " << rank << "'s failure ended both ranks; the run took " << secs << " s");
    fs::remove_all(dir);
  }
}
