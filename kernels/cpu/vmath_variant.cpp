// One instruction-set variant of the f32 vector math (see vmath.h), compiled once per variant with
// KILN_VARIANT set to its name and the matching -m flags. Eigen's namespace is renamed per variant,
// as in gemm_variant.cpp, so no instantiation is shared across variants; only Eigen's packet
// functions are used (one vector of floats at a time, exp included).
#ifndef KILN_VARIANT
#error "compile with -DKILN_VARIANT=avx512|avx2|generic"
#endif
#define KILN_CAT2(a, b) a##b
#define KILN_CAT(a, b) KILN_CAT2(a, b)
#define Eigen KILN_CAT(kiln_eigen_, KILN_VARIANT)
#include <Eigen/Core>

#include "kernels/cpu/vmath.h"

namespace kiln::kernels::cpu::detail {
namespace {

using namespace Eigen::internal;
using P = packet_traits<float>::type;
constexpr int kWidth = unpacket_traits<P>::size;

// erfc(z) for z >= 0 as t * exp(P(t) - z^2) with t = 1 / (1 + z / 2): the Chebyshev fit of Press
// et al., Numerical Recipes, section 6.2, fractional error below 1.2e-7 for every z >= 0. Its
// coefficients, constant term first:
constexpr float kErfc[10] = {-1.26551223f, 1.00002368f,  0.37409196f, 0.09678418f,  -0.18628806f,
                             0.27886807f,  -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
// Beyond |x| / sqrt 2 = 13, erfc and the density are below float's smallest number: exactly 0.
constexpr float kFar = 13.f;

// Phi(x), and phi(x) when kDensity, for one vector.
template <bool kDensity>
inline void normal(const P& x, P& cdf, P& pdf) {
  const P one = pset1<P>(1.f), zero = pzero(x);
  const P z = pmul(pabs(x), pset1<P>(0.70710678118654752f));
  const P t = pdiv(one, pmadd(pset1<P>(0.5f), z, one));
  P poly = pset1<P>(kErfc[9]);
  for (int k = 8; k >= 0; --k) poly = pmadd(poly, t, pset1<P>(kErfc[k]));
  const P z2 = pmul(z, z);
  const P far = pcmp_lt(pset1<P>(kFar), z);
  const P half_erfc = pselect(far, zero, pmul(pmul(pset1<P>(0.5f), t), pexp(psub(poly, z2))));
  cdf = pselect(pcmp_lt(x, zero), half_erfc, psub(one, half_erfc));
  if constexpr (kDensity) pdf = pselect(far, zero, pmul(pexp(pnegate(z2)), pset1<P>(0.39894228040143267794f)));
}

inline P gelu(const P& x) {
  P cdf, pdf;
  normal<false>(x, cdf, pdf);
  return pmul(x, cdf);
}

inline P gelu_backward(const P& g, const P& x) {
  P cdf, pdf;
  normal<true>(x, cdf, pdf);
  return pmul(g, pmadd(x, pdf, cdf));
}

// f over the n elements of x (into y), the last n % kWidth through a zero-padded vector, so every
// element gets the same arithmetic wherever it sits.
template <class F>
inline void map(float* y, const float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) pstoreu(y + i, f(ploadu<P>(x + i)));
  if (i < n) {
    alignas(64) float buf[kWidth] = {};
    for (int64_t j = i; j < n; ++j) buf[j - i] = x[j];
    pstoreu(buf, f(ploadu<P>(buf)));
    for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

}  // namespace

void KILN_CAT(gelu_f32_, KILN_VARIANT)(float* y, const float* x, int64_t n) { map(y, x, n, gelu); }

// Below Eigen's clamp of exp's argument (masked scores are -inf) the result is exactly 0.
void KILN_CAT(exp_shifted_f32_, KILN_VARIANT)(float* y, const float* x, float shift, int64_t n) {
  const P m = pset1<P>(shift), lo = pset1<P>(-88.f);
  map(y, x, n, [&](const P& v) {
    const P a = psub(v, m);
    return pselect(pcmp_lt(a, lo), pzero(a), pexp(a));
  });
}

void KILN_CAT(gelu_backward_f32_, KILN_VARIANT)(float* gx, const float* g, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) pstoreu(gx + i, gelu_backward(ploadu<P>(g + i), ploadu<P>(x + i)));
  if (i < n) {
    alignas(64) float bg[kWidth] = {}, bx[kWidth] = {};
    for (int64_t j = i; j < n; ++j) bg[j - i] = g[j], bx[j - i] = x[j];
    pstoreu(bg, gelu_backward(ploadu<P>(bg), ploadu<P>(bx)));
    for (int64_t j = i; j < n; ++j) gx[j] = bg[j - i];
  }
}

}  // namespace kiln::kernels::cpu::detail
