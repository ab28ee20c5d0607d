// The column matrix of the CPU conv2d's im2col + GEMM paths (conv.cpp, and conv_bf16.cpp for
// bf16), and the bf16 path's entry points. Private to kernels/cpu.
#pragma once

#include <algorithm>
#include <cstring>

#include "kernels/backend.h"

namespace kiln::kernels::cpu {

// col[(c*kh + i)*kw + j, oh*w_out + ow] = x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside).
template <class T>
void im2col(const Conv2dParams& p, const T* x, int64_t channels, T* col) {
  const int64_t hw_out = p.h_out * p.w_out;
  for (int64_t c = 0; c < channels; ++c) {
    const T* xc = x + c * p.h_in * p.w_in;
    for (int64_t i = 0; i < p.kh; ++i) {
      for (int64_t j = 0; j < p.kw; ++j) {
        T* row = col + ((c * p.kh + i) * p.kw + j) * hw_out;
        for (int64_t oh = 0; oh < p.h_out; ++oh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
          T* dst = row + oh * p.w_out;
          if (ih < 0 || ih >= p.h_in) {
            std::memset(static_cast<void*>(dst), 0, sizeof(T) * size_t(p.w_out));
            continue;
          }
          const T* src = xc + ih * p.w_in;
          const int64_t off = j * p.dil_w - p.pad_w;
          if (p.stride_w == 1) {
            // Valid ow range: 0 <= ow + off < w_in.
            int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(p.w_out, p.w_in - off);
            for (int64_t ow = 0; ow < std::min(lo, p.w_out); ++ow) dst[ow] = T(0);
            if (hi > lo) std::memcpy(dst + lo, src + lo + off, sizeof(T) * size_t(hi - lo));
            for (int64_t ow = std::max(hi, lo); ow < p.w_out; ++ow) dst[ow] = T(0);
          } else {
            for (int64_t ow = 0; ow < p.w_out; ++ow) {
              const int64_t iw = ow * p.stride_w + off;
              dst[ow] = (iw >= 0 && iw < p.w_in) ? src[iw] : T(0);
            }
          }
        }
      }
    }
  }
}

// The adjoint of im2col: x[c, ih, iw] += col[...].
template <class T>
void col2im(const Conv2dParams& p, const T* col, int64_t channels, T* x) {
  const int64_t hw_out = p.h_out * p.w_out;
  for (int64_t c = 0; c < channels; ++c) {
    T* xc = x + c * p.h_in * p.w_in;
    for (int64_t i = 0; i < p.kh; ++i) {
      for (int64_t j = 0; j < p.kw; ++j) {
        const T* row = col + ((c * p.kh + i) * p.kw + j) * hw_out;
        for (int64_t oh = 0; oh < p.h_out; ++oh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
          if (ih < 0 || ih >= p.h_in) continue;
          T* dst = xc + ih * p.w_in;
          const T* src = row + oh * p.w_out;
          if (p.stride_w == 1) {  // a contiguous run: no per-element bounds test, so it vectorises
            const int64_t off = j * p.dil_w - p.pad_w;
            const int64_t lo = std::max<int64_t>(0, -off), hi = std::min(p.w_out, p.w_in - off);
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow + off] += src[ow];
            continue;
          }
          for (int64_t ow = 0; ow < p.w_out; ++ow) {
            const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dil_w;
            if (iw >= 0 && iw < p.w_in) dst[iw] += src[ow];
          }
        }
      }
    }
  }
}

// bf16 on bgemm (conv_bf16.cpp): y = conv(x, w) + b, and the gradients asked for (null where not).
void conv2d_forward_bf16(const Conv2dParams& p, BFloat16* y, const BFloat16* x, const BFloat16* w, const BFloat16* b);
void conv2d_backward_bf16(const Conv2dParams& p, BFloat16* gx, BFloat16* gw, BFloat16* gb, const BFloat16* gy,
                          const BFloat16* x, const BFloat16* w);

}  // namespace kiln::kernels::cpu
