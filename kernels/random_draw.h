// Element i of a random tensor: the draw of each RandomKind from the Philox stream of (seed,
// offset), as a double the kernel then rounds to the tensor's dtype. The CPU and CUDA backends
// both use this header, so a random tensor is bit for bit the same on either device.
//   double v = random_draw(kind, seed, offset, uint64_t(i), a, b);
// Element i takes lane i % 4 of Philox block offset + i / 4, so a kernel may compute each block once
// for four elements (draw_from_block) and still match one that computes it per element.
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/philox.h"

namespace kiln::kernels {

// Lane `lane` of Philox block r as a draw of `kind`: element 4 * j + lane of the stream whose block
// j is r. A kernel that fills four elements from each block it computes calls this directly.
KILN_HD double draw_from_block(RandomKind kind, const Philox4& r, unsigned lane, double a, double b) {
  const uint32_t x = r.v[lane];
  switch (kind) {
    case RandomKind::uniform: return a + (b - a) * double(uniform_from_u32(x));
    case RandomKind::normal: return a + b * double(normal_from_block(r, lane));
    case RandomKind::randint: return a + double(uint64_t(x) % uint64_t(b - a));
    case RandomKind::bernoulli: return double(uniform_from_u32(x) < a);  // no branch on a coin flip
  }
  return 0;
}

KILN_HD double random_draw(RandomKind kind, uint64_t seed, uint64_t offset, uint64_t i, double a, double b) {
  return draw_from_block(kind, philox4x32_10(seed, offset + i / 4), unsigned(i % 4), a, b);
}

}  // namespace kiln::kernels
