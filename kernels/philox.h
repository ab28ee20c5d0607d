// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"): a counter-based
// generator, so element i of a random tensor depends only on (seed, offset + i / 4) and lane i % 4.
// The CPU and CUDA backends share this header and therefore produce the same numbers.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define KILN_HD __host__ __device__ __forceinline__
#else
#define KILN_HD inline
#endif

namespace kiln::kernels {

struct Philox4 {
  uint32_t v[4];
};

KILN_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

// One block of four 32-bit numbers for a 64-bit key (the seed) and a 64-bit counter.
KILN_HD Philox4 philox4x32_10(uint64_t seed, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
KILN_HD float uniform_from_u32(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }
// Uniform in (0, 1], safe for log().
KILN_HD float open_uniform_from_u32(uint32_t x) { return (float(x >> 8) + 1.0f) * (1.0f / 16777216.0f); }

// Element i of a uniform/normal/randint stream (shared by the CPU and CUDA kernels).
KILN_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 r = philox4x32_10(seed, offset + i / 4);
  return uniform_from_u32(r.v[i % 4]);
}
// Box-Muller on lanes (0, 1) and (2, 3) of a block: pair p's radius and angle; the even lane of the
// pair takes radius * cos(angle), the odd lane radius * sin(angle).
KILN_HD float box_muller_radius(const Philox4& r, unsigned pair) {
  return sqrtf(-2.0f * logf(open_uniform_from_u32(r.v[2 * pair])));
}
KILN_HD float box_muller_angle(const Philox4& r, unsigned pair) {
  return 6.2831853071795864f * uniform_from_u32(r.v[2 * pair + 1]);
}
// Both normals of a pair: the even lane's radius * cos(angle) and the odd lane's radius * sin(angle).
KILN_HD void normal_pair_from_block(const Philox4& r, unsigned pair, float& even, float& odd) {
  const float radius = box_muller_radius(r, pair), theta = box_muller_angle(r, pair);
  even = radius * cosf(theta);
  odd = radius * sinf(theta);
}
// Lane `lane` of a block as a standard normal.
KILN_HD float normal_from_block(const Philox4& r, unsigned lane) {
  float even, odd;
  normal_pair_from_block(r, lane / 2, even, odd);
  return lane % 2 == 0 ? even : odd;
}
KILN_HD float philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  return normal_from_block(philox4x32_10(seed, offset + i / 4), unsigned(i % 4));
}
KILN_HD uint32_t philox_bits(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 r = philox4x32_10(seed, offset + i / 4);
  return r.v[i % 4];
}

}  // namespace kiln::kernels
