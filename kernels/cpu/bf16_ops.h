// Dense bf16 loops that the CPU kernels share: casts to and from f32 and a row sum, 16 lanes at a
// time on AVX-512 CPUs (chosen at run time, see isa.h), scalar elsewhere; the results are the same
// bit for bit either way, except bf16_sum's order of additions.
//   bf16_to_f32(x, tmp, n); ...; f32_to_bf16(tmp, y, n);
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kiln::kernels::cpu {

void bf16_to_f32(const BFloat16* in, float* out, int64_t n);
void f32_to_bf16(const float* in, BFloat16* out, int64_t n);  // round to nearest even
float bf16_sum(const BFloat16* in, int64_t n);                // accumulated in f32
// relu and its gradient (g where x > 0, else 0). Their results are inputs or zero, so they work on
// the bits, 32 lanes at a time, with no f32 round trip; NaN gives 0, as the f32 ops do.
void bf16_relu(const BFloat16* x, BFloat16* y, int64_t n);
void bf16_relu_backward(const BFloat16* g, const BFloat16* x, BFloat16* out, int64_t n);

}  // namespace kiln::kernels::cpu
