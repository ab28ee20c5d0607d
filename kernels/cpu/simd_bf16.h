// AVX-512 helpers shared by the kernels that handle bf16 (private to kernels/cpu). libkiln is
// built for the baseline x86-64 unless -Dnative=true, so these carry their instruction set in a
// target attribute and run only behind a runtime check (isa.h). The rounding is bit-identical to
// BFloat16::from_float: round to nearest even, NaN stays a quiet NaN.
#pragma once

#include <immintrin.h>

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -W(maybe-)uninitialized
// reports once inlined (GCC PR 105593, fixed in 13); the value is never read.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>

#include "core/dtype.h"

#define KILN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define KILN_TARGET_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512bf16")))
#define KILN_TARGET_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512bf16,amx-tile,amx-bf16")))

namespace kiln::kernels::cpu::simd {

// 16 bf16 -> 16 f32.
KILN_TARGET_AVX512 inline __m512 load_bf16(const BFloat16* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
KILN_TARGET_AVX512 inline __m512 maskz_load_bf16(__mmask16 m, const BFloat16* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
// 16 f32 -> 16 bf16 (in the low halves of the 32-bit lanes' packing, as a __m256i).
KILN_TARGET_AVX512 inline __m256i round_bf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  r = _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), u, _mm512_set1_epi32(0x400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
KILN_TARGET_AVX512 inline void store_bf16(BFloat16* p, __m512 x) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), round_bf16(x));
}
KILN_TARGET_AVX512 inline void mask_store_bf16(BFloat16* p, __mmask16 m, __m512 x) {
  _mm256_mask_storeu_epi16(p, m, round_bf16(x));
}
inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

}  // namespace kiln::kernels::cpu::simd
