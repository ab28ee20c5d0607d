// Element i of a random tensor: the draw of each RandomKind from the Philox stream of (seed,
// offset), as a double the kernel then rounds to the tensor's dtype. The CPU and CUDA backends
// both use this header, so a random tensor is bit for bit the same on either device.
//   double v = random_draw(kind, seed, offset, uint64_t(i), a, b);
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/philox.h"

namespace kiln::kernels {

KILN_HD double random_draw(RandomKind kind, uint64_t seed, uint64_t offset, uint64_t i, double a, double b) {
  double v = 0;
  switch (kind) {
    case RandomKind::uniform: v = a + (b - a) * double(philox_uniform(seed, offset, i)); break;
    case RandomKind::normal: v = a + b * double(philox_normal(seed, offset, i)); break;
    case RandomKind::randint: v = a + double(uint64_t(philox_bits(seed, offset, i)) % uint64_t(b - a)); break;
    case RandomKind::bernoulli: v = philox_uniform(seed, offset, i) < a ? 1.0 : 0.0; break;
  }
  return v;
}

}  // namespace kiln::kernels
