// Picks the sgemm variant once, from the CPU's features (see gemm.h).
#include "kernels/cpu/gemm.h"

#include <cstring>

#include "kernels/cpu/isa.h"

namespace kiln::kernels::cpu {
namespace {

struct Choice {
  detail::SgemmFn fn;
  const char* name;
};

Choice choose() {
  if (isa_enabled(Isa::avx512)) return {detail::sgemm_avx512, "avx512"};
  if (isa_enabled(Isa::avx2)) return {detail::sgemm_avx2, "avx2"};
  return {detail::sgemm_generic, "generic"};
}

const Choice& choice() {
  static const Choice c = choose();
  return c;
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (beta == 0.f)
      for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * size_t(n));
    return;
  }
  choice().fn(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

const char* sgemm_isa() { return choice().name; }

}  // namespace kiln::kernels::cpu
