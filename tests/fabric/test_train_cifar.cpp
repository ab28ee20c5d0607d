// Integration: the reference program trains on a Fashion-MNIST slice, writes a checkpoint and logs,
// reaches well above chance, and resumes from its checkpoint with the epoch after the saved one.
#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fabric/checkpoint.h"
#include "fabric/safetensors.h"
#include "helpers.h"

namespace fs = std::filesystem;

namespace {
struct Result {
  int status;
  std::string out;
};
Result run(const std::string& cmd) {
  Result r{0, ""};
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  r.status = ::pclose(p);
  MESSAGE(cmd << "\n" << r.out);
  return r;
}
}  // namespace

TEST_CASE("train_cifar10: short Fashion-MNIST run, checkpoint, logs, resume") {
  const char* build = std::getenv("KILN_BUILD_ROOT");
  std::string exe = std::string(build ? build : ".") + "/examples/train_cifar10";
  if (!fs::exists(exe)) {
    MESSAGE("skipped: " << exe << " is not built (meson option examples=false?)");
    return;
  }
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: Fashion-MNIST is not installed (scripts/setup.sh installs dataset-fashion-mnist)");
    return;
  }
  fs::path dir = fs::temp_directory_path() / ("kiln_train_cifar10_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  // --data-dir: a folder of its own holding the IDX files, as a user who copied them has.
  fs::create_directories(dir / "fm");
  for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    fs::create_symlink(fs::path("/usr/share/datasets/fashion-mnist") / f, dir / "fm" / f);
  std::string common = exe + " --data-dir " + (dir / "fm").string() + " --num-workers 1 --batch-size 64 --max-train-batches 40 "
                       "--max-eval-batches 8 --checkpoint " + (dir / "ck" / "last.safetensors").string() +
                       " --log-dir " + (dir / "logs").string();
  auto first = run(common + " --epochs 2");
  REQUIRE(first.status == 0);
  CHECK(first.out.find("Epoch 1 | Val Acc:") != std::string::npos);
  CHECK(first.out.find("Epoch 2 | Val Acc:") != std::string::npos);
  auto pos = first.out.find("Test accuracy: ");
  REQUIRE(pos != std::string::npos);
  double acc = std::atof(first.out.c_str() + pos + 15);
  CHECK(acc > 40.0);  // chance is 10%
  CHECK(first.out.find("training on Fashion-MNIST") != std::string::npos);
  // The last line is a JSON summary.
  auto last = first.out.rfind("{\"");
  REQUIRE(last != std::string::npos);
  auto summary = nlohmann::json::parse(first.out.substr(last, first.out.find('\n', last) - last));
  CHECK(summary.at("test_acc").get<double>() == doctest::Approx(acc).epsilon(1e-3));
  CHECK(summary.at("images_per_s").get<double>() > 0);
  CHECK(summary.at("device") == "cpu");
  CHECK(summary.at("precision") == "32-true");

  auto ck = kiln::load_safetensors((dir / "ck" / "last.safetensors").string());
  CHECK(ck.tensors.count("model.conv1.weight"));
  CHECK(ck.tensors.at("model.conv1.weight").sizes() == kiln::Shape{32, 1, 3, 3});
  CHECK(ck.tensors.count("optimizer.state.0.exp_avg"));
  CHECK(fs::exists(dir / "logs" / "train_cifar10" / "version_0" / "metrics.csv"));
  CHECK(fs::exists(dir / "logs" / "train_cifar10" / "version_0" / "hparams.yaml"));
  bool events = false;
  for (auto& e : fs::directory_iterator(dir / "logs" / "train_cifar10" / "version_0"))
    events |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  CHECK(events);

  auto resumed = run(common + " --epochs 3 --resume " + (dir / "ck" / "last.safetensors").string());
  REQUIRE(resumed.status == 0);
  CHECK(resumed.out.find("Resumed from") != std::string::npos);
  CHECK(resumed.out.find("Epoch 2 | Val Acc:") == std::string::npos);
  CHECK(resumed.out.find("Epoch 3 | Val Acc:") != std::string::npos);
  // Trained for --epochs 2, resumed with 3: the cosine schedule is re-planned over 3 epochs, so
  // epoch 3 does not run at the old plan's final rate (0).
  CHECK(resumed.out.find("the cosine schedule now spans 3 epochs") != std::string::npos);
  CHECK(fs::exists(dir / "logs" / "train_cifar10" / "version_1" / "metrics.csv"));
  kiln::State nothing;
  auto saved = kiln::load_checkpoint((dir / "ck" / "last.safetensors").string(), nothing, false);
  REQUIRE(saved.count("epochs"));
  CHECK(std::get<int64_t>(saved.at("epochs")) == 3);

  // Resuming a finished run trains nothing and reports the checkpoint's accuracy.
  auto done = run(common + " --epochs 3 --resume " + (dir / "ck" / "last.safetensors").string());
  REQUIRE(done.status == 0);
  CHECK(done.out.find("Nothing to train") != std::string::npos);
  CHECK(done.out.find("| Val Acc:") == std::string::npos);
  pos = done.out.find("Test accuracy: ");
  REQUIRE(pos != std::string::npos);
  CHECK(std::atof(done.out.c_str() + pos + 15) > 40.0);

  auto bad = run(exe + " --epochs nope");
  CHECK(bad.status != 0);
  CHECK(bad.out.find("usage:") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("train_cifar10: two processes with strategy ddp agree, and rank 0 alone writes") {
  const char* build = std::getenv("KILN_BUILD_ROOT");
  std::string exe = std::string(build ? build : ".") + "/examples/train_cifar10";
  if (!fs::exists(exe) || !fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: train_cifar10 or Fashion-MNIST is missing");
    return;
  }
  fs::path dir = fs::temp_directory_path() / ("kiln_train_cifar10_ddp_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  // No launcher environment: Fabric::launch() starts rank 1 itself.
  std::string cmd = "env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u LOCAL_WORLD_SIZE -u MASTER_ADDR "
                    "-u MASTER_PORT -u NODE_RANK -u GROUP_RANK " + exe +
                    " --dataset fashion-mnist --accelerator cpu --devices 2 --strategy ddp "
                    "--num-workers 0 --batch-size 32 --max-steps 12 --max-eval-batches 2 --epochs 1 "
                    "--checkpoint " + (dir / "ck" / "last.safetensors").string() +
                    " --log-dir " + (dir / "logs").string();
  auto r = run(cmd);
  if (r.out.find("this build lacks") != std::string::npos) {
    MESSAGE("skipped: kiln was built without distributed/");
    return;
  }
  REQUIRE(r.status == 0);
  // Rank 0 alone prints: one epoch line, one summary.
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t p = r.out.find(s); p != std::string::npos; p = r.out.find(s, p + 1)) ++n;
    return n;
  };
  CHECK(count("Epoch 1 | Val Acc:") == 1);
  auto pos = r.out.rfind("{\"");
  REQUIRE(pos != std::string::npos);
  auto summary = nlohmann::json::parse(r.out.substr(pos, r.out.find('\n', pos) - pos));
  CHECK(summary.at("world_size") == 2);
  CHECK(summary.at("steps") == 12);
  CHECK(summary.at("ranks_in_sync") == true);
  auto ck = kiln::load_safetensors((dir / "ck" / "last.safetensors").string());
  CHECK(ck.tensors.count("model.conv1.weight"));
  CHECK(fs::exists(dir / "logs" / "train_cifar10" / "version_0" / "metrics.csv"));
  CHECK_FALSE(fs::exists(dir / "logs" / "train_cifar10" / "version_1"));
  fs::remove_all(dir);
}
