// bf16 GEMM with f32 accumulation (see bgemm.h for the packed layout).
//
// AMX: eight 1 KiB tile registers; a 32x32 block of C lives in four f32 tiles (0-3), fed by two A
// tiles (4, 5: 16 rows x 32 k) and two B tiles (6, 7: 16 k-pairs x 16 columns x 2). Each k step
// of 32 is four TDPBF16PS, 32K multiply-adds, from 4 KiB of operands that the packing made
// contiguous, so the loads stream from L1/L2. The block's accumulators go through a 4 KiB f32
// buffer to the epilogue (bias, beta, rounding to bf16), written with 16-lane masked stores.
// AVX512-BF16: 8 rows x 32 columns of C in 16 zmm accumulators; per k pair one VDPBF16PS per
// accumulator, with A's pair broadcast and B's VNNI row loaded as is. Same packing, same
// epilogue. Generic: bgemm widens its operands to f32 as they are and runs sgemm (no packing);
// bgemm_packed widens the packed tiles.
#include "kernels/cpu/bgemm.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/bf16_ops.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd_bf16.h"

namespace kiln::kernels::cpu {
namespace {

constexpr int64_t kTileElems = 512;  // 16 rows x 64 bytes of bf16
int64_t ceil_div(int64_t x, int64_t d) { return (x + d - 1) / d; }

// ------------------------------------------------------------------ epilogue

// Writes rows x cols of an f32 block (row stride acc_ld) to C: + row_bias, then beta.
template <class CT>
KILN_TARGET_AVX512 void store_block(const float* acc, int64_t acc_ld, int64_t rows, int64_t cols, float beta, CT* c,
                                    int64_t ldc, const float* row_bias) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = acc + r * acc_ld;
    CT* dst = c + r * ldc;
    const __m512 bias = _mm512_set1_ps(row_bias ? row_bias[r] : 0.f);
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = simd::tail_mask(cols - j);
      __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + j), bias);
      if constexpr (std::is_same_v<CT, float>) {
        if (beta != 0.f) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, dst + j));
        _mm512_mask_storeu_ps(dst + j, m, v);
      } else {
        if (beta != 0.f) v = _mm512_add_ps(v, simd::maskz_load_bf16(m, dst + j));
        simd::mask_store_bf16(dst + j, m, v);
      }
    }
  }
}

// ------------------------------------------------------------------ AMX

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Linux gives a process the 8 KiB of AMX register state only when it asks (arch_prctl); the answer
// holds for every thread of the process, so it is asked once.
bool amx_permitted() {
  static const bool ok = [] {
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

// One block of up to 2x2 tiles (NM x NN), K in kb steps of 32; acc is [32][32] f32.
template <int NM, int NN>
KILN_TARGET_AMX void amx_block(const BFloat16* a0, const BFloat16* a1, const BFloat16* b0, const BFloat16* b1,
                               int64_t kb_count, float* acc) {
  _tile_zero(0);
  if constexpr (NN > 1) _tile_zero(1);
  if constexpr (NM > 1) _tile_zero(2);
  if constexpr (NM > 1 && NN > 1) _tile_zero(3);
  for (int64_t kb = 0; kb < kb_count; ++kb) {
    const int64_t off = kb * kTileElems;
    _tile_loadd(4, a0 + off, 64);
    _tile_loadd(6, b0 + off, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NN > 1) {
      _tile_loadd(7, b1 + off, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (NM > 1) {
      _tile_loadd(5, a1 + off, 64);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (NN > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  constexpr long ld = 32 * sizeof(float);
  _tile_stored(0, acc, ld);
  if constexpr (NN > 1) _tile_stored(1, acc + 16, ld);
  if constexpr (NM > 1) _tile_stored(2, acc + 16 * 32, ld);
  if constexpr (NM > 1 && NN > 1) _tile_stored(3, acc + 16 * 32 + 16, ld);
}

// Blocks of 32x32 C, [first, last) in row-major block order.
template <class CT>
KILN_TARGET_AMX void amx_blocks(int64_t first, int64_t last, int64_t m, int64_t n, int64_t k, const BFloat16* pa,
                                const BFloat16* pb, float beta, CT* c, int64_t ldc, const float* row_bias) {
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // The intrinsic tells the compiler it reads 8 bytes of cfg; make sure all 64 are written.
  asm volatile("" ::: "memory");
  _tile_loadconfig(&cfg);
  asm volatile("" ::: "memory");
  const int64_t kb_count = ceil_div(k, 32), mb_count = ceil_div(m, 16), nb_count = ceil_div(n, 16);
  const int64_t nblocks_n = ceil_div(n, 32);
  alignas(64) float acc[32 * 32];
  for (int64_t blk = first; blk < last; ++blk) {
    const int64_t bm = blk / nblocks_n, bn = blk % nblocks_n;
    const int64_t mb = 2 * bm, nb = 2 * bn;
    const bool two_m = mb + 1 < mb_count, two_n = nb + 1 < nb_count;
    const BFloat16* a0 = pa + mb * kb_count * kTileElems;
    const BFloat16* a1 = a0 + kb_count * kTileElems;
    const BFloat16* b0 = pb + nb * kb_count * kTileElems;
    const BFloat16* b1 = b0 + kb_count * kTileElems;
    if (two_m && two_n)
      amx_block<2, 2>(a0, a1, b0, b1, kb_count, acc);
    else if (two_m)
      amx_block<2, 1>(a0, a1, b0, b1, kb_count, acc);
    else if (two_n)
      amx_block<1, 2>(a0, a1, b0, b1, kb_count, acc);
    else
      amx_block<1, 1>(a0, a1, b0, b1, kb_count, acc);
    const int64_t i0 = mb * 16, j0 = nb * 16;
    store_block(acc, 32, std::min<int64_t>(32, m - i0), std::min<int64_t>(32, n - j0), beta, c + i0 * ldc + j0, ldc,
                row_bias ? row_bias + i0 : nullptr);
  }
  _tile_release();
}

// ------------------------------------------------------------------ AVX512-BF16

// Blocks of 16x32 C (one A tile row band, two B tile column bands), [first, last) row-major.
template <class CT>
KILN_TARGET_AVX512BF16 void avx512bf16_blocks(int64_t first, int64_t last, int64_t m, int64_t n, int64_t k,
                                              const BFloat16* pa, const BFloat16* pb, float beta, CT* c, int64_t ldc,
                                              const float* row_bias) {
  const int64_t kb_count = ceil_div(k, 32), nb_count = ceil_div(n, 16);
  const int64_t nblocks_n = ceil_div(n, 32);
  alignas(64) float acc[16 * 32];
  for (int64_t blk = first; blk < last; ++blk) {
    const int64_t mb = blk / nblocks_n, nb = 2 * (blk % nblocks_n);
    const bool two_n = nb + 1 < nb_count;
    const BFloat16* a = pa + mb * kb_count * kTileElems;
    const BFloat16* b0 = pb + nb * kb_count * kTileElems;
    const BFloat16* b1 = two_n ? b0 + kb_count * kTileElems : b0;
    for (int half = 0; half < 2; ++half) {
      __m512 s0[8], s1[8];
      for (int r = 0; r < 8; ++r) s0[r] = s1[r] = _mm512_setzero_ps();
      for (int64_t kb = 0; kb < kb_count; ++kb) {
        const BFloat16* at = a + kb * kTileElems + half * 8 * 32;
        const BFloat16* bt0 = b0 + kb * kTileElems;
        const BFloat16* bt1 = b1 + kb * kTileElems;
        for (int p = 0; p < 16; ++p) {
          const __m512bh vb0 = (__m512bh)_mm512_loadu_si512(bt0 + p * 32);
          const __m512bh vb1 = (__m512bh)_mm512_loadu_si512(bt1 + p * 32);
          for (int r = 0; r < 8; ++r) {
            int32_t pair;
            std::memcpy(&pair, at + r * 32 + 2 * p, 4);
            const __m512bh va = (__m512bh)_mm512_set1_epi32(pair);
            s0[r] = _mm512_dpbf16_ps(s0[r], va, vb0);
            s1[r] = _mm512_dpbf16_ps(s1[r], va, vb1);
          }
        }
      }
      for (int r = 0; r < 8; ++r) {
        _mm512_store_ps(acc + (half * 8 + r) * 32, s0[r]);
        _mm512_store_ps(acc + (half * 8 + r) * 32 + 16, s1[r]);
      }
    }
    const int64_t i0 = mb * 16, j0 = nb * 16;
    store_block(acc, 32, std::min<int64_t>(16, m - i0), std::min<int64_t>(32, n - j0), beta, c + i0 * ldc + j0, ldc,
                row_bias ? row_bias + i0 : nullptr);
  }
}

// ------------------------------------------------------------------ generic

// Widens the packed operands to f32, tile by tile, and runs sgemm.
template <class CT>
void generic_packed(int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb, float beta, CT* c,
                    int64_t ldc, const float* row_bias) {
  const int64_t kb_count = ceil_div(k, 32);
  thread_local std::vector<float> a, b, out;
  a.resize(size_t(m * k)), b.resize(size_t(k * n)), out.resize(size_t(m * n));
  for (int64_t mb = 0; mb * 16 < m; ++mb)
    for (int64_t kb = 0; kb < kb_count; ++kb) {
      const BFloat16* tile = pa + (mb * kb_count + kb) * kTileElems;
      const int64_t cols = std::min<int64_t>(32, k - kb * 32);
      for (int64_t r = 0; r < 16 && mb * 16 + r < m; ++r)
        bf16_to_f32(tile + r * 32, a.data() + (mb * 16 + r) * k + kb * 32, cols);
    }
  for (int64_t nb = 0; nb * 16 < n; ++nb)
    for (int64_t kb = 0; kb < kb_count; ++kb) {
      const BFloat16* tile = pb + (nb * kb_count + kb) * kTileElems;
      const int64_t cols = std::min<int64_t>(16, n - nb * 16);
      for (int64_t pr = 0; pr < 16 && kb * 32 + 2 * pr < k; ++pr)
        for (int64_t h = 0; h < 2 && kb * 32 + 2 * pr + h < k; ++h) {
          float* row = b.data() + (kb * 32 + 2 * pr + h) * n + nb * 16;
          for (int64_t j = 0; j < cols; ++j) row[j] = float(tile[pr * 32 + j * 2 + h]);
        }
    }
  sgemm(false, false, m, n, k, a.data(), k, b.data(), n, 0.f, out.data(), n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float v = out[size_t(i * n + j)] + (row_bias ? row_bias[i] : 0.f);
      if (beta != 0.f) v += float(c[i * ldc + j]);
      c[i * ldc + j] = CT(v);
    }
}

// ------------------------------------------------------------------ dispatch

detail::BgemmKernel choose() {
  if (isa_enabled(Isa::amx) && amx_permitted()) return detail::BgemmKernel::amx;
  if (isa_enabled(Isa::avx512bf16)) return detail::BgemmKernel::avx512bf16;
  return detail::BgemmKernel::generic;
}

detail::BgemmKernel kernel() {
  static const detail::BgemmKernel k = choose();
  return k;
}

// Multiply-adds below which a product runs on one thread.
constexpr int64_t kParallelMacs = int64_t(1) << 21;

template <class CT>
void run_packed(detail::BgemmKernel kern, int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb,
                float beta, CT* c, int64_t ldc, const float* row_bias) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // an empty sum: only the bias and beta remain
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float v = row_bias ? row_bias[i] : 0.f;
        if (beta != 0.f) v += float(c[i * ldc + j]);
        c[i * ldc + j] = CT(v);
      }
    return;
  }
  if (kern == detail::BgemmKernel::generic) return generic_packed(m, n, k, pa, pb, beta, c, ldc, row_bias);
  const bool amx = kern == detail::BgemmKernel::amx;
  const int64_t nblocks = (amx ? ceil_div(m, 32) : ceil_div(m, 16)) * ceil_div(n, 32);
  auto range = [&](int64_t first, int64_t last) {
    if (amx)
      amx_blocks(first, last, m, n, k, pa, pb, beta, c, ldc, row_bias);
    else
      avx512bf16_blocks(first, last, m, n, k, pa, pb, beta, c, ldc, row_bias);
  };
  const int threads = in_parallel() || m * n * k < kParallelMacs ? 1 : max_threads();
  if (threads == 1 || nblocks == 1) return range(0, nblocks);
  parallel_chunks(nblocks, threads, range);
}

// Thread-local scratch for bgemm's packed operands, grown as needed and kept.
BFloat16* scratch(std::vector<BFloat16>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
  return v.data();
}

// Rows x cols of a bf16 matrix (row stride ld) widened to a dense f32 one, a row at a time.
void widen(const BFloat16* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  for (int64_t r = 0; r < rows; ++r) bf16_to_f32(src + r * ld, dst + r * cols, cols);
}

// Without bf16 dot products the operands are widened to f32 as they are (a linear pass, vector
// wide where the CPU has AVX-512), multiplied by sgemm, and a bf16 C rounded once: no detour
// through the packed tiles, which only the bf16 kernels read.
template <class CT>
void bgemm_widened(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t lda, const BFloat16* b,
                   int64_t ldb, float beta, CT* c, int64_t ldc) {
  thread_local std::vector<float> fa, fb, fc;
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (int64_t(fa.size()) < a_rows * a_cols) fa.resize(size_t(a_rows * a_cols));
  if (int64_t(fb.size()) < b_rows * b_cols) fb.resize(size_t(b_rows * b_cols));
  widen(a, a_rows, a_cols, lda, fa.data());
  widen(b, b_rows, b_cols, ldb, fb.data());
  if constexpr (std::is_same_v<CT, float>) {
    sgemm(ta, tb, m, n, k, fa.data(), a_cols, fb.data(), b_cols, beta, c, ldc);
  } else {
    if (int64_t(fc.size()) < m * n) fc.resize(size_t(m * n));
    if (beta != 0.f) widen(c, m, n, ldc, fc.data());
    sgemm(ta, tb, m, n, k, fa.data(), a_cols, fb.data(), b_cols, beta, fc.data(), n);
    for (int64_t i = 0; i < m; ++i) f32_to_bf16(fc.data() + i * n, c + i * ldc, n);
  }
}

template <class CT>
void bgemm_any(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t lda, const BFloat16* b,
               int64_t ldb, float beta, CT* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (kernel() == detail::BgemmKernel::generic && k > 0)
    return bgemm_widened(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  thread_local std::vector<BFloat16> buf_a, buf_b;
  BFloat16* pa = scratch(buf_a, bf16_packed_a_size(m, k));
  BFloat16* pb = scratch(buf_b, bf16_packed_b_size(k, n));
  bf16_pack_a(ta, m, k, a, lda, pa);
  bf16_pack_b(tb, k, n, b, ldb, pb);
  run_packed(kernel(), m, n, k, pa, pb, beta, c, ldc, nullptr);
}

}  // namespace

// ------------------------------------------------------------------ packing

int64_t bf16_packed_a_size(int64_t m, int64_t k) { return ceil_div(m, 16) * ceil_div(k, 32) * kTileElems; }
int64_t bf16_packed_b_size(int64_t k, int64_t n) { return ceil_div(n, 16) * ceil_div(k, 32) * kTileElems; }

void bf16_pack_a(bool trans, int64_t m, int64_t k, const BFloat16* a, int64_t lda, BFloat16* out) {
  const int64_t mb_count = ceil_div(m, 16), kb_count = ceil_div(k, 32);
  if (out) std::memset(static_cast<void*>(out), 0, sizeof(BFloat16) * size_t(bf16_packed_a_size(m, k)));
  for (int64_t mb = 0; mb < mb_count; ++mb) {
    const int64_t rows = std::min<int64_t>(16, m - mb * 16);
    for (int64_t kb = 0; kb < kb_count; ++kb) {
      BFloat16* tile = out + (mb * kb_count + kb) * kTileElems;
      const int64_t k0 = kb * 32, cols = std::min<int64_t>(32, k - k0);
      if (!trans) {
        for (int64_t r = 0; r < rows; ++r)
          std::memcpy(tile + r * 32, a + (mb * 16 + r) * lda + k0, sizeof(BFloat16) * size_t(cols));
      } else {  // op(A)[i, kk] = a[kk, i]: read along rows of a
        for (int64_t cc = 0; cc < cols; ++cc) {
          const BFloat16* src = a + (k0 + cc) * lda + mb * 16;
          for (int64_t r = 0; r < rows; ++r) tile[r * 32 + cc] = src[r];
        }
      }
    }
  }
}

namespace {

// One row of a VNNI tile: the 16 columns [j0, j0 + cols) of op(B) rows kk and kk + 1 (second:
// whether row kk + 1 exists), each pair as one 32-bit word, zero past cols.
void pack_b_pair_scalar(bool trans, const BFloat16* b, int64_t ldb, int64_t kk, int64_t j0, int64_t cols, bool second,
                        uint32_t* row) {
  auto bits = [](const BFloat16& v) { return uint32_t(v.bits); };
  for (int64_t j = 0; j < cols; ++j) {
    // op(B)[kk, j] is b[kk, j], or b[j, kk] when trans (then each pair is adjacent in b).
    const BFloat16* lo = trans ? b + (j0 + j) * ldb + kk : b + kk * ldb + j0 + j;
    const BFloat16* hi = trans ? lo + 1 : lo + ldb;
    row[j] = bits(*lo) | (second ? bits(*hi) << 16 : 0u);
  }
  std::fill(row + cols, row + 16, 0u);
}

// The same, 16 columns at once: two rows zero-extended and merged, or (trans, both rows present)
// 16 words gathered from 16 rows of b.
KILN_TARGET_AVX512 void pack_b_pair_avx512(bool trans, const BFloat16* b, int64_t ldb, int64_t kk, int64_t j0,
                                           int64_t cols, bool second, uint32_t* row) {
  const __mmask16 m = simd::tail_mask(cols);
  __m512i v;
  if (!trans) {
    const BFloat16* r0 = b + kk * ldb + j0;
    v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0));
    if (second)
      v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0 + ldb)), 16));
  } else {
    const __m512i offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(int(ldb * 2)));
    v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, offsets, b + j0 * ldb + kk, 1);
  }
  _mm512_storeu_si512(row, _mm512_maskz_mov_epi32(m, v));
}

}  // namespace

void bf16_pack_b(bool trans, int64_t k, int64_t n, const BFloat16* b, int64_t ldb, BFloat16* out) {
  bf16_pack_b_rows(trans, k, n, b, ldb, out, k, 0);
}

void bf16_pack_b_rows(bool trans, int64_t k, int64_t n, const BFloat16* b, int64_t ldb, BFloat16* out, int64_t k_total,
                      int64_t k0) {
  KILN_CHECK(k0 % 32 == 0 && k0 + k <= k_total, "bf16_pack_b_rows: rows [", k0, ", ", k0 + k,
             ") must start on a multiple of 32 and lie within the ", k_total, " rows of the operand");
  const int64_t nb_count = ceil_div(n, 16), kb_count = ceil_div(k, 32), kb_total = ceil_div(k_total, 32);
  // The gather's byte offsets are 32-bit.
  static const bool avx512 = isa_enabled(Isa::avx512);
  const bool fast = avx512 && (!trans || 16 * ldb * 2 < (int64_t(1) << 31));
  uint32_t* out32 = reinterpret_cast<uint32_t*>(out);
  for (int64_t nb = 0; nb < nb_count; ++nb) {
    const int64_t cols = std::min<int64_t>(16, n - nb * 16);
    for (int64_t kb = 0; kb < kb_count; ++kb) {
      uint32_t* tile = out32 + (nb * kb_total + k0 / 32 + kb) * (kTileElems / 2);
      const int64_t krows = std::min<int64_t>(32, k - kb * 32);
      for (int64_t p = 0; p < 16; ++p) {
        uint32_t* row = tile + p * 16;
        if (2 * p >= krows) {
          std::fill(row, row + 16, 0u);
          continue;
        }
        const int64_t kk = kb * 32 + 2 * p;
        const bool second = 2 * p + 1 < krows;
        // A lone last row of a transposed B would read past its element: the scalar loop takes it.
        if (fast && (second || !trans))
          pack_b_pair_avx512(trans, b, ldb, kk, nb * 16, cols, second, row);
        else
          pack_b_pair_scalar(trans, b, ldb, kk, nb * 16, cols, second, row);
      }
    }
  }
}

// ------------------------------------------------------------------ entry points

void bgemm_packed(int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb, float beta, float* c,
                  int64_t ldc, const float* row_bias) {
  run_packed(kernel(), m, n, k, pa, pb, beta, c, ldc, row_bias);
}
void bgemm_packed(int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb, float beta, BFloat16* c,
                  int64_t ldc, const float* row_bias) {
  run_packed(kernel(), m, n, k, pa, pb, beta, c, ldc, row_bias);
}

void bgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t lda, const BFloat16* b,
           int64_t ldb, float beta, float* c, int64_t ldc) {
  bgemm_any(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}
void bgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t lda, const BFloat16* b,
           int64_t ldb, float beta, BFloat16* c, int64_t ldc) {
  bgemm_any(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

const char* bgemm_isa() {
  switch (kernel()) {
    case detail::BgemmKernel::amx: return "amx";
    case detail::BgemmKernel::avx512bf16: return "avx512bf16";
    case detail::BgemmKernel::generic: break;
  }
  return "generic";
}

namespace detail {

bool bgemm_kernel_available(BgemmKernel k) {
  switch (k) {
    case BgemmKernel::amx: return isa_enabled(Isa::amx) && amx_permitted();
    case BgemmKernel::avx512bf16: return isa_enabled(Isa::avx512bf16);
    case BgemmKernel::generic: return true;
  }
  return false;
}

void bgemm_packed_with(BgemmKernel k, int64_t m, int64_t n, int64_t kk, const BFloat16* pa, const BFloat16* pb,
                       float beta, float* c, int64_t ldc, const float* row_bias) {
  KILN_CHECK(bgemm_kernel_available(k), "bgemm: kernel ", int(k),
             " cannot run on this CPU (or "
             "KILN_CPU_ISA rules it out); check detail::bgemm_kernel_available first");
  run_packed(k, m, n, kk, pa, pb, beta, c, ldc, row_bias);
}
void bgemm_packed_with(BgemmKernel k, int64_t m, int64_t n, int64_t kk, const BFloat16* pa, const BFloat16* pb,
                       float beta, BFloat16* c, int64_t ldc, const float* row_bias) {
  KILN_CHECK(bgemm_kernel_available(k), "bgemm: kernel ", int(k),
             " cannot run on this CPU (or "
             "KILN_CPU_ISA rules it out); check detail::bgemm_kernel_available first");
  run_packed(k, m, n, kk, pa, pb, beta, c, ldc, row_bias);
}

}  // namespace detail
}  // namespace kiln::kernels::cpu
