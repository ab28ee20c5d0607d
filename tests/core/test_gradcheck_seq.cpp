// The ops of sequence models and modern layers against central finite differences in float64,
// with broadcasting, non-contiguous inputs and both attention paths.
#include "helpers.h"

using namespace kiln;

namespace {

Tensor rnd(Shape s, double lo = -1, double hi = 1) {
  static Generator gen(17);
  return rand(std::move(s), {.dtype = DType::f64}, &gen) * (hi - lo) + lo;
}

void expect_grad(const char* what, const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                 std::vector<Tensor> inputs) {
  auto r = gradcheck(fn, std::move(inputs));
  const std::string label = std::string(what) + ": " + r.message;
  INFO(label);
  CHECK(r.ok);
}

// Distinct values, so sort and topk have no ties for finite differences to straddle.
Tensor distinct(Shape s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return randperm(n).to(DType::f64).reshape(s) * 0.1 + rnd(s, 0, 0.01);
}

}  // namespace

TEST_CASE("gradcheck: masks, gather, scatter") {
  auto mask = tensor({{true, false, true}, {false, false, true}});
  expect_grad("masked_fill", [&](auto& in) { return in[0].masked_fill(mask, 2.0); }, {rnd({2, 3})});
  expect_grad("masked_fill tensor value", [&](auto& in) { return masked_fill(in[0], mask.select(0, 0), in[1]); },
              {rnd({2, 3}), rnd({})});
  expect_grad("tril", [](auto& in) { return tril(in[0], 1); }, {rnd({2, 3, 4})});
  expect_grad("triu non-contiguous", [](auto& in) { return triu(in[0].transpose(0, 1)); }, {rnd({4, 3})});
  auto idx = tensor({{2, 0, 2}, {1, 1, 0}});
  expect_grad("gather", [&](auto& in) { return gather(in[0], 1, idx); }, {rnd({2, 4})});
  expect_grad("scatter",
              [&](auto& in) {
                return scatter(in[0], 1, tensor({{3, 0}, {1, 2}}), in[1]);
              },
              {rnd({2, 4}), rnd({2, 3})});
  expect_grad("scatter_add repeats", [&](auto& in) { return scatter_add(in[0], 1, idx, in[1]); },
              {rnd({2, 3}), rnd({2, 3})});
  expect_grad("scatter_add_ in place",
              [&](auto& in) {
                Tensor y = in[0] * 1.0;
                y.scatter_add_(0, tensor({{1, 0, 1}}), in[1]);
                return y;
              },
              {rnd({2, 3}), rnd({1, 3})});
}

TEST_CASE("gradcheck: sort, topk, cumsum, flip, chunk, split") {
  expect_grad("sort", [](auto& in) { return std::get<0>(sort(in[0], 0, true)); }, {distinct({4, 3})});
  expect_grad("topk", [](auto& in) { return std::get<0>(topk(in[0], 2, -1)); }, {distinct({3, 5})});
  expect_grad("cumsum", [](auto& in) { return cumsum(in[0], 1); }, {rnd({2, 4, 3})});
  expect_grad("cumsum non-contiguous", [](auto& in) { return cumsum(in[0].t(), 0); }, {rnd({3, 5})});
  expect_grad("flip", [](auto& in) { return flip(in[0], {0, 2}); }, {rnd({2, 3, 2})});
  expect_grad("chunk",
              [](auto& in) {
                auto p = chunk(in[0], 3, 1);
                return p[0].sum() + p[1].square().sum() * 2 + p[2].sin().sum();
              },
              {rnd({2, 7})});
  expect_grad("split",
              [](auto& in) {
                auto p = in[0].split(std::vector<int64_t>{2, 1}, 0);
                return p[0] * 3 - p[1];
              },
              {rnd({3, 2})});
}

TEST_CASE("gradcheck: pad, einsum") {
  expect_grad("pad constant crop",
              [](auto& in) {
                return pad(in[0], {2, -1, 1, 0}, "constant", 0.3);
              },
              {rnd({2, 3, 4})});
  expect_grad("pad reflect", [](auto& in) { return pad(in[0], {2, 1, 1, 2}, "reflect"); }, {rnd({1, 4, 3})});
  expect_grad("pad replicate", [](auto& in) { return pad(in[0], {3, 1}, "replicate"); }, {rnd({2, 3})});
  expect_grad("pad circular", [](auto& in) { return pad(in[0], {1, 2}, "circular"); }, {rnd({2, 3})});
  expect_grad("einsum bmm",
              [](auto& in) {
                return einsum("bij,bjk->bik", {in[0], in[1]});
              },
              {rnd({2, 3, 4}), rnd({2, 4, 2})});
  expect_grad("einsum trace", [](auto& in) { return einsum("ii", {in[0]}); }, {rnd({3, 3})});
  expect_grad("einsum diagonal batch", [](auto& in) { return einsum("bii->bi", {in[0]}); }, {rnd({2, 3, 3})});
  expect_grad("einsum broadcast ellipsis",
              [](auto& in) {
                return einsum("...ij,...jk->...ik", {in[0], in[1]});
              },
              {rnd({2, 1, 2, 3}), rnd({3, 3, 2})});
  expect_grad("einsum three operands",
              [](auto& in) {
                return einsum("ab,bc,ca->", {in[0], in[1], in[2]});
              },
              {rnd({2, 3}), rnd({3, 4}), rnd({4, 2})});
}

TEST_CASE("gradcheck: sin, cos, silu, rms_norm, group_norm, conv1d") {
  expect_grad("sin", [](auto& in) { return sin(in[0]); }, {rnd({6}, -3, 3)});
  expect_grad("cos", [](auto& in) { return cos(in[0]); }, {rnd({6}, -3, 3)});
  expect_grad("silu", [](auto& in) { return silu(in[0]); }, {rnd({6}, -4, 4)});
  expect_grad("rms_norm", [](auto& in) { return rms_norm(in[0], {2, 3}, in[1]); }, {rnd({2, 2, 3}), rnd({2, 3})});
  expect_grad("rms_norm no weight", [](auto& in) { return rms_norm(in[0], {4}, {}, 1e-3); }, {rnd({3, 4})});
  expect_grad("group_norm", [](auto& in) { return group_norm(in[0], 2, in[1], in[2]); },
              {rnd({2, 4, 3}), rnd({4}), rnd({4})});
  expect_grad("conv1d", [](auto& in) { return conv1d(in[0], in[1], in[2], 2, 2, 1, 1); },
              {rnd({2, 2, 7}), rnd({3, 2, 3}), rnd({3})});
  expect_grad("conv1d grouped dilated", [](auto& in) { return conv1d(in[0], in[1], {}, 1, 0, 2, 2); },
              {rnd({1, 4, 8}), rnd({4, 2, 2})});
}

TEST_CASE("gradcheck: scaled_dot_product_attention, fused and math") {
  for (SdpaBackend b : {SdpaBackend::fused, SdpaBackend::math}) {
    set_sdpa_backend(b);
    INFO("backend " << (b == SdpaBackend::fused ? "fused" : "math"));
    expect_grad("sdpa", [](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); },
                {rnd({2, 3, 4}), rnd({2, 5, 4}), rnd({2, 5, 3})});
    expect_grad("sdpa causal, partial tiles",
                [](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {}, 0.0, true, 0.7); },
                {rnd({1, 35, 2}), rnd({1, 66, 2}), rnd({1, 66, 2})});
    auto fmask = rnd({3, 5});
    expect_grad("sdpa float mask", [&](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], fmask); },
                {rnd({2, 1, 3, 4}), rnd({2, 1, 5, 4}), rnd({2, 1, 5, 2})});
    auto bmask = tensor({{true, false, true}, {false, false, true}});
    expect_grad("sdpa bool mask, non-contiguous q",
                [&](auto& in) { return scaled_dot_product_attention(in[0].transpose(1, 2), in[1], in[2], bmask); },
                {rnd({2, 4, 2}), rnd({2, 3, 4}), rnd({2, 3, 3})});
    expect_grad("sdpa dropout (fixed generator)",
                [](auto& in) {
                  Generator g(21);
                  return scaled_dot_product_attention(in[0], in[1], in[2], {}, 0.4, false, std::nullopt, &g);
                },
                {rnd({2, 4, 3}), rnd({2, 6, 3}), rnd({2, 6, 3})});
  }
  set_sdpa_backend(SdpaBackend::automatic);
}
