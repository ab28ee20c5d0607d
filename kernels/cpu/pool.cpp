// CPU max and average pooling on dense NCHW tensors, one (n, c) plane per iteration across
// threads. Max pooling records the flat position (ih * w_in + iw) of each maximum for backward.
// The common 2x2/2 window has vector kernels: f32 in max_pool_2x2.cpp (simd_kernels.h), bf16 here.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/simd_bf16.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu {
namespace {

// A maximum is one of the inputs, so a 16-bit float needs no rounding on the way back: its f32
// value's upper half is its bits (NaN keeps its payload, so it stays NaN).
template <class T, class C>
T exact(C v) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    BFloat16 r;
    r.bits = uint16_t(u >> 16);
    return r;
  } else {
    return T(v);
  }
}

// The 2x2/2 window on bf16 planes, 16 outputs at a time: each 32-bit word of an input row holds
// one window's pair of columns, so its halves widen to f32 with a shift and a mask. Same rule as
// the scalar loop: the first maximum wins, and the first NaN in window order propagates.
KILN_TARGET_AVX512 void max_pool_2x2_bf16_avx512(const Pool2dParams& p, const BFloat16* xp, BFloat16* yp, int64_t* ip) {
  const __m512i high = _mm512_set1_epi32(int32_t(0xffff0000u));
  const __m512i lane2 = _mm512_slli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 1);
  for (int64_t oh = 0; oh < p.h_out; ++oh) {
    const BFloat16* r0 = xp + 2 * oh * p.w_in;
    const BFloat16* r1 = r0 + p.w_in;
    for (int64_t ow0 = 0; ow0 < p.w_out; ow0 += 16) {
      const __mmask16 m = simd::tail_mask(p.w_out - ow0);
      const __m512i w0 = _mm512_maskz_loadu_epi32(m, r0 + 2 * ow0);
      const __m512i w1 = _mm512_maskz_loadu_epi32(m, r1 + 2 * ow0);
      const __m512 a = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)),
                   b = _mm512_castsi512_ps(_mm512_and_si512(w0, high));
      const __m512 c = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)),
                   d = _mm512_castsi512_ps(_mm512_and_si512(w1, high));
      const __m512i ia = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * oh * p.w_in + 2 * ow0)), lane2);
      const __m512i ib = _mm512_add_epi32(ia, _mm512_set1_epi32(1));
      const __m512i ic = _mm512_add_epi32(ia, _mm512_set1_epi32(int32_t(p.w_in)));
      const __m512i id = _mm512_add_epi32(ic, _mm512_set1_epi32(1));
      __m512 v = a;
      __m512i k = ia;
      __mmask16 g = _mm512_cmp_ps_mask(b, v, _CMP_GT_OQ);
      v = _mm512_mask_mov_ps(v, g, b), k = _mm512_mask_mov_epi32(k, g, ib);
      g = _mm512_cmp_ps_mask(c, v, _CMP_GT_OQ);
      v = _mm512_mask_mov_ps(v, g, c), k = _mm512_mask_mov_epi32(k, g, ic);
      g = _mm512_cmp_ps_mask(d, v, _CMP_GT_OQ);
      v = _mm512_mask_mov_ps(v, g, d), k = _mm512_mask_mov_epi32(k, g, id);
      // NaNs, last to first, so the first one in the window is the one kept.
      g = _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
      v = _mm512_mask_mov_ps(v, g, d), k = _mm512_mask_mov_epi32(k, g, id);
      g = _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q);
      v = _mm512_mask_mov_ps(v, g, c), k = _mm512_mask_mov_epi32(k, g, ic);
      g = _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
      v = _mm512_mask_mov_ps(v, g, b), k = _mm512_mask_mov_epi32(k, g, ib);
      g = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
      v = _mm512_mask_mov_ps(v, g, a), k = _mm512_mask_mov_epi32(k, g, ia);
      const int64_t o = oh * p.w_out + ow0;
      _mm256_mask_storeu_epi16(yp + o, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(v), 16)));
      if (ip) {
        _mm512_mask_storeu_epi64(ip + o, __mmask8(m), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(k)));
        _mm512_mask_storeu_epi64(ip + o + 8, __mmask8(m >> 8), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(k, 1)));
      }
    }
  }
}

// Its gradient: each window's four inputs are written at once (the gradient at the recorded
// maximum, zero elsewhere), two 32-bit words per window, so the plane needs no zeroing first
// unless an odd last row or column lies outside every window.
KILN_TARGET_AVX512 void max_pool_2x2_backward_bf16_avx512(const Pool2dParams& p, BFloat16* gxp, const BFloat16* gyp,
                                                          const int64_t* ip) {
  if (p.h_in != 2 * p.h_out || p.w_in != 2 * p.w_out)
    std::memset(static_cast<void*>(gxp), 0, sizeof(BFloat16) * size_t(p.h_in * p.w_in));
  const __m512i lane2 = _mm512_slli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 1);
  const __m512i one = _mm512_set1_epi32(1), w = _mm512_set1_epi32(int32_t(p.w_in));
  const __m512i w1 = _mm512_add_epi32(w, one);
  for (int64_t oh = 0; oh < p.h_out; ++oh) {
    BFloat16* r0 = gxp + 2 * oh * p.w_in;
    BFloat16* r1 = r0 + p.w_in;
    for (int64_t ow0 = 0; ow0 < p.w_out; ow0 += 16) {
      const __mmask16 m = simd::tail_mask(p.w_out - ow0);
      const int64_t o = oh * p.w_out + ow0;
      const __m256i k_lo = _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(__mmask8(m), ip + o));
      const __m256i k_hi = _mm512_cvtepi64_epi32(_mm512_maskz_loadu_epi64(__mmask8(m >> 8), ip + o + 8));
      const __m512i k = _mm512_inserti64x4(_mm512_castsi256_si512(k_lo), k_hi, 1);
      const __m512i rel =
          _mm512_sub_epi32(k, _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * oh * p.w_in + 2 * ow0)), lane2));
      const __m512i g = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, gyp + o));
      const __m512i g_hi = _mm512_slli_epi32(g, 16);
      const __m512i top =
          _mm512_or_si512(_mm512_maskz_mov_epi32(_mm512_cmpeq_epi32_mask(rel, _mm512_setzero_si512()), g),
                          _mm512_maskz_mov_epi32(_mm512_cmpeq_epi32_mask(rel, one), g_hi));
      const __m512i bottom = _mm512_or_si512(_mm512_maskz_mov_epi32(_mm512_cmpeq_epi32_mask(rel, w), g),
                                             _mm512_maskz_mov_epi32(_mm512_cmpeq_epi32_mask(rel, w1), g_hi));
      _mm512_mask_storeu_epi32(r0 + 2 * ow0, m, top);
      _mm512_mask_storeu_epi32(r1 + 2 * ow0, m, bottom);
    }
  }
}

}  // namespace

void CpuBackend::max_pool2d_forward(const Pool2dParams& p, const View& out, const View& indices, const View& in) {
  dispatch_floating(in.dtype, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* x = in.ptr<T>();
    T* y = out.ptr<T>();
    int64_t* idx = indices.ptr<int64_t>();
    static const bool avx512 = isa_enabled(Isa::avx512);
    static const SimdKernels* simd = simd_kernels();
    parallel_for(0, p.n * p.c, max_threads(), [&](int64_t plane) {
      const T* xp = x + plane * p.h_in * p.w_in;
      T* yp = y + plane * p.h_out * p.w_out;
      int64_t* ip = idx ? idx + plane * p.h_out * p.w_out : nullptr;
      if (p.kh == 2 && p.kw == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 && p.pad_w == 0) {
        if constexpr (std::is_same_v<T, BFloat16>) {
          if (avx512 && p.h_in * p.w_in < (int64_t(1) << 31)) {
            max_pool_2x2_bf16_avx512(p, xp, yp, ip);
            return;
          }
        }
        if constexpr (std::is_same_v<T, float>) {
          if (simd && p.h_in * p.w_in < (int64_t(1) << 31)) {
            simd->max_pool_2x2_f32(xp, yp, ip, p.h_in, p.w_in, p.h_out, p.w_out);
            return;
          }
        }
        // The common 2x2/2 case: branch-free selection (conditional moves), since on real
        // activations which of the four wins is unpredictable and mispredicted branches cost more
        // than the loads. Same rule as the general loop: the first maximum wins, NaN propagates.
        for (int64_t oh = 0; oh < p.h_out; ++oh) {
          const T* r0 = xp + 2 * oh * p.w_in;
          const T* r1 = r0 + p.w_in;
          const int64_t top = 2 * oh * p.w_in, bottom = top + p.w_in;
          for (int64_t ow = 0; ow < p.w_out; ++ow) {
            const C a = C(r0[2 * ow]), b = C(r0[2 * ow + 1]), c = C(r1[2 * ow]), d = C(r1[2 * ow + 1]);
            const int64_t ia = top + 2 * ow, ib = ia + 1, ic = bottom + 2 * ow, id = ic + 1;
            C m;
            int64_t k;
            if ((a != a) | (b != b) | (c != c) | (d != d)) [[unlikely]] {
              m = a == a ? (b == b ? c : b) : a;
              k = a == a ? (b == b ? ic : ib) : ia;
              if (a == a && b == b && c == c) {
                m = d;
                k = id;
              }
            } else {
              m = a;
              k = ia;
              const bool gb = b > m;
              m = gb ? b : m;
              k = gb ? ib : k;
              const bool gc = c > m;
              m = gc ? c : m;
              k = gc ? ic : k;
              const bool gd = d > m;
              m = gd ? d : m;
              k = gd ? id : k;
            }
            yp[oh * p.w_out + ow] = exact<T>(m);
            if (ip) ip[oh * p.w_out + ow] = k;
          }
        }
        return;
      }
      for (int64_t oh = 0; oh < p.h_out; ++oh) {
        const int64_t h0 = oh * p.stride_h - p.pad_h;
        const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, p.h_in);
        for (int64_t ow = 0; ow < p.w_out; ++ow) {
          const int64_t w0 = ow * p.stride_w - p.pad_w;
          const int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, p.w_in);
          C best = -std::numeric_limits<C>::infinity();
          int64_t best_i = hs * p.w_in + ws;
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) {
              C v = C(xp[ih * p.w_in + iw]);
              if (v > best || v != v) {
                best = v;
                best_i = ih * p.w_in + iw;
              }
              if (v != v) {
                ih = he;
                break;
              }
            }
          yp[oh * p.w_out + ow] = exact<T>(best);
          if (ip) ip[oh * p.w_out + ow] = best_i;
        }
      }
    });
  });
}

void CpuBackend::max_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out,
                                     const View& indices) {
  dispatch_floating(grad_out.dtype, "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* gy = grad_out.ptr<T>();
    T* gx = grad_in.ptr<T>();
    const int64_t* idx = indices.ptr<int64_t>();
    const bool disjoint = p.stride_h >= p.kh && p.stride_w >= p.kw;
    static const bool avx512 = isa_enabled(Isa::avx512);
    static const SimdKernels* simd = simd_kernels();
    const bool window_2x2 = p.kh == 2 && p.kw == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
                            p.pad_w == 0 && p.h_in * p.w_in < (int64_t(1) << 31);
    const bool fast = window_2x2 && (std::is_same_v<T, BFloat16> ? avx512 : std::is_same_v<T, float> && simd);
    parallel_for(0, p.n * p.c, max_threads(), [&](int64_t plane) {
      T* gxp = gx + plane * p.h_in * p.w_in;
      if constexpr (std::is_same_v<T, BFloat16>) {
        if (fast) {
          max_pool_2x2_backward_bf16_avx512(p, gxp, gy + plane * p.h_out * p.w_out, idx + plane * p.h_out * p.w_out);
          return;
        }
      }
      if constexpr (std::is_same_v<T, float>) {
        if (fast) {
          simd->max_pool_2x2_backward_f32(gxp, gy + plane * p.h_out * p.w_out, idx + plane * p.h_out * p.w_out, p.h_in,
                                          p.w_in, p.h_out, p.w_out);
          return;
        }
      }
      for (int64_t i = 0; i < p.h_in * p.w_in; ++i) gxp[i] = T(0);
      const T* gyp = gy + plane * p.h_out * p.w_out;
      const int64_t* ip = idx + plane * p.h_out * p.w_out;
      if (disjoint) {  // each input is the maximum of at most one window: no sums to form
        for (int64_t o = 0; o < p.h_out * p.w_out; ++o) gxp[ip[o]] = gyp[o];
        return;
      }
      for (int64_t o = 0; o < p.h_out * p.w_out; ++o) gxp[ip[o]] = T(C(gxp[ip[o]]) + C(gyp[o]));
    });
  });
}

void CpuBackend::avg_pool2d_forward(const Pool2dParams& p, const View& out, const View& in) {
  dispatch_floating(in.dtype, "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* x = in.ptr<T>();
    T* y = out.ptr<T>();
    parallel_for(0, p.n * p.c, max_threads(), [&](int64_t plane) {
      const T* xp = x + plane * p.h_in * p.w_in;
      T* yp = y + plane * p.h_out * p.w_out;
      for (int64_t oh = 0; oh < p.h_out; ++oh) {
        const int64_t h0 = oh * p.stride_h - p.pad_h;
        const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, p.h_in);
        const int64_t hp = std::min(h0 + p.kh, p.h_in + p.pad_h) - h0;
        for (int64_t ow = 0; ow < p.w_out; ++ow) {
          const int64_t w0 = ow * p.stride_w - p.pad_w;
          const int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, p.w_in);
          const int64_t wp = std::min(w0 + p.kw, p.w_in + p.pad_w) - w0;
          C s = 0;
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) s += C(xp[ih * p.w_in + iw]);
          const int64_t count = p.count_include_pad ? hp * wp : (he - hs) * (we - ws);
          yp[oh * p.w_out + ow] = T(s / C(count));
        }
      }
    });
  });
}

void CpuBackend::avg_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out) {
  dispatch_floating(grad_out.dtype, "avg_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* gy = grad_out.ptr<T>();
    T* gx = grad_in.ptr<T>();
    parallel_for(0, p.n * p.c, max_threads(), [&](int64_t plane) {
      T* gxp = gx + plane * p.h_in * p.w_in;
      for (int64_t i = 0; i < p.h_in * p.w_in; ++i) gxp[i] = T(0);
      const T* gyp = gy + plane * p.h_out * p.w_out;
      for (int64_t oh = 0; oh < p.h_out; ++oh) {
        const int64_t h0 = oh * p.stride_h - p.pad_h;
        const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, p.h_in);
        const int64_t hp = std::min(h0 + p.kh, p.h_in + p.pad_h) - h0;
        for (int64_t ow = 0; ow < p.w_out; ++ow) {
          const int64_t w0 = ow * p.stride_w - p.pad_w;
          const int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, p.w_in);
          const int64_t wp = std::min(w0 + p.kw, p.w_in + p.pad_w) - w0;
          const int64_t count = p.count_include_pad ? hp * wp : (he - hs) * (we - ws);
          const C g = C(gyp[oh * p.w_out + ow]) / C(count);
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) gxp[ih * p.w_in + iw] = T(C(gxp[ih * p.w_in + iw]) + g);
        }
      }
    });
  });
}

}  // namespace kiln::kernels::cpu
