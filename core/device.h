// Where a tensor lives: the CPU or a CUDA device by index ("cpu", "cuda:0").
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace kiln {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  static Device parse(std::string_view s);  // "cpu", "cuda", "cuda:1", "gpu"

  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const;
  bool operator==(const Device&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

// Threads used by CPU kernels (kiln's own pool; idle threads spin for at most KILN_SPIN_US
// microseconds, 50 by default, then sleep). Defaults to OMP_NUM_THREADS, else the CPUs this process
// may run on. Call it between operations, not from inside one.
void set_num_threads(int n);
int get_num_threads();

// As torch.use_deterministic_algorithms: when on, every kernel gives bit-identical results from
// run to run on the same machine (on a GPU, cuDNN's convolution algorithms that accumulate with
// atomics are left out, at some cost in speed). Off by default. Set it before the first
// convolution of each shape: the choice is made once per shape.
void use_deterministic_algorithms(bool on);
bool are_deterministic_algorithms_enabled();

namespace cpu {
// CPU tensor storage kiln has allocated: bytes in use now (rounded block sizes), the peak since
// reset_peak_memory_stats(), and the number of allocations so far (torch.cuda's names, for RAM).
struct MemoryStats {
  size_t allocated = 0;
  size_t peak_allocated = 0;
  uint64_t num_allocs = 0;
};
MemoryStats memory_stats();
void reset_peak_memory_stats();
}  // namespace cpu

namespace cuda {
// True when kiln was built with its CUDA backend and this machine has at least one usable GPU.
bool is_available();
int device_count();
// Waits for all work queued on the current device (a no-op without CUDA).
void synchronize();
}  // namespace cuda

}  // namespace kiln
