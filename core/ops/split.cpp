// chunk and split (views through narrow, so their gradients come with them) and pad (narrow to
// crop, cat with filled blocks for "constant", index_select with computed positions for the other
// modes; all differentiable through ops that already are).
#include <algorithm>

#include "core/ops/internal.h"

namespace kiln {

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  KILN_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.size(d);
  KILN_CHECK(split_size > 0 || (split_size == 0 && n == 0), "split: split_size must be positive, got ", split_size);
  std::vector<Tensor> parts;
  if (n == 0) return {x};
  for (int64_t start = 0; start < n; start += split_size)
    parts.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  return parts;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  KILN_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    KILN_CHECK(s >= 0, "split: sizes must be non-negative, got ", sizes);
    total += s;
  }
  KILN_CHECK(total == x.size(d), "split: sizes ", sizes, " sum to ", total, ", but dim ", dim, " has size ", x.size(d));
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(x.narrow(d, start, s));
    start += s;
  }
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  KILN_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  KILN_CHECK(x.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "chunk");
  const int64_t n = x.size(d);
  const int64_t size = (n + chunks - 1) / chunks;
  if (size == 0) {  // an empty dim gives `chunks` empty pieces, as PyTorch's
    std::vector<Tensor> parts;
    for (int64_t i = 0; i < chunks; ++i) parts.push_back(x.narrow(d, 0, 0));
    return parts;
  }
  return split(x, size, d);
}

namespace {

// Positions along a dim of size n for output positions -before .. n + after - 1, by mode.
Tensor pad_positions(int64_t n, int64_t before, int64_t after, const std::string& mode, Device device) {
  std::vector<int64_t> pos;
  for (int64_t i = -before; i < n + after; ++i) {
    int64_t j = i;
    if (mode == "reflect") {
      const int64_t period = 2 * (n - 1);
      j = ((j % period) + period) % period;
      if (j >= n) j = period - j;
    } else if (mode == "replicate") {
      j = std::clamp<int64_t>(j, 0, n - 1);
    } else {  // circular
      j = ((j % n) + n) % n;
    }
    pos.push_back(j);
  }
  return tensor(pos).to(device);
}

}  // namespace

Tensor pad(const Tensor& x, const std::vector<int64_t>& pad, const std::string& mode, double value) {
  KILN_CHECK(pad.size() % 2 == 0 && int64_t(pad.size()) / 2 <= x.dim(),
             "pad: expected (before, after) "
             "pairs for at most ",
             x.dim(), " dims, got ", pad.size(), " values");
  KILN_CHECK(mode == "constant" || mode == "reflect" || mode == "replicate" || mode == "circular",
             "pad: mode must be \"constant\", \"reflect\", \"replicate\" or \"circular\", got \"", mode, "\"");
  KILN_CHECK(mode == "constant" || value == 0.0, "pad: a fill value applies to mode \"constant\" only");
  Tensor out = x;
  for (size_t k = 0; k < pad.size() / 2; ++k) {
    const int64_t d = x.dim() - 1 - int64_t(k);
    int64_t before = pad[2 * k], after = pad[2 * k + 1];
    const int64_t n = out.size(d);
    KILN_CHECK(n + before + after >= 0, "pad: padding (", before, ", ", after, ") leaves dim ", d, " of size ", n,
               " with a negative size");
    // Negative amounts crop first.
    if (before < 0 || after < 0) {
      const int64_t b0 = std::max<int64_t>(-before, 0), a0 = std::max<int64_t>(-after, 0);
      out = out.narrow(d, b0, n - b0 - a0);
      before = std::max<int64_t>(before, 0);
      after = std::max<int64_t>(after, 0);
    }
    if (before == 0 && after == 0) continue;
    const int64_t m = out.size(d);
    if (mode == "constant") {
      std::vector<Tensor> parts;
      auto block = [&](int64_t len) {
        Shape s = out.sizes();
        s[size_t(d)] = len;
        return full(s, value, out.options());
      };
      if (before) parts.push_back(block(before));
      parts.push_back(out);
      if (after) parts.push_back(block(after));
      out = cat(parts, d);
      continue;
    }
    KILN_CHECK(m > 0, "pad: mode \"", mode, "\" needs a non-empty dim ", d);
    if (mode == "reflect")
      KILN_CHECK(before < m && after < m, "pad: reflect padding (", before, ", ", after,
                 ") must be smaller than the size ", m, " of dim ", d);
    if (mode == "circular")
      KILN_CHECK(before <= m && after <= m, "pad: circular padding (", before, ", ", after,
                 ") must not exceed the size ", m, " of dim ", d);
    out = index_select(out, d, pad_positions(m, before, after, mode, out.device()));
  }
  return out.is_same(x) ? x.clone() : out;
}

}  // namespace kiln
