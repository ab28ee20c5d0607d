// The f32 convolution kernels compiled once per instruction set (private to kernels/cpu): Winograd
// F(4x4, 3x3) for 3x3 stride-1 convolutions with enough channels (winograd.cpp) and a direct
// register-blocked kernel for 3x3 stride-1 convolutions of few input channels (conv_direct.cpp).
// Both files are built twice, for AVX-512 and for AVX2 + FMA; each build fills one table below
// (avx512::kSimdConv, avx2::kSimdConv) and conv_fast.cpp picks a table at run time (isa.h).
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

struct SimdConv {
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
  void (*winograd_forward_bf16)(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* u,
                                const float* bias, float* ws, int threads);
  // gw [c_out][c_in][3][3] and gb [c_out] (when not null) from the input and grad_out, in f32.
  int64_t (*winograd_weight_grad_workspace)(const ConvShape& s, int threads);
  void (*winograd_weight_grad_f32)(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                                   float* ws, int threads);
  void (*winograd_weight_grad_bf16)(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw,
                                    float* gb, float* ws, int threads);
  // Direct. wt is [c_in][9][round_up(c_out, lanes)], the weights with the output channel innermost.
  int64_t (*direct_forward_workspace)(const ConvShape& s, int threads);
  void (*direct_forward_f32)(const ConvShape& s, const float* x, float* y, const float* wt, const float* bias,
                             float* ws, int threads);
  void (*direct_forward_bf16)(const ConvShape& s, const uint16_t* x, uint16_t* y, const float* wt,
                              const float* bias, float* ws, int threads);
  int64_t (*direct_weight_grad_workspace)(const ConvShape& s, int threads);
  void (*direct_weight_grad_f32)(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                                 float* ws, int threads);
  void (*direct_weight_grad_bf16)(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw,
                                  float* gb, float* ws, int threads);
};

namespace avx512 {
extern const SimdConv kSimdConv;
}
namespace avx2 {
extern const SimdConv kSimdConv;
}

}  // namespace kiln::kernels::cpu
