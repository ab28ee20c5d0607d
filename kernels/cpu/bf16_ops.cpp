// See bf16_ops.h.
#include "kernels/cpu/bf16_ops.h"

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd_bf16.h"

namespace kiln::kernels::cpu {
namespace {

bool use_avx512() {
  static const bool yes = isa_enabled(Isa::avx512);
  return yes;
}

KILN_TARGET_AVX512 void to_f32_avx512(const BFloat16* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, simd::load_bf16(in + i));
  if (i < n) {
    const __mmask16 m = simd::tail_mask(n - i);
    _mm512_mask_storeu_ps(out + i, m, simd::maskz_load_bf16(m, in + i));
  }
}

KILN_TARGET_AVX512 void to_bf16_avx512(const float* in, BFloat16* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) simd::store_bf16(out + i, _mm512_loadu_ps(in + i));
  if (i < n) {
    const __mmask16 m = simd::tail_mask(n - i);
    simd::mask_store_bf16(out + i, m, _mm512_maskz_loadu_ps(m, in + i));
  }
}

KILN_TARGET_AVX512 float sum_avx512(const BFloat16* in, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_add_ps(s0, simd::load_bf16(in + i));
    s1 = _mm512_add_ps(s1, simd::load_bf16(in + i + 16));
  }
  for (; i < n; i += 16) s0 = _mm512_add_ps(s0, simd::maskz_load_bf16(simd::tail_mask(n - i), in + i));
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

}  // namespace

void bf16_to_f32(const BFloat16* in, float* out, int64_t n) {
  if (use_avx512()) return to_f32_avx512(in, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = float(in[i]);
}

void f32_to_bf16(const float* in, BFloat16* out, int64_t n) {
  if (use_avx512()) return to_bf16_avx512(in, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = BFloat16(in[i]);
}

float bf16_sum(const BFloat16* in, int64_t n) {
  if (use_avx512()) return sum_avx512(in, n);
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += float(in[i]);
  return s;
}

}  // namespace kiln::kernels::cpu
