// Winograd F(4x4, 3x3) convolution in f32 (Lavin and Gray's transforms, points 0, +-1, +-2):
// each 4x4 output tile is A^T [(G g G^T) . (B^T d B)] A from its 6x6 input tile d, so a 3x3
// convolution costs 36 products per 16 outputs and channel pair instead of 144. The products are
// 36 independent matrix products, one per tile position p:
//   forward       M[p][tile][c_out] = V[p][tile][c_in] @ U[p][c_in][c_out]
//   weight grad  dU[p][c_in][c_out] += V[p][tile][c_in]^T @ dM[p][tile][c_out]
// and the input gradient is the forward pass of the transposed convolution (grad_out in, weights
// flipped, channels swapped), so one forward kernel serves both.
//
// Layout: channels in the vector lanes. Each row of an NCHW image is brought into that layout by
// an in-register transpose of kLanes channels x kLanes columns (simd.h), tiles are transformed
// kLanes channels at a time, and the output goes back through the same transpose, so the kernels
// read and write the caller's NCHW tensors directly (f32 or bf16) with no separate reorder pass.
//
// Memory traffic: threads take chunks of whole tile rows sized so that a chunk's V and M (36
// values per tile and channel: 2.25x the chunk's input and output) stay in L2; the transformed
// weights U (36 x c_in x c_out) are read once per chunk. The weight gradient accumulates its dU in
// a per-thread buffer, summed over threads and transformed back (G^T dU G) once at the end.
//
// Accuracy: the transforms' constants (1/4, 1/6, 1/24, 8) add a few f32 roundings per output:
// errors of 1e-6 to 1e-5 of the output's scale, against ~2e-7 for a direct sum (checked against
// float64 and PyTorch's values in tests/kernels/test_conv_fast.cpp).
#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu::KILN_SIMD_NS {
namespace {

using namespace simd;
constexpr int L = kLanes;

// ------------------------------------------------------------------ 1-D transforms

// B^T d for a 6-point input tile.
KILN_SIMD_INLINE void bt(const V (&d)[6], V (&o)[6]) {
  const V four = set1(4.f), five = set1(5.f), two = set1(2.f);
  o[0] = fma(four, d[0], fnma(five, d[2], d[4]));
  const V t1 = fnma(four, d[2], d[4]), t2 = fnma(four, d[1], d[3]);
  o[1] = add(t1, t2);
  o[2] = sub(t1, t2);
  const V t3 = sub(d[4], d[2]), t4 = mul(two, sub(d[3], d[1]));
  o[3] = add(t3, t4);
  o[4] = sub(t3, t4);
  o[5] = fma(four, d[1], fnma(five, d[3], d[5]));
}

// A^T m: 6 products to 4 outputs.
KILN_SIMD_INLINE void at(const V (&m)[6], V (&y)[4]) {
  const V s12 = add(m[1], m[2]), d12 = sub(m[1], m[2]), s34 = add(m[3], m[4]), d34 = sub(m[3], m[4]);
  y[0] = add(add(m[0], s12), s34);
  y[1] = fma(set1(2.f), d34, d12);
  y[2] = fma(set1(4.f), s34, s12);
  y[3] = add(fma(set1(8.f), d34, d12), m[5]);
}

// A y, the adjoint of A^T: 4 output gradients to 6 product gradients.
KILN_SIMD_INLINE void a6(const V (&y)[4], V (&m)[6]) {
  m[0] = y[0];
  m[5] = y[3];
  const V e = add(y[0], y[2]), o = add(y[1], y[3]);
  m[1] = add(e, o);
  m[2] = sub(e, o);
  const V e2 = fma(set1(4.f), y[2], y[0]), o2 = fma(set1(8.f), y[3], mul(set1(2.f), y[1]));
  m[3] = add(e2, o2);
  m[4] = sub(e2, o2);
}

// G g: a 3-tap filter to 6 values.
KILN_SIMD_INLINE void gt(V g0, V g1, V g2, V (&u)[6]) {
  const V sixth = set1(1.f / 6.f), twelfth = set1(1.f / 12.f);
  u[0] = mul(set1(0.25f), g0);
  const V t = mul(add(g0, g2), set1(-1.f / 6.f));
  u[1] = fnma(sixth, g1, t);
  u[2] = fma(sixth, g1, t);
  const V t2 = fma(set1(1.f / 24.f), g0, mul(sixth, g2));
  u[3] = fma(twelfth, g1, t2);
  u[4] = fnma(twelfth, g1, t2);
  u[5] = g2;
}

// G^T u, the adjoint of G: 6 values to 3 taps.
KILN_SIMD_INLINE void gtt(const V (&u)[6], V (&g)[3]) {
  const V s12 = add(u[1], u[2]), d21 = sub(u[2], u[1]), s34 = add(u[3], u[4]), d34 = sub(u[3], u[4]);
  const V sixth = set1(1.f / 6.f);
  g[0] = fma(set1(0.25f), u[0], fnma(sixth, s12, mul(set1(1.f / 24.f), s34)));
  g[1] = fma(sixth, d21, mul(set1(1.f / 12.f), d34));
  g[2] = fma(sixth, sub(s34, s12), u[5]);
}

// ------------------------------------------------------------------ geometry

struct Geo {
  ConvShape s;
  int64_t th, tw;                             // tiles per image: rows, columns
  int64_t cp, kp;                             // c_in, c_out rounded up to whole vectors
  int64_t cols, ocols;                        // columns of the input (4 tw + 2) and output (4 tw) row buffers
  int64_t rows, per_chunk, chunks, tc;        // tile rows in all, at most per chunk; chunks; tiles per chunk
  int64_t v_size, m_size, in_size, out_size;  // per-thread buffers, in floats
};

int64_t round_up(int64_t x, int64_t m) { return ceil_div(x, m) * m; }

// Chunks hold about `budget` floats of V and M (or dM), and at least as many as the transformed
// weights (or dU) that every chunk reads once (or reads and writes), so those cost less per tile
// than the chunk's own traffic. Their count is a multiple of the thread count where there are
// enough tile rows, so static scheduling gives every thread the same work.
Geo make_geo(const ConvShape& s, int threads, int64_t budget) {
  Geo g{};
  g.s = s;
  g.th = ceil_div(s.h_out, 4), g.tw = ceil_div(s.w_out, 4);
  g.cp = round_up(s.c_in, L), g.kp = round_up(s.c_out, L);
  budget = max64(budget, 36 * s.c_in * g.kp);
  g.cols = 4 * g.tw + 2, g.ocols = 4 * g.tw;
  g.rows = s.n * g.th;
  const int64_t tile_floats = 36 * (g.cp + g.kp);
  const int64_t rows_target = max64(1, budget / tile_floats / g.tw);
  g.chunks = min64(g.rows, round_up(ceil_div(g.rows, rows_target), threads));
  g.per_chunk = ceil_div(g.rows, g.chunks);  // the most; chunk c is [rows c / chunks, rows (c + 1) / chunks)
  g.tc = g.per_chunk * g.tw;
  g.v_size = round_up(36 * g.tc * g.cp, 16);
  g.m_size = round_up(36 * g.tc * g.kp, 16);
  g.in_size = round_up(6 * g.cols * L, 16);
  g.out_size = round_up(4 * g.ocols * L, 16);
  return g;
}

constexpr int64_t kForwardBudget = 128 * 1024;  // floats of V and M per chunk (512 KiB: L2)
constexpr int64_t kGradBudget = 192 * 1024;     // V and dM

void zero_vecs(float* p, int64_t count) {
  for (int64_t i = 0; i < count; ++i) store(p + i * L, zero());
}

// ------------------------------------------------------------------ NCHW rows <-> channel vectors

// Rows r0 .. r0 + nrows - 1 of nc channels (plane p of channel l at c0 + l * plane) into buf
// [nrows][cols][L]: column pad + iw holds input column iw; everything outside the image is zero.
template <class T>
void load_rows(const T* c0, int64_t plane, int nc, int64_t h, int64_t w, int64_t r0, int nrows, int64_t pad,
               int64_t cols, float* buf) {
  for (int i = 0; i < nrows; ++i) {
    float* row = buf + i * cols * L;
    const int64_t r = r0 + i;
    if (r < 0 || r >= h) {
      zero_vecs(row, cols);
      continue;
    }
    zero_vecs(row, pad);
    zero_vecs(row + (pad + w) * L, cols - pad - w);
    for (int64_t w0 = 0; w0 < w; w0 += L) {
      const int n = int(min64(L, w - w0));
      V v[L];
      const T* src = c0 + r * w + w0;
      if (n == L) {
#pragma GCC unroll 16
        for (int l = 0; l < L; ++l) v[l] = l < nc ? load(src + l * plane) : zero();
      } else {
#pragma GCC unroll 16
        for (int l = 0; l < L; ++l) v[l] = l < nc ? load_n(src + l * plane, n) : zero();
      }
      transpose(v);
      float* dst = row + (pad + w0) * L;
      for (int k = 0; k < n; ++k) store(dst + k * L, v[k]);
    }
  }
}

// Rows oh0 .. oh0 + 3 (those below h_out) of nc output channels from buf [4][ocols][L].
template <class T>
void store_rows(T* c0, int64_t plane, int nc, int64_t h_out, int64_t w_out, int64_t oh0, const float* buf,
                int64_t ocols) {
  for (int a = 0; a < 4 && oh0 + a < h_out; ++a) {
    for (int64_t w0 = 0; w0 < w_out; w0 += L) {
      const int n = int(min64(L, w_out - w0));
      V v[L];
      const float* src = buf + (a * ocols + w0) * L;
#pragma GCC unroll 16
      for (int k = 0; k < L; ++k) v[k] = k < n ? load(src + k * L) : zero();
      transpose(v);
      T* dst = c0 + (oh0 + a) * w_out + w0;
      if (n == L) {
        for (int l = 0; l < nc; ++l) store(dst + l * plane, v[l]);
      } else {
        for (int l = 0; l < nc; ++l) store_n(dst + l * plane, v[l], n);
      }
    }
  }
}

// ------------------------------------------------------------------ 2-D tile transforms

// V = B^T d B for tile column tx of the 6 rows in buf; position p = 6 i + j goes to v + p * pstride.
void input_tile(const float* buf, int64_t cols, int64_t tx, float* v, int64_t pstride) {
  V t[6][6];
  const float* base = buf + 4 * tx * L;
#pragma GCC unroll 6
  for (int j = 0; j < 6; ++j) {
    V d[6], o[6];
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) d[i] = load(base + (i * cols + j) * L);
    bt(d, o);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) t[i][j] = o[i];
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    V o[6];
    bt(t[i], o);
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) store(v + (i * 6 + j) * pstride, o[j]);
  }
}

// The 4x4 outputs A^T M A (+ bias) of the tile whose products are at m + p * pstride, into
// columns 4 tx .. 4 tx + 3 of the output row buffer.
void output_tile(const float* m, int64_t pstride, V bias, float* buf, int64_t ocols, int64_t tx) {
  V s[4][6];
#pragma GCC unroll 6
  for (int j = 0; j < 6; ++j) {
    V c[6], o[4];
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) c[i] = load(m + (i * 6 + j) * pstride);
    at(c, o);
#pragma GCC unroll 4
    for (int a = 0; a < 4; ++a) s[a][j] = o[a];
  }
#pragma GCC unroll 4
  for (int a = 0; a < 4; ++a) {
    V o[4];
    at(s[a], o);
#pragma GCC unroll 4
    for (int b = 0; b < 4; ++b) store(buf + (a * ocols + 4 * tx + b) * L, add(o[b], bias));
  }
}

// dM = A dY A^T for the 4x4 output gradients of tile column tx in buf [4][ocols][L].
void grad_tile(const float* buf, int64_t ocols, int64_t tx, float* dm, int64_t pstride) {
  V c[6][4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    V y[4], o[6];
#pragma GCC unroll 4
    for (int a = 0; a < 4; ++a) y[a] = load(buf + (a * ocols + 4 * tx + j) * L);
    a6(y, o);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) c[i][j] = o[i];
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    V o[6];
    a6(c[i], o);
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) store(dm + (i * 6 + j) * pstride, o[j]);
  }
}

// ------------------------------------------------------------------ the 36 products

// C[R][S vectors] (= or +=) sum over k of A(r, k) B(k, :). B(k, s) is b + k * b_ks + s * L and
// C(r, s) is c + r * c_rs + s * L. A(r, k) is a[r * a_stride + k] (the forward product, whose rows
// are tiles), or a[k * a_stride + r] when kTransposedA (the weight gradient's, rows are channels).
template <int R, int S, bool kTransposedA>
void micro(int64_t depth, const float* a, int64_t a_stride, const float* b, int64_t b_ks, float* c, int64_t c_rs,
           bool accumulate) {
  V acc[R][S];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s) acc[r][s] = accumulate ? load(c + r * c_rs + s * L) : zero();
  for (int64_t k = 0; k < depth; ++k) {
    V bv[S];
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s) bv[s] = load(b + k * b_ks + s * L);
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      const V av = set1(kTransposedA ? a[k * a_stride + r] : a[r * a_stride + k]);
#pragma GCC unroll 4
      for (int s = 0; s < S; ++s) acc[r][s] = fma(av, bv[s], acc[r][s]);
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s) store(c + r * c_rs + s * L, acc[r][s]);
}

// Register blocking: R rows x S vectors of accumulators, with room left for B's S vectors and
// A's broadcast (32 vector registers with AVX-512, 16 with AVX2).
#if defined(KILN_SIMD_AVX512)
constexpr int kMaxS = 4;
constexpr int rows_for(int s) { return s == 4 ? 6 : s == 3 ? 8 : 12; }
#else
constexpr int kMaxS = 2;
constexpr int rows_for(int s) { return s == 2 ? 6 : 8; }
#endif

// The last rows (fewer than rows_for(S)), one instantiation per count.
template <int R, int S, bool kT>
void micro_tail(int rows, int64_t depth, const float* a, int64_t a_stride, const float* b, int64_t b_ks, float* c,
                int64_t c_rs, bool accumulate) {
  if constexpr (R > 0) {
    if (rows == R)
      micro<R, S, kT>(depth, a, a_stride, b, b_ks, c, c_rs, accumulate);
    else
      micro_tail<R - 1, S, kT>(rows, depth, a, a_stride, b, b_ks, c, c_rs, accumulate);
  }
}

template <int S, bool kT>
void panel(int64_t rows, int64_t depth, const float* a, int64_t a_stride, const float* b, int64_t b_ks, float* c,
           int64_t c_rs, bool accumulate) {
  constexpr int R = rows_for(S);
  const int64_t row_step = kT ? 1 : a_stride;
  int64_t r = 0;
  for (; r + R <= rows; r += R)
    micro<R, S, kT>(depth, a + r * row_step, a_stride, b, b_ks, c + r * c_rs, c_rs, accumulate);
  if (r < rows)
    micro_tail<R - 1, S, kT>(int(rows - r), depth, a + r * row_step, a_stride, b, b_ks, c + r * c_rs, c_rs, accumulate);
}

// C[rows][cols] (= or +=) A @ B over depth; cols is a multiple of L.
template <bool kT>
void gemm(int64_t rows, int64_t cols, int64_t depth, const float* a, int64_t a_stride, const float* b, int64_t b_ks,
          float* c, int64_t c_rs, bool accumulate) {
  for (int64_t j = 0; j < cols;) {
    const int64_t left = (cols - j) / L;
    if (left >= kMaxS) {
      panel<kMaxS, kT>(rows, depth, a, a_stride, b + j, b_ks, c + j, c_rs, accumulate);
      j += kMaxS * L;
    } else if (left == 1) {
      panel<1, kT>(rows, depth, a, a_stride, b + j, b_ks, c + j, c_rs, accumulate);
      j += L;
    } else if constexpr (kMaxS > 2) {
      if (left == 2) {
        panel<2, kT>(rows, depth, a, a_stride, b + j, b_ks, c + j, c_rs, accumulate);
        j += 2 * L;
      } else {
        panel<3, kT>(rows, depth, a, a_stride, b + j, b_ks, c + j, c_rs, accumulate);
        j += 3 * L;
      }
    }
  }
}

// ------------------------------------------------------------------ passes

// Transforms the input tiles of tile rows [q0, q1) into V [36][tc][cp].
template <class T>
void transform_input(const Geo& g, const T* x, int64_t q0, int64_t q1, float* v, float* inbuf) {
  const ConvShape& s = g.s;
  const int64_t plane = s.h_in * s.w_in;
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t n = q / g.th, ty = q % g.th;
    for (int64_t c0 = 0; c0 < s.c_in; c0 += L) {
      load_rows(x + (n * s.c_in + c0) * plane, plane, int(min64(L, s.c_in - c0)), s.h_in, s.w_in, 4 * ty - s.pad_h, 6,
                s.pad_w, g.cols, inbuf);
      for (int64_t tx = 0; tx < g.tw; ++tx)
        input_tile(inbuf, g.cols, tx, v + ((q - q0) * g.tw + tx) * g.cp + c0, g.tc * g.cp);
    }
  }
}

template <class T>
void forward_impl(const ConvShape& s, const T* x, T* y, const float* u, const float* bias, float* ws, int threads) {
  const Geo g = make_geo(s, threads, kForwardBudget);
  const int64_t per_thread = g.v_size + g.m_size + g.in_size + g.out_size;
  const int64_t plane_out = s.h_out * s.w_out;
  region(threads, [&](int t, int nt) {
    float* v = ws + t * per_thread;
    float* m = v + g.v_size;
    float* inbuf = m + g.m_size;
    float* outbuf = inbuf + g.in_size;
    int64_t c_begin, c_end;
    share(g.chunks, t, nt, c_begin, c_end);
    for (int64_t chunk = c_begin; chunk < c_end; ++chunk) {
      const int64_t q0 = g.rows * chunk / g.chunks, q1 = g.rows * (chunk + 1) / g.chunks;
      transform_input(g, x, q0, q1, v, inbuf);
      const int64_t tiles = (q1 - q0) * g.tw;
      for (int p = 0; p < 36; ++p)
        gemm<false>(tiles, g.kp, s.c_in, v + p * g.tc * g.cp, g.cp, u + p * s.c_in * g.kp, g.kp, m + p * g.tc * g.kp,
                    g.kp, false);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / g.th, ty = q % g.th;
        for (int64_t c0 = 0; c0 < s.c_out; c0 += L) {
          const int nc = int(min64(L, s.c_out - c0));
          const V bv = bias ? load_n(bias + c0, nc) : zero();
          for (int64_t tx = 0; tx < g.tw; ++tx)
            output_tile(m + ((q - q0) * g.tw + tx) * g.kp + c0, g.tc * g.kp, bv, outbuf, g.ocols, tx);
          store_rows(y + (n * s.c_out + c0) * plane_out, plane_out, nc, s.h_out, s.w_out, 4 * ty, outbuf, g.ocols);
        }
      }
    }
  });
}

int64_t forward_workspace(const ConvShape& s, int threads) {
  const Geo g = make_geo(s, threads, kForwardBudget);
  return threads * (g.v_size + g.m_size + g.in_size + g.out_size);
}

struct GradSizes {
  Geo g;
  int64_t du_size, gb_size, per_thread;
};
GradSizes grad_sizes(const ConvShape& s, int threads) {
  GradSizes z{make_geo(s, threads, kGradBudget), 0, 0, 0};
  z.du_size = round_up(36 * s.c_in * z.g.kp, 16);
  z.gb_size = round_up(z.g.kp, 16);
  z.per_thread = z.g.v_size + z.g.m_size + z.g.in_size + z.g.out_size + z.du_size + z.gb_size;
  return z;
}

template <class T>
void weight_grad_impl(const ConvShape& s, const T* x, const T* gy, float* gw, float* gb, float* ws, int threads) {
  const GradSizes z = grad_sizes(s, threads);
  const Geo& g = z.g;
  const int64_t plane_out = s.h_out * s.w_out;
  int team = 1;
  // Three regions, each waiting for the one before: every thread's dU, their sum, and G^T dU G.
  region(threads, [&](int th, int nt) {
    float* v = ws + th * z.per_thread;
    float* dm = v + g.v_size;
    float* inbuf = dm + g.m_size;
    float* gbuf = inbuf + g.in_size;
    float* du = gbuf + g.out_size;
    float* bsum = du + z.du_size;
    zero_vecs(du, 36 * s.c_in * g.kp / L);
    zero_vecs(bsum, g.kp / L);
    if (th == 0) team = nt;
    int64_t c_begin, c_end;
    share(g.chunks, th, nt, c_begin, c_end);
    for (int64_t chunk = c_begin; chunk < c_end; ++chunk) {
      const int64_t q0 = g.rows * chunk / g.chunks, q1 = g.rows * (chunk + 1) / g.chunks;
      transform_input(g, x, q0, q1, v, inbuf);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / g.th, ty = q % g.th;
        for (int64_t c0 = 0; c0 < s.c_out; c0 += L) {
          load_rows(gy + (n * s.c_out + c0) * plane_out, plane_out, int(min64(L, s.c_out - c0)), s.h_out, s.w_out,
                    4 * ty, 4, 0, g.ocols, gbuf);
          V bacc = load(bsum + c0);
          for (int64_t i = 0; i < 4 * g.ocols; ++i) bacc = add(bacc, load(gbuf + i * L));
          store(bsum + c0, bacc);
          for (int64_t tx = 0; tx < g.tw; ++tx)
            grad_tile(gbuf, g.ocols, tx, dm + ((q - q0) * g.tw + tx) * g.kp + c0, g.tc * g.kp);
        }
      }
      const int64_t tiles = (q1 - q0) * g.tw;
      for (int p = 0; p < 36; ++p)
        gemm<true>(s.c_in, g.kp, tiles, v + p * g.tc * g.cp, g.cp, dm + p * g.tc * g.kp, g.kp, du + p * s.c_in * g.kp,
                   g.kp, true);
    }
  });
  // Every thread's dU is complete: sum them into thread 0's.
  const int64_t du_off = g.v_size + g.m_size + g.in_size + g.out_size;
  float* du0 = ws + du_off;
  if (team > 1)
    region(threads, [&](int th, int nt) {
      int64_t r_begin, r_end;
      share(36 * s.c_in, th, nt, r_begin, r_end);
      for (int64_t row = r_begin; row < r_end; ++row)
        for (int t = 1; t < team; ++t) {
          const float* src = ws + t * z.per_thread + du_off + row * g.kp;
          float* dst = du0 + row * g.kp;
          for (int64_t j = 0; j < g.kp; j += L) store(dst + j, add(load(dst + j), load(src + j)));
        }
    });
  // gw[co][ci] = G^T dU[ci][co] G, channels co in the lanes.
  region(threads, [&](int th, int nt) {
    int64_t ci_begin, ci_end;
    share(s.c_in, th, nt, ci_begin, ci_end);
    for (int64_t ci = ci_begin; ci < ci_end; ++ci)
      for (int64_t c0 = 0; c0 < s.c_out; c0 += L) {
        V w3[3][6];
#pragma GCC unroll 6
        for (int b = 0; b < 6; ++b) {
          V col[6], o[3];
#pragma GCC unroll 6
          for (int a = 0; a < 6; ++a) col[a] = load(du0 + ((a * 6 + b) * s.c_in + ci) * g.kp + c0);
          gtt(col, o);
#pragma GCC unroll 3
          for (int i = 0; i < 3; ++i) w3[i][b] = o[i];
        }
        alignas(64) float taps[9][L];
#pragma GCC unroll 3
        for (int i = 0; i < 3; ++i) {
          V o[3];
          gtt(w3[i], o);
#pragma GCC unroll 3
          for (int j = 0; j < 3; ++j) store(taps[i * 3 + j], o[j]);
        }
        const int nc = int(min64(L, s.c_out - c0));
        for (int l = 0; l < nc; ++l)
          for (int t = 0; t < 9; ++t) gw[((c0 + l) * s.c_in + ci) * 9 + t] = taps[t][l];
      }
  });
  if (gb) {
    for (int64_t c = 0; c < s.c_out; ++c) {
      float sum = 0.f;
      for (int t = 0; t < team; ++t) sum += ws[t * z.per_thread + z.per_thread - z.gb_size + c];
      gb[c] = sum;
    }
  }
}

// ------------------------------------------------------------------ weights

int64_t weights_size(int64_t k, int64_t m) { return 36 * k * round_up(m, L); }

void weights(int64_t k, int64_t m, const float* wt, float* u, int threads) {
  const int64_t mp = round_up(m, L);
  region(threads, [&](int t, int nt) {
    int64_t k_begin, k_end;
    share(k, t, nt, k_begin, k_end);
    for (int64_t kk = k_begin; kk < k_end; ++kk)
      for (int64_t j0 = 0; j0 < mp; j0 += L) {
        V w[9];
#pragma GCC unroll 9
        for (int t = 0; t < 9; ++t) w[t] = load(wt + (kk * 9 + t) * mp + j0);
        V t6[6][3];
#pragma GCC unroll 3
        for (int j = 0; j < 3; ++j) {
          V o[6];
          gt(w[j], w[3 + j], w[6 + j], o);
#pragma GCC unroll 6
          for (int a = 0; a < 6; ++a) t6[a][j] = o[a];
        }
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a) {
          V o[6];
          gt(t6[a][0], t6[a][1], t6[a][2], o);
#pragma GCC unroll 6
          for (int b = 0; b < 6; ++b) store(u + ((a * 6 + b) * k + kk) * mp + j0, o[b]);
        }
      }
  });
}

}  // namespace

// The entry points of this instruction set's table (simd_kernels.cpp).
int64_t winograd_weights_size(int64_t k, int64_t m) { return weights_size(k, m); }
void winograd_weights(int64_t k, int64_t m, const float* wt, float* u, int threads) { weights(k, m, wt, u, threads); }
int64_t winograd_forward_workspace(const ConvShape& s, int threads) { return forward_workspace(s, threads); }
void winograd_forward_f32(const ConvShape& s, const float* x, float* y, const float* u, const float* bias, float* ws,
                          int threads) {
  forward_impl(s, x, y, u, bias, ws, threads);
}
void winograd_forward_bf16(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* u, const float* bias,
                           float* ws, int threads) {
  forward_impl(s, x, y, u, bias, ws, threads);
}
int64_t winograd_weight_grad_workspace(const ConvShape& s, int threads) {
  return threads * grad_sizes(s, threads).per_thread;
}
void winograd_weight_grad_f32(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb, float* ws,
                              int threads) {
  weight_grad_impl(s, x, gy, gw, gb, ws, threads);
}
void winograd_weight_grad_bf16(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw, float* gb,
                               float* ws, int threads) {
  weight_grad_impl(s, x, gy, gw, gb, ws, threads);
}

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS
