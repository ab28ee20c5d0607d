// The kernels compiled once per instruction set (private to kernels/cpu): Winograd F(4x4, 3x3) for
// 3x3 stride-1 convolutions with enough channels (winograd.cpp), a direct register-blocked kernel
// for 3x3 stride-1 convolutions of few input channels (conv_direct.cpp), 2x2 max pooling in f32
// (max_pool_2x2.cpp), the f32 Adam/AdamW update (adam.cpp) and an FMA throughput probe. The files are built twice, for
// AVX-512 and for AVX2 + FMA; each build fills one table below (avx512::kSimdKernels, avx2::kSimdKernels) and
// simd_kernels() picks one at run time (isa.h).
//   if (const SimdKernels* k = simd_kernels()) k->max_pool_2x2_f32(x, y, idx, h, w, h / 2, w / 2);
// Tensors are dense NCHW, f32 or bf16 bits (uint16_t: widened on load, rounded once on store);
// arithmetic is f32 throughout. Scratch memory comes from the caller: `ws` holds the floats the
// matching *_workspace function asks for, for `threads` OpenMP threads.
#pragma once

#include <cstdint>

namespace kiln::kernels::cpu {

// A 3x3 convolution with stride 1, no dilation, one group: input [n, c_in, h_in, w_in], output
// [n, c_out, h_out, w_out] with h_out = h_in + 2 pad_h - 2 (likewise w), 0 <= pad <= 2.
struct ConvShape {
  int64_t n, c_in, h_in, w_in, c_out, h_out, w_out, pad_h, pad_w;
};

// Adam's constants for one step (optim.cpp computes them).
struct AdamF32 {
  float lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt;
  bool decoupled, amsgrad, maximize;
};

struct SimdKernels {
  int lanes;  // f32 lanes of a vector: 16 or 8
  // Winograd. winograd_weights: u [36][k][round_up(m, lanes)] = G g G^T for each 3x3 filter g of
  // wt [k][9][round_up(m, lanes)] (the padding of m is zero in wt and stays zero in u). For the
  // forward pass k is c_in and m is c_out.
  int64_t (*winograd_weights_size)(int64_t k, int64_t m);
  void (*winograd_weights)(int64_t k, int64_t m, const float* wt, float* u, int threads);
  // y = conv(x) (+ bias[c_out] when not null) from the transformed weights.
  int64_t (*winograd_forward_workspace)(const ConvShape& s, int threads);
  void (*winograd_forward_f32)(const ConvShape& s, const float* x, float* y, const float* u, const float* bias,
                               float* ws, int threads);
  void (*winograd_forward_bf16)(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* u, const float* bias,
                                float* ws, int threads);
  // gw [c_out][c_in][3][3] and gb [c_out] (when not null) from the input and grad_out, in f32.
  int64_t (*winograd_weight_grad_workspace)(const ConvShape& s, int threads);
  void (*winograd_weight_grad_f32)(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb, float* ws,
                                   int threads);
  void (*winograd_weight_grad_bf16)(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw, float* gb,
                                    float* ws, int threads);
  // Direct. wt is [c_in][9][round_up(c_out, lanes)], the weights with the output channel innermost.
  int64_t (*direct_forward_workspace)(const ConvShape& s, int threads);
  void (*direct_forward_f32)(const ConvShape& s, const float* x, float* y, const float* wt, const float* bias,
                             float* ws, int threads);
  void (*direct_forward_bf16)(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* wt, const float* bias,
                              float* ws, int threads);
  int64_t (*direct_weight_grad_workspace)(const ConvShape& s, int threads);
  void (*direct_weight_grad_f32)(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb, float* ws,
                                 int threads);
  void (*direct_weight_grad_bf16)(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw, float* gb,
                                  float* ws, int threads);
  // 2x2 max pooling with stride 2 and no padding on one plane [h_in, w_in] -> [h_out, w_out]
  // (h_out <= h_in / 2, likewise w; h_in * w_in < 2^31): idx (when not null) receives the flat
  // position of each maximum, the first in window order winning ties and NaN propagating; the
  // backward pass writes the whole plane of grad_in.
  void (*max_pool_2x2_f32)(const float* x, float* y, int64_t* idx, int64_t h_in, int64_t w_in, int64_t h_out,
                           int64_t w_out);
  void (*max_pool_2x2_backward_f32)(float* gx, const float* gy, const int64_t* idx, int64_t h_in, int64_t w_in,
                                    int64_t h_out, int64_t w_out);
  // Adam/AdamW on n f32 elements (optim.cpp's rule, operation for operation, so the results equal
  // the scalar loop's bit for bit); vmax is read and written only with amsgrad.
  void (*adam_f32)(const AdamF32& a, float* w, const float* g, float* m, float* v, float* vmax, int64_t n);
  // Runs `rounds` rounds of independent FMA chains on the calling thread and returns the
  // floating-point operations done (2 per lane and FMA), for kiln_bench's peak-FLOP probe.
  double (*fma_probe)(int64_t rounds);
};

namespace avx512 {
extern const SimdKernels kSimdKernels;
}
namespace avx2 {
extern const SimdKernels kSimdKernels;
}

// The widest table this CPU and KILN_CPU_ISA allow, or null (neither AVX-512 nor AVX2); its name.
const SimdKernels* simd_kernels();
const char* simd_kernels_isa();

}  // namespace kiln::kernels::cpu
