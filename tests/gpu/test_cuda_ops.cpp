// CPU vs CUDA for every backend op on fresh random inputs: elementwise (f32 rel. error <= 1e-5),
// reductions, GEMM and convolution (<= 1e-4), f16/bf16 within their epsilon; non-contiguous and
// broadcast operands; odd sizes (1, 3, 1023, 2^20+7); gradients through autograd; Philox streams;
// optimizer steps; allocator reuse and the out-of-memory error. Without a GPU every case reports
// "gpu suite skipped: no CUDA device" and passes.
#include <doctest/doctest.h>
#include <cstdio>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "gpu_helpers.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kiln.h"

using namespace kiln;

namespace {

using gpu_test::expect_close;
using gpu_test::kCpu;
using gpu_test::kGpu;
using gpu_test::rnd;

// Evaluated when the cases register: without a GPU, doctest reports every case below as skipped.
bool gpu_missing() {
  static const bool missing = [] {
    bool m = !cuda::is_available();
    if (m)
      std::fprintf(stderr, "gpu suite: no CUDA device (kiln::cuda::is_available() is false); "
                           "its GPU cases are reported as skipped\n");
    return m;
  }();
  return missing;
}

bool skip() {
  if (cuda::is_available()) return false;
  static bool said = false;
  if (!said) MESSAGE("gpu suite skipped: no CUDA device (kiln::cuda::is_available() is false)");
  said = true;
  return true;
}

const std::vector<int64_t> kOddSizes = {1, 3, 1023, (1 << 20) + 7};

}  // namespace

TEST_CASE("gpu: device is visible" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  MESSAGE("CUDA devices: " << cuda::device_count());
  CHECK(cuda::device_count() >= 1);
  Tensor x = tensor(std::vector<float>{1, 2, 3}).to(kGpu);
  CHECK(x.device() == kGpu);
  expect_close(x, tensor(std::vector<float>{1, 2, 3}), 0, 0, "round trip");
}

TEST_CASE("gpu: unary ops, odd sizes" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  using F = std::function<Tensor(const Tensor&)>;
  std::vector<std::pair<std::string, F>> ops = {
      {"neg", [](const Tensor& x) { return neg(x); }},
      {"abs", [](const Tensor& x) { return abs(x); }},
      {"exp", [](const Tensor& x) { return exp(x); }},
      {"log", [](const Tensor& x) { return log(abs(x) + 0.1); }},
      {"sqrt", [](const Tensor& x) { return sqrt(abs(x)); }},
      {"rsqrt", [](const Tensor& x) { return rsqrt(abs(x) + 0.1); }},
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.2); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, "tanh"); }},
      {"square", [](const Tensor& x) { return square(x); }},
      {"sign", [](const Tensor& x) { return sign(x); }},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); }},
      {"pow", [](const Tensor& x) { return pow(abs(x), 1.7); }},
      {"affine", [](const Tensor& x) { return x * 3.0 + 1.0; }},
  };
  for (int64_t n : kOddSizes) {
    Tensor x = rnd({n});
    Tensor xg = x.to(kGpu);
    for (auto& [name, f] : ops) expect_close(f(xg), f(x), 1e-5, 1e-6, name + " n=" + std::to_string(n));
  }
}

TEST_CASE("gpu: binary ops with broadcasting and non-contiguous inputs" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  using F = std::function<Tensor(const Tensor&, const Tensor&)>;
  std::vector<std::pair<std::string, F>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b, 0.5); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / (abs(b) + 0.5); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(abs(a) + 0.1, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
      {"lt", [](const Tensor& a, const Tensor& b) { return lt(a, b); }},
      {"ge", [](const Tensor& a, const Tensor& b) { return ge(a, b); }},
      {"where", [](const Tensor& a, const Tensor& b) { return where(gt(a, b), a, b); }},
  };
  for (int64_t n : kOddSizes) {
    Tensor a = rnd({n}), b = rnd({n});
    Tensor ag = a.to(kGpu), bg = b.to(kGpu);
    for (auto& [name, f] : ops) expect_close(f(ag, bg), f(a, b), 1e-5, 1e-6, name + " n=" + std::to_string(n));
  }
  // Broadcast [37, 1] x [1, 1023], a transposed operand, and a scalar.
  Tensor a = rnd({37, 1}), b = rnd({1, 1023}), c = rnd({1023, 37}), s = rnd({});
  Tensor ag = a.to(kGpu), bg = b.to(kGpu), cg = c.to(kGpu), sg = s.to(kGpu);
  for (auto& [name, f] : ops) {
    expect_close(f(ag, bg), f(a, b), 1e-5, 1e-6, name + " broadcast");
    expect_close(f(cg.t(), bg), f(c.t(), b), 1e-5, 1e-6, name + " transposed");
    expect_close(f(cg, sg), f(c, s), 1e-5, 1e-6, name + " scalar");
  }
  // In-place through a strided view.
  Tensor m = rnd({64, 65}), mg = m.to(kGpu);
  Tensor v = narrow(m, 1, 1, 33), vg = narrow(mg, 1, 1, 33);
  add_(v, 1.5);
  add_(vg, 1.5);
  expect_close(mg, m, 1e-6, 0, "in-place strided add");
}

TEST_CASE("gpu: casts among all dtypes match the CPU exactly" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  const std::vector<DType> types = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                    DType::i32, DType::i64, DType::u8,  DType::boolean};
  Tensor base = rnd({1023}) * 50.0;
  base = where(lt(base, -40.0), full({1023}, 0.0), base);  // some zeros for bool
  for (DType from : types) {
    for (DType to : types) {
      // Negative floats to u8 are undefined in C++ (and saturate on the GPU): keep them out.
      const bool unsigned_side = from == DType::u8 || to == DType::u8;
      Tensor src = unsigned_side ? abs(base).to(from) : base.to(from);
      Tensor srcg = src.to(kGpu);
      std::string what = std::string(dtype_name(from)) + " -> " + std::string(dtype_name(to));
      expect_close(srcg.to(to), src.to(to), 0, 0, what);
      // Non-contiguous source.
      expect_close(narrow(srcg, 0, 1, 1000).reshape({40, 25}).t().to(to),
                   narrow(src, 0, 1, 1000).reshape({40, 25}).t().to(to), 0, 0, what + " strided");
    }
  }
}

TEST_CASE("gpu: fill, arange, contiguous copies" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::i64, DType::u8, DType::boolean}) {
    expect_close(full({(1 << 20) + 7}, 3.25, {.dtype = t, .device = kGpu}), full({(1 << 20) + 7}, 3.25, {.dtype = t}),
                 0, 0, "full");
    expect_close(arange(0, 200, 1, {.dtype = t == DType::boolean ? DType::i32 : t, .device = kGpu}),
                 arange(0, 200, 1, {.dtype = t == DType::boolean ? DType::i32 : t}), 0, 0, "arange");
  }
  Tensor x = rnd({7, 9, 11});
  expect_close(permute(x.to(kGpu), {2, 0, 1}).contiguous(), permute(x, {2, 0, 1}).contiguous(), 0, 0,
               "permute contiguous");
}

TEST_CASE("gpu: reductions over dims" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  Tensor x = rnd({37, 1023, 5}), xg = x.to(kGpu);
  for (Shape dims : std::vector<Shape>{{}, {0}, {1}, {2}, {0, 2}, {1, 2}, {0, 1}}) {
    std::string d = "dims " + std::to_string(dims.size()) + (dims.empty() ? "" : ":" + std::to_string(dims[0]));
    expect_close(sum(xg, dims), sum(x, dims), 1e-4, 1e-4, "sum " + d);
    expect_close(mean(xg, dims, true), mean(x, dims, true), 1e-4, 1e-5, "mean " + d);
    expect_close(amax(xg, dims), amax(x, dims), 0, 0, "amax " + d);
    expect_close(amin(xg, dims), amin(x, dims), 0, 0, "amin " + d);
    expect_close(var(xg, dims), var(x, dims), 1e-4, 1e-5, "var " + d);
  }
  for (int64_t n : kOddSizes) {
    Tensor y = rnd({n});
    expect_close(sum(y.to(kGpu)), sum(y), 1e-4, 1e-3, "full sum n=" + std::to_string(n));
    expect_close(max(y.to(kGpu)), max(y), 0, 0, "full max n=" + std::to_string(n));
  }
  Tensor t = sum(xg.transpose(0, 2), {0});  // a non-contiguous input
  expect_close(t, sum(x.transpose(0, 2), {0}), 1e-4, 1e-4, "sum transposed");
  Tensor b = gt(x, 0.0), bg = b.to(kGpu);
  CHECK(any(bg).item<bool>() == any(b).item<bool>());
  CHECK(all(bg).item<bool>() == all(b).item<bool>());
  auto [mv, mi] = max(xg, 1);
  auto [cv, ci] = max(x, 1);
  expect_close(mv, cv, 0, 0, "max(dim) values");
  expect_close(mi, ci, 0, 0, "max(dim) indices");
  expect_close(argmin(xg, 2), argmin(x, 2), 0, 0, "argmin");
  expect_close(argmax(xg.transpose(0, 2), 0), argmax(x.transpose(0, 2), 0), 0, 0, "argmax transposed");
  Tensor xi = randint(-3, 4, {33, 17});
  expect_close(sum(xi.to(kGpu), {1}), sum(xi, {1}), 0, 0, "int sum");
  Tensor xh = rnd({64, 1023}, DType::bf16);
  expect_close(sum(xh.to(kGpu), {1}), sum(xh, {1}), 2e-2, 1e-1, "bf16 sum");
  // Contiguous rows: one warp per row (many short rows; odd lengths leave rows unaligned), one
  // block per row (few long rows), and a full sum starting off a 16-byte boundary.
  for (Shape s : std::vector<Shape>{{2000, 1}, {2000, 3}, {2000, 37}, {1500, 1024}, {1200, 4099}, {5, 5000}}) {
    const std::string n = std::to_string(s[0]) + "x" + std::to_string(s[1]);
    Tensor r = rnd(s), rg = r.to(kGpu);
    expect_close(sum(rg, {1}), sum(r, {1}), 1e-4, 1e-4, "row sum " + n);
    expect_close(amax(rg, {1}), amax(r, {1}), 0, 0, "row amax " + n);
    Tensor ri = randint(-3, 4, s);
    expect_close(sum(ri.to(kGpu), {1}), sum(ri, {1}), 0, 0, "row int sum " + n);
  }
  Tensor flat = rnd({(1 << 20) + 9});
  expect_close(sum(flat.to(kGpu).narrow(0, 1, 1 << 20)), sum(flat.narrow(0, 1, 1 << 20)), 1e-4, 1e-3,
               "full sum unaligned");
  expect_close(sum(flat.to(kGpu).narrow(0, 3, 4099)), sum(flat.narrow(0, 3, 4099)), 1e-4, 1e-4, "short sum unaligned");
}

TEST_CASE("gpu: matmul (f32 exact, f16/bf16, transposed, batched)" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  Tensor a = rnd({65, 129}), b = rnd({129, 33});
  expect_close(matmul(a.to(kGpu), b.to(kGpu)), matmul(a, b), 1e-4, 1e-4, "mm");
  Tensor at = rnd({129, 65}), bt = rnd({33, 129});
  expect_close(matmul(at.to(kGpu).t(), bt.to(kGpu).t()), matmul(at.t(), bt.t()), 1e-4, 1e-4, "mm transposed");
  Tensor ba = rnd({4, 17, 31}), bb = rnd({31, 9});
  expect_close(matmul(ba.to(kGpu), bb.to(kGpu)), matmul(ba, bb), 1e-4, 1e-4, "batched broadcast");
  Tensor w = rnd({10, 128}), x = rnd({3, 128}), bias = rnd({10});
  expect_close(linear(x.to(kGpu), w.to(kGpu), bias.to(kGpu)), linear(x, w, bias), 1e-4, 1e-4, "linear");
  Tensor p = narrow(rnd({70, 200}), 1, 3, 129);  // row stride 200: in place
  expect_close(matmul(p.to(kGpu), b.to(kGpu)), matmul(p, b), 1e-4, 1e-4, "mm strided rows");
  Tensor q = rnd({65, 129, 2}).select(2, 1);  // both strides != 1: packed
  expect_close(matmul(q.to(kGpu), b.to(kGpu)), matmul(q, b), 1e-4, 1e-4, "mm packed");
  expect_close(matmul(a.to(DType::f64).to(kGpu), b.to(DType::f64).to(kGpu)), matmul(a.to(DType::f64), b.to(DType::f64)),
               1e-10, 1e-10, "mm f64");
  for (DType t : {DType::f16, DType::bf16}) {
    const double eps = t == DType::f16 ? 1e-3 : 8e-3;
    Tensor ah = a.to(t), bh = b.to(t);
    // Reference: the rounded inputs multiplied in f32, then rounded once.
    Tensor ref = matmul(ah.to(DType::f32), bh.to(DType::f32));
    expect_close(matmul(ah.to(kGpu), bh.to(kGpu)), ref, 2 * eps, 2 * eps * std::sqrt(129.0),
                 std::string(dtype_name(t)));
  }
  Tensor ia = randint(-5, 5, {7, 9}), ib = randint(-5, 5, {9, 4});
  expect_close(matmul(ia.to(kGpu), ib.to(kGpu)), matmul(ia, ib), 0, 0, "mm i64");
}

TEST_CASE("gpu: conv2d forward and backward against the CPU" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  struct Case {
    int64_t n, c, h, w, o, k, stride, pad, dil, groups;
  };
  for (Case cs : {Case{2, 3, 32, 32, 32, 3, 1, 1, 1, 1}, Case{3, 8, 17, 13, 12, 3, 2, 1, 1, 2},
                  Case{1, 4, 9, 9, 6, 1, 1, 0, 1, 1}, Case{2, 6, 15, 15, 6, 5, 1, 2, 2, 3}}) {
    Tensor x = rnd({cs.n, cs.c, cs.h, cs.w}), w = rnd({cs.o, cs.c / cs.groups, cs.k, cs.k}) * 0.2, b = rnd({cs.o});
    Tensor xc = x.detach(), wc = w.detach(), bc = b.detach();
    xc.requires_grad_(true);
    wc.requires_grad_(true);
    bc.requires_grad_(true);
    Tensor xg = x.to(kGpu), wg = w.to(kGpu), bg = b.to(kGpu);
    xg.requires_grad_(true);
    wg.requires_grad_(true);
    bg.requires_grad_(true);
    auto f = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb) {
      return conv2d(xx, ww, bb, {cs.stride, cs.stride}, {cs.pad, cs.pad}, {cs.dil, cs.dil}, cs.groups);
    };
    Tensor yc = f(xc, wc, bc), yg = f(xg, wg, bg);
    expect_close(yg, yc, 1e-4, 1e-4, "conv forward");
    Tensor gy = rnd(yc.sizes());
    (yc * gy).sum().backward();
    (yg * gy.to(kGpu)).sum().backward();
    expect_close(xg.grad(), xc.grad(), 1e-4, 1e-4, "conv grad input");
    expect_close(wg.grad(), wc.grad(), 1e-4, 1e-3, "conv grad weight");
    expect_close(bg.grad(), bc.grad(), 1e-4, 1e-3, "conv grad bias");
  }
  Tensor x = rnd({4, 8, 16, 16}, DType::bf16), w = rnd({16, 8, 3, 3}, DType::bf16);
  expect_close(conv2d(x.to(kGpu), w.to(kGpu), {}, {1, 1}, {1, 1}),
               conv2d(x.to(DType::f32), w.to(DType::f32), {}, {1, 1}, {1, 1}), 2e-2, 1e-1, "conv bf16");
}

TEST_CASE("gpu: pooling, softmax, losses, embedding with gradients" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  auto both = [](const Tensor& t) {
    Tensor c = t.detach(), g = t.detach().to(kGpu);
    c.requires_grad_(true);
    g.requires_grad_(true);
    return std::pair{c, g};
  };
  using F = std::function<Tensor(const Tensor&)>;
  std::vector<std::pair<std::string, F>> ops = {
      {"max_pool",
       [](const Tensor& x) {
         return max_pool2d(x, {2, 2});
       }},
      {"max_pool overlap",
       [](const Tensor& x) {
         return max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
       }},
      {"avg_pool",
       [](const Tensor& x) {
         return avg_pool2d(x, {3, 3}, {2, 2}, {1, 1});
       }},
      {"avg_pool nopad",
       [](const Tensor& x) {
         return avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, false);
       }},
      {"softmax last", [](const Tensor& x) { return softmax(x, -1); }},
      {"softmax mid", [](const Tensor& x) { return softmax(x, 1); }},
      {"log_softmax last", [](const Tensor& x) { return log_softmax(x, -1); }},
      {"log_softmax mid", [](const Tensor& x) { return log_softmax(x, 1); }},
  };
  Tensor x = rnd({3, 5, 17, 19});
  for (auto& [name, f] : ops) {
    auto [xc, xg] = both(x);
    Tensor yc = f(xc), yg = f(xg);
    expect_close(yg, yc, 1e-5, 1e-6, name);
    Tensor gy = rnd(yc.sizes());
    (yc * gy).sum().backward();
    (yg * gy.to(kGpu)).sum().backward();
    expect_close(xg.grad(), xc.grad(), 1e-5, 1e-5, name + " grad");
  }
  Tensor wide = rnd({4, 5000});
  expect_close(softmax(wide.to(kGpu), 1), softmax(wide, 1), 1e-5, 1e-8, "softmax 5000");
  expect_close(log_softmax(wide.to(kGpu), 1), log_softmax(wide, 1), 1e-5, 1e-6, "log_softmax 5000");
  // Row lengths at each register-tile boundary of the warp-per-row kernel, past it, and dim == 1.
  for (int64_t dim : {1, 2, 31, 32, 33, 128, 129, 256, 257, 512, 513, 1000, 1024, 1025}) {
    Tensor r = rnd({37, dim}) * 4.0;
    const std::string n = std::to_string(dim);
    expect_close(softmax(r.to(kGpu), 1), softmax(r, 1), 1e-5, 1e-7, "softmax rows of " + n);
    // log_softmax = x - logsumexp: near 0 the f32 rounding of logsumexp (~log(n) + max) sets the
    // absolute error, a few ulps of a number around 10.
    expect_close(log_softmax(r.to(kGpu), 1), log_softmax(r, 1), 1e-5, 1e-5, "log_softmax rows of " + n);
  }
  // Masked rows (-inf entries, as attention masks make) in the warp and block kernels.
  for (int64_t dim : {100, 3000}) {
    Tensor r = rnd({9, dim});
    r = where(lt(rand({9, dim}), 0.5), full({9, dim}, -INFINITY), r);
    expect_close(softmax(r.to(kGpu), 1), softmax(r, 1), 1e-5, 1e-7, "softmax masked " + std::to_string(dim));
    // -inf outputs: compared through exp (inf - inf would count as a mismatch).
    expect_close(exp(log_softmax(r.to(kGpu), 1)), exp(log_softmax(r, 1)), 1e-5, 1e-7,
                 "log_softmax masked " + std::to_string(dim));
  }
  // Cross-entropy: class weights and ignore_index.
  Tensor logits = rnd({67, 10}), target = randint(0, 10, {67});
  target = where(lt(rand({67}), 0.1), full({67}, -100.0, {.dtype = DType::i64}), target);
  Tensor cw = rand({10}) + 0.5;
  auto [lc, lg] = both(logits);
  Tensor loss_c = cross_entropy(lc, target, cw), loss_g = cross_entropy(lg, target.to(kGpu), cw.to(kGpu));
  expect_close(loss_g, loss_c, 1e-5, 1e-6, "cross_entropy");
  loss_c.backward();
  loss_g.backward();
  expect_close(lg.grad(), lc.grad(), 1e-5, 1e-6, "cross_entropy grad");
  // Embedding with repeated indices (atomic scatter).
  Tensor table = rnd({50, 16}), idx = randint(0, 50, {200});
  auto [tc, tg] = both(table);
  Tensor ec = embedding(idx, tc), eg = embedding(idx.to(kGpu), tg);
  expect_close(eg, ec, 0, 0, "embedding");
  Tensor ge = rnd(ec.sizes());
  (ec * ge).sum().backward();
  (eg * ge.to(kGpu)).sum().backward();
  expect_close(tg.grad(), tc.grad(), 1e-5, 1e-5, "embedding grad");
  bool threw = false;
  try {
    embedding(tensor(std::vector<int64_t>{1, 60}).to(kGpu), tg);
  } catch (const Error&) { threw = true; }
  CHECK_MESSAGE(threw, "out-of-range embedding index on the GPU must throw");
}

TEST_CASE("gpu: a small network's gradients match the CPU" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  manual_seed(7);
  Tensor w1 = rnd({8, 3, 3, 3}) * 0.3, b1 = rnd({8}) * 0.1, w2 = rnd({10, 8 * 4 * 4}) * 0.05, b2 = rnd({10});
  Tensor x = rnd({16, 3, 8, 8}), y = randint(0, 10, {16});
  auto run = [&](Device d) {
    std::vector<Tensor> ps;
    for (const Tensor& p : {w1, b1, w2, b2}) {
      Tensor q = p.detach().to(d);
      q.requires_grad_(true);
      ps.push_back(q);
    }
    Tensor h = max_pool2d(relu(conv2d(x.to(d), ps[0], ps[1], {1, 1}, {1, 1})), {2, 2});
    Tensor out = linear(flatten(h, 1), ps[2], ps[3]);
    Tensor loss = cross_entropy(out, y.to(d));
    loss.backward();
    ps.push_back(loss);
    return ps;
  };
  auto c = run(kCpu), g = run(kGpu);
  expect_close(g[4], c[4], 1e-5, 1e-6, "loss");
  const char* names[] = {"conv w", "conv b", "fc w", "fc b"};
  for (int i = 0; i < 4; ++i) expect_close(g[size_t(i)].grad(), c[size_t(i)].grad(), 1e-4, 1e-5, names[i]);
}

TEST_CASE("gpu: Philox streams equal the CPU's" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  for (int64_t n : kOddSizes) {
    Generator gc(1234), gg(1234);
    expect_close(rand({n}, {.device = kGpu}, &gg), rand({n}, {}, &gc), 0, 0, "rand");
    expect_close(randn({n}, {.device = kGpu}, &gg), randn({n}, {}, &gc), 1e-5, 1e-6, "randn");
    expect_close(randint(-7, 100, {n}, {.dtype = DType::i64, .device = kGpu}, &gg),
                 randint(-7, 100, {n}, {.dtype = DType::i64}, &gc), 0, 0, "randint");
    CHECK(gc.offset() == gg.offset());
  }
  Generator gc(99), gg(99);
  Tensor xc = ones({4097}), xg = ones({4097}, {.device = kGpu});
  expect_close(dropout(xg, 0.3, true, &gg), dropout(xc, 0.3, true, &gc), 1e-6, 0, "dropout mask");
}

TEST_CASE("gpu: optimizer kernels (Adam, AdamW, AMSGrad, SGD) match the CPU" * doctest::skip(gpu_missing())) {
  if (skip()) return;
  using kernels::View;
  const int64_t n = (1 << 20) + 7;
  auto view = [](const Tensor& t) { return kiln::detail::view_of(t); };
  for (DType t : {DType::f32, DType::bf16}) {
    for (int variant = 0; variant < 3; ++variant) {
      kernels::AdamParams p{1e-3, 0.9, 0.999, 1e-8, 1e-2, 3, variant == 1, variant == 2, false};
      std::vector<Tensor> c = {rnd({n}, t), rnd({n}, t), rnd({n}, t) * 0.1, abs(rnd({n}, t)) * 0.01,
                               abs(rnd({n}, t)) * 0.02};
      std::vector<Tensor> g;
      for (auto& v : c) g.push_back(v.to(kGpu));
      kernels::cpu_backend().adam_step(p, view(c[0]), view(c[1]), view(c[2]), view(c[3]), view(c[4]));
      kernels::cuda_backend()->adam_step(p, view(g[0]), view(g[1]), view(g[2]), view(g[3]), view(g[4]));
      const double tol = t == DType::f32 ? 1e-5 : 8e-3;
      for (int i : {0, 2, 3, 4})
        expect_close(g[size_t(i)], c[size_t(i)], tol, 1e-7, "adam variant " + std::to_string(variant));
    }
    {  // Views off a 16-byte boundary take the element-wise kernel.
      kernels::AdamParams p{1e-3, 0.9, 0.999, 1e-8, 1e-2, 2, true, false, false};
      std::vector<Tensor> c = {rnd({1002}, t), rnd({1002}, t), rnd({1002}, t) * 0.1, abs(rnd({1002}, t)) * 0.01};
      std::vector<Tensor> g;
      for (auto& v : c) g.push_back(v.to(kGpu));
      auto part = [&](const Tensor& x) { return view(x.narrow(0, 1, 1001)); };
      View none;
      none.dtype = t;
      kernels::cpu_backend().adam_step(p, part(c[0]), part(c[1]), part(c[2]), part(c[3]), none);
      kernels::cuda_backend()->adam_step(p, part(g[0]), part(g[1]), part(g[2]), part(g[3]), none);
      const double tol = t == DType::f32 ? 1e-5 : 8e-3;
      for (int i : {0, 2, 3}) expect_close(g[size_t(i)], c[size_t(i)], tol, 1e-7, "adamw unaligned");
    }
    kernels::SgdParams sp{0.1, 0.9, 0.1, 1e-4, true, false, false};
    std::vector<Tensor> c = {rnd({n}, t), rnd({n}, t), rnd({n}, t)};
    std::vector<Tensor> g;
    for (auto& v : c) g.push_back(v.to(kGpu));
    kernels::cpu_backend().sgd_step(sp, view(c[0]), view(c[1]), view(c[2]));
    kernels::cuda_backend()->sgd_step(sp, view(g[0]), view(g[1]), view(g[2]));
    expect_close(g[0], c[0], t == DType::f32 ? 1e-5 : 8e-3, 1e-6, "sgd");
  }
}

TEST_CASE("gpu: caching allocator reuses memory in steady state and reports OOM clearly" *
          doctest::skip(gpu_missing())) {
  if (skip()) return;
  auto step = [] {
    Tensor x = randn({64, 3, 32, 32}, {.device = kGpu}), w = randn({16, 3, 3, 3}, {.device = kGpu});
    w.requires_grad_(true);
    Tensor y = relu(conv2d(x, w, {}, {1, 1}, {1, 1}));
    Tensor loss = sum(softmax(flatten(y, 1), 1));
    loss.backward();
    cuda::synchronize();
  };
  for (int i = 0; i < 3; ++i) step();
  auto before = kernels::cuda::memory_stats();
  for (int i = 0; i < 20; ++i) step();
  auto after = kernels::cuda::memory_stats();
  MESSAGE("allocator: " << after.str());
  CHECK(after.num_device_mallocs == before.num_device_mallocs);
  CHECK(after.allocated <= before.allocated);
  CHECK(after.peak_allocated > 0);

  std::string msg;
  try {
    Tensor huge = empty({int64_t(1) << 45}, {.device = kGpu});  // 128 TiB of f32
  } catch (const Error& e) { msg = e.what(); }
  MESSAGE("OOM message: " << msg);
  CHECK(msg.find("out of memory") != std::string::npos);
  CHECK(msg.find("140737488355328 bytes") != std::string::npos);
  // The device is still usable afterwards.
  Tensor ok = ones({1000}, {.device = kGpu});
  CHECK(sum(ok).item<double>() == 1000.0);
  kernels::cuda::empty_cache();
  CHECK(kernels::cuda::memory_stats().reserved <= after.reserved);
}
