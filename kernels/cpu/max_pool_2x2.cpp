// 2x2 max pooling with stride 2 of f32 planes, kLanes outputs at a time (simd_kernels.h). Each
// pair of input rows is loaded as 2 kLanes consecutive values and split into even and odd columns
// (one permutation each), so a window's four candidates sit in the same lane of four vectors and
// the choice is three compares and blends, branch-free: on real activations which of the four
// wins is unpredictable, and a mispredicted branch costs more than the loads. The rule is the
// scalar loop's (pool.cpp): the first maximum in window order wins, and the first NaN propagates.
// Rows narrower than a vector (the 16- and 8-wide planes of the reference CNN's later layers) are
// packed several to a vector with masked loads, so no lane idles. The backward pass writes each
// window's four gradients at once (the output's gradient where the recorded maximum was, zero
// elsewhere) and interleaves them back into rows, so grad_in needs no separate zeroing pass.
// Memory: the input read once, the output and its int64 indices written once.
#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu::KILN_SIMD_NS {
namespace {

using namespace simd;
constexpr int L = kLanes;

// Input columns [2 ow0, 2 ow0 + 2n) of a row as even and odd columns.
KILN_SIMD_INLINE void split(const float* row, int n, V& even, V& odd) {
  const int m = 2 * n;
  const V lo = m >= L ? load(row) : load_n(row, m);
  const V hi = m >= 2 * L ? load(row + L) : m > L ? load_n(row + L, m - L) : zero();
  deinterleave(lo, hi, even, odd);
}

KILN_SIMD_INLINE void merge(float* row, int n, V even, V odd) {
  V lo, hi;
  interleave(even, odd, lo, hi);
  const int m = 2 * n;
  if (m >= 2 * L) {
    store(row, lo);
    store(row + L, hi);
  } else if (m > L) {
    store(row, lo);
    store_n(row + L, hi, m - L);
  } else {
    store_n(row, lo, m);
  }
}

// Where the kLanes windows of one step lie: kLanes of one output row from column ow0 (rows at
// least a vector wide), or the whole of 2 kLanes / w_in consecutive output rows from row oh (rows
// narrower than a vector whose width divides it: w_in = 2 w_out, each vector of input holds
// kLanes / w_in input rows, every other row of the plane).
enum Form { kRow, kTail, kPacked };  // a vector of one row, the row's last few, packed rows
struct Step {
  int64_t top;  // the first window's top-left input position in the plane
  int64_t o;    // the first window's output position
  int n;        // windows in this step
};

// The two rows of candidates of a step as even and odd columns.
// kForm == kPacked: kRows input rows of w_in = kLanes / kRows per vector.
template <Form kForm, int kRows>
KILN_SIMD_INLINE void load_step(const Step& st, const float* x, int64_t w_in, V& a, V& b, V& c, V& d) {
  const float* top = x + st.top;
  if constexpr (kForm == kPacked) {  // output row h kRows + k: lanes [k w_in, (k + 1) w_in) of half h
    V t[2] = {zero(), zero()}, u[2] = {zero(), zero()};
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h)
#pragma GCC unroll 8
      for (int k = 0; k < kRows; ++k) {
        const int row = h * kRows + k, lo = k * (L / kRows);
        const float* p = top + 2 * row * w_in - lo;
        t[h] = load_lanes(t[h], p, lo, lo + L / kRows);
        u[h] = load_lanes(u[h], p + w_in, lo, lo + L / kRows);
      }
    deinterleave(t[0], t[1], a, b);
    deinterleave(u[0], u[1], c, d);
  } else if constexpr (kForm == kRow) {
    deinterleave(load(top), load(top + L), a, b);
    deinterleave(load(top + w_in), load(top + w_in + L), c, d);
  } else {
    split(top, st.n, a, b);
    split(top + w_in, st.n, c, d);
  }
}

template <Form kForm, int kRows>
KILN_SIMD_INLINE void forward_step(const Step& st, const float* x, float* y, int64_t* idx, int64_t w_in, VI ia) {
  V a, b, c, d;
  load_step<kForm, kRows>(st, x, w_in, a, b, c, d);
  const VI ib = add_i(ia, set1_i(1)), ic = add_i(ia, set1_i(int32_t(w_in))), id = add_i(ic, set1_i(1));
  V v = a;
  VI k = ia;
  M g = cmp_gt(b, v);
  v = select(g, b, v), k = select(g, ib, k);
  g = cmp_gt(c, v);
  v = select(g, c, v), k = select(g, ic, k);
  g = cmp_gt(d, v);
  v = select(g, d, v), k = select(g, id, k);
  // NaNs, last to first, so the first one in the window is the one kept.
  g = is_nan(d);
  v = select(g, d, v), k = select(g, id, k);
  g = is_nan(c);
  v = select(g, c, v), k = select(g, ic, k);
  g = is_nan(b);
  v = select(g, b, v), k = select(g, ib, k);
  g = is_nan(a);
  v = select(g, a, v), k = select(g, ia, k);
  if constexpr (kForm == kTail) {
    store_n(y + st.o, v, st.n);
    if (idx) store_i64(idx + st.o, k, st.n);
  } else {
    store(y + st.o, v);
    if (idx) store_i64(idx + st.o, k, L);
  }
}

// Each window's four gradients, written as two interleaved rows.
template <Form kForm, int kRows>
KILN_SIMD_INLINE void backward_step(const Step& st, float* gx, const float* gy, const int64_t* idx, int64_t w_in,
                                    VI ia) {
  const int n = kForm == kTail ? st.n : L;
  const VI rel = sub_i(load_i64(idx + st.o, n), ia);
  const V g = kForm == kTail ? load_n(gy + st.o, n) : load(gy + st.o);
  const V a = select_or_zero(eq_i(rel, set1_i(0)), g), b = select_or_zero(eq_i(rel, set1_i(1)), g);
  const V c = select_or_zero(eq_i(rel, set1_i(int32_t(w_in))), g);
  const V d = select_or_zero(eq_i(rel, set1_i(int32_t(w_in + 1))), g);
  float* top = gx + st.top;
  if constexpr (kForm == kPacked) {
    V t[2], u[2];
    interleave(a, b, t[0], t[1]);
    interleave(c, d, u[0], u[1]);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h)
#pragma GCC unroll 8
      for (int k = 0; k < kRows; ++k) {
        const int row = h * kRows + k, lo = k * (L / kRows);
        float* p = top + 2 * row * w_in - lo;
        store_lanes(p, t[h], lo, lo + L / kRows);
        store_lanes(p + w_in, u[h], lo, lo + L / kRows);
      }
  } else {
    merge(top, n, a, b);
    merge(top + w_in, n, c, d);
  }
}

// The packed steps of a plane whose input rows are kLanes / kRows wide: 2 kRows output rows each.
template <int kRows, class F>
KILN_SIMD_INLINE int64_t packed_steps(int64_t h_out, int64_t w_in, int64_t w_out, F& f) {
  alignas(64) int32_t off[L];
  for (int l = 0; l < L; ++l) off[l] = int32_t(2 * (l / w_out) * w_in + 2 * (l % w_out));
#if defined(KILN_SIMD_AVX512)
  const VI offs = _mm512_load_si512(off);
#else
  const VI offs = _mm256_load_si256(reinterpret_cast<const __m256i*>(off));
#endif
  int64_t oh = 0;
  for (; oh + 2 * kRows <= h_out; oh += 2 * kRows)
    f.template operator()<kPacked, kRows>(Step{2 * oh * w_in, oh * w_out, L},
                                          add_i(set1_i(int32_t(2 * oh * w_in)), offs));
  return oh;
}

// Calls f.template operator()<form, rows>(step, ia) for every step of a plane; ia holds each
// window's top-left input position.
template <class F>
KILN_SIMD_INLINE void for_each_step(int64_t h_out, int64_t w_in, int64_t w_out, F&& f) {
  int64_t oh = 0;
  if (w_in == 2 * w_out && w_in <= L && L % w_in == 0 && w_in >= 2) {
    switch (L / w_in) {
      case 1: oh = packed_steps<1>(h_out, w_in, w_out, f); break;
      case 2: oh = packed_steps<2>(h_out, w_in, w_out, f); break;
      case 4: oh = packed_steps<4>(h_out, w_in, w_out, f); break;
      default: oh = packed_steps<L / 2>(h_out, w_in, w_out, f); break;
    }
  }
  const VI lane2 = add_i(iota_i(), iota_i());
  for (; oh < h_out; ++oh) {
    int64_t ow0 = 0;
    for (; ow0 + L <= w_out; ow0 += L)
      f.template operator()<kRow, 0>(Step{2 * oh * w_in + 2 * ow0, oh * w_out + ow0, L},
                                     add_i(set1_i(int32_t(2 * oh * w_in + 2 * ow0)), lane2));
    if (ow0 < w_out)
      f.template operator()<kTail, 0>(Step{2 * oh * w_in + 2 * ow0, oh * w_out + ow0, int(w_out - ow0)},
                                      add_i(set1_i(int32_t(2 * oh * w_in + 2 * ow0)), lane2));
  }
}

void forward(const float* x, float* y, int64_t* idx, int64_t h_in, int64_t w_in, int64_t h_out, int64_t w_out) {
  for_each_step(h_out, w_in, w_out, [&]<Form kForm, int kRows>(const Step& st, VI ia) {
    forward_step<kForm, kRows>(st, x, y, idx, w_in, ia);
  });
}

void backward(float* gx, const float* gy, const int64_t* idx, int64_t h_in, int64_t w_in, int64_t h_out,
              int64_t w_out) {
  if (h_in != 2 * h_out || w_in != 2 * w_out)  // an odd last row or column lies outside every window
    for (int64_t i = 0; i < h_in * w_in; i += L) store_n(gx + i, zero(), int(min64(L, h_in * w_in - i)));
  for_each_step(h_out, w_in, w_out, [&]<Form kForm, int kRows>(const Step& st, VI ia) {
    backward_step<kForm, kRows>(st, gx, gy, idx, w_in, ia);
  });
}

}  // namespace

void max_pool_2x2_f32(const float* x, float* y, int64_t* idx, int64_t h_in, int64_t w_in, int64_t h_out,
                      int64_t w_out) {
  forward(x, y, idx, h_in, w_in, h_out, w_out);
}
void max_pool_2x2_backward_f32(float* gx, const float* gy, const int64_t* idx, int64_t h_in, int64_t w_in,
                               int64_t h_out, int64_t w_out) {
  backward(gx, gy, idx, h_in, w_in, h_out, w_out);
}

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS
