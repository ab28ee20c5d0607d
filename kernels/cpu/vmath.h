// f32 vector math over arrays, dispatched at run time to the widest instruction set the CPU has
// (AVX-512, AVX2+FMA or the portable build, as sgemm in gemm.h), so a portable libkiln still runs
// it at AVX-512 width: GELU (erf form) and its gradient, and the shifted exponential of softmax.
//
// GELU's normal CDF is taken from erfc on both sides of zero, Phi(x) = erfc(-x / sqrt 2) / 2 below
// it and 1 - erfc(x / sqrt 2) / 2 above, so nothing cancels: the negative tail keeps its relative
// accuracy (1 + erf(x / sqrt 2) in float loses it below x = -3). Within 2e-7 of float64 (absolute
// where |value| < 1, relative above; tested). exp is Eigen's: within 3e-7 relative (tested).
//   gelu_f32(y, x, n);                 // y = x * Phi(x)
//   gelu_backward_f32(gx, g, x, n);    // gx = g * (Phi(x) + x * phi(x))
//   exp_shifted_f32(y, x, m, n);       // y = exp(x - m): a softmax row with its maximum m
#pragma once

#include <cstdint>

namespace kiln::kernels::cpu {

// Over [0, n) on kiln's threads (one thread below kParallelGrain elements). y may alias x, gx g.
void gelu_f32(float* y, const float* x, int64_t n);
void gelu_backward_f32(float* gx, const float* g, const float* x, int64_t n);
// On the calling thread (for rows inside a parallel kernel). y may alias x.
void exp_shifted_f32(float* y, const float* x, float shift, int64_t n);

namespace detail {
// One instruction set's kernels over a range, on the calling thread (vmath_variant.cpp).
#define KILN_VMATH_VARIANT(isa)                                                       \
  void gelu_f32_##isa(float* y, const float* x, int64_t n);                           \
  void gelu_backward_f32_##isa(float* gx, const float* g, const float* x, int64_t n); \
  void exp_shifted_f32_##isa(float* y, const float* x, float shift, int64_t n);
KILN_VMATH_VARIANT(avx512)
KILN_VMATH_VARIANT(avx2)
KILN_VMATH_VARIANT(generic)
#undef KILN_VMATH_VARIANT
}  // namespace detail

}  // namespace kiln::kernels::cpu
