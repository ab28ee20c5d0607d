// Backend selection of init_process_group: "gloo", "nccl", "auto", and clear errors for a backend
// this build or machine cannot serve. The NCCL collectives themselves are in the gpu suite.
#include <doctest/doctest.h>

#include "distributed/distributed.h"
#include "helpers.h"

namespace kd = kiln::distributed;
using namespace std::chrono_literals;

TEST_CASE("init_process_group: backends this build or machine lacks are explained") {
  kd::ProcessGroupOptions o;
  o.timeout = 5s;
  o.backend = "mpi";
  CHECK_THROWS_WITH_AS(kd::init_process_group(o), doctest::Contains("unknown backend \"mpi\""), kiln::Error);
  if (!kd::nccl_is_built()) {
    o.backend = "nccl";
    CHECK_THROWS_WITH_AS(kd::init_process_group(o), doctest::Contains("built without its CUDA backend"), kiln::Error);
  } else if (!kiln::cuda::is_available()) {
    o.backend = "nccl";
    CHECK_THROWS_WITH_AS(kd::init_process_group(o), doctest::Contains("needs a GPU"), kiln::Error);
  }
  // "auto" on a machine without a GPU is Gloo alone.
  if (!kiln::cuda::is_available()) {
    o.backend = "auto";
    auto comm = kd::init_process_group(o);
    CHECK(comm->backend() == "gloo");
    auto t = kiln::tensor(std::vector<float>{1, 2});
    comm->all_reduce(t);
    kiln::test::check_values(t, {1, 2});
    kd::destroy_process_group();
  }
}
