// bfloat16 GEMM with f32 accumulation for the CPU kernels (bf16 storage, f32 arithmetic, as the
// mixed-precision policy asks). Three kernels, chosen once at run time from the CPU's features:
// AMX-BF16 tiles (TDPBF16PS on 16x32 by 32x16 tiles), AVX512-BF16 (VDPBF16PS on 16 lanes), and a
// portable fallback that widens to f32 and runs sgemm. KILN_CPU_ISA caps the choice like sgemm's
// (amx > avx512bf16 > avx512 > avx2 > generic).
//
// Both fast kernels read operands in one packed layout, so a caller that reuses an operand (conv
// weights across a batch of images) packs it once:
//   A (op(A) is [M, K]) as 16x32 row tiles: tile (mb, kb) holds rows 16mb.., columns 32kb..;
//   B (op(B) is [K, N]) as VNNI tiles: tile (nb, kb) holds 16 pairs of k rows, each pair's two
//     values side by side per column, [k/2][n][k%2], the layout the dot-product instructions take.
// Tiles are 1 KiB, contiguous, zero-padded past M, N and K (so padding adds nothing to a dot).
//   std::vector<BFloat16> pa(bf16_packed_a_size(m, k)), pb(bf16_packed_b_size(k, n));
//   bf16_pack_a(false, m, k, a, lda, pa.data());  bf16_pack_b(true, k, n, b, ldb, pb.data());
//   bgemm_packed(m, n, k, pa.data(), pb.data(), 0.f, c, ldc);   // C = A @ B^T
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kiln::kernels::cpu {

// Elements of the packed buffers (a multiple of 512: whole 1 KiB tiles).
int64_t bf16_packed_a_size(int64_t m, int64_t k);
int64_t bf16_packed_b_size(int64_t k, int64_t n);
// Where tile (block, kb) starts in a packed operand whose sum runs over k: block is the row block
// of A (16 rows) or the column block of B (16 columns), kb the block of 32 along k.
inline int64_t bf16_packed_tile(int64_t block, int64_t kb, int64_t k) { return (block * ((k + 31) / 32) + kb) * 512; }
// Packs op(A) [M, K] (A is [M, K] row-major with leading dimension lda, or [K, M] when trans) and
// op(B) [K, N] likewise. `out` holds the sizes above.
void bf16_pack_a(bool trans, int64_t m, int64_t k, const BFloat16* a, int64_t lda, BFloat16* out);
void bf16_pack_b(bool trans, int64_t k, int64_t n, const BFloat16* b, int64_t ldb, BFloat16* out);
// Packs op(B) [k, N] as rows [k0, k0 + k) of a packed B whose sum runs over k_total (k0 a multiple
// of 32), so a product over several matrices stacked along K (a batch's images) is one bgemm.
void bf16_pack_b_rows(bool trans, int64_t k, int64_t n, const BFloat16* b, int64_t ldb, BFloat16* out, int64_t k_total,
                      int64_t k0);

// C[M, N] = A @ B (+ row_bias[m]) + beta * C from packed operands, accumulated in f32. beta is 0
// (overwrite; C may hold garbage) or 1 (accumulate). A bf16 C is rounded once, after the sum.
// Inside a parallel region of kiln's pool the product runs on the calling thread only.
void bgemm_packed(int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb, float beta, float* c,
                  int64_t ldc, const float* row_bias = nullptr);
void bgemm_packed(int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb, float beta, BFloat16* c,
                  int64_t ldc, const float* row_bias = nullptr);

// C[M, N] = op(A) @ op(B) + beta * C with the transposes and leading dimensions of sgemm (gemm.h).
void bgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t lda,
           const BFloat16* b, int64_t ldb, float beta, float* c, int64_t ldc);
void bgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t lda,
           const BFloat16* b, int64_t ldb, float beta, BFloat16* c, int64_t ldc);

// The kernel bgemm uses on this machine: "amx", "avx512bf16" or "generic".
const char* bgemm_isa();

namespace detail {
enum class BgemmKernel { generic, avx512bf16, amx };
// Whether a kernel can run here (CPU support, and for AMX the kernel's permission to use tiles).
bool bgemm_kernel_available(BgemmKernel kernel);
// bgemm_packed with a given kernel, for tests that check each one; it must be available.
void bgemm_packed_with(BgemmKernel kernel, int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb,
                       float beta, float* c, int64_t ldc, const float* row_bias);
void bgemm_packed_with(BgemmKernel kernel, int64_t m, int64_t n, int64_t k, const BFloat16* pa, const BFloat16* pb,
                       float beta, BFloat16* c, int64_t ldc, const float* row_bias);
}  // namespace detail

}  // namespace kiln::kernels::cpu
