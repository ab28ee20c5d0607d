// The CPU instruction sets kiln's runtime-dispatched kernels choose between, and the cap that
// KILN_CPU_ISA puts on them (for testing a fallback on a machine that has more):
//   KILN_CPU_ISA=avx2 kiln_bench ...   // sgemm uses AVX2; bgemm and the bf16 loops, portable code
// Values: generic (or portable), avx2, avx512, avx512bf16, amx; anything else is an error.
#pragma once

namespace kiln::kernels::cpu {

// Ordered: each level needs the ones before it.
enum class Isa { generic, avx2, avx512, avx512bf16, amx };

// Whether this CPU has `isa` and KILN_CPU_ISA (unset: no cap) allows it. AVX-512 means the F, BW,
// VL and DQ subsets with FMA; AMX means AMX-TILE and AMX-BF16 (the kernel still has to ask the
// kernel for tile permission, see bgemm.cpp). Read once per process.
bool isa_enabled(Isa isa);

}  // namespace kiln::kernels::cpu
