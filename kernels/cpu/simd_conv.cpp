// This instruction set's table of convolution kernels (simd_conv.h): built once per variant with
// winograd.cpp and conv_direct.cpp, whose entry points it collects.
#include "kernels/cpu/simd_conv.h"

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
void direct_weight_grad_bf16(const ConvShape& s, const uint16_t* x, const uint16_t* gy, float* gw, float* gb,
                             float* ws, int threads);

extern const SimdConv kSimdConv;
const SimdConv kSimdConv = {
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
};

}  // namespace kiln::kernels::cpu::KILN_SIMD_NS
