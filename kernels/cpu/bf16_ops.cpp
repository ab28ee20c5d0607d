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

// x > 0 for bf16 bits: sign clear, not zero, not NaN (at most +inf, 0x7f80).
inline bool positive(BFloat16 v) { return v.bits != 0 && v.bits <= 0x7f80; }

KILN_TARGET_AVX512 inline __mmask32 positive_mask(__mmask32 m, __m512i v) {
  return _mm512_mask_cmp_epu16_mask(_mm512_mask_test_epi16_mask(m, v, v), v, _mm512_set1_epi16(0x7f80), _MM_CMPINT_LE);
}

KILN_TARGET_AVX512 void relu_avx512(const BFloat16* x, BFloat16* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 32) {
    const __mmask32 m = n - i >= 32 ? __mmask32(~0u) : __mmask32((1u << (n - i)) - 1);
    const __m512i v = _mm512_maskz_loadu_epi16(m, x + i);
    _mm512_mask_storeu_epi16(y + i, m, _mm512_maskz_mov_epi16(positive_mask(m, v), v));
  }
}

KILN_TARGET_AVX512 void relu_backward_avx512(const BFloat16* g, const BFloat16* x, BFloat16* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 32) {
    const __mmask32 m = n - i >= 32 ? __mmask32(~0u) : __mmask32((1u << (n - i)) - 1);
    const __mmask32 pos = positive_mask(m, _mm512_maskz_loadu_epi16(m, x + i));
    _mm512_mask_storeu_epi16(out + i, m, _mm512_maskz_loadu_epi16(pos, g + i));
  }
}

}  // namespace

void bf16_relu(const BFloat16* x, BFloat16* y, int64_t n) {
  if (use_avx512()) return relu_avx512(x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = positive(x[i]) ? x[i] : BFloat16();
}

void bf16_relu_backward(const BFloat16* g, const BFloat16* x, BFloat16* out, int64_t n) {
  if (use_avx512()) return relu_backward_avx512(g, x, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = positive(x[i]) ? g[i] : BFloat16();
}

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
