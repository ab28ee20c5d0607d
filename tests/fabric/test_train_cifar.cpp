// Integration: the reference program trains on a Fashion-MNIST slice, writes a checkpoint and logs,
// reaches well above chance, and resumes from its checkpoint with the epoch after the saved one.
#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

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
  for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                        "t10k-labels-idx1-ubyte.gz"})
    fs::create_symlink(fs::path("/usr/share/datasets/fashion-mnist") / f, dir / "fm" / f);
  std::string common = exe + " --data-dir " + (dir / "fm").string() +
                       " --num-workers 1 --batch-size 64 --max-train-batches 40 "
                       "--max-eval-batches 8 --checkpoint " +
                       (dir / "ck" / "last.safetensors").string() + " --log-dir " + (dir / "logs").string();
  auto first = run(common + " --epochs 2");
  REQUIRE(first.status == 0);
  // The original program's lines: 0-based epochs and batches, the batch's loss with 4 decimals,
  // accuracies with 1.
  CHECK(std::regex_search(first.out, std::regex(R"(\nEpoch 0 \| Batch 0 \| Loss: \d\.\d{4} \| Acc: \d+\.\d%\n)")));
  CHECK(std::regex_search(first.out, std::regex(R"(\nEpoch 0 \| Val Acc: \d+\.\d%\n)")));
  CHECK(std::regex_search(first.out, std::regex(R"(\nEpoch 1 \| Val Acc: \d+\.\d%\n)")));
  CHECK(first.out.find("Epoch 2 | Val Acc:") == std::string::npos);
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
  CHECK(resumed.out.find("Resumed from " + (dir / "ck" / "last.safetensors").string() + " after epoch 1") !=
        std::string::npos);
  CHECK(resumed.out.find("Epoch 1 | Val Acc:") == std::string::npos);
  CHECK(resumed.out.find("Epoch 2 | Val Acc:") != std::string::npos);
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
                    "-u MASTER_PORT -u NODE_RANK -u GROUP_RANK " +
                    exe +
                    " --dataset fashion-mnist --accelerator cpu --devices 2 --strategy ddp "
                    "--num-workers 0 --batch-size 32 --max-steps 12 --max-eval-batches 2 --epochs 1 "
                    "--checkpoint " +
                    (dir / "ck" / "last.safetensors").string() + " --log-dir " + (dir / "logs").string();
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
  CHECK(count("Epoch 0 | Val Acc:") == 1);
  CHECK(count("Epoch 0 | Batch 0 | Loss: ") == 1);
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
  // The DDP checkpoint resumes in a single process.
  auto single = run(exe +
                    " --dataset fashion-mnist --accelerator cpu --num-workers 0 --batch-size 32 "
                    "--max-train-batches 2 --max-eval-batches 2 --epochs 2 --resume " +
                    (dir / "ck" / "last.safetensors").string() + " --checkpoint " +
                    (dir / "ck1" / "last.safetensors").string() + " --log-dir " + (dir / "logs1").string());
  REQUIRE(single.status == 0);
  CHECK(single.out.find("Resumed from") != std::string::npos);
  CHECK(single.out.find("Epoch 1 | Val Acc:") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("train_cifar10: strategy zero, launched by Fabric and by kiln-run; sharded checkpoint, "
          "kiln-consolidate, a single-process resume from the shards and a sharded one from that") {
  const char* build = std::getenv("KILN_BUILD_ROOT");
  std::string root = build ? build : ".";
  std::string exe = root + "/examples/train_cifar10", kiln_run = root + "/distributed/tools/kiln-run";
  std::string consolidate = root + "/fabric/tools/kiln-consolidate";
  if (!fs::exists(exe) || !fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: train_cifar10 or Fashion-MNIST is missing");
    return;
  }
  if (!fs::exists(kiln_run)) {
    MESSAGE("skipped: kiln was built without distributed/ (no kiln-run)");
    return;
  }
  fs::path dir = fs::temp_directory_path() / ("kiln_train_cifar10_zero_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string clean = "env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u LOCAL_WORLD_SIZE -u MASTER_ADDR "
                            "-u MASTER_PORT -u NODE_RANK -u GROUP_RANK ";
  auto flags = [&](const std::string& ck) {
    return " --dataset fashion-mnist --accelerator cpu --num-workers 0 --batch-size 32 "
           "--max-eval-batches 2 --checkpoint " +
           (dir / ck / "last.safetensors").string() + " --log-dir " + (dir / ("logs_" + ck)).string();
  };
  auto summary_of = [](const std::string& out) {
    auto pos = out.rfind("{\"");
    REQUIRE(pos != std::string::npos);
    return nlohmann::json::parse(out.substr(pos, out.find('\n', pos) - pos));
  };

  // Fabric::launch() starts rank 1 itself.
  auto launched = run(clean + exe + " --devices 2 --strategy zero --max-steps 12 --epochs 1" + flags("ck"));
  REQUIRE(launched.status == 0);
  auto s1 = summary_of(launched.out);
  CHECK(s1.at("world_size") == 2);
  CHECK(s1.at("steps") == 12);
  CHECK(s1.at("ranks_in_sync") == true);
  std::string index = (dir / "ck" / "last.safetensors").string();
  CHECK(kiln::is_sharded_checkpoint(index));
  size_t shard_files = 0;
  for (auto& e : fs::directory_iterator(dir / "ck"))
    shard_files += e.path().filename().string().find(".rank") != std::string::npos;
  CHECK(shard_files == 2);

  // The consolidated checkpoint is a full one, with the DDP names and shapes.
  auto cons = run(consolidate + " " + index + " " + (dir / "full.safetensors").string());
  REQUIRE(cons.status == 0);
  auto full = kiln::load_safetensors((dir / "full.safetensors").string());
  CHECK(full.tensors.count("model.conv1.weight"));
  REQUIRE(full.tensors.count("optimizer.state.0.exp_avg"));
  CHECK(full.tensors.at("optimizer.state.0.exp_avg").sizes() == kiln::Shape{32, 1, 3, 3});
  CHECK(full.tensors.at("optimizer.state.9.exp_avg_sq").sizes() == kiln::Shape{10});
  CHECK(full.tensors.count("optimizer.state.9.step"));
  CHECK_FALSE(kiln::is_sharded_checkpoint((dir / "full.safetensors").string()));

  // kiln-run sets the environment; the program's Fabric joins it ("fsdp" is ZeRO-2 too).
  auto by_run =
      run(clean + kiln_run + " --nproc_per_node 2 " + exe + " --strategy fsdp --max-steps 8 --epochs 1" + flags("ck2"));
  REQUIRE(by_run.status == 0);
  CHECK(by_run.out.find("runs as ZeRO stage 2") != std::string::npos);
  auto s2 = summary_of(by_run.out);
  CHECK(s2.at("world_size") == 2);
  CHECK(s2.at("ranks_in_sync") == true);

  // One process resumes from the two ranks' shards (consolidated in memory) and trains on.
  auto resumed = run(clean + exe + " --max-train-batches 4 --epochs 2 --resume " +
                     (dir / "ck2" / "last.safetensors").string() + flags("ck3"));
  REQUIRE(resumed.status == 0);
  CHECK(resumed.out.find("Resumed from") != std::string::npos);
  CHECK(resumed.out.find("Epoch 1 | Val Acc:") != std::string::npos);
  CHECK(summary_of(resumed.out).at("world_size") == 1);

  // And the other way: two sharded processes resume from that single-process (full) checkpoint.
  auto sharded = run(clean + kiln_run + " --nproc_per_node 2 " + exe +
                     " --strategy zero "
                     "--max-train-batches 4 --epochs 3 --resume " +
                     (dir / "ck3" / "last.safetensors").string() + flags("ck4"));
  REQUIRE(sharded.status == 0);
  CHECK(sharded.out.find("Resumed from") != std::string::npos);
  CHECK(sharded.out.find("Epoch 2 | Val Acc:") != std::string::npos);
  CHECK(summary_of(sharded.out).at("ranks_in_sync") == true);
  fs::remove_all(dir);
}

namespace {
// A small CIFAR-10 in the binary layout under dir/data/cifar-10-batches-bin: 26 images per
// training file (130, two batches of the original's 128) and 40 test images, each label's images
// a brightness of its own so that the network can learn something.
void write_small_cifar10(const fs::path& dir) {
  fs::path d = dir / "data" / "cifar-10-batches-bin";
  fs::create_directories(d);
  std::mt19937 rng(0);
  auto write = [&](const std::string& name, int n) {
    std::ofstream f(d / name, std::ios::binary);
    for (int i = 0; i < n; ++i) {
      const int label = int(rng() % 10);
      f.put(char(label));
      for (int k = 0; k < 3072; ++k) f.put(char((label * 25 + int(rng() % 20)) % 256));
    }
  };
  for (int b = 1; b <= 5; ++b) write("data_batch_" + std::to_string(b) + ".bin", 26);
  write("test_batch.bin", 40);
}
}  // namespace

TEST_CASE("fabric_cifar10: the seed's program prints its lines, saves each epoch, and resumes; "
          "kiln-run's LT_* variables choose the strategy") {
  const char* build = std::getenv("KILN_BUILD_ROOT");
  std::string root = build ? build : ".";
  std::string exe = root + "/examples/fabric_cifar10", resume = root + "/examples/fabric_resume";
  if (!fs::exists(exe) || !fs::exists(resume)) {
    MESSAGE("skipped: the examples are not built (meson option examples=false?)");
    return;
  }
  fs::path dir = fs::temp_directory_path() / ("kiln_fabric_cifar10_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  write_small_cifar10(dir);
  const std::string clean = "cd " + dir.string() +
                            " && env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u LOCAL_WORLD_SIZE "
                            "-u MASTER_ADDR -u MASTER_PORT -u NODE_RANK -u GROUP_RANK ";
  auto r = run(clean + exe);
  REQUIRE(r.status == 0);
  for (int epoch = 0; epoch < 20; ++epoch) {
    CAPTURE(epoch);
    const std::string e = std::to_string(epoch);
    CHECK(std::regex_search(r.out,
                            std::regex("(^|\\n)Epoch " + e + R"( \| Batch 0 \| Loss: \d\.\d{4} \| Acc: \d+\.\d%\n)")));
    CHECK(std::regex_search(r.out, std::regex("\\nEpoch " + e + R"( \| Val Acc: \d+\.\d%\n)")));
  }
  CHECK(r.out.find("Epoch 20 |") == std::string::npos);
  CHECK(r.out.find("Batch 1 |") == std::string::npos);  // printed at batch_idx % 100 == 0 only
  kiln::State nothing;
  auto saved = kiln::load_checkpoint((dir / "checkpoint.ckpt").string(), nothing, false);
  CHECK(std::get<int64_t>(saved.at("epoch")) == 19);
  CHECK(saved.count("model.fc2.weight"));

  auto res = run(clean + resume);
  REQUIRE(res.status == 0);
  CHECK(res.out.find("Resuming after epoch 19") != std::string::npos);

  // The launcher chooses the strategy (kiln-run's --strategy sets LT_STRATEGY): two processes,
  // one console copy of each line, one checkpoint.
  std::string kiln_run = root + "/distributed/tools/kiln-run";
  if (fs::exists(kiln_run)) {
    fs::remove(dir / "checkpoint.ckpt");
    auto ddp = run(clean + "LT_STRATEGY=ddp " + kiln_run + " --nproc_per_node 2 " + exe);
    REQUIRE(ddp.status == 0);
    size_t n = 0;
    for (size_t p = ddp.out.find("Epoch 19 | Val Acc:"); p != std::string::npos;
         p = ddp.out.find("Epoch 19 | Val Acc:", p + 1))
      ++n;
    CHECK(n == 1);
    CHECK(fs::exists(dir / "checkpoint.ckpt"));
  }
  // A launcher value Fabric does not know is an error, said before anything runs.
  auto conflict = run(clean + "LT_DEVICES=2 LT_ACCELERATOR=tpu " + exe);
  CHECK(conflict.status != 0);
  CHECK(conflict.out.find("fabric_cifar10: Fabric: unknown accelerator \"tpu\"") != std::string::npos);
  fs::remove_all(dir);
}
