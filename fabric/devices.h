// Fabric's `devices` option, as Lightning takes it: "auto" (every visible GPU; one process on the
// CPU), a count ("2" or 2; "-1": every GPU), or GPU ids ("0,2", "1," or {0, 2}) that select those
// GPUs, local rank i on the i-th. plan_devices() checks it against the machine.
//   kiln::Fabric fabric({.accelerator = "gpu", .devices = {0, 2}});   // cuda:0 and cuda:2
#pragma once

#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace kiln {

class Devices {
 public:
  Devices() : spec_("auto") {}
  Devices(const char* spec) : spec_(spec ? spec : "") {}
  Devices(std::string spec) : spec_(std::move(spec)) {}
  Devices(int count) : spec_(std::to_string(count)) {}
  Devices(std::initializer_list<int> ids) : Devices(std::vector<int>(ids)) {}
  Devices(const std::vector<int>& ids);  // an id list, even of one id

  const std::string& str() const { return spec_; }
  bool operator==(const std::string& s) const { return spec_ == s; }
  bool operator==(const char* s) const { return spec_ == s; }

 private:
  std::string spec_;
};

inline std::ostream& operator<<(std::ostream& os, const Devices& d) { return os << d.str(); }

namespace detail {

// What `devices` asks of this machine.
struct DevicePlan {
  bool automatic = false;    // "auto": a launcher's process count is taken as it is
  int processes = 1;         // per node
  std::vector<int> gpu_ids;  // the GPU of local rank i (empty on the CPU)
};

// Throws a kiln::Error for a malformed spec, ids a CPU cannot take, GPUs that are not there.
DevicePlan plan_devices(const Devices& devices, bool gpu, int visible_gpus);

}  // namespace detail
}  // namespace kiln
