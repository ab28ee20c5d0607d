// The vector vocabulary of the convolution kernels that are compiled once per instruction set
// (winograd.cpp, conv_direct.cpp; see simd_kernels.h): f32 vectors of kLanes lanes, loads and stores
// of f32 or bf16 rows with a tail, masks and selects, and in-register transposes. The
// including file is built with -DKILN_SIMD_AVX512 (16 lanes) or -DKILN_SIMD_AVX2 (8 lanes) and the
// matching -m flags; everything here has internal linkage, so the two builds never share code.
//   using namespace kiln::kernels::cpu::KILN_SIMD_NS::simd;
//   V a = load(p), b = load_n(q, 5);   store(r, fma(a, b, zero()));
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -W(maybe-)uninitialized
// reports once inlined (GCC PR 105593, fixed in 13); the value is never read.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(KILN_SIMD_AVX512)
#define KILN_SIMD_NS avx512
#elif defined(KILN_SIMD_AVX2)
#define KILN_SIMD_NS avx2
#else
#error "compile with -DKILN_SIMD_AVX512 or -DKILN_SIMD_AVX2 and the matching -m flags"
#endif

#define KILN_SIMD_INLINE static inline __attribute__((always_inline))

namespace kiln::kernels::cpu::KILN_SIMD_NS::simd {

// bf16 -> f32 is the bits shifted up; f32 -> bf16 rounds to nearest even and keeps NaN a quiet
// NaN, bit for bit as BFloat16::from_float.

#if defined(KILN_SIMD_AVX512)

constexpr int kLanes = 16;
using V = __m512;

KILN_SIMD_INLINE __mmask16 first(int n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }
KILN_SIMD_INLINE V zero() { return _mm512_setzero_ps(); }
KILN_SIMD_INLINE V set1(float x) { return _mm512_set1_ps(x); }
KILN_SIMD_INLINE V load(const float* p) { return _mm512_loadu_ps(p); }
KILN_SIMD_INLINE V load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
KILN_SIMD_INLINE void store(float* p, V v) { _mm512_storeu_ps(p, v); }
KILN_SIMD_INLINE void store_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
KILN_SIMD_INLINE V widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
KILN_SIMD_INLINE V load(const uint16_t* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
KILN_SIMD_INLINE V load_n(const uint16_t* p, int n) { return widen(_mm256_maskz_loadu_epi16(first(n), p)); }
KILN_SIMD_INLINE __m256i round_bf16(V x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  r = _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), u, _mm512_set1_epi32(0x400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
KILN_SIMD_INLINE void store(uint16_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), round_bf16(v)); }
KILN_SIMD_INLINE void store_n(uint16_t* p, V v, int n) { _mm256_mask_storeu_epi16(p, first(n), round_bf16(v)); }
KILN_SIMD_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
KILN_SIMD_INLINE V sub(V a, V b) { return _mm512_sub_ps(a, b); }
KILN_SIMD_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
KILN_SIMD_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }      // a * b + c
KILN_SIMD_INLINE V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }    // c - a * b
KILN_SIMD_INLINE V neg(V a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.f)); }  // flips the sign bit, as -x
KILN_SIMD_INLINE V div(V a, V b) { return _mm512_div_ps(a, b); }
KILN_SIMD_INLINE V sqrt(V a) { return _mm512_sqrt_ps(a); }  // correctly rounded, as std::sqrt
// b where a is NaN or a <= b, else a: std::max(b, a) lane by lane.
KILN_SIMD_INLINE V max_of(V b, V a) { return _mm512_max_ps(a, b); }
KILN_SIMD_INLINE float hsum(V v) { return _mm512_reduce_add_ps(v); }

// Lanes [lo, hi) of a replaced by (or stored from) p[lane]; the other lanes are not touched.
KILN_SIMD_INLINE V load_lanes(V a, const float* p, int lo, int hi) {
  return _mm512_mask_loadu_ps(a, __mmask16(first(hi) & ~first(lo)), p);
}
KILN_SIMD_INLINE void store_lanes(float* p, V v, int lo, int hi) {
  _mm512_mask_storeu_ps(p, __mmask16(first(hi) & ~first(lo)), v);
}

// Lane masks, 32-bit integer lanes, and the moves between even/odd columns and interleaved rows.
using M = __mmask16;
using VI = __m512i;
KILN_SIMD_INLINE M cmp_gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
KILN_SIMD_INLINE M is_nan(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
KILN_SIMD_INLINE V select(M m, V a, V b) { return _mm512_mask_mov_ps(b, m, a); }  // m ? a : b
KILN_SIMD_INLINE V select_or_zero(M m, V a) { return _mm512_maskz_mov_ps(m, a); }
KILN_SIMD_INLINE VI select(M m, VI a, VI b) { return _mm512_mask_mov_epi32(b, m, a); }
KILN_SIMD_INLINE VI set1_i(int32_t x) { return _mm512_set1_epi32(x); }
KILN_SIMD_INLINE VI iota_i() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
KILN_SIMD_INLINE VI add_i(VI a, VI b) { return _mm512_add_epi32(a, b); }
KILN_SIMD_INLINE VI sub_i(VI a, VI b) { return _mm512_sub_epi32(a, b); }
KILN_SIMD_INLINE M eq_i(VI a, VI b) { return _mm512_cmpeq_epi32_mask(a, b); }
// n (<= 16) int64 values to and from 32-bit lanes.
KILN_SIMD_INLINE void store_i64(int64_t* p, VI k, int n) {
  if (n == 16) {
    _mm512_storeu_si512(p, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(k)));
    _mm512_storeu_si512(p + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(k, 1)));
    return;
  }
  _mm512_mask_storeu_epi64(p, __mmask8(first(n)), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(k)));
  if (n > 8)
    _mm512_mask_storeu_epi64(p + 8, __mmask8(first(n - 8)), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(k, 1)));
}
KILN_SIMD_INLINE VI load_i64(const int64_t* p, int n) {
  if (n == 16)
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_loadu_si512(p))),
                              _mm512_cvtepi64_epi32(_mm512_loadu_si512(p + 8)), 1);
  const __m256i lo = _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(__mmask8(first(n)), p));
  const __m256i hi =
      n > 8 ? _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(__mmask8(first(n - 8)), p + 8)) : _mm256_setzero_si256();
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
// Columns 0..31 of a row (lo: 0-15, hi: 16-31) as its even and odd columns, and back.
KILN_SIMD_INLINE void deinterleave(V lo, V hi, V& even, V& odd) {
  const VI e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  even = _mm512_permutex2var_ps(lo, e, hi);
  odd = _mm512_permutex2var_ps(lo, _mm512_add_epi32(e, _mm512_set1_epi32(1)), hi);
}
KILN_SIMD_INLINE void interleave(V even, V odd, V& lo, V& hi) {
  const VI i = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  lo = _mm512_permutex2var_ps(even, i, odd);
  hi = _mm512_permutex2var_ps(even, _mm512_add_epi32(i, _mm512_set1_epi32(8)), odd);
}

// r[i][j] becomes r[j][i]: four rounds of 64 shuffles in all (32-bit pairs, 64-bit pairs, then
// 128-bit lanes twice).
KILN_SIMD_INLINE void transpose(V (&r)[16]) {
  V t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + c]: rows 4g..4g+3 at columns c, c + 4, c + 8, c + 12 (one per 128-bit lane).
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // t[2c], t[2c + 1]: rows 0-7 (from groups 0, 1) at columns {c, c + 8} and {c + 4, c + 12};
  // t[8 + 2c], t[9 + 2c]: the same for rows 8-15.
  for (int c = 0; c < 4; ++c) {
    t[2 * c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
    t[2 * c + 1] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
    t[8 + 2 * c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    t[9 + 2 * c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[2 * c], t[8 + 2 * c], 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(t[2 * c], t[8 + 2 * c], 0xdd);
    r[c + 4] = _mm512_shuffle_f32x4(t[2 * c + 1], t[9 + 2 * c], 0x88);
    r[c + 12] = _mm512_shuffle_f32x4(t[2 * c + 1], t[9 + 2 * c], 0xdd);
  }
}

#else  // AVX2 + FMA

constexpr int kLanes = 8;
using V = __m256;

KILN_SIMD_INLINE __m256i first(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
KILN_SIMD_INLINE V zero() { return _mm256_setzero_ps(); }
KILN_SIMD_INLINE V set1(float x) { return _mm256_set1_ps(x); }
KILN_SIMD_INLINE V load(const float* p) { return _mm256_loadu_ps(p); }
KILN_SIMD_INLINE V load_n(const float* p, int n) { return _mm256_maskload_ps(p, first(n)); }
KILN_SIMD_INLINE void store(float* p, V v) { _mm256_storeu_ps(p, v); }
KILN_SIMD_INLINE void store_n(float* p, V v, int n) { _mm256_maskstore_ps(p, first(n), v); }
KILN_SIMD_INLINE V widen(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
KILN_SIMD_INLINE V load(const uint16_t* p) { return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
KILN_SIMD_INLINE V load_n(const uint16_t* p, int n) {
  alignas(16) uint16_t tmp[8] = {};
  for (int i = 0; i < n && i < 8; ++i) tmp[i] = p[i];
  return widen(_mm_load_si128(reinterpret_cast<const __m128i*>(tmp)));
}
KILN_SIMD_INLINE __m128i round_bf16(V x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
  r = _mm256_srli_epi32(r, 16);
  // packus works within 128-bit halves: [r0-3, r0-3 | r4-7, r4-7]; keep 64-bit words 0 and 2.
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}
KILN_SIMD_INLINE void store(uint16_t* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), round_bf16(v)); }
KILN_SIMD_INLINE void store_n(uint16_t* p, V v, int n) {
  alignas(16) uint16_t tmp[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(tmp), round_bf16(v));
  for (int i = 0; i < n && i < 8; ++i) p[i] = tmp[i];
}
KILN_SIMD_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
KILN_SIMD_INLINE V sub(V a, V b) { return _mm256_sub_ps(a, b); }
KILN_SIMD_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
KILN_SIMD_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
KILN_SIMD_INLINE V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
KILN_SIMD_INLINE V neg(V a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.f)); }
KILN_SIMD_INLINE V div(V a, V b) { return _mm256_div_ps(a, b); }
KILN_SIMD_INLINE V sqrt(V a) { return _mm256_sqrt_ps(a); }
KILN_SIMD_INLINE V max_of(V b, V a) { return _mm256_max_ps(a, b); }
KILN_SIMD_INLINE float hsum(V v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes [lo, hi) of a replaced by (or stored from) p[lane]; the other lanes are not touched.
KILN_SIMD_INLINE __m256i lanes(int lo, int hi) { return _mm256_andnot_si256(first(lo), first(hi)); }
KILN_SIMD_INLINE V load_lanes(V a, const float* p, int lo, int hi) {
  const __m256i m = lanes(lo, hi);
  return _mm256_blendv_ps(a, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
KILN_SIMD_INLINE void store_lanes(float* p, V v, int lo, int hi) { _mm256_maskstore_ps(p, lanes(lo, hi), v); }

// Lane masks (all-ones lanes of a float vector), 32-bit integer lanes, and the moves between
// even/odd columns and interleaved rows.
using M = __m256;
using VI = __m256i;
KILN_SIMD_INLINE M cmp_gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
KILN_SIMD_INLINE M is_nan(V a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
KILN_SIMD_INLINE V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }  // m ? a : b
KILN_SIMD_INLINE V select_or_zero(M m, V a) { return _mm256_and_ps(m, a); }
KILN_SIMD_INLINE VI select(M m, VI a, VI b) { return _mm256_blendv_epi8(b, a, _mm256_castps_si256(m)); }
KILN_SIMD_INLINE VI set1_i(int32_t x) { return _mm256_set1_epi32(x); }
KILN_SIMD_INLINE VI iota_i() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
KILN_SIMD_INLINE VI add_i(VI a, VI b) { return _mm256_add_epi32(a, b); }
KILN_SIMD_INLINE VI sub_i(VI a, VI b) { return _mm256_sub_epi32(a, b); }
KILN_SIMD_INLINE M eq_i(VI a, VI b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
KILN_SIMD_INLINE __m256i first64(int n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
// n (<= 8) int64 values to and from 32-bit lanes.
KILN_SIMD_INLINE void store_i64(int64_t* p, VI k, int n) {
  long long* q = reinterpret_cast<long long*>(p);
  if (n == 8) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(k)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 4), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(k, 1)));
    return;
  }
  _mm256_maskstore_epi64(q, first64(n), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(k)));
  if (n > 4) _mm256_maskstore_epi64(q + 4, first64(n - 4), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(k, 1)));
}
KILN_SIMD_INLINE VI load_i64(const int64_t* p, int n) {
  const long long* q = reinterpret_cast<const long long*>(p);
  const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);  // the low halves
  if (n == 8) {
    const __m256i lo = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)), pick);
    const __m256i hi = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 4)), pick);
    return _mm256_inserti128_si256(lo, _mm256_castsi256_si128(hi), 1);
  }
  const __m256i lo = _mm256_permutevar8x32_epi32(_mm256_maskload_epi64(q, first64(n)), pick);
  const __m256i hi =
      n > 4 ? _mm256_permutevar8x32_epi32(_mm256_maskload_epi64(q + 4, first64(n - 4)), pick) : _mm256_setzero_si256();
  return _mm256_inserti128_si256(lo, _mm256_castsi256_si128(hi), 1);
}
// Columns 0..15 of a row (lo: 0-7, hi: 8-15) as its even and odd columns, and back.
KILN_SIMD_INLINE void deinterleave(V lo, V hi, V& even, V& odd) {
  // shuffle_ps works within 128-bit halves: [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6]; then 64-bit
  // words in the order 0, 2, 1, 3.
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xd8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xdd)), 0xd8));
}
KILN_SIMD_INLINE void interleave(V even, V odd, V& lo, V& hi) {
  const V a = _mm256_unpacklo_ps(even, odd), b = _mm256_unpackhi_ps(even, odd);  // [e0 o0 e1 o1 | e4 o4 e5 o5]
  lo = _mm256_permute2f128_ps(a, b, 0x20);
  hi = _mm256_permute2f128_ps(a, b, 0x31);
}

KILN_SIMD_INLINE void transpose(V (&r)[8]) {
  V t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + c]: rows 4g..4g+3 at columns c and c + 4 (one per 128-bit half).
  for (int g = 0; g < 2; ++g) {
    u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

#endif

KILN_SIMD_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
KILN_SIMD_INLINE int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
KILN_SIMD_INLINE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS::simd

// kiln's thread pool (parallel.h) as these files use it: through its out-of-line entry points only,
// since an inline function of parallel.h compiled here, with this instruction set's flags, could be
// the copy the linker keeps for the portable code too.
namespace kiln::kernels::cpu {
int max_threads();
bool in_parallel();
namespace detail {
using RegionFn = void (*)(void* ctx, int thread, int num_threads);
void run_region(int threads, RegionFn fn, void* ctx);
}  // namespace detail
}  // namespace kiln::kernels::cpu

namespace kiln::kernels::cpu::KILN_SIMD_NS::simd {

// body(t, nt) once on each of nt <= threads threads, t = 0 the caller; nt is 1 inside another region.
template <class F>
static inline void region(int threads, F&& body) {
  if (threads <= 1 || in_parallel()) return body(0, 1);
  using Fn = std::remove_reference_t<F>;
  detail::run_region(
      threads, [](void* ctx, int t, int nt) { (*static_cast<Fn*>(ctx))(t, nt); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// Thread t's contiguous share [begin, end) of [0, n) among nt threads (OpenMP's static schedule).
KILN_SIMD_INLINE void share(int64_t n, int t, int nt, int64_t& begin, int64_t& end) {
  begin = n * t / nt;
  end = n * (t + 1) / nt;
}

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS::simd
