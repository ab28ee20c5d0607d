// Fabric's `devices` in Lightning's forms: "auto" is every visible GPU (one process on the CPU),
// a count, "-1", or id lists that select those GPUs.
#include <functional>

#include "fabric/fabric.h"
#include "helpers.h"

namespace {

using kiln::Devices;
using kiln::detail::plan_devices;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const kiln::Error& e) { return e.what(); }
  return "no error";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("devices on the CPU: a process count") {
  auto p = plan_devices("auto", false, 0);
  CHECK(p.automatic);
  CHECK(p.processes == 1);
  CHECK(p.gpu_ids.empty());
  CHECK(plan_devices("3", false, 0).processes == 3);
  CHECK(plan_devices(2, false, 0).processes == 2);
  CHECK(has(error_of([] { plan_devices("0,1", false, 0); }), "lists GPU ids, but the accelerator is the CPU"));
  CHECK(has(error_of([] { plan_devices(Devices{0, 1}, false, 0); }), "lists GPU ids"));
  CHECK(has(error_of([] { plan_devices("-1", false, 0); }), "every GPU, but the accelerator is the CPU"));
  CHECK(has(error_of([] { plan_devices("0", false, 0); }), "selects no device"));
  CHECK(has(error_of([] { plan_devices("99999999999", false, 0); }), "out of range"));
  CHECK(has(error_of([] { plan_devices("two", false, 0); }), "invalid devices \"two\""));
  CHECK(has(error_of([] { plan_devices("1,x", false, 0); }), "invalid devices"));
}

TEST_CASE("devices on GPUs: \"auto\" is every visible GPU, ids select GPUs") {
  auto all = plan_devices("auto", true, 4);
  CHECK(all.processes == 4);
  CHECK(all.gpu_ids == std::vector<int>{0, 1, 2, 3});
  CHECK(plan_devices("2", true, 4).gpu_ids == std::vector<int>{0, 1});
  CHECK(plan_devices("-1", true, 4).processes == 4);
  auto picked = plan_devices("0,2", true, 4);
  CHECK(picked.processes == 2);
  CHECK(picked.gpu_ids == std::vector<int>{0, 2});
  CHECK(plan_devices(Devices{3, 1}, true, 4).gpu_ids == std::vector<int>{3, 1});
  CHECK(plan_devices(Devices{1}, true, 4).gpu_ids == std::vector<int>{1});  // an id, not a count
  CHECK(plan_devices("1,", true, 4).gpu_ids == std::vector<int>{1});
  CHECK(plan_devices("[0, 3]", true, 4).gpu_ids == std::vector<int>{0, 3});
  CHECK(has(error_of([] { plan_devices("5", true, 4); }), "asks for 5 GPUs but this machine has 4"));
  CHECK(has(error_of([] { plan_devices("0,4", true, 4); }), "selects cuda:4 but this machine has 4 GPUs"));
  CHECK(has(error_of([] { plan_devices("1,1", true, 4); }), "names a GPU twice"));
  CHECK(has(error_of([] { plan_devices("[]", true, 4); }), "lists no device"));
}
