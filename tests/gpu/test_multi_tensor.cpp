// Multi-tensor kernels on a GPU against the per-tensor kernels and the CPU: Adam/AdamW/AMSGrad and
// SGD over 60 parameters of odd sizes (more tensors and chunks than one launch takes, some views
// off a 16-byte boundary in one list only), in f32, f16, bf16, f64 and mixed lists; the optimizers
// end to end over several steps (parameters whose step counts differ included); unscale with
// injected inf/NaN (also deep inside a later chunk); the fused norms and non-finite check; and the
// 16-byte packed f16/bf16 elementwise paths at odd sizes and offsets. Skipped without a GPU.
#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "gpu_helpers.h"
#include "kernels/backend.h"

using namespace kiln;
using namespace kiln::gpu_test;

namespace {

using kernels::View;
View view(const Tensor& t) { return kiln::detail::view_of(t); }

kernels::Backend& gpu_backend() { return kiln::detail::backend(kGpu); }

// Crosses every limit of the launcher: 60 tensors (36 fit in one Adam launch), sizes of one
// element up to 5 chunks of 64 Ki, chunk boundaries exactly and one past.
std::vector<int64_t> odd_sizes() {
  std::vector<int64_t> s = {1, 3, 7, 1023, 65536, 65537, 3 * 65536 + 5, 300007};
  for (int i = 0; i < 52; ++i) s.push_back(1 + (37 * i) % 1000);
  return s;
}

// One list of tensors (one per size), the k-th of dtypes[k % dtypes.size()], made by `make`.
// Where misalign(k) is true the tensor is a view one element into a larger one, so its data is
// not 16-byte aligned.
template <class Make>
std::vector<Tensor> make_list(const std::vector<int64_t>& sizes, const std::vector<DType>& dtypes, Make make,
                              bool misaligned_ones) {
  std::vector<Tensor> out;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const DType t = dtypes[k % dtypes.size()];
    const bool off = misaligned_ones && k % 3 == 1;
    Tensor base = make(sizes[k] + (off ? 1 : 0)).to(t);
    out.push_back(off ? base.narrow(0, 1, sizes[k]) : base);
  }
  return out;
}

// Same storage offsets on the GPU as on the CPU (views stay views), so misalignment carries over.
std::vector<Tensor> mirror(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) {
    if (t.storage_offset() == 0) {
      out.push_back(t.to(kGpu).clone());
    } else {
      Tensor base = zeros({t.numel() + t.storage_offset()}, {.dtype = t.dtype(), .device = kGpu});
      Tensor v = base.narrow(0, t.storage_offset(), t.numel());
      v.copy_(t);
      out.push_back(v);
    }
  }
  return out;
}

std::vector<View> views(const std::vector<Tensor>& ts) {
  std::vector<View> v;
  for (const Tensor& t : ts) v.push_back(view(t));
  return v;
}

std::string dtypes_str(const std::vector<DType>& dts) {
  std::string s;
  for (DType t : dts) s += std::string(s.empty() ? "" : "+") + std::string(dtype_name(t));
  return s;
}

// Tolerance of the least precise dtype in the list.
double list_tol(const std::vector<DType>& dts) {
  double t = 0;
  for (DType d : dts) t = std::max(t, tol_of(d));
  return t;
}

const std::vector<std::vector<DType>> kDtypeSets = {
    {DType::f32}, {DType::bf16}, {DType::f64}, {DType::f32, DType::f16, DType::bf16}};

}  // namespace

TEST_CASE("gpu: multi-tensor Adam/AdamW/AMSGrad equals the per-tensor kernel and the CPU" *
          doctest::skip(gpu_missing())) {
  const auto sizes = odd_sizes();
  auto normal = [](int64_t n) { return randn({n}); };
  auto positive = [](int64_t n) { return abs(randn({n})) * 0.01; };
  for (const auto& dts : kDtypeSets) {
    for (int variant = 0; variant < 4; ++variant) {
      const std::string what = "adam " + dtypes_str(dts) + " variant " + std::to_string(variant);
      const bool amsgrad = variant == 2;
      kernels::AdamParams p{1e-3, 0.9, 0.999, 1e-8, variant == 0 ? 0.0 : 1e-2, 3, variant != 0, amsgrad, variant == 3};
      // Lists: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq; only the grads have misaligned
      // views, so the kernel must notice misalignment in any one list.
      std::vector<std::vector<Tensor>> cpu = {make_list(sizes, dts, normal, false), make_list(sizes, dts, normal, true),
                                              make_list(
                                                  sizes, dts, [](int64_t n) { return randn({n}) * 0.1; }, false),
                                              make_list(sizes, dts, positive, false),
                                              make_list(sizes, dts, positive, false)};
      std::vector<std::vector<Tensor>> multi, single;
      for (auto& l : cpu) {
        multi.push_back(mirror(l));
        single.push_back(mirror(l));
      }
      for (size_t k = 0; k < sizes.size(); ++k) {
        View none{nullptr, cpu[0][k].dtype()};
        kernels::cpu_backend().adam_step(p, view(cpu[0][k]), view(cpu[1][k]), view(cpu[2][k]), view(cpu[3][k]),
                                         amsgrad ? view(cpu[4][k]) : none);
        gpu_backend().adam_step(p, view(single[0][k]), view(single[1][k]), view(single[2][k]), view(single[3][k]),
                                amsgrad ? view(single[4][k]) : none);
      }
      std::vector<View> vmax = amsgrad ? views(multi[4]) : std::vector<View>{};
      gpu_backend().adam_step_multi(p, views(multi[0]), views(multi[1]), views(multi[2]), views(multi[3]), vmax);
      for (int l : {0, 2, 3, 4}) {
        if (l == 4 && !amsgrad) continue;
        for (size_t k = 0; k < sizes.size(); ++k) {
          const std::string w = what + " list " + std::to_string(l) + " tensor " + std::to_string(k);
          // The same element update: equal up to one rounding of the storage type.
          const double range = max_abs(single[size_t(l)][k]);
          expect_close(multi[size_t(l)][k], single[size_t(l)][k], tol_of(multi[size_t(l)][k].dtype()), 1e-6 * range,
                       w + " vs per-tensor");
          expect_close(multi[size_t(l)][k], cpu[size_t(l)][k], list_tol(dts), 1e-7, w + " vs cpu");
        }
      }
    }
  }
}

TEST_CASE("gpu: multi-tensor SGD equals the per-tensor kernel and the CPU" * doctest::skip(gpu_missing())) {
  const auto sizes = odd_sizes();
  auto normal = [](int64_t n) { return randn({n}); };
  const std::vector<kernels::SgdParams> variants = {
      {0.1, 0.0, 0.0, 0.0, false, false, false},   // plain
      {0.1, 0.9, 0.1, 1e-4, false, false, true},   // momentum, first step
      {0.1, 0.9, 0.1, 1e-4, false, false, false},  // momentum
      {0.05, 0.9, 0.0, 1e-3, true, false, false},  // Nesterov
      {0.1, 0.5, 0.0, 0.0, false, true, false},    // maximize
  };
  for (const auto& dts : kDtypeSets) {
    for (size_t vi = 0; vi < variants.size(); ++vi) {
      const auto& p = variants[vi];
      const std::string what = "sgd " + dtypes_str(dts) + " variant " + std::to_string(vi);
      const bool mom = p.momentum != 0;
      std::vector<std::vector<Tensor>> cpu = {make_list(sizes, dts, normal, true), make_list(sizes, dts, normal, false),
                                              make_list(sizes, dts, normal, false)};
      std::vector<std::vector<Tensor>> multi, single;
      for (auto& l : cpu) {
        multi.push_back(mirror(l));
        single.push_back(mirror(l));
      }
      for (size_t k = 0; k < sizes.size(); ++k) {
        View none{nullptr, cpu[0][k].dtype()};
        kernels::cpu_backend().sgd_step(p, view(cpu[0][k]), view(cpu[1][k]), mom ? view(cpu[2][k]) : none);
        gpu_backend().sgd_step(p, view(single[0][k]), view(single[1][k]), mom ? view(single[2][k]) : none);
      }
      gpu_backend().sgd_step_multi(p, views(multi[0]), views(multi[1]), mom ? views(multi[2]) : std::vector<View>{});
      for (int l : {0, 2}) {
        if (l == 2 && !mom) continue;
        for (size_t k = 0; k < sizes.size(); ++k) {
          const std::string w = what + " list " + std::to_string(l) + " tensor " + std::to_string(k);
          const double range = max_abs(single[size_t(l)][k]);
          expect_close(multi[size_t(l)][k], single[size_t(l)][k], tol_of(multi[size_t(l)][k].dtype()), 1e-6 * range,
                       w + " vs per-tensor");
          expect_close(multi[size_t(l)][k], cpu[size_t(l)][k], list_tol(dts), 1e-6, w + " vs cpu");
        }
      }
    }
  }
}

TEST_CASE("gpu: the optimizers' multi-tensor steps match the CPU optimizers over several steps" *
          doctest::skip(gpu_missing())) {
  const std::vector<int64_t> sizes = {3, 1023, 65537, 7, 1, 300, 4096, 5, 17, 2000, 9, 65536, 11, 40, 41};
  for (const auto& dts : std::vector<std::vector<DType>>{{DType::f32}, {DType::f32, DType::bf16, DType::f16}}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<Tensor> pc, pg;
      for (size_t k = 0; k < sizes.size(); ++k) {
        Tensor w = randn({sizes[k]}).to(dts[k % dts.size()]);
        pc.push_back(w.clone().requires_grad_(true));
        pg.push_back(w.to(kGpu).detach().requires_grad_(true));
      }
      auto make = [&](std::vector<Tensor> ps) -> std::unique_ptr<optim::Optimizer> {
        switch (kind) {
          case 0: return std::make_unique<optim::Adam>(ps, optim::AdamOptions{.lr = 1e-2, .weight_decay = 1e-3});
          case 1: return std::make_unique<optim::AdamW>(ps, optim::AdamWOptions{.lr = 1e-2, .amsgrad = true});
          case 2:
            return std::make_unique<optim::SGD>(ps, optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true});
          default: return std::make_unique<optim::SGD>(ps, optim::SGDOptions{.lr = 0.05});
        }
      };
      auto oc = make(pc), og = make(pg);
      for (int step = 0; step < 4; ++step) {
        for (size_t k = 0; k < sizes.size(); ++k) {
          // Parameter 0 has no gradient at step 1: its Adam step count (and SGD's momentum
          // buffer creation) then differs from the others', which takes a second launch.
          if (step == 1 && k == 0) {
            pc[k].set_grad(Tensor());
            pg[k].set_grad(Tensor());
            continue;
          }
          Tensor g = randn({sizes[k]}).to(pc[k].dtype());
          pc[k].set_grad(g);
          pg[k].set_grad(g.to(kGpu));
        }
        oc->step();
        og->step();
      }
      for (size_t k = 0; k < sizes.size(); ++k)
        expect_close(
            pg[k], pc[k], tol_of(pc[k].dtype()) * 2, tol_of(pc[k].dtype()) * max_abs(pc[k]),
            oc->name() + " kind " + std::to_string(kind) + " " + dtypes_str(dts) + " param " + std::to_string(k));
      // The saved state is the same too (the step counts kept on the host).
      auto sc = oc->state_tensors(), sg = og->state_tensors();
      CHECK(sc.size() == sg.size());
      for (auto& [name, t] : sc) {
        REQUIRE(sg.count(name));
        // Four steps of rounding to the state's dtype, each at the scale of the terms summed.
        expect_close(sg[name], t, tol_of(t.dtype()) * 2, 2 * tol_of(t.dtype()) * max_abs(t), "state " + name);
      }
    }
  }
}

TEST_CASE("gpu: fused unscale finds injected inf/NaN and scales like the CPU" * doctest::skip(gpu_missing())) {
  const auto sizes = odd_sizes();
  const std::vector<DType> dts = {DType::f32, DType::f16, DType::bf16};
  const double inv = 1.0 / 1024;
  auto run = [&](std::vector<Tensor>& gs, double factor, const Tensor& factor_t) {
    Tensor found = zeros({}, {.device = kGpu});
    gpu_backend().scale_and_check_multi(views(gs), factor, factor_t.defined() ? view(factor_t) : View{}, view(found));
    return found.item<float>();
  };
  for (int inject = 0; inject < 4; ++inject) {
    std::vector<Tensor> cpu = make_list(
        sizes, dts, [](int64_t n) { return randn({n}) * 1000.0; }, true);
    const double inf = std::numeric_limits<double>::infinity();
    if (inject == 1) cpu[6][2 * 65536 + 1].fill_(inf);  // tensor 6 is 3*65536+5 long: a later chunk
    if (inject == 2) cpu[40][0].fill_(std::nan(""));
    if (inject == 3) {
      cpu[1][2].fill_(-inf);  // a f16 tensor
      cpu[59][cpu[59].numel() - 1].fill_(std::nan(""));
    }
    std::vector<Tensor> gpu = mirror(cpu);
    const float found = run(gpu, inv, Tensor());
    CHECK_MESSAGE(found == (inject ? 1.0f : 0.0f), "inject " << inject);
    for (size_t k = 0; k < sizes.size(); ++k)
      expect_close(gpu[k], (cpu[k].to(DType::f32) * inv).to(cpu[k].dtype()), tol_of(cpu[k].dtype()) / 4, 0,
                   "unscaled tensor " + std::to_string(k) + " inject " + std::to_string(inject));
  }
  // A factor of exactly 1 only checks: nothing is written.
  std::vector<Tensor> cpu = make_list(
      sizes, dts, [](int64_t n) { return randn({n}); }, true);
  cpu[7][0].fill_(std::nan(""));
  std::vector<Tensor> gpu = mirror(cpu);
  CHECK(run(gpu, 1.0, Tensor()) == 1.0f);
  for (size_t k = 0; k < sizes.size(); ++k) expect_close(gpu[k], cpu[k], 0, 0, "check only");
  // The factor from a device scalar (what clipping uses), f32 and f64.
  cpu[7][0].fill_(0.0);
  for (DType ft : {DType::f32, DType::f64}) {
    gpu = mirror(cpu);
    CHECK(run(gpu, 1.0, full({}, 0.25, {.dtype = ft, .device = kGpu})) == 0.0f);
    for (size_t k = 0; k < sizes.size(); ++k)
      expect_close(gpu[k], (cpu[k].to(DType::f32) * 0.25).to(cpu[k].dtype()), 0, 0, "device factor");
  }
  CHECK(optim::any_non_finite(mirror(cpu)).item<bool>() == false);
  cpu[20][3].fill_(std::nan(""));
  CHECK(optim::any_non_finite(mirror(cpu)).item<bool>() == true);
  CHECK(optim::any_non_finite(cpu).item<bool>() == true);
}

TEST_CASE("gpu: GradScaler on CUDA gradients skips inf steps and unscales in one pass" * doctest::skip(gpu_missing())) {
  std::vector<Tensor> pc, pg;
  for (int64_t n : {5, 1023, 65537}) {
    Tensor w = randn({n});
    pc.push_back(w.clone().requires_grad_(true));
    pg.push_back(w.to(kGpu).detach().requires_grad_(true));
  }
  optim::AdamW oc(pc, 1e-2), og(pg, 1e-2);
  optim::GradScaler scaler({.init_scale = 1024.0});
  for (int step = 0; step < 3; ++step) {
    for (size_t k = 0; k < pc.size(); ++k) {
      Tensor g = randn({pc[k].numel()});
      pc[k].set_grad(g.clone());
      Tensor scaled = g * scaler.get_scale();
      if (step == 1 && k == 2) scaled[7].fill_(std::numeric_limits<double>::infinity());
      pg[k].set_grad(scaled.to(kGpu));
    }
    const double scale_before = scaler.get_scale();
    const bool stepped = scaler.step(og);
    scaler.update();
    if (step == 1) {
      CHECK_FALSE(stepped);
      CHECK(scaler.get_scale() == scale_before * 0.5);
    } else {
      CHECK(stepped);
      oc.step();
      for (size_t k = 0; k < pc.size(); ++k)
        expect_close(pg[k].grad(), pc[k].grad(), 1e-6, 1e-7, "unscaled gradient " + std::to_string(k));
    }
  }
  for (size_t k = 0; k < pc.size(); ++k) expect_close(pg[k], pc[k], 1e-5, 1e-6, "parameter " + std::to_string(k));
}

TEST_CASE("gpu: fused gradient norms and clipping match the CPU" * doctest::skip(gpu_missing())) {
  const auto sizes = odd_sizes();
  for (const auto& dts : kDtypeSets) {
    std::vector<Tensor> cpu = make_list(
        sizes, dts, [](int64_t n) { return randn({n}); }, true);
    std::vector<Tensor> gpu = mirror(cpu);
    const double rtol = dts.size() == 1 && dts[0] == DType::f64 ? 1e-12 : 1e-5;
    for (double order : {2.0, std::numeric_limits<double>::infinity()}) {
      Tensor ng = optim::get_total_norm(gpu, order), nc = optim::get_total_norm(cpu, order);
      CHECK(ng.device() == kGpu);
      CHECK(ng.dtype() == nc.dtype());
      expect_close(ng, nc, rtol, 0, "norm " + dtypes_str(dts) + " order " + std::to_string(order));
    }
    // Non-finite values propagate: inf gives inf, NaN gives NaN, in either order.
    std::vector<Tensor> with_inf = mirror(cpu);
    with_inf[6][70000].fill_(std::numeric_limits<double>::infinity());
    CHECK(std::isinf(optim::get_total_norm(with_inf, 2.0).item<double>()));
    CHECK(std::isinf(optim::get_total_norm(with_inf, std::numeric_limits<double>::infinity()).item<double>()));
    with_inf[30][0].fill_(std::nan(""));
    CHECK(std::isnan(optim::get_total_norm(with_inf, 2.0).item<double>()));
    CHECK(std::isnan(optim::get_total_norm(with_inf, std::numeric_limits<double>::infinity()).item<double>()));
  }
  CHECK(optim::get_total_norm({}, 2.0).item<double>() == 0.0);
  // The same list twice gives the same bits (partials summed in a fixed order).
  std::vector<Tensor> g = mirror(make_list(
      odd_sizes(), {DType::f32}, [](int64_t n) { return randn({n}); }, false));
  CHECK(optim::get_total_norm(g).item<double>() == optim::get_total_norm(g).item<double>());

  // clip_grad_norm_ end to end.
  std::vector<Tensor> pc, pg;
  for (int64_t n : {3, 1023, 65537, 9}) {
    Tensor w = randn({n});
    pc.push_back(w.clone().requires_grad_(true));
    pg.push_back(w.to(kGpu).detach().requires_grad_(true));
    Tensor grad = randn({n}) * 10.0;
    pc.back().set_grad(grad);
    pg.back().set_grad(grad.to(kGpu));
  }
  for (double order : {2.0, std::numeric_limits<double>::infinity()}) {
    Tensor tc = optim::clip_grad_norm_(pc, 1.0, order), tg = optim::clip_grad_norm_(pg, 1.0, order);
    expect_close(tg, tc, 1e-5, 0, "clip total norm");
    for (size_t k = 0; k < pc.size(); ++k) expect_close(pg[k].grad(), pc[k].grad(), 1e-5, 1e-7, "clipped grad");
  }
}

TEST_CASE("gpu: f16/bf16 elementwise kernels (16-byte packed) match the CPU at odd sizes and offsets" *
          doctest::skip(gpu_missing())) {
  for (DType t : {DType::f16, DType::bf16}) {
    for (int64_t n : {int64_t(1), int64_t(3), int64_t(7), int64_t(9), int64_t(1023), (int64_t(1) << 20) + 7}) {
      for (int64_t offset : {0, 1, 3}) {
        const std::string what =
            std::string(dtype_name(t)) + " n=" + std::to_string(n) + " offset " + std::to_string(offset);
        Tensor xb = rnd({n + offset}, t), yb = rnd({n + offset}, t);
        Tensor cb = gt(randn({n + offset}), 0.0);
        Tensor x = xb.narrow(0, offset, n), y = yb.narrow(0, offset, n), c = cb.narrow(0, offset, n);
        Tensor xg = xb.to(kGpu).narrow(0, offset, n), yg = yb.to(kGpu).narrow(0, offset, n);
        Tensor cg = cb.to(kGpu).narrow(0, offset, n);
        const double tol = tol_of(t);
        expect_close(add(xg, yg), add(x, y), tol, 0, what + " add");
        expect_close(mul(xg, yg), mul(x, y), tol, 0, what + " mul");
        expect_close(relu(xg), relu(x), 0, 0, what + " relu");
        expect_close(exp(xg), exp(x), tol, 0, what + " exp");
        expect_close(where(cg, xg, yg), where(c, x, y), 0, 0, what + " where");
        expect_close(xg.to(DType::f32), x.to(DType::f32), 0, 0, what + " to f32");
        expect_close(xg.to(DType::f32).to(t), x, 0, 0, what + " f32 -> " + std::string(dtype_name(t)));
        Tensor fg = zeros({n + offset}, {.dtype = t, .device = kGpu});
        fg.narrow(0, offset, n).fill_(0.3);
        Tensor fc = zeros({n + offset}, {.dtype = t});
        fc.narrow(0, offset, n).fill_(0.3);
        expect_close(fg, fc, 0, 0, what + " fill");
      }
    }
  }
  // where on dense f32 and bool operands takes the packed path as well.
  for (int64_t n : {int64_t(5), int64_t(4099)}) {
    Tensor c = gt(randn({n}), 0.0), x = randn({n}), y = randn({n});
    expect_close(where(c.to(kGpu), x.to(kGpu), y.to(kGpu)), where(c, x, y), 0, 0, "where f32");
    Tensor bx = gt(x, 0.5), by = gt(y, -0.5);
    expect_close(where(c.to(kGpu), bx.to(kGpu), by.to(kGpu)), where(c, bx, by), 0, 0, "where bool");
  }
}
