#include "core/device.h"

#include <charconv>

#include "core/error.h"
#include "kernels/backend.h"

namespace kiln {

std::string Device::str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }

Device Device::parse(std::string_view s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  for (std::string_view prefix : {"cuda:", "gpu:"}) {
    if (s.substr(0, prefix.size()) == prefix) {
      std::string_view num = s.substr(prefix.size());
      int idx = -1;
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), idx);
      if (ec == std::errc() && p == num.data() + num.size() && idx >= 0) return cuda(idx);
    }
  }
  fail("Device: cannot parse '", s, "'; expected \"cpu\", \"cuda\" or \"cuda:N\"");
}

void set_num_threads(int n) { kernels::set_num_threads(n); }
int get_num_threads() { return kernels::get_num_threads(); }
void use_deterministic_algorithms(bool on) { kernels::set_deterministic(on); }
bool are_deterministic_algorithms_enabled() { return kernels::deterministic(); }

namespace cpu {
MemoryStats memory_stats() {
  const kernels::CpuMemoryStats s = kernels::cpu_memory_stats();
  return {s.allocated, s.peak_allocated, s.num_allocs};
}
void reset_peak_memory_stats() { kernels::reset_cpu_peak_memory(); }
}  // namespace cpu

namespace cuda {
bool is_available() { return kernels::cuda_device_count() > 0; }
int device_count() { return kernels::cuda_device_count(); }
void synchronize() {
  if (auto* b = kernels::cuda_backend(); b && kernels::cuda_device_count() > 0) b->synchronize();
}
}  // namespace cuda

}  // namespace kiln
