// The ops of sequence models on a GPU against the CPU: sin/cos/silu, cumsum, sort/topk (ties, NaN,
// long rows through CUB), gather/scatter/scatter_add, multinomial (the same draws as the CPU from
// the same generator), the fused attention kernels forward and backward (partial tiles, causal,
// masks, dropout, head dims 8 to 256, f32/f64/f16/bf16) and the compositions built on other
// kernels (masked_fill, tril, pad, einsum, the norms, conv1d). Skipped without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "gpu_helpers.h"

using namespace kiln;
using namespace kiln::gpu_test;

namespace {

Tensor g(const Tensor& t) { return t.to(kGpu); }

// fn on the CPU and on the GPU (inputs copied), forward and the gradient of every floating input.
void same_on_both(const std::string& what, const std::vector<Tensor>& inputs,
                  const std::function<Tensor(const std::vector<Tensor>&)>& fn, double rtol, double atol) {
  std::vector<Tensor> cpu, gpu;
  for (const Tensor& t : inputs) {
    Tensor c = t.detach().clone(), d = t.detach().to(kGpu);
    if (t.is_floating_point()) {
      c.requires_grad_();
      d.requires_grad_();
    }
    cpu.push_back(c);
    gpu.push_back(d);
  }
  Tensor yc = fn(cpu), yg = fn(gpu);
  CHECK(yg.device() == kGpu);
  expect_close(yg, yc, rtol, atol, what + " forward");
  if (!yc.requires_grad()) return;
  Generator gen(4);
  Tensor go = randn(yc.sizes(), {.dtype = yc.dtype()}, &gen);
  yc.backward(go);
  yg.backward(go.to(kGpu));
  for (size_t k = 0; k < inputs.size(); ++k)
    if (cpu[k].grad().defined())
      expect_close(gpu[k].grad(), cpu[k].grad(), rtol, atol, what + " grad " + std::to_string(k));
}

}  // namespace

TEST_CASE("gpu: sin, cos, silu and their gradients" * doctest::skip(gpu_missing())) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    Tensor x = rnd({1023}, t) * 3;
    same_on_both(
        "sin", {x}, [](auto& in) { return sin(in[0]); }, tol_of(t), tol_of(t));
    same_on_both(
        "cos", {x}, [](auto& in) { return cos(in[0]); }, tol_of(t), tol_of(t));
    same_on_both(
        "silu", {x}, [](auto& in) { return silu(in[0]); }, tol_of(t), tol_of(t));
  }
}

TEST_CASE("gpu: cumsum over each dim, integer and long rows" * doctest::skip(gpu_missing())) {
  Tensor x = rnd({3, 70, 5}, DType::f64);
  for (int64_t d : {0, 1, 2})
    same_on_both(
        "cumsum", {x}, [d](auto& in) { return cumsum(in[0], d); }, 1e-12, 1e-12);
  Tensor ints = randint(-5, 5, {4, 1000});
  expect_close(cumsum(g(ints), 1), cumsum(ints, 1), 0, 0, "cumsum int64");
  Tensor bools = rand({2, 50}) > 0.5;
  expect_close(cumsum(g(bools), 1), cumsum(bools, 1), 0, 0, "cumsum bool");
  Tensor f = rnd({2, 100000}, DType::f32);
  expect_close(cumsum(g(f), 1), cumsum(f, 1), 1e-5, 1e-3, "cumsum f32 long rows");
  same_on_both(
      "cumsum f16", {rnd({8, 33}, DType::f16)}, [](auto& in) { return cumsum(in[0], 1); }, 4e-3, 4e-3);
}

TEST_CASE("gpu: sort, argsort and topk give the CPU's order (stable, NaN largest)" * doctest::skip(gpu_missing())) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i64, DType::i32}) {
    INFO("dtype " << t);
    // Few distinct values: many ties, which a stable sort must keep in order.
    Tensor x = randint(-4, 4, {5, 301}).to(t);
    for (bool desc : {false, true}) {
      auto [vc, ic] = sort(x, 1, desc);
      auto [vg, ig] = sort(g(x), 1, desc);
      expect_close(vg, vc, 0, 0, "sort values");
      expect_close(ig, ic, 0, 0, "sort indices");
    }
  }
  Tensor n = tensor({3.0f, NAN, -0.0f, 0.0f, -INFINITY, NAN, 1.0f});
  for (bool desc : {false, true}) {
    auto [vc, ic] = sort(n, 0, desc);
    auto [vg, ig] = sort(g(n), 0, desc);
    expect_close(ig, ic, 0, 0, "sort with NaN and signed zeros");
    expect_close(vg, vc, 0, 0, "values with NaN");
  }
  Tensor b = rand({3, 40}) > 0.5;
  expect_close(std::get<1>(sort(g(b), 1)), std::get<1>(sort(b, 1)), 0, 0, "sort bool");
  Tensor big = rnd({2, 200003}, DType::f32);
  expect_close(std::get<1>(sort(g(big), 1, true)), std::get<1>(sort(big, 1, true)), 0, 0, "long rows");
  same_on_both(
      "sort dim 0 gradient", {rnd({40, 3}, DType::f64)}, [](auto& in) { return std::get<0>(sort(in[0], 0)); }, 1e-12,
      1e-12);
  same_on_both(
      "topk", {rnd({6, 50}, DType::f64)}, [](auto& in) { return std::get<0>(topk(in[0], 7, 1)); }, 1e-12, 1e-12);
  Tensor x = rnd({4, 9}, DType::f32);
  expect_close(argsort(g(x), 0, true), argsort(x, 0, true), 0, 0, "argsort");
}

TEST_CASE("gpu: gather, scatter and scatter_add against the CPU" * doctest::skip(gpu_missing())) {
  Tensor x = rnd({6, 40}, DType::f64);
  Tensor idx = randint(0, 40, {6, 25});
  same_on_both(
      "gather", {x}, [&](auto& in) { return gather(in[0], 1, idx.to(in[0].device())); }, 1e-12, 1e-12);
  Tensor idx_t = randint(0, 40, {30, 6});
  same_on_both(
      "gather strided", {x}, [&](auto& in) { return gather(in[0].t(), 0, idx_t.to(in[0].device())); }, 1e-12, 1e-12);
  Tensor rows = randint(0, 6, {9, 40});
  same_on_both(
      "scatter_add repeats", {x, rnd({9, 40}, DType::f64)},
      [&](auto& in) { return scatter_add(in[0], 0, rows.to(in[0].device()), in[1]); }, 1e-12, 1e-12);
  // Unique positions per column, so plain scatter has one writer each.
  Tensor perm = stack({randperm(6), randperm(6), randperm(6)}, 1).narrow(0, 0, 4);
  same_on_both(
      "scatter", {rnd({6, 3}, DType::f32), rnd({4, 3}, DType::f32)},
      [&](auto& in) { return scatter(in[0], 0, perm.to(in[0].device()), in[1]); }, 0, 0);
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::i64, DType::i32}) {
    Tensor z = zeros({5}, {.dtype = t});
    Tensor src = ones({200}, {.dtype = t});
    Tensor where_to = randint(0, 5, {200});
    expect_close(scatter_add(g(z), 0, g(where_to), g(src)), scatter_add(z, 0, where_to, src), 0, 0,
                 "scatter_add counts");
  }
  CHECK_THROWS_WITH_AS(gather(g(x), 1, g(tensor({{40}}).expand({6, 1}))), doctest::Contains("out of bounds"), Error);
}

TEST_CASE("gpu: multinomial draws what the CPU draws from the same generator" * doctest::skip(gpu_missing())) {
  Tensor probs = rand({7, 50}, {.dtype = DType::f64}) * (rand({7, 50}, {.dtype = DType::f64}) > 0.3).to(DType::f64);
  for (bool replacement : {true, false}) {
    Generator a(12), b(12);
    Tensor c = multinomial(probs, 9, replacement, &a);
    Tensor d = multinomial(g(probs), 9, replacement, &b);
    CHECK(d.device() == kGpu);
    expect_close(d, c, 0, 0, replacement ? "with replacement" : "without replacement");
  }
  Generator a(3), b(3);
  expect_close(multinomial(g(probs.to(DType::f32)), 1000, true, &a), multinomial(probs.to(DType::f32), 1000, true, &b),
               0, 0, "f32 weights, many draws");
}

namespace {

void attention_case(const std::string& what, Shape lead, int64_t L, int64_t S, int64_t E, int64_t Ev, DType t,
                    const Tensor& mask, bool causal, double dropout) {
  Generator gen(7);
  auto mk = [&](int64_t r, int64_t c) {
    Shape s = lead;
    s.push_back(r);
    s.push_back(c);
    return randn(s, {}, &gen).to(t);
  };
  std::vector<Tensor> in = {mk(L, E), mk(S, E), mk(S, Ev)};
  const double tol = t == DType::f64 ? 1e-11 : t == DType::f32 ? 2e-5 : t == DType::f16 ? 1e-2 : 5e-2;
  same_on_both(
      what, in,
      [&](auto& x) {
        Generator drop(31);  // the same dropout lanes on both devices
        Tensor m = mask.defined() ? mask.to(x[0].device()) : Tensor();
        return scaled_dot_product_attention(x[0], x[1], x[2], m, dropout, causal, std::nullopt, &drop);
      },
      tol, tol);
}

}  // namespace

TEST_CASE("gpu: fused attention forward and backward equal the CPU's" * doctest::skip(gpu_missing())) {
  attention_case("f32 plain", {2, 3}, 50, 70, 64, 64, DType::f32, {}, false, 0);
  attention_case("f64 causal L > S", {2}, 70, 45, 16, 8, DType::f64, {}, true, 0);
  attention_case("f64 causal L < S", {3}, 17, 100, 8, 24, DType::f64, {}, true, 0);
  attention_case("f32 head dim 100", {2}, 33, 33, 100, 100, DType::f32, {}, true, 0);
  attention_case("f32 head dim 256", {1}, 40, 40, 256, 256, DType::f32, {}, false, 0);
  attention_case("f64 head dim 256", {1}, 20, 20, 256, 256, DType::f64, {}, true, 0);
  attention_case("f32 float mask, broadcast", {2, 2}, 19, 37, 32, 16, DType::f32, randn({1, 19, 37}), false, 0);
  attention_case("f64 bool mask, per batch entry", {2, 3}, 21, 30, 8, 8, DType::f64, rand({2, 1, 21, 30}) > 0.25, false,
                 0);
  attention_case("f64 dropout", {2}, 35, 40, 16, 16, DType::f64, {}, true, 0.25);
  attention_case("f16", {2, 2}, 40, 40, 64, 64, DType::f16, {}, true, 0);
  attention_case("bf16 with f32 mask", {2}, 24, 48, 32, 32, DType::bf16, randn({24, 48}), false, 0);
}

TEST_CASE("gpu: fully-masked rows and the math path" * doctest::skip(gpu_missing())) {
  Tensor q = g(rnd({1, 3, 8}, DType::f32)), k = g(rnd({1, 5, 8}, DType::f32)), v = g(rnd({1, 5, 8}, DType::f32));
  Tensor mask = g(tensor(
      {{true, false, false, false, false}, {false, false, false, false, false}, {true, true, true, true, true}}));
  Tensor o = scaled_dot_product_attention(q, k, v, mask);
  expect_close(o.select(1, 1), zeros({1, 8}), 0, 0, "a row that sees nothing is zero");
  set_sdpa_backend(SdpaBackend::math);
  Tensor om = scaled_dot_product_attention(q, k, v, mask);
  set_sdpa_backend(SdpaBackend::automatic);
  expect_close(o, om, 1e-5, 1e-6, "fused vs math on the GPU");
  // Head dims beyond the kernel's fall back to the math path; asking for the fused one is an error.
  Tensor wide = g(rnd({1, 4, 300}, DType::f32));
  CHECK(scaled_dot_product_attention(wide, wide, wide).sizes() == Shape{1, 4, 300});
  set_sdpa_backend(SdpaBackend::fused);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(wide, wide, wide), doctest::Contains("head dims up to 256"), Error);
  set_sdpa_backend(SdpaBackend::automatic);
}

TEST_CASE("gpu: compositions (masked_fill, tril, pad, einsum, norms, conv1d) run on the device" *
          doctest::skip(gpu_missing())) {
  Tensor x = rnd({2, 4, 6}, DType::f64);
  same_on_both(
      "masked_fill", {x}, [](auto& in) { return in[0].masked_fill(in[0] > 0.5, -1.0); }, 1e-12, 1e-12);
  same_on_both(
      "tril", {x}, [](auto& in) { return tril(in[0], 1); }, 1e-12, 1e-12);
  same_on_both(
      "pad reflect", {x},
      [](auto& in) {
        return pad(in[0], {2, 3}, "reflect");
      },
      1e-12, 1e-12);
  same_on_both(
      "einsum", {x, rnd({2, 6, 5}, DType::f64)},
      [](auto& in) {
        return einsum("bij,bjk->bik", {in[0], in[1]});
      },
      1e-12, 1e-12);
  same_on_both(
      "rms_norm", {x, rnd({6}, DType::f64)}, [](auto& in) { return rms_norm(in[0], {6}, in[1]); }, 1e-12, 1e-12);
  same_on_both(
      "group_norm", {x}, [](auto& in) { return group_norm(in[0], 2); }, 1e-12, 1e-12);
  same_on_both(
      "conv1d", {x, rnd({3, 4, 3}, DType::f64)}, [](auto& in) { return conv1d(in[0], in[1], {}, 1, 1); }, 1e-10, 1e-10);
  same_on_both(
      "chunk", {x}, [](auto& in) { return in[0].chunk(3, 2)[1] * 2; }, 1e-12, 1e-12);
}
