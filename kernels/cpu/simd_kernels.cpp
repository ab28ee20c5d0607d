// This instruction set's table of kernels (simd_kernels.h), built once per variant with
// winograd.cpp, conv_direct.cpp, max_pool_2x2.cpp and adam.cpp, whose entry points it collects; and the FMA
// throughput probe, which is small enough to live here.
#include "kernels/cpu/simd_kernels.h"

#include "kernels/cpu/simd.h"

namespace kiln::kernels::cpu::KILN_SIMD_NS {

int64_t winograd_weights_size(int64_t k, int64_t m);
void winograd_weights(int64_t k, int64_t m, const float* wt, float* u, int threads);
int64_t winograd_forward_workspace(const ConvShape& s, int threads);
void winograd_forward_f32(const ConvShape& s, const float* x, float* y, const float* u, const float* bias, float* ws,
                          int threads);
void winograd_forward_bf16(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* u, const float* bias,
                           float* ws, int threads);
int64_t winograd_weight_grad_workspace(const ConvShape& s, int threads);
void winograd_weight_grad_f32(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb, float* ws,
                              int threads);
void winograd_weight_grad_bf16(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw, float* gb,
                               float* ws, int threads);
int64_t direct_forward_workspace(const ConvShape& s, int threads);
void direct_forward_f32(const ConvShape& s, const float* x, float* y, const float* wt, const float* bias, float* ws,
                        int threads);
void direct_forward_bf16(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* wt, const float* bias,
                         float* ws, int threads);
int64_t direct_weight_grad_workspace(const ConvShape& s, int threads);
void direct_weight_grad_f32(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb, float* ws,
                            int threads);
void direct_weight_grad_bf16(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw, float* gb, float* ws,
                             int threads);

void max_pool_2x2_f32(const float* x, float* y, int64_t* idx, int64_t h_in, int64_t w_in, int64_t h_out, int64_t w_out);
void max_pool_2x2_backward_f32(float* gx, const float* gy, const int64_t* idx, int64_t h_in, int64_t w_in,
                               int64_t h_out, int64_t w_out);
void adam_f32(const AdamF32& a, float* w, const float* g, float* m, float* v, float* vmax, int64_t n);

namespace {

// Independent chains of x = x * m + a, enough of them to cover the FMA latency on every FMA port
// (4-5 cycles x 2 ports), so the loop runs at the FMA throughput.
#if defined(KILN_SIMD_AVX512)
constexpr int kChains = 16;
#else
constexpr int kChains = 10;
#endif

double fma_probe(int64_t rounds) {
  using namespace simd;
  V x[kChains];
  for (int c = 0; c < kChains; ++c) x[c] = set1(1.f + 0.001f * float(c));
  const V m = set1(0.999999f), a = set1(1e-7f);
  for (int64_t r = 0; r < rounds; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) x[c] = fma(x[c], m, a);
  V sum = zero();
  for (int c = 0; c < kChains; ++c) sum = add(sum, x[c]);
  volatile float sink = hsum(sum);  // keeps the chains from being optimised away
  (void)sink;
  return 2.0 * double(rounds) * kChains * kLanes;
}

}  // namespace

extern const SimdKernels kSimdKernels;
const SimdKernels kSimdKernels = {
    simd::kLanes,
    winograd_weights_size,
    winograd_weights,
    winograd_forward_workspace,
    winograd_forward_f32,
    winograd_forward_bf16,
    winograd_weight_grad_workspace,
    winograd_weight_grad_f32,
    winograd_weight_grad_bf16,
    direct_forward_workspace,
    direct_forward_f32,
    direct_forward_bf16,
    direct_weight_grad_workspace,
    direct_weight_grad_f32,
    direct_weight_grad_bf16,
    max_pool_2x2_f32,
    max_pool_2x2_backward_f32,
    adam_f32,
    fma_probe,
};

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS
