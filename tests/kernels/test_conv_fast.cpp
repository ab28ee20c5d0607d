// The fast CPU convolution kernels (kernels/cpu/conv_fast.h: Winograd F(4x4, 3x3) and the direct
// kernel for few input channels) against float64 convolutions of the same values, forward and all
// three gradients, on odd shapes that exercise every tail: channels that do not fill a vector, rows
// wider than a vector, partial 4x4 tiles, padding 0, 1 and 2. meson test also runs these under each
// KILN_CPU_ISA cap (tests/meson.build), so the AVX2 kernels and the portable path are checked on a
// machine that has AVX-512.
#include <doctest/doctest.h>

#include <cmath>

#include "examples/simple_cnn.h"
#include "golden.h"
#include "helpers.h"
#include "kernels/cpu/conv_fast.h"

using namespace kiln;

namespace {

struct Case {
  int64_t n, cin, h, w, cout, pad;
};

kernels::Conv2dParams params(const Case& c) {
  const int64_t ho = c.h + 2 * c.pad - 2, wo = c.w + 2 * c.pad - 2;
  return {c.n, c.cin, c.h, c.w, c.cout, 3, 3, ho, wo, 1, 1, c.pad, c.pad, 1, 1, 1};
}

// max |got - ref| / max |ref|: the error on the scale of the result.
double scaled_error(const Tensor& got, const Tensor& ref) {
  return max(abs(got.to(DType::f64) - ref)).item<double>() / max(abs(ref)).item<double>();
}

struct Grads {
  Tensor y, gx, gw, gb;
};

Grads run(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& gy, int64_t pad, DType dt) {
  Tensor xl = x.to(dt).detach().requires_grad_(), wl = w.to(dt).detach().requires_grad_(),
         bl = b.to(dt).detach().requires_grad_();
  Tensor y = conv2d(xl, wl, bl, {1, 1}, {pad, pad});
  y.backward(gy.to(dt));
  return {y, xl.grad(), wl.grad(), bl.grad()};
}

void check_case(const Case& c, DType dt, double tol) {
  const auto k = kernels::cpu::conv2d_fast_kernels(params(c), dt);
  INFO("n=" << c.n << " cin=" << c.cin << " " << c.h << "x" << c.w << " cout=" << c.cout << " pad=" << c.pad << " "
            << dtype_name(dt) << ": forward '" << k.forward << "', input grad '" << k.input_grad << "', weight grad '"
            << k.weight_grad << "'");
  manual_seed(uint64_t(c.n * 1000 + c.cin * 100 + c.h * 10 + c.cout));
  // bf16 runs on values bf16 holds exactly, so only the arithmetic differs from the reference.
  auto r = [&](Tensor t) { return dt == DType::bf16 ? t.to(DType::bf16).to(DType::f64) : t.to(DType::f64); };
  Tensor x = r(randn({c.n, c.cin, c.h, c.w})), w = r(randn({c.cout, c.cin, 3, 3})), b = r(randn({c.cout}));
  Tensor gy = r(randn({c.n, c.cout, c.h + 2 * c.pad - 2, c.w + 2 * c.pad - 2}));
  const Grads ref = run(x, w, b, gy, c.pad, DType::f64);
  const Grads got = run(x, w, b, gy, c.pad, dt);
  const double ey = scaled_error(got.y, ref.y), ex = scaled_error(got.gx, ref.gx), ew = scaled_error(got.gw, ref.gw),
               eb = scaled_error(got.gb, ref.gb);
  MESSAGE("scaled errors: y " << ey << ", grad x " << ex << ", grad w " << ew << ", grad b " << eb);
  CHECK(ey < tol);
  CHECK(ex < tol);
  CHECK(ew < tol);
  CHECK(eb < tol);
}

const Case kWinograd[] = {
    {2, 32, 16, 16, 64, 1},                         // the reference CNN's conv2 and conv3
    {2, 64, 8, 8, 128, 1},   {3, 17, 7, 9, 20, 1},  // channels off the vector width, partial tiles
    {1, 8, 10, 6, 9, 0},                            // no padding
    {2, 12, 5, 7, 8, 2},                            // padding 2: the output is larger than the input
    {1, 9, 6, 37, 11, 1},                           // rows wider than two vectors
    {5, 16, 4, 4, 16, 1},                           // one tile per image
    {64, 16, 16, 16, 24, 1},                        // many chunks of tile rows per thread, of unequal sizes
};
const Case kDirect[] = {
    {3, 3, 32, 32, 32, 1},                        // the reference CNN's conv1 (CIFAR-10) and its Fashion-MNIST version
    {2, 1, 32, 32, 32, 1}, {2, 3, 9, 40, 13, 0},  // a partial block of output channels, two column blocks
    {1, 5, 6, 7, 3, 2},    {4, 2, 3, 3, 25, 1},
};

}  // namespace

TEST_CASE("conv2d fast path: Winograd F(4x4,3x3) in f32 matches float64, forward and every gradient") {
  // Winograd's transforms add a few roundings per output: 1e-6 to 1e-5 of the result's scale
  // (the direct path: ~2e-7).
  for (const Case& c : kWinograd) check_case(c, DType::f32, 3e-5);
}

TEST_CASE("conv2d fast path: the direct kernel for few input channels in f32 matches float64") {
  for (const Case& c : kDirect) check_case(c, DType::f32, 2e-5);
}

TEST_CASE("conv2d fast path: bf16 (f32 arithmetic where the CPU has no bf16 dot products) matches float64") {
  // One bf16 rounding of each result: 2^-8 of its magnitude.
  for (const Case& c : kWinograd) check_case(c, DType::bf16, 1.0 / 128);
  for (const Case& c : kDirect) check_case(c, DType::bf16, 1.0 / 128);
}

TEST_CASE("conv2d fast path: chosen for the reference CNN's layers where the CPU has AVX2") {
  const auto conv2 = kernels::cpu::conv2d_fast_kernels(params({128, 32, 16, 16, 64, 1}), DType::f32);
  const auto conv1 = kernels::cpu::conv2d_fast_kernels(params({128, 3, 32, 32, 32, 1}), DType::f32);
  const auto strided =
      kernels::cpu::conv2d_fast_kernels({8, 32, 16, 16, 64, 3, 3, 8, 8, 2, 2, 1, 1, 1, 1, 1}, DType::f32);
  MESSAGE("conv1 '" << conv1.forward << "', conv2 '" << conv2.forward << "'");
  CHECK(strided.forward.empty());     // stride 2: conv.cpp's own path
  CHECK(conv1.input_grad.empty());    // 3 output channels of the transposed convolution: too few
  if (conv2.forward.empty()) return;  // KILN_CPU_ISA=generic, or a CPU without AVX2
  CHECK(conv2.forward.rfind("winograd-", 0) == 0);
  CHECK(conv2.input_grad.rfind("winograd-", 0) == 0);
  CHECK(conv2.weight_grad.rfind("winograd-", 0) == 0);
  CHECK(conv1.forward.rfind("direct-", 0) == 0);
  CHECK(conv1.weight_grad.rfind("direct-", 0) == 0);
}

TEST_CASE("SimpleCNN in float32 matches PyTorch's float64 values: logits, loss and every gradient") {
  // The golden batch through whichever kernels this CPU (and KILN_CPU_ISA) picks: conv1 direct,
  // conv2 and conv3 Winograd where the CPU has AVX2.
  test::Golden g("simplecnn.safetensors");
  auto model = std::make_shared<SimpleCNN>();
  nn::StateDict sd;
  for (const auto& [name, t] : model->state_dict()) sd.insert(name, g.get("param." + name).to(DType::f32));
  model->load_state_dict(sd);
  model->eval();
  Tensor logits = model->forward(g.get("input").to(DType::f32));
  CHECK(scaled_error(logits, g.get("logits")) < 1e-5);
  Tensor loss = nn::functional::cross_entropy(logits, g.get("target"));
  CHECK(std::abs(loss.item<double>() - g.get("loss").item<double>()) < 1e-5 * g.get("loss").item<double>());
  loss.backward();
  for (const auto& [name, p] : model->named_parameters()) {
    const double e = scaled_error(p.grad(), g.get("grad." + name));
    INFO("grad of " << name << ": scaled error " << e);
    CHECK(e < 1e-4);
  }
}
