// The CPU random kernel fills four elements from each Philox block it computes; random_draw
// (kernels/random_draw.h), which the CUDA kernel calls per element, computes the block for every
// element. Both must give the same bits for every kind, dtype, length (tails of 1-3 elements, the
// threaded path) and offset, or a tensor drawn on one device would differ from the other's.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "helpers.h"
#include "kernels/random_draw.h"

using namespace kiln;

namespace {

template <class T>
T rounded(double v) {
  if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Half>)
    return T(float(v));
  else
    return T(v);
}

template <class T>
void check_kind(kernels::RandomKind kind, DType dtype, double a, double b) {
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(3), int64_t(4), int64_t(5), int64_t(7), int64_t(8), int64_t(1023),
                    int64_t(70001)}) {
    for (uint64_t offset : {uint64_t(0), uint64_t(5), (uint64_t(1) << 33) + 1}) {
      const uint64_t seed = 0x1234'5678'9abcULL + uint64_t(n);
      Tensor out = empty({n}, {.dtype = dtype});
      kernels::cpu_backend().random(kind, kiln::detail::view_of(out), seed, offset, a, b);
      const T* got = out.data_ptr<T>();
      int64_t differ = 0, first = -1;
      for (int64_t i = 0; i < n; ++i) {
        const T want = rounded<T>(kernels::random_draw(kind, seed, offset, uint64_t(i), a, b));
        if (std::memcmp(&want, &got[i], sizeof(T)) != 0 && differ++ == 0) first = i;
      }
      INFO("kind ", int(kind), " dtype ", dtype_name(dtype), " n ", n, " offset ", offset, " first differing element ",
           first);
      CHECK(differ == 0);
    }
  }
}

}  // namespace

TEST_CASE("random kernel: one Philox block per four elements equals random_draw per element, bit for bit") {
  using kernels::RandomKind;
  check_kind<float>(RandomKind::uniform, DType::f32, -2.0, 3.0);
  check_kind<double>(RandomKind::uniform, DType::f64, 0.0, 1.0);
  check_kind<BFloat16>(RandomKind::uniform, DType::bf16, 0.0, 1.0);
  check_kind<float>(RandomKind::normal, DType::f32, 0.5, 2.0);
  check_kind<double>(RandomKind::normal, DType::f64, 0.0, 1.0);
  check_kind<Half>(RandomKind::normal, DType::f16, 0.0, 1.0);
  check_kind<int64_t>(RandomKind::randint, DType::i64, -7.0, 100.0);
  check_kind<int32_t>(RandomKind::randint, DType::i32, 0.0, 3.0);
  check_kind<float>(RandomKind::bernoulli, DType::f32, 0.3, 0.0);
  check_kind<bool>(RandomKind::bernoulli, DType::boolean, 0.75, 0.0);
}
