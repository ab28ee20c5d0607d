// Picks the sgemm variant once, from the CPU's features (see gemm.h).
#include "kernels/cpu/gemm.h"

#include <cstring>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"

namespace kiln::kernels::cpu {
namespace {

using SgemmFn = detail::SgemmFn;
// Below this many multiply-adds a product runs on one thread.
constexpr int64_t kParallelMacs = int64_t(1) << 18;

struct Choice {
  SgemmFn fn;
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

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (beta == 0.f)
      for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * size_t(n));
    return;
  }
  // Large products split C into blocks of rows (or of columns, when it is wide and short), one per
  // thread; each block is an independent product with its own packing.
  const int threads = in_parallel() || m * n * k < kParallelMacs ? 1 : max_threads();
  const SgemmFn fn = choice().fn;
  if (threads == 1) return fn(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
  if (m >= n || m >= 8 * threads) {
    parallel_chunks(m, threads, [&](int64_t r0, int64_t r1) {
      const float* ab = trans_a ? a + r0 : a + r0 * lda;
      fn(trans_a, trans_b, r1 - r0, n, k, ab, lda, b, ldb, beta, c + r0 * ldc, ldc);
    });
  } else {
    parallel_chunks(n, threads, [&](int64_t c0, int64_t c1) {
      const float* bb = trans_b ? b + c0 * ldb : b + c0;
      fn(trans_a, trans_b, m, c1 - c0, k, a, lda, bb, ldb, beta, c + c0, ldc);
    });
  }
}

const char* sgemm_isa() { return choice().name; }

}  // namespace kiln::kernels::cpu
