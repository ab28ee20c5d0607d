// Integration: the reference program under real launchers, two CPU processes each. torchrun (its
// agent store, and --standalone where rank 0 serves) and mpirun, from Debian's python3-torch and
// openmpi-bin (scripts/setup.sh); each is skipped with the reason where it cannot run.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "distributed/distributed.h"
#include "helpers.h"

namespace fs = std::filesystem;
namespace kd = kiln::distributed;

namespace {

struct Result {
  int status = -1;
  std::string out;
};

Result run(const std::string& cmd) {
  Result r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  r.status = ::pclose(p);
  return r;
}

std::string build_root() {
  const char* b = std::getenv("KILN_BUILD_ROOT");
  return b ? b : ".";
}

// The run's last JSON line (rank 0's summary; torchrun's --tee puts "[default0]:" before it).
std::optional<nlohmann::json> summary(const std::string& out) {
  std::optional<nlohmann::json> last;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    auto at = line.find("{\"");
    if (at == std::string::npos) continue;
    try {
      last = nlohmann::json::parse(line.substr(at));
    } catch (const std::exception&) {}
  }
  return last;
}

// The reference program on a Fashion-MNIST slice; empty when it cannot run here (and says why).
std::string train_command(const fs::path& dir, const std::string& strategy) {
  std::string exe = build_root() + "/examples/train_cifar10";
  if (!fs::exists(exe)) {
    MESSAGE("skipped: " << exe << " is not built (meson option examples=false?)");
    return "";
  }
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: Fashion-MNIST is not installed (scripts/setup.sh installs dataset-fashion-mnist)");
    return "";
  }
  return exe +
         " --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist --accelerator cpu "
         "--strategy " +
         strategy +
         " --epochs 1 --batch-size 32 --max-train-batches 6 --max-eval-batches 2 "
         "--num-workers 1 --checkpoint " +
         (dir / "ck" / "last.safetensors").string() + " --log-dir " + (dir / "logs").string();
}

void check_trained_together(const Result& r, const fs::path& dir) {
  INFO(r.out);
  CHECK(r.status == 0);
  auto s = summary(r.out);
  REQUIRE(s.has_value());
  CHECK(s->at("world_size") == 2);
  CHECK(s->at("ranks_in_sync") == true);
  CHECK(s->at("steps") == 6);
  CHECK(fs::exists(dir / "ck" / "last.safetensors"));
  // Only rank 0 prints: one summary, one "Test accuracy" line.
  size_t lines = 0;
  for (size_t at = r.out.find("Test accuracy:"); at != std::string::npos; at = r.out.find("Test accuracy:", at + 1))
    ++lines;
  CHECK(lines == 1);
}

// Debian's torchrun (torch 1.13 under Python 3.11) cannot parse its own default "--redirects 0":
// Python 3.11's IntFlag no longer lists the zero flag. Teeing stdout works on every version.
std::string torchrun() {
  if (std::system("/usr/bin/python3 -c 'import torch.distributed.run' >/dev/null 2>&1") != 0) return "";
  return "/usr/bin/python3 -m torch.distributed.run --redirects 1 --tee 1";
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST_CASE("torchrun: the ranks join torchrun's agent store, strategy \"ddp\"") {
  std::string launcher = torchrun();
  if (launcher.empty()) {
    MESSAGE("skipped: no torch.distributed.run for /usr/bin/python3 (scripts/setup.sh installs python3-torch)");
    return;
  }
  TempDir dir("kiln_torchrun");
  std::string train = train_command(dir.path, "ddp");
  if (train.empty()) return;
  int port = kd::find_free_port();
  // The static rendezvous: torchrun's agent serves PyTorch's TCPStore on MASTER_PORT and tells the
  // workers to join it.
  std::string common =
      launcher + " --nproc_per_node 2 --master_addr 127.0.0.1 --master_port " + std::to_string(port) + " --no_python ";
  auto env = run(common + "/usr/bin/env");
  REQUIRE(env.status == 0);
  CHECK(env.out.find("TORCHELASTIC_USE_AGENT_STORE=True") != std::string::npos);
  check_trained_together(run(common + train), dir.path);
}

TEST_CASE("torchrun --standalone, strategy \"auto\": rank 0 serves the store or the agent does") {
  std::string launcher = torchrun();
  if (launcher.empty()) {
    MESSAGE("skipped: no torch.distributed.run for /usr/bin/python3 (scripts/setup.sh installs python3-torch)");
    return;
  }
  TempDir dir("kiln_torchrun_standalone");
  std::string train = train_command(dir.path, "auto");
  if (train.empty()) return;
  check_trained_together(run(launcher + " --standalone --nproc_per_node 2 --no_python " + train), dir.path);
}

TEST_CASE("mpirun: strategy \"auto\" joins Open MPI's job") {
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: no mpirun (scripts/setup.sh installs openmpi-bin)");
    return;
  }
  TempDir dir("kiln_mpirun");
  std::string train = train_command(dir.path, "auto");
  if (train.empty()) return;
  // Allowed as root (containers, CI) and on machines with fewer cores than processes.
  std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,tcp "
                    "mpirun -np 2 --oversubscribe --bind-to none -x MASTER_PORT=" +
                    std::to_string(kd::find_free_port()) + " " + train;
  check_trained_together(run(cmd), dir.path);
}
