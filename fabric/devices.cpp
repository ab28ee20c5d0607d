#include "fabric/devices.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "core/error.h"

namespace kiln {

namespace {

// More processes than this on one node is a typo, not a plan.
constexpr long kMaxDevices = 4096;

[[noreturn]] void bad_spec(const std::string& spec) {
  fail("Fabric: invalid devices \"", spec, "\"; use \"auto\", a count such as \"2\" (\"-1\": every GPU), ",
       "or GPU ids such as \"0,2\" or {0, 2}");
}

long parse_number(const std::string& spec, const std::string& s) {
  if (s.empty() || s.find_first_not_of("-0123456789") != std::string::npos) bad_spec(spec);
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < -1 || v > kMaxDevices)
    fail("Fabric: devices \"", spec, "\" is out of range; a count or id is between 0 and ", kMaxDevices,
         " (\"-1\": every GPU)");
  return v;
}

}  // namespace

Devices::Devices(const std::vector<int>& ids) : spec_(1, '[') {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) spec_ += ',';
    spec_ += std::to_string(ids[i]);
  }
  spec_ += ']';
}

namespace detail {

DevicePlan plan_devices(const Devices& devices, bool gpu, int visible_gpus) {
  const std::string& spec = devices.str();
  DevicePlan plan;
  std::string s = spec;
  std::erase_if(s, [](char c) { return c == ' '; });
  bool list = s.find(',') != std::string::npos || s.find('[') != std::string::npos;
  std::vector<int> ids;
  int count = 0;
  if (s == "auto") {
    plan.automatic = true;
    count = gpu ? std::max(visible_gpus, 1) : 1;
  } else if (list) {
    if (s.front() == '[') {
      if (s.back() != ']') bad_spec(spec);
      s = s.substr(1, s.size() - 2);
    }
    size_t pos = 0;
    while (pos < s.size()) {
      size_t end = s.find(',', pos);
      std::string part = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      if (!part.empty()) {
        long id = parse_number(spec, part);
        if (id < 0) bad_spec(spec);
        ids.push_back(int(id));
      }
      if (end == std::string::npos) break;
      pos = end + 1;
    }
    KILN_CHECK(!ids.empty(), "Fabric: devices \"", spec, "\" lists no device; use \"auto\" or a count such as \"1\"");
    KILN_CHECK(gpu, "Fabric: devices \"", spec, "\" lists GPU ids, but the accelerator is the CPU; on the CPU ",
               "devices is a process count such as \"", ids.size(), "\"");
    std::vector<int> sorted = ids;
    std::sort(sorted.begin(), sorted.end());
    KILN_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "Fabric: devices \"", spec,
               "\" names a GPU twice; each process needs its own");
    for (int id : ids)
      KILN_CHECK(id < visible_gpus, "Fabric: devices \"", spec, "\" selects cuda:", id, " but this machine has ",
                 visible_gpus, " GPU", visible_gpus == 1 ? "" : "s", " (ids 0 to ", visible_gpus - 1,
                 "); CUDA_VISIBLE_DEVICES renumbers them");
    count = int(ids.size());
  } else {
    long n = parse_number(spec, s);
    if (n == -1) {
      KILN_CHECK(gpu, "Fabric: devices \"-1\" means every GPU, but the accelerator is the CPU; use a process "
                      "count such as \"2\"");
      n = visible_gpus;
    }
    KILN_CHECK(n > 0, "Fabric: devices \"", spec, "\" selects no device; use \"auto\" or \"1\"");
    KILN_CHECK(!gpu || n <= visible_gpus, "Fabric: devices \"", spec, "\" asks for ", n, " GPUs but this machine has ",
               visible_gpus);
    count = int(n);
  }
  plan.processes = count;
  if (gpu) {
    if (ids.empty())
      for (int i = 0; i < count; ++i) ids.push_back(i);
    plan.gpu_ids = ids;
  }
  return plan;
}

}  // namespace detail
}  // namespace kiln
