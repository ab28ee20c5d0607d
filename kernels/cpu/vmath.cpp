// Picks the vector math's variant once, from the CPU's features (see vmath.h), and splits the
// arrays over kiln's threads.
#include "kernels/cpu/vmath.h"

#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"

namespace kiln::kernels::cpu {
namespace {

struct Variant {
  void (*gelu)(float*, const float*, int64_t);
  void (*gelu_backward)(float*, const float*, const float*, int64_t);
  void (*exp_shifted)(float*, const float*, float, int64_t);
};

#define KILN_VMATH_VARIANT(isa) \
  Variant { detail::gelu_f32_##isa, detail::gelu_backward_f32_##isa, detail::exp_shifted_f32_##isa }

const Variant& variant() {
  static const Variant v = isa_enabled(Isa::avx512) ? KILN_VMATH_VARIANT(avx512)
                           : isa_enabled(Isa::avx2) ? KILN_VMATH_VARIANT(avx2)
                                                    : KILN_VMATH_VARIANT(generic);
  return v;
}

#undef KILN_VMATH_VARIANT

}  // namespace

void gelu_f32(float* y, const float* x, int64_t n) {
  const auto fn = variant().gelu;
  parallel_chunks(n, threads_for(n), [&](int64_t b, int64_t e) { fn(y + b, x + b, e - b); });
}

void gelu_backward_f32(float* gx, const float* g, const float* x, int64_t n) {
  const auto fn = variant().gelu_backward;
  parallel_chunks(n, threads_for(n), [&](int64_t b, int64_t e) { fn(gx + b, g + b, x + b, e - b); });
}

void exp_shifted_f32(float* y, const float* x, float shift, int64_t n) { variant().exp_shifted(y, x, shift, n); }

}  // namespace kiln::kernels::cpu
