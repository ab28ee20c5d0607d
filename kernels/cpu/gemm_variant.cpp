// One instruction-set variant of sgemm (see gemm.h). This file is compiled once per variant with
// KILN_VARIANT set to its name and the matching -m flags. Eigen's namespace is renamed per
// variant, so the linker can never merge an AVX-512 instantiation with a portable one (their
// mangled names differ); nothing of Eigen leaves this file.
#ifndef KILN_VARIANT
#error "compile with -DKILN_VARIANT=avx512|avx2|generic"
#endif
#define KILN_CAT2(a, b) a##b
#define KILN_CAT(a, b) KILN_CAT2(a, b)
#define Eigen KILN_CAT(kiln_eigen_, KILN_VARIANT)
#include <Eigen/Core>

#include "kernels/cpu/gemm.h"

namespace kiln::kernels::cpu::detail {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Stride = Eigen::OuterStride<>;
using CRow = Eigen::Map<const RowMat, 0, Stride>;
using CCol = Eigen::Map<const ColMat, 0, Stride>;

template <class MA, class MB>
void run(const MA& a, const MB& b, float beta, float* c, int64_t m, int64_t n, int64_t ldc) {
  Eigen::Map<RowMat, 0, Stride> cm(c, m, n, Stride(ldc));
  if (beta == 0.f)
    cm.noalias() = a * b;
  else
    cm.noalias() += a * b;
}

}  // namespace

void KILN_CAT(sgemm_, KILN_VARIANT)(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                    const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // A row-major [K, M] matrix is a column-major [M, K] one with the same leading dimension.
  if (!ta) {
    CRow ma(a, m, k, Stride(lda));
    if (!tb)
      run(ma, CRow(b, k, n, Stride(ldb)), beta, c, m, n, ldc);
    else
      run(ma, CCol(b, k, n, Stride(ldb)), beta, c, m, n, ldc);
  } else {
    CCol ma(a, m, k, Stride(lda));
    if (!tb)
      run(ma, CRow(b, k, n, Stride(ldb)), beta, c, m, n, ldc);
    else
      run(ma, CCol(b, k, n, Stride(ldb)), beta, c, m, n, ldc);
  }
}

}  // namespace kiln::kernels::cpu::detail
