// Saves that fail in one process: a full disk (through AtomicFile's write-fault seam) leaves the
// previous checkpoint intact and says "no space"; a save removes the litter of earlier saves that
// were killed (only names kiln writes, beside that checkpoint). test_save_kills does the same with
// real kills, real full disks and two processes.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>

#include "fabric/atomic_file.h"
#include "fabric/checkpoint.h"
#include "fabric/checkpoint_io.h"
#include "fabric/fabric.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path fresh(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kiln_save_faults_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::set<std::string> names(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

void touch(const fs::path& p) { std::ofstream(p) << "x"; }

// A pid no process has now.
long dead_pid() {
  for (long pid = 4000000; pid > 1000; --pid)
    if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) return pid;
  return 0;
}

}  // namespace

TEST_CASE("save faults: a full disk leaves the previous checkpoint and says \"no space\"") {
  auto dir = fresh("enospc");
  const std::string path = (dir / "c.safetensors").string();
  auto model = std::make_shared<nn::Linear>(32, 32);
  save_checkpoint(path, {{"model", model}, {"epoch", int64_t(1)}});
  for (uint64_t after : {uint64_t(0), uint64_t(100), uint64_t(3000)}) {
    INFO("the disk fills after " << after << " bytes");
    detail::set_write_fault("c.safetensors", after, ENOSPC);
    try {
      save_checkpoint(path, {{"model", model}, {"epoch", int64_t(2)}});
      FAIL("the save succeeded on a full disk");
    } catch (const Error& e) {
      std::string msg = e.what();
      CHECK(msg.find("no space left on the device") != std::string::npos);
      CHECK(msg.find("the previous " + path + " is left as it was") != std::string::npos);
    }
    detail::clear_write_fault();
    State st{{"epoch", int64_t(0)}};
    load_checkpoint(path, st, false);
    CHECK(std::get<int64_t>(st["epoch"]) == 1);
    CHECK(names(dir) == std::set<std::string>{"c.safetensors"});
  }
  // Fabric's save (one process) fails the same way.
  Fabric fabric({.accelerator = "cpu"});
  detail::set_write_fault("c.safetensors", 10, EDQUOT);
  CHECK_THROWS_WITH_AS(fabric.save(path, {{"epoch", int64_t(3)}}), doctest::Contains("no space"), Error);
  detail::clear_write_fault();
  detail::set_write_fault("c.safetensors", 10, EIO);
  CHECK_THROWS_WITH_AS(fabric.save(path, {{"epoch", int64_t(3)}}),
                       doctest::Contains("Input/output error; the previous"), Error);
  detail::clear_write_fault();
  fabric.save(path, {{"epoch", int64_t(3)}});
  CHECK(names(dir) == std::set<std::string>{"c.safetensors"});
  fs::remove_all(dir);
}

TEST_CASE("save faults: a save removes the litter of killed saves and nothing else") {
  auto dir = fresh("litter");
  const long dead = dead_pid();
  REQUIRE(dead > 0);
  const std::string d = std::to_string(dead), live = std::to_string(::getppid());
  const std::set<std::string> litter = {
      "last.safetensors.tmp." + d + ".17",         // a killed single-file save
      "last.0123456789ab.rank0-of-2.safetensors",  // shards never indexed
      "last.0123456789ab.rank1-of-2.safetensors",
      "last.fedcba987654.rank1-of-2.safetensors.tmp." + d + ".3",  // a shard in the making
  };
  const std::set<std::string> kept = {
      "notes.txt",
      "last.safetensors.bak",
      "last.tmp.1.2",
      "other.0123456789ab.rank0-of-2.safetensors",
      "last.0123456789ab.rank0-of-2.safetensors.old",
      "last.0123456789AB.rank0-of-2.safetensors",
      "last.safetensors.tmp.x.1",
      "last.safetensors.tmp." + live + ".5",  // its process still runs
      "best.safetensors.tmp." + d + ".1",     // another checkpoint's
  };
  for (const auto& n : litter) touch(dir / n);
  for (const auto& n : kept) touch(dir / n);
  const std::string path = (dir / "last.safetensors").string();
  save_checkpoint(path, {{"epoch", int64_t(1)}});
  std::set<std::string> want = kept;
  want.insert("last.safetensors");
  CHECK(names(dir) == want);

  // Shards that an index names are the checkpoint: they stay.
  auto sharded = fresh("litter_sharded");
  const std::string index = (sharded / "last.safetensors").string();
  detail::ShardContext ctx{.rank = 0, .world_size = 1};
  detail::save_checkpoint_shard(index, "00000000abcd", {{"epoch", int64_t(1)}}, ctx);
  detail::save_checkpoint_index(index, "00000000abcd", {{"epoch", int64_t(1)}}, ctx);
  touch(sharded / "last.0123456789ab.rank0-of-1.safetensors");
  CHECK(detail::remove_checkpoint_litter(index) == 1);
  CHECK(names(sharded) == std::set<std::string>{"last.safetensors", "last.00000000abcd.rank0-of-1.safetensors"});
  // A damaged index: nothing is deleted on a guess.
  touch(sharded / "last.0123456789ab.rank0-of-1.safetensors");
  {
    std::fstream f(index, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f << "}}}}";
  }
  CHECK(detail::remove_checkpoint_litter(index) == 0);
  CHECK(fs::exists(sharded / "last.0123456789ab.rank0-of-1.safetensors"));
  // A full checkpoint saved over a sharded one takes its shards with it.
  save_checkpoint(index, {{"epoch", int64_t(2)}});
  CHECK(names(sharded) == std::set<std::string>{"last.safetensors"});
  fs::remove_all(dir);
  fs::remove_all(sharded);
}
