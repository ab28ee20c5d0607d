// Picks the GELU kernels' variant once, from the CPU's features (see gelu.h), and splits the
// arrays over kiln's threads.
#include "kernels/cpu/gelu.h"

#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"

namespace kiln::kernels::cpu {
namespace {

struct Variant {
  void (*forward)(float*, const float*, int64_t);
  void (*backward)(float*, const float*, const float*, int64_t);
};

const Variant& variant() {
  static const Variant v = isa_enabled(Isa::avx512) ? Variant{detail::gelu_f32_avx512, detail::gelu_backward_f32_avx512}
                           : isa_enabled(Isa::avx2)
                               ? Variant{detail::gelu_f32_avx2, detail::gelu_backward_f32_avx2}
                               : Variant{detail::gelu_f32_generic, detail::gelu_backward_f32_generic};
  return v;
}

}  // namespace

void gelu_f32(float* y, const float* x, int64_t n) {
  const auto fn = variant().forward;
  parallel_chunks(n, threads_for(n), [&](int64_t b, int64_t e) { fn(y + b, x + b, e - b); });
}

void gelu_backward_f32(float* gx, const float* g, const float* x, int64_t n) {
  const auto fn = variant().backward;
  parallel_chunks(n, threads_for(n), [&](int64_t b, int64_t e) { fn(gx + b, g + b, x + b, e - b); });
}

}  // namespace kiln::kernels::cpu
