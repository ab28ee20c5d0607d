// The ops of sequence models beyond PyTorch's golden values: edge cases (NaN, ties, empty and
// fully-masked rows, tiles cut short), the fused attention kernel against the math path at sizes
// that span several tiles, dropout agreement, sampling statistics, and the errors for misuse.
#include <cmath>
#include <map>

#include "helpers.h"

using namespace kiln;
using kiln::test::check_close;
using kiln::test::check_values;

TEST_CASE("masked_fill, tril and triu") {
  auto x = arange(6.0, {.dtype = DType::f32}).reshape({2, 3});
  check_values(x.masked_fill(x > 2, -1.0), {0, 1, 2, -1, -1, -1});
  check_values(masked_fill(x, tensor({true, false, true}), scalar_tensor(9.0)), {9, 1, 9, 9, 4, 9});
  auto y = x.clone();
  y.masked_fill_(y < 1, 7.0);
  check_values(y, {7, 1, 2, 3, 4, 5});
  check_values(tril(ones({3, 3})), {1, 0, 0, 1, 1, 0, 1, 1, 1});
  check_values(triu(ones({2, 4}), 2), {0, 0, 1, 1, 0, 0, 0, 1});
  check_values(tril(arange(4).reshape({2, 2}), -1), {0, 0, 2, 0});  // integer tensors too
  CHECK(tril(arange(4).reshape({2, 2})).dtype() == DType::i64);
  CHECK_THROWS_WITH_AS(x.masked_fill(x, 1.0), doctest::Contains("bool"), Error);
  CHECK_THROWS_WITH_AS(tril(ones({3})), doctest::Contains("at least 2 dims"), Error);
}

TEST_CASE("gather and scatter: values, larger src, bounds") {
  auto x = tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
  auto idx = tensor({{2, 0}, {1, 1}});
  check_values(gather(x, 1, idx), {3, 1, 5, 5});
  check_values(x.scatter(1, idx, tensor({{10.0, 20.0}, {30.0, 30.0}})), {20, 2, 10, 4, 30, 6});
  check_values(x.scatter(0, tensor({{1, 0, 1}}), -1.0), {1, -1, 3, -1, 5, -1});
  // scatter_add sums repeats; src may be larger than index (its extra elements are unused).
  auto src = tensor({{1.0, 1.0, 9.0}, {2.0, 2.0, 9.0}}, {.dtype = DType::f64, .requires_grad = true});
  auto z = scatter_add(zeros({2, 3}, {.dtype = DType::f64}), 1, idx, src);
  check_values(z, {1, 0, 1, 0, 4, 0});
  z.sum().backward();
  check_values(src.grad(), {1, 1, 0, 1, 1, 0});
  auto w = zeros({2, 2});
  w.scatter_add_(0, tensor({{0, 0}, {0, 1}}), ones({2, 2}));
  check_values(w, {2, 1, 0, 1});
  CHECK_THROWS_WITH_AS(gather(x, 1, tensor({{3}})), doctest::Contains("out of bounds"), Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, tensor({{-1}})), doctest::Contains("out of bounds"), Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, tensor({1})), doctest::Contains("as many dims"), Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, tensor({{0}, {0}, {0}})), doctest::Contains("larger"), Error);
}

TEST_CASE("sort: stable, NaN last ascending and first descending; topk and argsort") {
  auto x = tensor({3.0f, NAN, 1.0f, 3.0f, -2.0f});
  auto [v, i] = sort(x);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{4, 2, 0, 3, 1});
  CHECK(std::isnan(v.to_vector<float>()[4]));
  auto [vd, id] = x.sort(-1, true);
  CHECK(id.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 3, 2, 4});
  auto m = tensor({{5, 1, 5}, {2, 2, 0}});  // integer tensors sort too
  auto [mv, mi] = sort(m, 0);
  CHECK(mv.to_vector<int64_t>() == std::vector<int64_t>{2, 1, 0, 5, 2, 5});
  CHECK(mi.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1, 0, 1, 0});
  CHECK(argsort(tensor({2.0, 0.0, 1.0})).to_vector<int64_t>() == std::vector<int64_t>{1, 2, 0});
  auto [tv, ti] = topk(tensor({1.0, 9.0, 4.0, 9.0}), 2);
  check_values(tv, {9, 9});
  CHECK(ti.to_vector<int64_t>() == std::vector<int64_t>{1, 3});
  auto [sv, si] = topk(tensor({1.0, 9.0, 4.0}), 2, -1, /*largest=*/false);
  check_values(sv, {1, 4});
  CHECK_THROWS_WITH_AS(topk(ones({3}), 4), doctest::Contains("k (4)"), Error);
}

TEST_CASE("cumsum: dtypes, long rows, flip") {
  check_values(cumsum(tensor({1.0, 2.0, 3.0}), 0), {1, 3, 6});
  auto c = cumsum(tensor({true, true, false}), 0);
  CHECK(c.dtype() == DType::i64);
  CHECK(c.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 2});
  auto big = ones({3, 10000});
  CHECK(cumsum(big, 1).select(1, 9999).to_vector<float>() == std::vector<float>{10000, 10000, 10000});
  check_values(flip(arange(6.0, {.dtype = DType::f64}).reshape({2, 3}), {0, 1}), {5, 4, 3, 2, 1, 0});
}

TEST_CASE("chunk and split follow PyTorch's piece sizes") {
  auto x = arange(10.0, {.dtype = DType::f32});
  auto sizes = [](const std::vector<Tensor>& ps) {
    std::vector<int64_t> s;
    for (auto& p : ps) s.push_back(p.size(0));
    return s;
  };
  CHECK(sizes(chunk(x, 3)) == std::vector<int64_t>{4, 4, 2});
  CHECK(sizes(chunk(arange(6.0), 4)) == std::vector<int64_t>{2, 2, 2});  // fewer pieces than asked
  CHECK(sizes(x.split(4)) == std::vector<int64_t>{4, 4, 2});
  CHECK(sizes(x.split(std::vector<int64_t>{1, 9})) == std::vector<int64_t>{1, 9});
  check_values(x.chunk(5)[2], {4, 5});
  CHECK_THROWS_WITH_AS(x.split(std::vector<int64_t>{3, 3}), doctest::Contains("sum to 6"), Error);
  CHECK_THROWS_AS(chunk(x, 0), Error);
}

TEST_CASE("pad: crop with negative amounts, modes by hand") {
  auto x = tensor({1.0, 2.0, 3.0}).reshape({1, 3});
  check_values(pad(x, {1, -1}), {0, 1, 2});
  check_values(pad(x, {2, 2}, "reflect"), {3, 2, 1, 2, 3, 2, 1});
  check_values(pad(x, {2, 1}, "replicate"), {1, 1, 1, 2, 3, 3});
  check_values(pad(x, {1, 2}, "circular"), {3, 1, 2, 3, 1, 2});
  CHECK_THROWS_WITH_AS(pad(x, {3, 0}, "reflect"), doctest::Contains("smaller than the size"), Error);
  CHECK_THROWS_WITH_AS(pad(x, {1}), doctest::Contains("pairs"), Error);
  CHECK_THROWS_WITH_AS(pad(x, {1, 1}, "wrap"), doctest::Contains("mode"), Error);
}

TEST_CASE("einsum: traces, outer products, transposes and errors") {
  auto a = tensor({{1.0, 2.0}, {3.0, 4.0}});
  check_values(einsum("ii", {a}), {5});
  check_values(einsum("ij->ji", {a}), {1, 3, 2, 4});
  check_values(einsum("i,j->ij", {tensor({1.0, 2.0}), tensor({3.0, 4.0, 5.0})}), {3, 4, 5, 6, 8, 10});
  check_values(einsum("ij,ij->", {a, a}), {30});
  check_values(einsum("ij -> j", {a}), {4, 6});
  CHECK_THROWS_WITH_AS(einsum("ij,jk", {a}), doctest::Contains("2 operand terms"), Error);
  CHECK_THROWS_WITH_AS(einsum("ijk", {a}), doctest::Contains("names 3 dims"), Error);
  CHECK_THROWS_WITH_AS(einsum("ij->q", {a}), doctest::Contains("no operand has"), Error);
  CHECK_THROWS_WITH_AS(einsum("i,i->i", {ones({2}), ones({3})}), doctest::Contains("sizes"), Error);
}

TEST_CASE("sin, cos, silu, rms_norm, group_norm, conv1d: values and shapes") {
  auto x = tensor({0.0, 1.0, -2.0});
  check_values(sin(x), {0, std::sin(1.0), std::sin(-2.0)});
  check_values(cos(x), {1, std::cos(1.0), std::cos(-2.0)});
  check_values(silu(x), {0, 1 / (1 + std::exp(-1.0)), -2 / (1 + std::exp(2.0))});
  auto r = rms_norm(tensor({{3.0, 4.0}}), {2}, {}, 0.0);
  check_values(r, {3 / std::sqrt(12.5), 4 / std::sqrt(12.5)});
  auto g = group_norm(randn({2, 4, 3}), 2);
  check_close(mean(g.reshape({2, 2, 6}), {2}), zeros({2, 2}), 1e-5, 1e-5);
  CHECK(conv1d(randn({3, 10}), randn({5, 3, 3})).sizes() == Shape{5, 8});  // unbatched
  CHECK_THROWS_WITH_AS(group_norm(ones({2, 6, 2}), 4), doctest::Contains("divide the 6 channels"), Error);
  CHECK_THROWS_WITH_AS(conv1d(ones({2, 4, 8}), ones({3, 2, 3})), doctest::Contains("expected input of shape [N, 2"),
                       Error);
}

namespace {

// q, k, v of one attention problem, on the CPU in dtype t.
struct Qkv {
  Tensor q, k, v;
};
Qkv make_qkv(Shape lead, int64_t L, int64_t S, int64_t E, int64_t Ev, DType t) {
  Generator gen(11);
  auto mk = [&](int64_t rows, int64_t cols) {
    Shape s = lead;
    s.push_back(rows);
    s.push_back(cols);
    return randn(s, {.dtype = t}, &gen);
  };
  return {mk(L, E), mk(S, E), mk(S, Ev)};
}

// The fused kernel against the math path: forward and the three input gradients.
void compare_paths(const Qkv& in, const Tensor& mask, bool causal, double dropout, double tol) {
  std::vector<Tensor> outs, grads;
  for (SdpaBackend b : {SdpaBackend::fused, SdpaBackend::math}) {
    set_sdpa_backend(b);
    Tensor q = in.q.detach().requires_grad_(), k = in.k.detach().requires_grad_(), v = in.v.detach().requires_grad_();
    Generator gen(5);
    Tensor o = scaled_dot_product_attention(q, k, v, mask, dropout, causal, std::nullopt, &gen);
    Generator gg(9);
    Tensor go = randn(o.sizes(), {.dtype = o.dtype()}, &gg);
    o.backward(go);
    outs.push_back(o.detach());
    grads.push_back(q.grad());
    grads.push_back(k.grad());
    grads.push_back(v.grad());
  }
  set_sdpa_backend(SdpaBackend::automatic);
  check_close(outs[0], outs[1], tol, tol);
  for (int j = 0; j < 3; ++j) {
    INFO("gradient " << j);
    check_close(grads[size_t(j)], grads[size_t(j + 3)], tol, tol);
  }
}

}  // namespace

TEST_CASE("scaled_dot_product_attention: the fused kernel equals the math path across tile edges") {
  SUBCASE("f64, causal, L > S, several tiles") {
    compare_paths(make_qkv({2, 3}, 70, 65, 16, 8, DType::f64), {}, true, 0, 1e-11);
  }
  SUBCASE("f64, causal, L < S") { compare_paths(make_qkv({3}, 33, 130, 8, 12, DType::f64), {}, true, 0, 1e-11); }
  SUBCASE("f32, no mask") { compare_paths(make_qkv({2, 2}, 40, 100, 32, 32, DType::f32), {}, false, 0, 2e-5); }
  SUBCASE("f32, float mask broadcast over batch") {
    compare_paths(make_qkv({2, 2}, 37, 70, 16, 16, DType::f32), randn({1, 37, 70}), false, 0, 2e-5);
  }
  SUBCASE("f64, bool mask per batch entry, broadcast over heads") {
    Generator g(3);
    compare_paths(make_qkv({2, 3}, 20, 90, 8, 8, DType::f64), rand({2, 1, 20, 90}, {}, &g) > 0.2, false, 0, 1e-11);
  }
  SUBCASE("f64, dropout: both paths drop the same weights") {
    compare_paths(make_qkv({2}, 35, 70, 8, 8, DType::f64), {}, true, 0.3, 1e-11);
  }
  SUBCASE("bf16 inputs, f32 arithmetic") {
    Qkv in = make_qkv({2}, 20, 40, 16, 16, DType::bf16);
    auto fused = scaled_dot_product_attention(in.q, in.k, in.v);
    set_sdpa_backend(SdpaBackend::math);
    auto ref = scaled_dot_product_attention(in.q.to(DType::f32), in.k.to(DType::f32), in.v.to(DType::f32));
    set_sdpa_backend(SdpaBackend::automatic);
    CHECK(fused.dtype() == DType::bf16);
    check_close(fused, ref, 2e-2, 2e-2);
  }
}

TEST_CASE("scaled_dot_product_attention: fully-masked rows give zeros and zero gradients") {
  for (SdpaBackend b : {SdpaBackend::fused, SdpaBackend::math}) {
    set_sdpa_backend(b);
    auto q = randn({1, 3, 4}, {.dtype = DType::f64, .requires_grad = true});
    auto k = randn({1, 5, 4}, {.dtype = DType::f64, .requires_grad = true});
    auto v = randn({1, 5, 4}, {.dtype = DType::f64, .requires_grad = true});
    auto mask = tensor(
        {{true, true, false, false, false}, {false, false, false, false, false}, {true, false, false, false, true}});
    auto o = scaled_dot_product_attention(q, k, v, mask);
    check_close(o.select(1, 1), zeros({1, 4}, {.dtype = DType::f64}), 0, 0);
    o.sum().backward();
    check_close(q.grad().select(1, 1), zeros({1, 4}, {.dtype = DType::f64}), 0, 0);
    CHECK(isfinite_all(k.grad()).item<bool>());
  }
  set_sdpa_backend(SdpaBackend::automatic);
}

TEST_CASE("scaled_dot_product_attention: errors name the problem") {
  auto q = ones({2, 4, 8}), k = ones({2, 6, 8}), v = ones({2, 6, 3});
  CHECK(scaled_dot_product_attention(q, k, v).sizes() == Shape{2, 4, 3});
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, ones({2, 6, 7}), v), doctest::Contains("k must be"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, ones({4, 6}) > 0, 0.0, true),
                       doctest::Contains("not both"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, ones({3, 6}) > 0), doctest::Contains("broadcast"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, {}, 1.0), doctest::Contains("dropout_p"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k.to(DType::f64), v), doctest::Contains("one floating dtype"),
                       Error);
}

TEST_CASE("multinomial: frequencies follow the weights; without replacement draws are distinct") {
  Generator gen(1);
  auto probs = tensor({0.1, 0.0, 0.6, 0.3});
  auto s = multinomial(probs, 20000, true, &gen);
  CHECK(s.sizes() == Shape{20000});
  std::map<int64_t, int> counts;
  for (int64_t v : s.to_vector<int64_t>()) ++counts[v];
  CHECK(counts[1] == 0);
  CHECK(std::abs(counts[2] / 20000.0 - 0.6) < 0.02);
  CHECK(std::abs(counts[3] / 20000.0 - 0.3) < 0.02);
  auto rows = multinomial(tensor({{1.0, 1.0, 1.0, 0.0}, {0.0, 5.0, 1.0, 1.0}}), 3, false, &gen);
  for (int r = 0; r < 2; ++r) {
    auto v = rows[r].to_vector<int64_t>();
    std::sort(v.begin(), v.end());
    CHECK(v == (r == 0 ? std::vector<int64_t>{0, 1, 2} : std::vector<int64_t>{1, 2, 3}));
  }
  Generator a(7), b(7);
  CHECK(equal(multinomial(probs, 50, true, &a), multinomial(probs, 50, true, &b)));  // seeded: repeatable
  CHECK_THROWS_WITH_AS(multinomial(probs, 4, false), doctest::Contains("only 3 non-zero"), Error);
  CHECK_THROWS_WITH_AS(multinomial(tensor({-1.0, 2.0}), 1), doctest::Contains("non-negative"), Error);
  CHECK_THROWS_WITH_AS(multinomial(zeros({2}), 1), doctest::Contains("positive sum"), Error);
}
