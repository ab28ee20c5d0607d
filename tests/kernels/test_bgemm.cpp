// The bf16 GEMM (kernels/cpu/bgemm.h) against a float64 reference: every kernel this CPU can run
// (AMX, AVX512-BF16, the portable one), odd shapes, all transposes, beta 0 and 1, f32 and bf16 C.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/bgemm.h"

using namespace kiln;
using namespace kiln::kernels::cpu;
using detail::BgemmKernel;

namespace {

const char* name(BgemmKernel k) {
  switch (k) {
    case BgemmKernel::amx: return "amx";
    case BgemmKernel::avx512bf16: return "avx512bf16";
    case BgemmKernel::generic: break;
  }
  return "generic";
}

struct Problem {
  int64_t m, n, k;
  bool ta, tb;
  int64_t lda, ldb, ldc;
  std::vector<BFloat16> a, b;
  std::vector<float> c0;  // C before the product (beta = 1 adds to it)

  Problem(int64_t m_, int64_t n_, int64_t k_, bool ta_, bool tb_, std::mt19937& rng)
      : m(m_), n(n_), k(k_), ta(ta_), tb(tb_) {
    // Leading dimensions a little wider than the matrices, so strides are exercised too.
    lda = (ta ? m : k) + 3;
    ldb = (tb ? k : n) + 1;
    ldc = n + 2;
    std::normal_distribution<float> normal;
    a.resize(size_t((ta ? k : m) * lda));
    b.resize(size_t((tb ? n : k) * ldb));
    c0.resize(size_t(m * ldc));
    for (auto& v : a) v = BFloat16(normal(rng));
    for (auto& v : b) v = BFloat16(normal(rng));
    for (auto& v : c0) v = float(BFloat16(normal(rng)));
  }
  double at(int64_t i, int64_t kk) const { return float(ta ? a[size_t(kk * lda + i)] : a[size_t(i * lda + kk)]); }
  double bt(int64_t kk, int64_t j) const { return float(tb ? b[size_t(j * ldb + kk)] : b[size_t(kk * ldb + j)]); }

  // Compares C with the f64 reference: f32 accumulation errs by at most about k * 2^-24 of the
  // sum of |products|; a bf16 C is also rounded once (half an ulp, 2^-9 relative).
  template <class CT>
  void check(const std::vector<CT>& c, float beta, const char* what) const {
    int bad = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double ref = beta != 0.f ? double(c0[size_t(i * ldc + j)]) : 0.0, mag = std::abs(ref);
        for (int64_t kk = 0; kk < k; ++kk) {
          ref += at(i, kk) * bt(kk, j);
          mag += std::abs(at(i, kk) * bt(kk, j));
        }
        double tol = 1e-6 + 4e-7 * double(k + 1) * mag;
        if constexpr (std::is_same_v<CT, BFloat16>) tol += std::ldexp(std::abs(ref), -8);
        const double got = float(c[size_t(i * ldc + j)]);
        if (!(std::abs(got - ref) <= tol) && bad++ < 3)
          MESSAGE(what << " C[" << i << ", " << j << "] = " << got << ", expected " << ref << " (tol " << tol << ")");
      }
    CHECK_MESSAGE(bad == 0, what << ": " << bad << " elements differ");
  }
};

std::vector<BgemmKernel> kernels_here() {
  std::vector<BgemmKernel> ks;
  for (auto k : {BgemmKernel::generic, BgemmKernel::avx512bf16, BgemmKernel::amx})
    if (detail::bgemm_kernel_available(k))
      ks.push_back(k);
    else
      MESSAGE("bgemm kernel " << name(k) << " cannot run on this CPU: not tested");
  return ks;
}

}  // namespace

TEST_CASE("bgemm: each kernel matches a float64 reference (odd shapes, transposes, beta, f32 and bf16 C)") {
  std::mt19937 rng(7);
  const int64_t sizes[] = {1, 3, 17, 33, 64, 129};
  for (BgemmKernel kern : kernels_here()) {
    for (int64_t m : sizes)
      for (int64_t n : sizes)
        for (int64_t k : sizes) {
          // All four transposes and both betas on a third of the shapes; one of each elsewhere.
          const bool full = (m + n + k) % 3 == 0;
          for (int t = 0; t < 4; ++t) {
            const bool ta = t & 1, tb = t & 2;
            if (!full && t != int((m + k) % 4)) continue;
            Problem pr(m, n, k, ta, tb, rng);
            std::vector<BFloat16> pa(size_t(bf16_packed_a_size(m, k))), pb(size_t(bf16_packed_b_size(k, n)));
            bf16_pack_a(ta, m, k, pr.a.data(), pr.lda, pa.data());
            bf16_pack_b(tb, k, n, pr.b.data(), pr.ldb, pb.data());
            for (float beta : {0.f, 1.f}) {
              if (!full && beta != float(n % 2)) continue;
              std::string what = std::string(name(kern)) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                 " k=" + std::to_string(k) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                                 " beta=" + std::to_string(int(beta));
              std::vector<float> c(pr.c0);
              detail::bgemm_packed_with(kern, m, n, k, pa.data(), pb.data(), beta, c.data(), pr.ldc, nullptr);
              pr.check(c, beta, (what + " f32 C").c_str());
              std::vector<BFloat16> cb(pr.c0.begin(), pr.c0.end());
              detail::bgemm_packed_with(kern, m, n, k, pa.data(), pb.data(), beta, cb.data(), pr.ldc, nullptr);
              pr.check(cb, beta, (what + " bf16 C").c_str());
            }
          }
        }
  }
}

TEST_CASE("bgemm: unpacked entry point, row bias, and what is left outside C") {
  std::mt19937 rng(3);
  Problem pr(33, 17, 64, true, false, rng);
  std::vector<float> c(pr.c0);
  bgemm(pr.ta, pr.tb, pr.m, pr.n, pr.k, pr.a.data(), pr.lda, pr.b.data(), pr.ldb, 1.f, c.data(), pr.ldc);
  pr.check(c, 1.f, "bgemm");
  for (int64_t i = 0; i < pr.m; ++i)  // the padding columns of C are not written
    for (int64_t j = pr.n; j < pr.ldc; ++j) CHECK(c[size_t(i * pr.ldc + j)] == pr.c0[size_t(i * pr.ldc + j)]);

  std::vector<float> bias(size_t(pr.m)), with_bias(size_t(pr.m * pr.ldc)), without(size_t(pr.m * pr.ldc));
  for (int64_t i = 0; i < pr.m; ++i) bias[size_t(i)] = float(i) - 10.f;
  std::vector<BFloat16> pa(size_t(bf16_packed_a_size(pr.m, pr.k))), pb(size_t(bf16_packed_b_size(pr.k, pr.n)));
  bf16_pack_a(pr.ta, pr.m, pr.k, pr.a.data(), pr.lda, pa.data());
  bf16_pack_b(pr.tb, pr.k, pr.n, pr.b.data(), pr.ldb, pb.data());
  bgemm_packed(pr.m, pr.n, pr.k, pa.data(), pb.data(), 0.f, with_bias.data(), pr.ldc, bias.data());
  bgemm_packed(pr.m, pr.n, pr.k, pa.data(), pb.data(), 0.f, without.data(), pr.ldc);
  for (int64_t i = 0; i < pr.m; ++i)
    for (int64_t j = 0; j < pr.n; ++j)
      CHECK(with_bias[size_t(i * pr.ldc + j)] ==
            doctest::Approx(without[size_t(i * pr.ldc + j)] + bias[size_t(i)]).epsilon(1e-6));

  // k = 0: an empty sum leaves beta * C (+ bias).
  std::vector<float> c1(pr.c0);
  bgemm(false, false, pr.m, pr.n, 0, pr.a.data(), 1, pr.b.data(), pr.n, 1.f, c1.data(), pr.ldc);
  CHECK(c1 == pr.c0);
  bgemm(false, false, pr.m, pr.n, 0, pr.a.data(), 1, pr.b.data(), pr.n, 0.f, c1.data(), pr.ldc);
  CHECK(c1[0] == 0.f);
  CHECK(std::string(bgemm_isa()).size() > 0);
}
