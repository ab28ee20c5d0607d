// The programs under bad command lines and bad files: train_cifar10, kiln-consolidate and kiln-run
// end with a message and a non-zero status (2 for a bad flag, 1 for a bad file), never with an
// abort (134), a segfault (139) or a hang; a resumed epoch outside the run that saved it is
// refused.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fabric/safetensors.h"

namespace fs = std::filesystem;

namespace {

struct Result {
  int status;
  std::string out;
};

// The command with a time limit: a hang is a failure, not a stuck suite.
Result run(const std::string& cmd) {
  Result r{0, ""};
  FILE* p = ::popen(("timeout -s KILL 120 " + cmd + " 2>&1").c_str(), "r");
  REQUIRE(p);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

void expect(const std::string& cmd, int status, const std::string& message) {
  Result r = run(cmd);
  INFO(cmd << "\n" << r.out);
  CHECK(r.status == status);
  CHECK(r.out.find(message) != std::string::npos);
}

std::string build(const std::string& rel) {
  const char* b = std::getenv("KILN_BUILD_ROOT");
  return std::string(b ? b : ".") + "/" + rel;
}

}  // namespace

TEST_CASE("programs: bad flags are a message and status 2") {
  const std::string exe = build("examples/train_cifar10");
  if (!fs::exists(exe)) return;
  expect(exe + " --devices 99999999999", 2, "--devices expects an integer in [1, 4096], got '99999999999'");
  expect(exe + " --num-workers 100000", 2, "--num-workers expects an integer in [0, 1024], got '100000'");
  expect(exe + " --epochs 0", 2, "--epochs expects an integer in [1, 100000], got '0'");
  expect(exe + " --epochs 9223372036854775808", 2, "--epochs expects an integer");
  expect(exe + " --batch-size -5", 2, "--batch-size expects an integer in [1, 1048576], got '-5'");
  expect(exe + " --lr nan", 2, "--lr expects a number");
  expect(exe + " --lr 0", 2, "--lr must be positive");
  expect(exe + " --max-steps 12abc", 2, "--max-steps expects an integer");
  expect(exe + " --dataset imagenet", 2, "--dataset must be cifar10 or fashion-mnist, got 'imagenet'");
  expect(exe + " --checkpoint", 2, "--checkpoint needs a value");
  expect(exe + " --frobnicate 3", 2, "unknown flag '--frobnicate'");
  expect(exe + " --devices 99999 --accelerator cpu", 2, "--devices expects an integer in [1, 4096]");

  const std::string run_exe = build("distributed/tools/kiln-run");
  if (fs::exists(run_exe)) {
    expect(run_exe + " --nproc_per_node 99999999999 true", 2, "--nproc_per_node expects an integer in [1, 4096]");
    expect(run_exe + " --master_port 70000 true", 2, "--master_port expects an integer in [0, 65535], got '70000'");
    expect(run_exe + " --timeout -1 true", 2, "--timeout expects an integer");
    expect(run_exe + " --nnodes 2 --node_rank 2 true", 2, "--node_rank 2 is not below --nnodes 2");
  }
}

TEST_CASE("programs: bad files are a message and status 1") {
  const std::string consolidate = build("fabric/tools/kiln-consolidate");
  if (!fs::exists(consolidate)) return;
  fs::path dir = fs::temp_directory_path() / ("kiln_program_inputs_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  const std::string out = (dir / "out.safetensors").string();
  expect(consolidate + " " + (dir / "fifo").string() + " " + out, 1, "is a FIFO (named pipe), not a regular file");
  expect(consolidate + " /dev/zero " + out, 1, "is a character device, not a regular file");
  expect(consolidate + " " + dir.string() + " " + out, 1, "is a directory");
  const char* src = std::getenv("KILN_SOURCE_ROOT");
  const fs::path hostile = fs::path(src ? src : ".") / "tests" / "hostile" / "files";
  expect(consolidate + " " + (hostile / "ix_group_sizes_negative" / "last.safetensors").string() + " " + out, 1,
         "$.group_sizes[0] must be an integer in [0, 16777216], got integer -1");
  expect(consolidate + " " + (hostile / "ix_world_size_zero" / "last.safetensors").string() + " " + out, 1,
         "$.world_size must be an integer in [1, 1048576], got integer 0");
  expect(consolidate + " " + (hostile / "sharded_valid" / "last.safetensors").string() + " " + out, 0,
         "kiln-consolidate: wrote");
  fs::remove_all(dir);
}

TEST_CASE("programs: train_cifar10 refuses a resumed epoch outside its run and bad checkpoint paths") {
  const std::string exe = build("examples/train_cifar10");
  if (!fs::exists(exe) || !fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: train_cifar10 or Fashion-MNIST (dataset-fashion-mnist) is missing");
    return;
  }
  fs::path dir = fs::temp_directory_path() / ("kiln_program_resume_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string common = exe +
                             " --dataset fashion-mnist --accelerator cpu --num-workers 0 --batch-size 32 "
                             "--max-train-batches 2 --max-eval-batches 1 --log-dir " +
                             (dir / "logs").string();
  const std::string ckpt = (dir / "ck" / "last.safetensors").string();
  Result first = run(common + " --epochs 3 --checkpoint " + ckpt);
  REQUIRE_MESSAGE(first.status == 0, first.out);

  // The checkpoint with its epoch entry replaced.
  auto with_epoch = [&](const std::string& name, const nlohmann::json& entry) {
    auto file = kiln::load_safetensors(ckpt);
    auto state = nlohmann::json::parse(file.metadata.at("kiln.state"));
    state["epoch"] = entry;
    file.metadata["kiln.state"] = state.dump();
    std::string path = (dir / name).string();
    kiln::save_safetensors(path, file.tensors, file.metadata);
    return path;
  };
  const std::string resume =
      common + " --epochs 3 --checkpoint " + (dir / "ck2" / "last.safetensors").string() + " --resume ";
  expect(resume + with_epoch("max.safetensors", {{"kind", "int"}, {"value", INT64_MAX - 1}}), 1,
         "the checkpoint says it finished epoch 9223372036854775806, but it was saved by a run of 3 epochs (0..2)");
  expect(resume + with_epoch("big.safetensors", {{"kind", "float"}, {"value", 1e30}}), 1,
         "$.epoch.value must be an integer, got number 1e+30");
  expect(resume + with_epoch("neg.safetensors", {{"kind", "float"}, {"value", -1e6}}), 1,
         "the checkpoint says it finished epoch -1000000");
  expect(resume + with_epoch("minus.safetensors", {{"kind", "int"}, {"value", -1}}), 1,
         "the checkpoint says it finished epoch -1");
  expect(resume + with_epoch("string.safetensors", {{"kind", "int"}, {"value", "2"}}), 1,
         "$.epoch.value must be an integer, got string \"2\"");
  expect(resume + "/dev/zero", 1, "/dev/zero is a character device, not a regular file");
  expect(resume + dir.string(), 1, "is a directory");
  // A checkpoint folder under a regular file cannot be created.
  std::fclose(std::fopen((dir / "plain").c_str(), "w"));
  expect(common + " --epochs 1 --checkpoint " + (dir / "plain" / "ck" / "last.safetensors").string(), 1,
         "cannot create the folder");
  fs::remove_all(dir);
}
