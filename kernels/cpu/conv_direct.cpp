// Direct 3x3 stride-1 convolution for few input channels: the first layer of an image network
// (3 channels, or 1), where im2col + GEMM multiplies by a 27-deep (or 9-deep) matrix, and the
// weight gradient is a 32 x 27 product over a batch's worth of positions that GEMM blocks badly.
//
// Forward: each image is copied once into a zero-padded f32 buffer (so every tap is a plain
// unaligned load), and a block of R output channels x 2 vectors of one output row is accumulated
// in registers over the c_in x 9 taps: per tap 2 loads of the input row and R broadcast weights
// feed 2R FMAs (R = 12 with AVX-512, 6 with AVX2). Bias starts the sums; rows go straight to NCHW.
//
// Weight gradient: for each input channel and pair of output channels (one with AVX2), the 9 taps'
// sums are 18 vector accumulators of partial sums over the image's positions (each position's
// grad_out vector times the 9 shifted input vectors), added to a per-thread buffer once per image
// and reduced over lanes and threads at the end. The bias gradient rides along (one more add per
// grad_out vector). Memory: an image's input (a few KiB) and the grad_out planes it needs stay in
// L1/L2; every input and grad_out value is read from memory once per pass over its channel.
#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu::KILN_SIMD_NS {
namespace {

using namespace simd;
constexpr int L = kLanes;
constexpr int kVecs = 2;  // output columns per register block: 2 vectors
#if defined(KILN_SIMD_AVX512)
constexpr int kFwdRows = 12;  // output channels per forward block
constexpr int kGradRows = 2;  // output channels per weight-gradient block
#else
constexpr int kFwdRows = 6;
constexpr int kGradRows = 1;
#endif

int64_t round_up(int64_t x, int64_t m) { return ceil_div(x, m) * m; }

struct Geo {
  ConvShape s;
  int64_t blocks;  // register blocks of kVecs * L columns per output row
  int64_t hp, wp;  // the padded image: h_out + 2 rows of blocks * kVecs * L + 2 columns
  int64_t img;     // floats of one padded image
  int64_t cop;     // c_out rounded up to a vector (the weights' row length)
};

Geo make_geo(const ConvShape& s) {
  Geo g{};
  g.s = s;
  g.blocks = ceil_div(s.w_out, kVecs * L);
  g.hp = s.h_out + 2;
  g.wp = round_up(g.blocks * kVecs * L + 2, 16);
  g.img = round_up(s.c_in * g.hp * g.wp, 16);
  g.cop = round_up(s.c_out, L);
  return g;
}

// xp[c][rr][cc] = x[c][rr - pad_h][cc - pad_w], zero outside the image.
template <class T>
void pad_image(const Geo& g, const T* x, float* xp) {
  const ConvShape& s = g.s;
  for (int64_t c = 0; c < s.c_in; ++c)
    for (int64_t rr = 0; rr < g.hp; ++rr) {
      float* dst = xp + (c * g.hp + rr) * g.wp;
      for (int64_t k = 0; k < g.wp; k += L) store(dst + k, zero());
      const int64_t r = rr - s.pad_h;
      if (r < 0 || r >= s.h_in) continue;
      const T* src = x + (c * s.h_in + r) * s.w_in;
      for (int64_t k = 0; k < s.w_in; k += L) {
        const int n = int(min64(L, s.w_in - k));
        store_n(dst + s.pad_w + k, load_n(src + k, n), n);
      }
    }
}

// One output row block (kVecs vectors from column col0) of R output channels.
template <int R, class T>
void forward_block(const Geo& g, const float* xblk, const float* wt, const float* bias, T* yblk, int64_t plane,
                   int64_t valid) {
  V acc[R][kVecs];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const V b = bias ? set1(bias[r]) : zero();
#pragma GCC unroll 2
    for (int v = 0; v < kVecs; ++v) acc[r][v] = b;
  }
  for (int64_t c = 0; c < g.s.c_in; ++c)
    for (int i = 0; i < 3; ++i) {
      const float* row = xblk + (c * g.hp + i) * g.wp;
      const float* w = wt + (c * 9 + i * 3) * g.cop;
#pragma GCC unroll 3
      for (int j = 0; j < 3; ++j) {
        V xv[kVecs];
#pragma GCC unroll 2
        for (int v = 0; v < kVecs; ++v) xv[v] = load(row + j + v * L);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const V wv = set1(w[j * g.cop + r]);
#pragma GCC unroll 2
          for (int v = 0; v < kVecs; ++v) acc[r][v] = fma(wv, xv[v], acc[r][v]);
        }
      }
    }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < kVecs; ++v) {
      const int64_t n = valid - v * L;
      if (n >= L)
        store(yblk + r * plane + v * L, acc[r][v]);
      else if (n > 0)
        store_n(yblk + r * plane + v * L, acc[r][v], int(n));
    }
}

template <int R, class T>
void forward_tail(int rows, const Geo& g, const float* xblk, const float* wt, const float* bias, T* yblk, int64_t plane,
                  int64_t valid) {
  if constexpr (R > 0) {
    if (rows == R)
      forward_block<R>(g, xblk, wt, bias, yblk, plane, valid);
    else
      forward_tail<R - 1>(rows, g, xblk, wt, bias, yblk, plane, valid);
  }
}

template <class T>
void forward_impl(const ConvShape& s, const T* x, T* y, const float* wt, const float* bias, float* ws, int threads) {
  const Geo g = make_geo(s);
  const int64_t plane = s.h_out * s.w_out;
  region(threads, [&](int t, int nt) {
    float* xp = ws + t * g.img;
    int64_t n_begin, n_end;
    share(s.n, t, nt, n_begin, n_end);
    for (int64_t n = n_begin; n < n_end; ++n) {
      pad_image(g, x + n * s.c_in * s.h_in * s.w_in, xp);
      T* yn = y + n * s.c_out * plane;
      for (int64_t oh = 0; oh < s.h_out; ++oh)
        for (int64_t blk = 0; blk < g.blocks; ++blk) {
          const int64_t col0 = blk * kVecs * L, valid = s.w_out - col0;
          const float* xblk = xp + oh * g.wp + col0;
          int64_t co = 0;
          for (; co + kFwdRows <= s.c_out; co += kFwdRows)
            forward_block<kFwdRows>(g, xblk, wt + co, bias ? bias + co : nullptr, yn + co * plane + oh * s.w_out + col0,
                                    plane, valid);
          if (co < s.c_out)
            forward_tail<kFwdRows - 1>(int(s.c_out - co), g, xblk, wt + co, bias ? bias + co : nullptr,
                                       yn + co * plane + oh * s.w_out + col0, plane, valid);
        }
    }
  });
}

// The 9 taps' partial sums of R output channels against input channel xc of one image, added to
// part (R rows of [9][L] at stride part_stride), and the bias's to bpart ([R][L]) when given.
template <int R, class T>
void grad_block(const Geo& g, const float* xc, const T* gyc, int64_t plane, float* part, int64_t part_stride,
                float* bpart) {
  const ConvShape& s = g.s;
  V acc[R][9], bacc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    bacc[r] = zero();
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) acc[r][t] = zero();
  }
  const int64_t nvec = ceil_div(s.w_out, L);
  for (int64_t oh = 0; oh < s.h_out; ++oh)
    for (int64_t vv = 0; vv < nvec; ++vv) {
      const int n = int(min64(L, s.w_out - vv * L));
      V gv[R];
      const T* src = gyc + oh * s.w_out + vv * L;
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) gv[r] = n == L ? load(src + r * plane) : load_n(src + r * plane, n);
      if (bpart)
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) bacc[r] = add(bacc[r], gv[r]);
#pragma GCC unroll 3
      for (int i = 0; i < 3; ++i) {
        const float* row = xc + (oh + i) * g.wp + vv * L;
#pragma GCC unroll 3
        for (int j = 0; j < 3; ++j) {
          const V xv = load(row + j);
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r) acc[r][i * 3 + j] = fma(gv[r], xv, acc[r][i * 3 + j]);
        }
      }
    }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) {
      float* p = part + r * part_stride + t * L;
      store(p, add(load(p), acc[r][t]));
    }
    if (bpart) store(bpart + r * L, add(load(bpart + r * L), bacc[r]));
  }
}

template <int R, class T>
void grad_tail(int rows, const Geo& g, const float* xc, const T* gyc, int64_t plane, float* part, int64_t part_stride,
               float* bpart) {
  if constexpr (R > 0) {
    if (rows == R)
      grad_block<R>(g, xc, gyc, plane, part, part_stride, bpart);
    else
      grad_tail<R - 1>(rows, g, xc, gyc, plane, part, part_stride, bpart);
  }
}

struct GradSizes {
  Geo g;
  int64_t part, bpart, per_thread;
};
GradSizes grad_sizes(const ConvShape& s) {
  GradSizes z{make_geo(s), 0, 0, 0};
  z.part = round_up(s.c_out * s.c_in * 9 * L, 16);
  z.bpart = round_up(s.c_out * L, 16);
  z.per_thread = z.g.img + z.part + z.bpart;
  return z;
}

template <class T>
void weight_grad_impl(const ConvShape& s, const T* x, const T* gy, float* gw, float* gb, float* ws, int threads) {
  const GradSizes z = grad_sizes(s);
  const Geo& g = z.g;
  const int64_t plane = s.h_out * s.w_out, part_stride = s.c_in * 9 * L;
  int team = 1;
  region(threads, [&](int t, int nt) {
    float* xp = ws + t * z.per_thread;
    float* part = xp + g.img;
    float* bpart = part + z.part;
    for (int64_t i = 0; i < z.part + z.bpart; i += L) store(part + i, zero());
    if (t == 0) team = nt;
    int64_t n_begin, n_end;
    share(s.n, t, nt, n_begin, n_end);
    for (int64_t n = n_begin; n < n_end; ++n) {
      pad_image(g, x + n * s.c_in * s.h_in * s.w_in, xp);
      const T* gyn = gy + n * s.c_out * plane;
      for (int64_t c = 0; c < s.c_in; ++c) {
        float* bp = c == 0 && gb ? bpart : nullptr;
        int64_t co = 0;
        for (; co + kGradRows <= s.c_out; co += kGradRows)
          grad_block<kGradRows>(g, xp + c * g.hp * g.wp, gyn + co * plane, plane, part + co * part_stride + c * 9 * L,
                                part_stride, bp ? bp + co * L : nullptr);
        if (co < s.c_out)
          grad_tail<kGradRows - 1>(int(s.c_out - co), g, xp + c * g.hp * g.wp, gyn + co * plane, plane,
                                   part + co * part_stride + c * 9 * L, part_stride, bp ? bp + co * L : nullptr);
      }
    }
  });
  for (int64_t i = 0; i < s.c_out * s.c_in * 9; ++i) {
    float sum = 0.f;
    for (int t = 0; t < team; ++t) sum += hsum(load(ws + t * z.per_thread + g.img + i * L));
    gw[i] = sum;
  }
  if (gb)
    for (int64_t c = 0; c < s.c_out; ++c) {
      float sum = 0.f;
      for (int t = 0; t < team; ++t) sum += hsum(load(ws + t * z.per_thread + g.img + z.part + c * L));
      gb[c] = sum;
    }
}

}  // namespace

int64_t direct_forward_workspace(const ConvShape& s, int threads) { return threads * make_geo(s).img; }
void direct_forward_f32(const ConvShape& s, const float* x, float* y, const float* wt, const float* bias, float* ws,
                        int threads) {
  forward_impl(s, x, y, wt, bias, ws, threads);
}
void direct_forward_bf16(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* wt, const float* bias,
                         float* ws, int threads) {
  forward_impl(s, x, y, wt, bias, ws, threads);
}
int64_t direct_weight_grad_workspace(const ConvShape& s, int threads) { return threads * grad_sizes(s).per_thread; }
void direct_weight_grad_f32(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb, float* ws,
                            int threads) {
  weight_grad_impl(s, x, gy, gw, gb, ws, threads);
}
void direct_weight_grad_bf16(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw, float* gb, float* ws,
                             int threads) {
  weight_grad_impl(s, x, gy, gw, gb, ws, threads);
}

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS
