// Single-precision GEMM for the CPU kernels, dispatched at run time to the widest instruction set
// the CPU has (AVX-512, AVX2+FMA, or the portable build), so a portable libkiln still multiplies
// at AVX-512 speed. Each variant is Eigen's GEMM compiled in its own translation unit with its own
// flags and its own renamed Eigen namespace (no instantiation can be shared across variants).
//   sgemm(false, true, M, N, K, a, lda, b, ldb, 0.f, c, ldc);   // C = A @ B^T
#pragma once

#include <cstdint>

namespace kiln::kernels::cpu {

// C[M, N] = op(A) @ op(B) + beta * C, all row-major with leading dimensions lda, ldb, ldc.
// op(A) is [M, K]: A is [M, K] (lda >= K), or [K, M] when trans_a (lda >= M); likewise B.
// beta is 0 (overwrite; C may hold garbage) or 1 (accumulate). Inside a parallel region of kiln's
// pool (parallel.h) the product runs on the calling thread only; outside it, large products use all
// of kiln's threads.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float beta, float* c, int64_t ldc);

// The instruction set sgemm uses on this machine: "avx512", "avx2" or "generic".
const char* sgemm_isa();

namespace detail {
using SgemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float,
                         float*, int64_t);
void sgemm_avx512(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float, float*,
                  int64_t);
void sgemm_avx2(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float, float*,
                int64_t);
void sgemm_generic(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float, float*,
                   int64_t);
}  // namespace detail

}  // namespace kiln::kernels::cpu
