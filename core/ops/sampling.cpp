// multinomial: checks the weights once on the host (finite, non-negative, a positive sum, enough
// non-zero columns when drawing without replacement), then samples on the weights' device with
// Philox counters reserved from the generator, so CPU and CUDA draw the same numbers.
#include "core/ops/internal.h"

namespace kiln {

Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement, Generator* gen) {
  KILN_CHECK(is_floating(probs.dtype()), "multinomial: probabilities must be floating point, got ", probs.dtype());
  KILN_CHECK(probs.dim() == 1 || probs.dim() == 2, "multinomial: probabilities must be 1-D or 2-D, got shape ",
             probs.sizes());
  KILN_CHECK(num_samples > 0, "multinomial: num_samples must be positive, got ", num_samples);
  Tensor p2 = probs.detach().reshape({probs.dim() == 1 ? 1 : probs.size(0), probs.size(-1)}).contiguous();
  const int64_t rows = p2.size(0), c = p2.size(1);
  KILN_CHECK(c > 0, "multinomial: there are no categories to draw from (shape ", probs.sizes(), ")");
  {
    NoGradGuard g;
    Tensor p64 = p2.to(DType::f64);
    KILN_CHECK(isfinite_all(p64).item<bool>() && !any(lt(p64, 0.0)).item<bool>(),
               "multinomial: probabilities must be finite and non-negative");
    KILN_CHECK(all(gt(sum(p64, {1}), 0.0)).item<bool>(), "multinomial: every row of probabilities must "
                                                         "have a positive sum");
    if (!replacement) {
      const int64_t fewest = min(sum(gt(p64, 0.0).to(DType::i64), {1})).item<int64_t>();
      KILN_CHECK(num_samples <= fewest, "multinomial: cannot draw ", num_samples,
                 " samples without "
                 "replacement from a row with only ",
                 fewest,
                 " non-zero probabilities; pass "
                 "replacement=true or draw fewer");
    }
  }
  Tensor out = detail::make_empty({rows, num_samples}, DType::i64, probs.device());
  const uint64_t counters = uint64_t(rows * num_samples);
  auto [seed, offset] = detail::philox_reserve(gen, counters);
  detail::backend(probs.device())
      .multinomial(detail::view_of(out), detail::view_of(p2), num_samples, replacement, seed, offset);
  return probs.dim() == 1 ? out.reshape({num_samples}) : out;
}

}  // namespace kiln
