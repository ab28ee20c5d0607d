// The f32 Adam/AdamW update (kernels/cpu/adam.cpp where the CPU has AVX2 or AVX-512, optim.cpp's
// loop elsewhere) against the rule written out here in float, element by element: equal bit for
// bit for every option (weight decay coupled or decoupled, amsgrad, maximize), sizes with vector
// tails, and steps past the first. meson test repeats this under each KILN_CPU_ISA cap.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "helpers.h"

using namespace kiln;

namespace {

struct AdamState {
  std::vector<float> w, g, m, v, vmax;
};

void reference(const kernels::AdamParams& p, AdamState& s) {
  const float lr = float(p.lr), b1 = float(p.beta1), b2 = float(p.beta2), eps = float(p.eps),
              wd = float(p.weight_decay);
  const float bc1 = 1.f - float(std::pow(p.beta1, double(p.step)));
  const float bc2_sqrt = float(std::sqrt(1.0 - std::pow(p.beta2, double(p.step))));
  const float step_size = lr / bc1;
  for (size_t i = 0; i < s.w.size(); ++i) {
    float gi = p.maximize ? -s.g[i] : s.g[i], wi = s.w[i];
    if (wd != 0.f) {
      if (p.decoupled)
        wi = wi * (1.f - lr * wd);
      else
        gi = gi + wd * wi;
    }
    float mi = s.m[i];
    mi = mi + (gi - mi) * (1.f - b1);
    const float vi = s.v[i] * b2 + (1.f - b2) * gi * gi;
    float vv = vi;
    if (p.amsgrad) vv = s.vmax[i] = std::max(s.vmax[i], vi);
    const float denom = std::sqrt(vv) / bc2_sqrt + eps;
    wi = wi - step_size * (mi / denom);
    s.m[i] = mi, s.v[i] = vi, s.w[i] = wi;
  }
}

bool same_bits(const std::vector<float>& a, const Tensor& b) {
  const auto bv = b.to_vector<float>();
  return a.size() == bv.size() && std::memcmp(a.data(), bv.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("adam f32 update equals the scalar rule bit for bit: every option, vector tails, later steps") {
  auto& be = detail::backend(Device::cpu());
  for (int64_t n : {1, 15, 37, 40000}) {
    for (int opts = 0; opts < 16; ++opts) {
      const bool decay = opts & 1, decoupled = opts & 2, amsgrad = opts & 4, maximize = opts & 8;
      INFO("n=" << n << " decay=" << decay << " decoupled=" << decoupled << " amsgrad=" << amsgrad
                << " maximize=" << maximize);
      manual_seed(uint64_t(n * 16 + opts));
      Tensor w = randn({n}), m = mul(randn({n}), 0.1), v = mul(rand({n}), 0.01), vmax = mul(rand({n}), 0.02);
      AdamState ref{w.to_vector<float>(), {}, m.to_vector<float>(), v.to_vector<float>(), vmax.to_vector<float>()};
      for (int64_t step = 1; step <= 3; ++step) {
        Tensor g = randn({n});
        ref.g = g.to_vector<float>();
        const kernels::AdamParams p{3e-3, 0.9, 0.999, 1e-8, decay ? 1e-2 : 0.0, step, decoupled, amsgrad, maximize};
        be.adam_step(p, detail::view_of(w), detail::view_of(g), detail::view_of(m), detail::view_of(v),
                     amsgrad ? detail::view_of(vmax) : detail::null_view());
        reference(p, ref);
      }
      CHECK(same_bits(ref.w, w));
      CHECK(same_bits(ref.m, m));
      CHECK(same_bits(ref.v, v));
      if (amsgrad) CHECK(same_bits(ref.vmax, vmax));
    }
  }
}
