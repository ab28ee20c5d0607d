// Reads KILN_CPU_ISA and the CPU's features once (see isa.h), and picks the per-instruction-set
// kernel table (simd_kernels.h).
#include "kernels/cpu/isa.h"

#include <cpuid.h>

#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu {
namespace {

Isa cap_from_env() {
  const char* env = std::getenv("KILN_CPU_ISA");
  if (!env || !*env) return Isa::amx;
  const std::string_view v(env);
  if (v == "generic" || v == "portable") return Isa::generic;
  if (v == "avx2") return Isa::avx2;
  if (v == "avx512") return Isa::avx512;
  if (v == "avx512bf16") return Isa::avx512bf16;
  if (v == "amx") return Isa::amx;
  fail("KILN_CPU_ISA=", v,
       " is not one of generic (or portable), avx2, avx512, avx512bf16, amx; "
       "unset it to use everything this CPU has");
}

bool cpu_has(Isa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
    case Isa::avx512bf16: return cpu_has(Isa::avx512) && __builtin_cpu_supports("avx512bf16");
    case Isa::amx:
#if defined(__clang__) && __clang_major__ < 16
      // clang before 16 knows no AMX names in __builtin_cpu_supports: CPUID leaf 7 says the same
      // (EDX bit 24 AMX-TILE, bit 22 AMX-BF16).
      {
        unsigned a = 0, b = 0, c = 0, d = 0;
        return cpu_has(Isa::avx512bf16) && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 22 & 1);
      }
#else
      return cpu_has(Isa::avx512bf16) && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16");
#endif
  }
  return false;
}

}  // namespace

bool isa_enabled(Isa isa) {
  static const Isa cap = cap_from_env();
  return int(isa) <= int(cap) && cpu_has(isa);
}

const SimdKernels* simd_kernels() {
  static const SimdKernels* t = isa_enabled(Isa::avx512) ? &avx512::kSimdKernels
                                : isa_enabled(Isa::avx2) ? &avx2::kSimdKernels
                                                         : nullptr;
  return t;
}

const char* simd_kernels_isa() {
  const SimdKernels* t = simd_kernels();
  return t == &avx512::kSimdKernels ? "avx512" : t == &avx2::kSimdKernels ? "avx2" : "generic";
}

}  // namespace kiln::kernels::cpu
