// Fabric under a launcher's job (torchrun, mpirun, srun): whatever the strategy string, it joins
// the job; "auto" becomes "ddp" when WORLD_SIZE > 1, and "single_device" is an error.
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>

#include "fabric/fabric.h"
#include "helpers.h"

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const kiln::Error& e) { return e.what(); }
  return "no error";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Sets environment variables for one scope and restores what was there.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved_[k] = old ? std::optional<std::string>(old) : std::nullopt;
      ::setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v)
        ::setenv(k.c_str(), v->c_str(), 1);
      else
        ::unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

}  // namespace

TEST_CASE("under a launcher's job, strategy \"auto\" becomes \"ddp\"; \"single_device\" is an error") {
  CHECK(kiln::Fabric({.accelerator = "cpu"}).strategy() == "single_device");
  for (auto vars : std::vector<std::map<std::string, std::string>>{
           {{"RANK", "1"},
            {"WORLD_SIZE", "2"},
            {"LOCAL_RANK", "1"},
            {"LOCAL_WORLD_SIZE", "2"},
            {"MASTER_ADDR", "127.0.0.1"},
            {"MASTER_PORT", "29500"}},
           {{"OMPI_COMM_WORLD_RANK", "0"},
            {"OMPI_COMM_WORLD_SIZE", "2"},
            {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
            {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}},
           {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}, {"SLURM_NNODES", "1"}}}) {
    CAPTURE(vars.begin()->first);
    ScopedEnv env(vars);
    CHECK(kiln::Fabric({.accelerator = "cpu"}).strategy() == "ddp");
    CHECK(kiln::Fabric({.accelerator = "cpu", .devices = "auto", .strategy = "zero"}).strategy() == "zero");
    CHECK(has(error_of([] { kiln::Fabric({.accelerator = "cpu", .strategy = "single_device"}); }),
              "each would train alone"));
  }
  // A launcher's world of one is a single process.
  ScopedEnv one({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}});
  CHECK(kiln::Fabric({.accelerator = "cpu"}).strategy() == "single_device");
}
