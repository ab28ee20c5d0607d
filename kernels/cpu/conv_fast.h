// The fast paths of the CPU conv2d (simd_kernels.h): Winograd F(4x4, 3x3) and a direct kernel for few
// input channels, for 3x3 stride-1 convolutions in f32, and in bf16 on CPUs without bf16 dot
// products (there the conversion rides on the kernels' loads and stores and the arithmetic is f32;
// CPUs with AVX512-BF16 or AMX keep bgemm's bf16 path). conv.cpp asks here first and runs its
// im2col + GEMM path for whatever these do not take.
//   if (conv2d_forward_fast(p, out, in, weight, bias)) return;
#pragma once

#include <string>

#include "kernels/backend.h"

namespace kiln::kernels::cpu {

// Whether the fast path computed the forward pass.
bool conv2d_forward_fast(const Conv2dParams& p, const View& out, const View& in, const View& weight, const View& bias);

// What the fast path computed of a backward pass: the input gradient, and the weight gradient
// with the bias gradient (when asked for) together.
struct ConvGradsDone {
  bool input = false;
  bool weight = false;
};
ConvGradsDone conv2d_backward_fast(const Conv2dParams& p, const View& grad_in, const View& grad_weight,
                                   const View& grad_bias, const View& grad_out, const View& in, const View& weight);

// The kernel that computes each pass of p in `dtype` on this machine (under KILN_CPU_ISA):
// "winograd-avx512", "direct-avx2", ..., or "" where conv.cpp's own path runs. For tests and
// kiln_bench's profile.
struct ConvKernels {
  std::string forward, input_grad, weight_grad;
};
ConvKernels conv2d_fast_kernels(const Conv2dParams& p, DType dtype);

}  // namespace kiln::kernels::cpu
