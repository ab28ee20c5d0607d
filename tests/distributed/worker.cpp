// The worker process of the distributed tests: started 2 or 3 times by the tests (through
// run_workers, kiln-run or launch()), it runs one scenario named by argv[1] and exits 0 when every
// check held. Failures print the rank and the mismatch to stderr and exit 1.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>

#include "distributed/distributed.h"
#include "examples/simple_cnn.h"
#include "fabric/fabric.h"
#include "kiln.h"
#include "nn/functional.h"
#include "optim/adam.h"
#include "optim/clip_grad.h"

namespace kd = kiln::distributed;
using kiln::DType;
using kiln::Tensor;

namespace {

int g_rank = -1;
int g_failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "rank " << g_rank << ": check failed: " << what << "\n";
    ++g_failures;
  }
}

void expect_values(const Tensor& t, const std::vector<double>& want, const std::string& what, double tol = 0) {
  auto got = t.contiguous().to_vector<double>();
  bool ok = got.size() == want.size();
  for (size_t i = 0; ok && i < got.size(); ++i) ok = std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i]));
  if (!ok) {
    std::string s = what + ": got [";
    for (double v : got) s += std::to_string(v) + " ";
    s += "] want [";
    for (double v : want) s += std::to_string(v) + " ";
    expect(false, s + "]");
  }
}

// Generous by default: on a loaded 2-core machine starting three processes can take a while.
kd::ProcessGroupOptions options(std::chrono::seconds timeout = std::chrono::seconds(60)) {
  kd::ProcessGroupOptions o;
  o.timeout = timeout;
  if (const char* t = std::getenv("KILN_TEST_TIMEOUT_MS")) o.timeout = kd::Milliseconds(std::atoi(t));
  return o;
}

const DType kDtypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64};

int collectives() {
  auto comm = kd::init_process_group(options());
  int r = comm->rank(), w = comm->world_size();
  g_rank = r;
  const int n = 7;
  for (DType dt : kDtypes) {
    std::string name(kiln::dtype_name(dt));
    bool integral = kiln::is_integral(dt);
    for (auto op : {kd::ReduceOp::sum, kd::ReduceOp::avg, kd::ReduceOp::max, kd::ReduceOp::min}) {
      std::vector<double> mine(n), want(n);
      for (int i = 0; i < n; ++i) {
        mine[i] = double((r + 1) * (i + 1)) * (i % 2 ? -1 : 1);
        double s = (i + 1) * w * (w + 1) / 2.0 * (i % 2 ? -1 : 1);
        double hi = double(w * (i + 1)), lo = double(i + 1);
        if (i % 2) std::swap(hi, lo), hi = -hi, lo = -lo;
        switch (op) {
          case kd::ReduceOp::sum: want[i] = s; break;
          case kd::ReduceOp::avg: want[i] = integral ? std::trunc(s / w) : s / w; break;
          case kd::ReduceOp::max: want[i] = hi; break;
          case kd::ReduceOp::min: want[i] = lo; break;
        }
      }
      Tensor t = kiln::tensor(mine, {n}, {.dtype = DType::f64}).to(dt);
      comm->all_reduce(t, op);
      expect(t.dtype() == dt, "all_reduce kept the dtype");
      expect_values(t, want, "all_reduce " + std::string(kd::reduce_op_name(op)) + " " + name);
    }
    // Non-contiguous input: a transposed view is reduced in place.
    Tensor base = kiln::full({2, 3}, double(r + 1), {.dtype = dt});
    Tensor tv = base.t();
    comm->all_reduce(tv, kd::ReduceOp::sum);
    expect_values(base, std::vector<double>(6, w * (w + 1) / 2.0), "all_reduce strided " + name);

    // Broadcast from the last rank.
    std::vector<double> b(5), bw(5);
    for (int i = 0; i < 5; ++i) b[i] = r * 10 + i, bw[i] = (w - 1) * 10 + i;
    Tensor bt = kiln::tensor(b, {5}, {.dtype = DType::f64}).to(dt);
    comm->broadcast(bt, w - 1);
    expect_values(bt, bw, "broadcast " + name);

    // All-gather: [world, 2, 2].
    std::vector<double> g(4), gw;
    for (int i = 0; i < 4; ++i) g[i] = r * 20 + i;
    for (int q = 0; q < w; ++q)
      for (int i = 0; i < 4; ++i) gw.push_back(q * 20 + i);
    Tensor gt = comm->all_gather(kiln::tensor(g, {2, 2}, {.dtype = DType::f64}).to(dt));
    expect(gt.sizes() == kiln::Shape{w, 2, 2}, "all_gather shape " + name);
    expect_values(gt, gw, "all_gather " + name);

    // Reduce-scatter of [2w, 3]: element (j, c) is (rank + 1) * (j + c); this rank gets rows
    // 2r, 2r + 1 of the sum.
    std::vector<double> rs, rsw;
    for (int j = 0; j < 2 * w; ++j)
      for (int c = 0; c < 3; ++c) rs.push_back((r + 1) * (j + c));
    for (int j = 2 * r; j < 2 * r + 2; ++j)
      for (int c = 0; c < 3; ++c) rsw.push_back((j + c) * w * (w + 1) / 2.0);
    Tensor rt = comm->reduce_scatter(kiln::tensor(rs, {2 * w, 3}, {.dtype = DType::f64}).to(dt));
    expect(rt.sizes() == kiln::Shape{2, 3}, "reduce_scatter shape " + name);
    expect_values(rt, rsw, "reduce_scatter " + name);

    // Uneven reduce-scatter: rank q gets (q + 1) % 3 rows of 2 (so with 3 ranks the last gets
    // none); element (j, c) is (rank + 1) * (2j + c + 1). Averaged, to cover the division too.
    std::vector<int64_t> counts;
    int64_t rows = 0, first = 0;
    for (int q = 0; q < w; ++q) {
      counts.push_back((q + 1) % 3);
      if (q < r) first += counts.back();
      rows += counts.back();
    }
    std::vector<double> uv, uw;
    for (int64_t j = 0; j < rows; ++j)
      for (int c = 0; c < 2; ++c) uv.push_back((r + 1) * (2 * j + c + 1));
    for (int64_t j = first; j < first + counts[size_t(r)]; ++j)
      for (int c = 0; c < 2; ++c) {
        double s = (2 * j + c + 1) * (w + 1) / 2.0;  // the sum over ranks divided by w
        uw.push_back(integral ? std::trunc(s) : s);
      }
    Tensor ut =
        comm->reduce_scatter(kiln::tensor(uv, {rows, 2}, {.dtype = DType::f64}).to(dt), counts, kd::ReduceOp::avg);
    expect(ut.sizes() == kiln::Shape{counts[size_t(r)], 2}, "uneven reduce_scatter shape " + name);
    expect(ut.dtype() == dt, "uneven reduce_scatter dtype " + name);
    expect_values(ut, uw, "uneven reduce_scatter avg " + name);
    // A miscount is an error naming the rows, raised before any message is sent.
    std::string msg;
    try {
      comm->reduce_scatter(kiln::zeros({3, 2}, {.dtype = dt}), std::vector<int64_t>(size_t(w), 1));
    } catch (const kiln::Error& e) { msg = e.what(); }
    expect(w == 3 || msg.find("add up to") != std::string::npos, "miscounted rows: " + msg);
  }
  comm->barrier();
  return g_failures ? 1 : 0;
}

// ---- DDP: a two-layer MLP in f64; the reference is the single-process gradient of the whole
// batch, computed in every rank on its own copy of the parameters. ----
std::vector<Tensor> make_params(uint64_t seed) {
  kiln::Generator gen(seed);
  auto o = kiln::TensorOptions{.dtype = DType::f64};
  std::vector<Tensor> ps = {kiln::randn({8, 4}, o, &gen), kiln::randn({8}, o, &gen), kiln::randn({3, 8}, o, &gen),
                            kiln::randn({3}, o, &gen)};
  for (auto& p : ps) p.requires_grad_(true);
  return ps;
}

Tensor loss_of(const std::vector<Tensor>& p, const Tensor& x, const Tensor& y) {
  auto h = kiln::relu(kiln::linear(x, p[0], p[1]));
  return kiln::mse_loss(kiln::linear(h, p[2], p[3]), y);
}

void check_close(const Tensor& a, const Tensor& b, double rtol, const std::string& what) {
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  bool ok = av.size() == bv.size();
  double worst = 0;
  for (size_t i = 0; ok && i < av.size(); ++i) {
    double e = std::abs(av[i] - bv[i]) / (1e-12 + std::abs(bv[i]));
    worst = std::max(worst, e);
  }
  expect(ok && worst <= rtol, what + ": relative error " + std::to_string(worst));
}

int ddp() {
  auto comm = kd::init_process_group(options());
  int r = comm->rank(), w = comm->world_size();
  g_rank = r;
  const int64_t B = 5;
  kiln::Generator dgen(7);
  auto o = kiln::TensorOptions{.dtype = DType::f64};
  Tensor X = kiln::randn({2 * w * B, 4}, o, &dgen), Y = kiln::randn({2 * w * B, 3}, o, &dgen);
  auto local = [&](int mb) { return std::pair{X.narrow(0, (mb * w + r) * B, B), Y.narrow(0, (mb * w + r) * B, B)}; };
  auto global = [&](int mb) { return std::pair{X.narrow(0, mb * w * B, w * B), Y.narrow(0, mb * w * B, w * B)}; };

  auto params = make_params(100 + r);  // different on every rank until the broadcast
  auto ref = make_params(100);
  kd::broadcast_tensors(*comm, params, 0);
  for (size_t k = 0; k < params.size(); ++k)
    check_close(params[k], ref[k], 0, "broadcast parameter " + std::to_string(k));

  kd::Reducer reducer(comm, params, {.bucket_cap_bytes = 100});  // several buckets
  expect(reducer.bucket_indices().size() >= 3, "several buckets");
  expect(reducer.bucket_indices().front().front() == params.size() - 1, "buckets in reverse parameter order");

  // Step 1: one micro-batch.
  {
    auto [x, y] = local(0);
    loss_of(params, x, y).backward();
    reducer.finalize();
    auto [gx, gy] = global(0);
    loss_of(ref, gx, gy).backward();
    for (size_t k = 0; k < params.size(); ++k)
      check_close(params[k].grad(), ref[k].grad(), 1e-12, "DDP gradient " + std::to_string(k));
  }
  // SGD step on both copies, then gradient accumulation over two micro-batches with no_sync.
  for (int step = 0; step < 3; ++step) {
    {
      kiln::NoGradGuard ng;
      for (size_t k = 0; k < params.size(); ++k) {
        params[k].add_(params[k].grad(), -0.1);
        ref[k].add_(ref[k].grad(), -0.1);
        params[k].mutable_grad() = Tensor();
        ref[k].mutable_grad() = Tensor();
      }
    }
    {
      auto guard = reducer.no_sync();
      auto [x, y] = local(0);
      loss_of(params, x, y).backward();
    }
    reducer.finalize();  // nothing to do: no gradient became ready with sync on
    auto [x1, y1] = local(1);
    loss_of(params, x1, y1).backward();
    reducer.finalize();
    for (int mb = 0; mb < 2; ++mb) {
      auto [gx, gy] = global(mb);
      loss_of(ref, gx, gy).backward();
    }
    for (size_t k = 0; k < params.size(); ++k)
      check_close(params[k].grad(), ref[k].grad(), 1e-12,
                  "no_sync accumulated gradient " + std::to_string(k) + " step " + std::to_string(step));
  }
  // Parameters identical on every rank.
  for (size_t k = 0; k < params.size(); ++k) {
    Tensor all = comm->all_gather(params[k].detach());
    for (int q = 0; q < w; ++q)
      check_close(all[q], params[k].detach(), 0, "parameters equal across ranks " + std::to_string(k));
    check_close(params[k].detach(), ref[k].detach(), 1e-12, "parameters equal the reference");
  }
  auto st = reducer.stats();
  expect(st.steps == 4, "four reduced steps, got " + std::to_string(st.steps));
  return g_failures ? 1 : 0;
}

// The reference CNN under DDP for a few AdamW steps: parameters identical on every rank and equal
// (to f64 rounding) to one process training on the concatenated batch.
int cnn() {
  auto comm = kd::init_process_group(options());
  int r = comm->rank(), w = comm->world_size();
  g_rank = r;
  const int64_t B = 2;
  kiln::manual_seed(1000 + r);  // different initial weights until DDP's broadcast
  // float64: AdamW divides by sqrt(v), so in f32 a gradient that differs by summation order
  // alone can move a weight by up to 2*lr; in f64 the two runs agree to rounding.
  auto model = std::make_shared<SimpleCNN>(3, 10);
  model->to(DType::f64);
  model->eval();  // no dropout: the single-process run must see the same network
  kiln::manual_seed(1000);
  auto ref = std::make_shared<SimpleCNN>(3, 10);
  ref->to(DType::f64);
  ref->eval();
  kd::DistributedDataParallel ddp(model, comm, {.bucket_cap_bytes = 1 << 20});
  auto p = model->parameters(), q = ref->parameters();
  for (size_t k = 0; k < p.size(); ++k) check_close(p[k].detach(), q[k].detach(), 0, "initial weights");
  kiln::optim::AdamW opt(p, 3e-4), ropt(q, 3e-4);
  kiln::Generator g(5);
  for (int step = 0; step < 3; ++step) {
    auto x = kiln::randn({w * B, 3, 32, 32}, {.dtype = DType::f64}, &g);
    auto y = kiln::randint(0, 10, {w * B}, {.dtype = DType::i64}, &g);
    opt.zero_grad();
    kiln::nn::functional::cross_entropy(model->forward(x.narrow(0, r * B, B)), y.narrow(0, r * B, B)).backward();
    ddp.finalize();
    opt.step();
    ropt.zero_grad();
    kiln::nn::functional::cross_entropy(ref->forward(x), y).backward();
    ropt.step();
  }
  for (size_t k = 0; k < p.size(); ++k) {
    Tensor all = comm->all_gather(p[k].detach());
    for (int o = 0; o < w; ++o) check_close(all[o], p[k].detach(), 0, "CNN parameters equal across ranks");
    auto a = p[k].detach().to_vector<double>(), b = q[k].detach().to_vector<double>();
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (1e-12 + std::abs(b[i])));
    expect(worst < 1e-9, "CNN parameter " + std::to_string(k) + " vs single process: " + std::to_string(worst));
  }
  return g_failures ? 1 : 0;
}

// The sharded optimizer against plain DDP: the same parameters after a few AdamW steps, and the
// optimizer state split over the ranks.
int zero() {
  auto comm = kd::init_process_group(options());
  int r = comm->rank(), w = comm->world_size();
  g_rank = r;
  const int64_t B = 4;
  auto a = make_params(100), b = make_params(100);
  kd::Reducer ra(comm, a), rb(comm, b);
  kiln::optim::AdamW full(a, 1e-2);
  kd::ZeroRedundancyOptimizer sharded(
      comm, b, [](std::vector<Tensor> p) { return std::make_shared<kiln::optim::AdamW>(p, 1e-2); });
  kiln::Generator g(9);
  auto o = kiln::TensorOptions{.dtype = DType::f64};
  for (int step = 0; step < 4; ++step) {
    auto x = kiln::randn({w * B, 4}, o, &g), y = kiln::randn({w * B, 3}, o, &g);
    auto xs = x.narrow(0, r * B, B), ys = y.narrow(0, r * B, B);
    full.zero_grad();
    sharded.zero_grad();
    loss_of(a, xs, ys).backward();
    ra.finalize();
    full.step();
    loss_of(b, xs, ys).backward();
    rb.finalize();
    sharded.step();
  }
  for (size_t k = 0; k < a.size(); ++k)
    check_close(b[k].detach(), a[k].detach(), 1e-12, "sharded vs DDP parameter " + std::to_string(k));
  int64_t full_state = 0;
  for (auto& [name, t] : full.state_tensors()) full_state += t.numel();
  Tensor mine = kiln::tensor(std::vector<int64_t>{sharded.local_state_numel()});
  comm->all_reduce(mine, kd::ReduceOp::sum);
  expect(mine.item<int64_t>() == full_state, "the shards' state adds up to the full state");
  expect(sharded.local_state_numel() < full_state, "each rank holds only part of the state");
  return g_failures ? 1 : 0;
}

// ---- ZeRO-2 (ShardedDataParallel) against DDP: a two-layer MLP with two param groups (different
// lr and weight decay), small buckets whose sizes the world size does not divide, gradient
// accumulation under no_sync, and clip_grad_norm_. ----
struct Mlp : kiln::nn::Module {
  std::shared_ptr<kiln::nn::Linear> fc1 = register_module("fc1", std::make_shared<kiln::nn::Linear>(5, 7));
  std::shared_ptr<kiln::nn::Linear> fc2 = register_module("fc2", std::make_shared<kiln::nn::Linear>(7, 3));
  Tensor forward(const Tensor& x) override { return fc2->forward(kiln::relu(fc1->forward(x))); }
};

std::shared_ptr<kiln::optim::AdamW> grouped_adamw(Mlp& m) {
  return std::make_shared<kiln::optim::AdamW>(
      std::vector<kiln::optim::ParamGroup>{{m.fc1->parameters(), {{"lr", 2e-2}, {"weight_decay", 0.1}}},
                                           {m.fc2->parameters(), {{"lr", 1e-2}, {"weight_decay", 0.0}}}},
      kiln::optim::AdamWOptions{});
}

double worst_relative(const Tensor& a, const Tensor& b) {
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  double worst = av.size() == bv.size() ? 0 : 1e300;
  for (size_t i = 0; i < av.size() && i < bv.size(); ++i)
    worst = std::max(worst, std::abs(av[i] - bv[i]) / (1e-6 + std::abs(bv[i])));
  return worst;
}

int zero2_in(const std::shared_ptr<kd::Communicator>& comm, DType dt, double rtol) {
  int r = comm->rank(), w = comm->world_size();
  g_rank = r;
  const std::string tag = std::string(kiln::dtype_name(dt)) + " ";
  const size_t cap = 25 * kiln::element_size(dt);  // fc2's bias and weight share a bucket
  kiln::manual_seed(1000 + r);                     // different on every rank until the broadcast
  auto a = std::make_shared<Mlp>();
  kiln::manual_seed(1000 + r);
  auto b = std::make_shared<Mlp>();
  a->to(dt);
  b->to(dt);
  auto oa = grouped_adamw(*a), ob = grouped_adamw(*b);
  kd::DistributedDataParallel ddp(a, comm, {.bucket_cap_bytes = cap});
  kd::ShardedDataParallel zero(b, ob, comm, {.bucket_cap_bytes = cap});
  expect(zero.layout()["buckets"].size() == 3, tag + "three buckets, got " + zero.layout().dump());
  expect(ob->param_groups().size() == 2 && ob->param_groups()[0].lr() == 2e-2,
         tag + "the param groups keep their options");

  const int64_t B = 3;
  kiln::Generator g(9);
  auto o = kiln::TensorOptions{.dtype = dt};
  auto batch = [&] {
    auto x = kiln::randn({w * B, 5}, o, &g), y = kiln::randn({w * B, 3}, o, &g);
    return std::pair{x.narrow(0, r * B, B), y.narrow(0, r * B, B)};
  };
  auto loss = [](Mlp& m, const std::pair<Tensor, Tensor>& xy) {
    return kiln::mse_loss(m.forward(xy.first), xy.second);
  };
  for (int step = 0; step < 5; ++step) {
    oa->zero_grad();
    ob->zero_grad();
    auto xy = batch();
    if (step == 1) {  // accumulate one micro-batch locally, then reduce the sum
      auto x0 = batch();
      {
        auto ga = ddp.no_sync();
        loss(*a, x0).backward();
        ddp.finalize();
      }
      {
        auto gb = zero.no_sync();
        loss(*b, x0).backward();
        zero.finalize();
      }
      expect(b->fc1->weight.grad().defined(), tag + "no_sync keeps the local gradient");
    }
    loss(*a, xy).backward();
    ddp.finalize();
    loss(*b, xy).backward();
    zero.finalize();
    // Between backward and step a rank holds only its gradient shards.
    bool freed = true;
    for (auto& p : b->parameters()) freed = freed && !p.grad().defined();
    expect(freed, tag + "the full gradients are freed after backward");
    expect(zero.local_grad_numel() == zero.local_master_numel(),
           tag + "gradient elements held: " + std::to_string(zero.local_grad_numel()) + " vs shard " +
               std::to_string(zero.local_master_numel()));
    if (step == 2) {
      Tensor na = kiln::optim::clip_grad_norm_(a->parameters(), 0.05);
      Tensor nb = zero.clip_grad_norm_(0.05);
      expect(worst_relative(nb, na) <= std::max(rtol, 1e-6 * double(dt != DType::f64)),
             tag + "global gradient norm " + std::to_string(nb.item<double>()) + " vs DDP " +
                 std::to_string(na.item<double>()));
      expect(na.item<double>() > 0.05, tag + "the clip bites");
    }
    oa->step();
    zero.step();
  }
  double worst = 0;
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t k = 0; k < pa.size(); ++k) {
    worst = std::max(worst, worst_relative(pb[k].detach(), pa[k].detach()));
    Tensor all = comm->all_gather(pb[k].detach());
    for (int q = 0; q < w; ++q) expect(kiln::equal(all[q], pb[k].detach()), tag + "parameters equal on every rank");
  }
  if (r == 0) std::cerr << "zero2 " << tag << "world " << w << ": worst relative difference to DDP " << worst << "\n";
  expect(worst <= rtol, tag + "sharded vs DDP parameters: relative difference " + std::to_string(worst));

  // Memory: this rank holds about 1/N of the optimizer state and of the masters.
  int64_t total = zero.total_numel(), buckets = int64_t(zero.layout()["buckets"].size());
  int64_t full_state = 0;
  for (auto& [name, t] : oa->state_tensors())
    if (t.dim() > 0) full_state += t.numel();
  expect(full_state == 2 * total, tag + "DDP's AdamW holds exp_avg and exp_avg_sq of every element");
  expect(zero.local_state_numel() == 2 * zero.local_master_numel(), tag + "state = 2 x shard");
  expect(zero.local_master_numel() <= total / w + buckets,
         tag + "shard elements " + std::to_string(zero.local_master_numel()) + " of " + std::to_string(total));
  Tensor sum = kiln::tensor(std::vector<int64_t>{zero.local_master_numel()});
  comm->all_reduce(sum, kd::ReduceOp::sum);
  int64_t padded = 0;
  for (auto& bk : zero.layout()["buckets"]) padded += (bk["numel"].get<int64_t>() + w - 1) / w * w;
  expect(sum.item<int64_t>() == padded, tag + "the shards cover every bucket once");

  // A bare optimizer->step() updates the shard only; the next sharded call says so.
  ob->step();
  std::string msg;
  try {
    zero.step();
  } catch (const kiln::Error& e) { msg = e.what(); }
  expect(msg.find("fabric.step(optimizer)") != std::string::npos, tag + "stepping alone is reported: " + msg);
  return g_failures;
}

int zero2() {
  // f64: equal to rounding. f32: reduce-scatter and all-reduce may add the ranks' gradients in a
  // different order, which AdamW's m / sqrt(v) can magnify where a gradient nearly cancels.
  auto comm = kd::init_process_group(options());
  int failures = zero2_in(comm, DType::f64, 1e-12);
  failures += zero2_in(comm, DType::f32, 1e-5);
  return failures ? 1 : 0;
}

// The sharded strategy's errors: an optimizer that misses a trainable parameter, or that already
// holds state.
int zero2_errors() {
  auto comm = kd::init_process_group(options());
  g_rank = comm->rank();
  auto m = std::make_shared<Mlp>();
  auto partial = std::make_shared<kiln::optim::AdamW>(m->fc1->parameters(), 1e-3);
  std::string msg;
  try {
    kd::ShardedDataParallel z(m, partial, comm);
  } catch (const kiln::Error& e) { msg = e.what(); }
  expect(msg.find("'fc2.weight'") != std::string::npos, "names the missing parameter: " + msg);
  auto stepped = std::make_shared<kiln::optim::AdamW>(m->parameters(), 1e-3);
  kiln::mse_loss(m->forward(kiln::randn({2, 5})), kiln::randn({2, 3})).backward();
  stepped->step();
  msg.clear();
  try {
    kd::ShardedDataParallel z(m, stepped, comm);
  } catch (const kiln::Error& e) { msg = e.what(); }
  expect(msg.find("already holds state") != std::string::npos, "refuses a stepped optimizer: " + msg);
  return g_failures ? 1 : 0;
}

// ---- Fabric with strategy "zero" against a DDP reference on the same process group (float64):
// backward / step / no_backward_sync / clip_gradients, then sharded checkpoints: the index and
// one file per rank, consolidation equal to the DDP checkpoint, an exact resume from the shards,
// a DDP checkpoint loaded into a sharded run, and the shards loaded in a single-process way. ----
int fabric_zero() {
  const std::string dir = std::getenv("KILN_TEST_OUT") ? std::getenv("KILN_TEST_OUT") : "/tmp";
  kiln::Fabric fabric({.accelerator = "cpu", .precision = "64-true", .strategy = "zero"});
  fabric.launch();
  auto comm = kd::default_communicator();
  int r = fabric.global_rank(), w = fabric.world_size();
  g_rank = r;
  expect(fabric.strategy() == "zero", "strategy name");
  kiln::manual_seed(1000 + r);
  auto a = std::make_shared<Mlp>();
  kiln::manual_seed(1000 + r);
  auto b = std::make_shared<Mlp>();
  a->to(DType::f64);
  auto oa = grouped_adamw(*a), ob = grouped_adamw(*b);
  kd::DistributedDataParallel ddp(a, comm);
  std::tie(b, ob) = fabric.setup(b, ob);

  const int64_t B = 3;
  kiln::Generator g(11);
  auto o = kiln::TensorOptions{.dtype = DType::f64};
  auto batch = [&] {
    auto x = kiln::randn({w * B, 5}, o, &g), y = kiln::randn({w * B, 3}, o, &g);
    return std::pair{x.narrow(0, r * B, B), y.narrow(0, r * B, B)};
  };
  auto loss = [](Mlp& m, const std::pair<Tensor, Tensor>& xy) {
    return kiln::mse_loss(m.forward(xy.first), xy.second);
  };
  auto train_step = [&](int step, std::shared_ptr<Mlp> m, std::shared_ptr<kiln::optim::AdamW> opt, bool with_ref) {
    if (with_ref) oa->zero_grad();
    opt->zero_grad();
    auto xy = batch();
    if (step == 1) {
      auto x0 = batch();
      if (with_ref) {
        auto guard = ddp.no_sync();
        loss(*a, x0).backward();
        ddp.finalize();
      }
      auto guard = fabric.no_backward_sync(m);
      fabric.backward(loss(*m, x0));
    }
    if (with_ref) {
      loss(*a, xy).backward();
      ddp.finalize();
    }
    fabric.backward(loss(*m, xy));
    if (step == 2) {
      Tensor nb = fabric.clip_gradients(m, opt, std::nullopt, 0.05);
      if (with_ref) {
        Tensor na = kiln::optim::clip_grad_norm_(a->parameters(), 0.05);
        expect(worst_relative(nb, na) < 1e-12, "fabric.clip_gradients norm equals DDP's");
      }
    }
    if (with_ref) oa->step();
    fabric.step(opt);
  };
  for (int step = 0; step < 3; ++step) train_step(step, b, ob, true);
  auto close_to = [&](Mlp& m, Mlp& ref, double tol, const std::string& what) {
    auto pm = m.parameters(), pr = ref.parameters();
    double worst = 0;
    for (size_t k = 0; k < pm.size(); ++k) worst = std::max(worst, worst_relative(pm[k].detach(), pr[k].detach()));
    expect(worst <= tol, what + ": relative difference " + std::to_string(worst));
  };
  close_to(*b, *a, 1e-12, "Fabric zero vs DDP parameters");

  // The optimizer state per rank is the expected fraction of DDP's.
  int64_t mine = 0, full = 0;
  for (auto& [name, t] : ob->state_tensors()) mine += t.dim() > 0 ? t.numel() : 0;
  for (auto& [name, t] : oa->state_tensors()) full += t.dim() > 0 ? t.numel() : 0;
  expect(mine * w <= full + 2 * 3 * w, "state per rank " + std::to_string(mine) + " of " + std::to_string(full));
  Tensor sum = kiln::tensor(std::vector<int64_t>{mine});
  comm->all_reduce(sum, kd::ReduceOp::sum);
  expect(sum.item<int64_t>() >= full && sum.item<int64_t>() < full + 2 * 3 * w, "the shards add up");

  // Save: the index and one file per rank; the DDP reference writes its full checkpoint.
  const std::string index = dir + "/zero.safetensors", ref = dir + "/ddp.safetensors";
  fabric.save(index, {{"model", b}, {"optimizer", ob}, {"step", int64_t(3)}});
  if (r == 0) kiln::save_checkpoint(ref, {{"model", a}, {"optimizer", oa}, {"step", int64_t(3)}});
  comm->barrier();
  expect(kiln::is_sharded_checkpoint(index), "the path holds an index");
  auto shards = kiln::detail::checkpoint_shard_files(index);
  expect(int(shards.size()) == w, "one file per rank");
  for (auto& f : shards) expect(std::filesystem::exists(f), "shard file " + f);
  // Saving again replaces the files of the previous save.
  fabric.save(index, {{"model", b}, {"optimizer", ob}, {"step", int64_t(3)}});
  comm->barrier();
  for (auto& f : shards) expect(!std::filesystem::exists(f), "the previous save's shard is removed: " + f);
  shards = kiln::detail::checkpoint_shard_files(index);

  // A state without the sharded optimizer is one plain file, which replaces the index and its
  // shards; the index then comes back.
  fabric.save(dir + "/model_only.safetensors", {{"model", b}});
  comm->barrier();
  expect(!kiln::is_sharded_checkpoint(dir + "/model_only.safetensors") &&
             kiln::load_safetensors(dir + "/model_only.safetensors").tensors.count("model.fc1.weight"),
         "a model alone is saved as one file");
  fabric.save(index, {{"model", b}});
  comm->barrier();
  for (auto& f : shards) expect(!std::filesystem::exists(f), "a plain save removes the old shards: " + f);
  fabric.save(index, {{"model", b}, {"optimizer", ob}, {"step", int64_t(3)}});
  comm->barrier();
  shards = kiln::detail::checkpoint_shard_files(index);

  // Consolidated = the DDP checkpoint: the same names, values and metadata.
  if (r == 0) {
    kiln::consolidate_checkpoint(index, dir + "/full.safetensors");
    auto c = kiln::load_safetensors(dir + "/full.safetensors"), d = kiln::load_safetensors(ref);
    expect(c.tensors.size() == d.tensors.size(), "consolidated tensor count " + std::to_string(c.tensors.size()) +
                                                     " vs DDP " + std::to_string(d.tensors.size()));
    for (auto& [name, t] : d.tensors) {
      auto it = c.tensors.find(name);
      expect(it != c.tensors.end(), "consolidated has " + name);
      if (it == c.tensors.end()) continue;
      expect(it->second.sizes() == t.sizes() && it->second.dtype() == t.dtype(), name + " shape and dtype");
      expect(worst_relative(it->second, t) < 1e-12, name + " value");
    }
    expect(nlohmann::json::parse(c.metadata.at("kiln.state")) == nlohmann::json::parse(d.metadata.at("kiln.state")),
           "consolidated kiln.state " + c.metadata.at("kiln.state") + " vs DDP " + d.metadata.at("kiln.state"));
  }
  comm->barrier();

  // Resume: fresh objects load the shards and then train exactly as the original does. A third
  // set loads the consolidated file (a full checkpoint, cut into shards on load: the path a DDP
  // checkpoint takes, and it equals the DDP one, as checked above) and must match bit for bit too.
  kiln::manual_seed(7 + r);
  auto c = std::make_shared<Mlp>();
  auto oc = grouped_adamw(*c);
  std::tie(c, oc) = fabric.setup(c, oc);
  kiln::State sc{{"model", c}, {"optimizer", oc}, {"step", int64_t(0)}};
  fabric.load(index, sc);
  expect(std::get<int64_t>(sc["step"]) == 3, "plain values come back");
  kiln::manual_seed(8 + r);
  auto d = std::make_shared<Mlp>();
  auto od = grouped_adamw(*d);
  std::tie(d, od) = fabric.setup(d, od);
  kiln::State sd{{"model", d}, {"optimizer", od}};
  fabric.load(dir + "/full.safetensors", sd, /*strict=*/false);
  auto same_state = [&](kiln::optim::Optimizer& x, kiln::optim::Optimizer& y, const std::string& what) {
    auto tx = x.state_tensors(), ty = y.state_tensors();
    bool ok = tx.size() == ty.size();
    for (auto& [name, t] : tx) ok = ok && ty.count(name) && kiln::equal(t, ty.at(name));
    expect(ok, what);
  };
  same_state(*oc, *ob, "the shard state after a sharded load");
  same_state(*od, *ob, "the shard state after loading a full checkpoint");
  kiln::Generator saved = g;
  for (int step = 3; step < 5; ++step) train_step(step, b, ob, false);
  g = saved;
  for (int step = 3; step < 5; ++step) train_step(step, c, oc, false);
  g = saved;
  for (int step = 3; step < 5; ++step) train_step(step, d, od, false);
  close_to(*c, *b, 0, "resumed from the shards");
  close_to(*d, *b, 0, "resumed from the full checkpoint");

  // A sharded checkpoint of another world size (the 2-process run's, when this one has 3):
  // consolidated in memory and cut into this world's shards, exactly as its consolidated file is.
  if (const char* prev = std::getenv("KILN_TEST_PREV")) {
    auto f = std::make_shared<Mlp>(), h = std::make_shared<Mlp>();
    auto of = grouped_adamw(*f), oh = grouped_adamw(*h);
    std::tie(f, of) = fabric.setup(f, of);
    std::tie(h, oh) = fabric.setup(h, oh);
    kiln::State sf{{"model", f}, {"optimizer", of}}, sh{{"model", h}, {"optimizer", oh}};
    fabric.load(std::string(prev) + "/zero.safetensors", sf, /*strict=*/false);
    fabric.load(std::string(prev) + "/full.safetensors", sh, /*strict=*/false);
    expect(!of->state_tensors().empty(), "state loaded across world sizes");
    same_state(*of, *oh, "a 2-rank sharded checkpoint in a " + std::to_string(w) + "-rank run");
    close_to(*f, *h, 0, "model weights across world sizes");
  }

  // The sharded checkpoint loads without any process group too (consolidated in memory).
  if (r == 0) {
    auto e = std::make_shared<Mlp>();
    e->to(DType::f64);
    auto oe = grouped_adamw(*e);
    kiln::State se{{"model", e}, {"optimizer", oe}};
    kiln::load_checkpoint(index, se, /*strict=*/false);
    close_to(*e, *a, 1e-12, "a single process loads the sharded checkpoint");
    auto te = oe->state_tensors(), ta = oa->state_tensors();
    bool ok = te.size() == ta.size();
    for (auto& [name, t] : ta) ok = ok && te.count(name) && worst_relative(te.at(name), t) < 1e-12;
    expect(ok, "the consolidated optimizer state equals DDP's");
  }
  comm->barrier();

  // A bare loss.backward() is an error at that backward: the shards would never get the gradients.
  std::string msg;
  try {
    loss(*b, batch()).backward();
  } catch (const kiln::Error& e) { msg = e.what(); }
  expect(msg.find("requires you to call fabric.backward(loss)") != std::string::npos,
         "a bare loss.backward() is reported: " + msg);
  return g_failures ? 1 : 0;
}

// ---- The seed's loop written literally under strategy ddp or zero (KILN_TEST_STRATEGY): no
// fabric.step, the model called as model->forward(x), optimizer->step(); it equals today's explicit
// form through DistributedDataParallel. Then the other collectives of Fabric: broadcast of strings
// and JSON, rank_zero_first, and a loader's own sampler cut into disjoint shares. ----
int fabric_literal() {
  const char* s = std::getenv("KILN_TEST_STRATEGY");
  const std::string strategy = s ? s : "ddp";
  const std::string dir = std::getenv("KILN_TEST_OUT") ? std::getenv("KILN_TEST_OUT") : "/tmp";
  kiln::Fabric fabric({.accelerator = "cpu", .strategy = strategy, .timeout = std::chrono::seconds(30)});
  fabric.launch();
  auto comm = kd::default_communicator();
  const int r = fabric.global_rank(), w = fabric.world_size();
  g_rank = r;
  kiln::manual_seed(2000 + r);
  auto a = std::make_shared<Mlp>();
  kiln::manual_seed(2000 + r);
  auto b = std::make_shared<Mlp>();
  auto oa = grouped_adamw(*a), ob = grouped_adamw(*b);
  kd::DistributedDataParallel ddp(a, comm);
  std::tie(b, ob) = fabric.setup(b, ob);
  kiln::Generator g(21);
  for (int step = 0; step < 3; ++step) {
    auto x = kiln::randn({w * 3, 5}, {}, &g).narrow(0, r * 3, 3),
         y = kiln::randn({w * 3, 3}, {}, &g).narrow(0, r * 3, 3);
    oa->zero_grad();
    kiln::mse_loss(a->forward(x), y).backward();
    ddp.finalize();
    oa->step();

    ob->zero_grad();
    auto loss = kiln::mse_loss(b->forward(x), y);
    fabric.backward(loss);
    ob->step();
  }
  auto pa = a->parameters(), pb = b->parameters();
  double worst = 0;
  for (size_t k = 0; k < pa.size(); ++k) worst = std::max(worst, worst_relative(pb[k].detach(), pa[k].detach()));
  // ddp: the same reducer, bit for bit; zero: reduce-scatter may add in another order.
  expect(worst <= (strategy == "ddp" ? 0.0 : 1e-5),
         strategy + ": literal loop vs explicit DDP: relative difference " + std::to_string(worst));
  for (auto& p : pb) {
    Tensor all = comm->all_gather(p.detach());
    for (int q = 0; q < w; ++q) expect(kiln::equal(all[q], p.detach()), "parameters equal on every rank");
  }
  // A bare loss.backward() is an error at that backward.
  std::string msg;
  try {
    kiln::mse_loss(b->forward(kiln::randn({3, 5})), kiln::randn({3, 3})).backward();
  } catch (const kiln::Error& e) { msg = e.what(); }
  expect(msg.find("requires you to call fabric.backward(loss) instead of loss.backward()") != std::string::npos,
         "bare backward under " + strategy + ": " + msg);

  // broadcast of strings and JSON values from any rank.
  const int src = w - 1;
  expect(fabric.broadcast(r == src ? std::string("from the last rank") : std::string("?"), src) == "from the last rank",
         "broadcast of a string");
  nlohmann::json j = r == 0 ? nlohmann::json{{"classes", {"cat", "dog"}}, {"n", 2}} : nlohmann::json();
  expect(fabric.broadcast(j) == nlohmann::json{{"classes", {"cat", "dog"}}, {"n", 2}}, "broadcast of JSON");
  expect(fabric.broadcast(std::string()) == "", "broadcast of an empty string");

  // rank_zero_first: rank 0 writes, the others find the file when their turn comes.
  const std::string marker = dir + "/first_" + strategy;
  {
    auto first = fabric.rank_zero_first();
    if (r == 0)
      std::ofstream(marker) << "ready";
    else
      expect(std::filesystem::exists(marker), "rank 0 went first");
  }
  fabric.barrier();

  // A loader with a sampler of its own: each rank gets a disjoint share of its order.
  auto ds = std::make_shared<kiln::data::TensorDataset>(kiln::randn({10, 2}), kiln::arange(10.0));
  auto order = std::make_shared<kiln::data::SequentialSampler>(10);
  auto loader = fabric.setup_dataloaders(
      std::make_shared<kiln::data::DataLoader>(ds, kiln::data::DataLoaderOptions{.batch_size = 1, .sampler = order}));
  std::vector<int64_t> mine;
  for (auto& batch : *loader) mine.push_back(batch.target.item<int64_t>());
  const int64_t per_rank = (10 + w - 1) / w;
  expect(int64_t(mine.size()) == per_rank, "share size");
  for (size_t k = 0; k < mine.size(); ++k)
    expect(mine[k] == int64_t((size_t(r) + size_t(w) * k) % 10), "every w-th index of the sampler's order");
  Tensor all = comm->all_gather(kiln::tensor(mine));
  std::set<int64_t> seen;
  for (int64_t v : all.flatten().to_vector<int64_t>()) seen.insert(v);
  expect(seen.size() == 10, "the shares cover the dataset");
  // use_distributed_sampler = false: every rank sees everything.
  auto whole = fabric.setup_dataloaders(
      std::make_shared<kiln::data::DataLoader>(ds, kiln::data::DataLoaderOptions{.batch_size = 10}),
      {.use_distributed_sampler = false});
  expect(whole->size() == 1 && (*whole->begin()).target.numel() == 10, "use_distributed_sampler = false");
  return g_failures ? 1 : 0;
}

// A rank dies mid-training (in all-reduce or the reduce-scatter ring); the others must end with
// an error quickly. SIGTERM is ignored so the
// supervisor's stop does not hide whether the survivors fail on their own.
int crash(bool reduce_scatter) {
  ::signal(SIGTERM, SIG_IGN);
  auto comm = kd::init_process_group(options(std::chrono::seconds(20)));
  int r = comm->rank(), w = comm->world_size();
  g_rank = r;
  Tensor t = kiln::ones({1000 * w});
  comm->all_reduce(t);
  if (r == w - 1) ::_exit(3);
  std::string out = std::getenv("KILN_TEST_OUT") ? std::getenv("KILN_TEST_OUT") : "/tmp";
  try {
    for (int i = 0; i < 100000; ++i) {
      if (reduce_scatter)
        comm->reduce_scatter(t);
      else
        comm->all_reduce(t);
    }
  } catch (const kiln::Error& e) {
    std::ofstream(out + "/rank" + std::to_string(r) + ".err") << e.what();
    return 7;
  }
  return 1;
}

// Debug mode: ranks calling different collectives get an error naming the call and the ranks.
int out_of_step() {
  auto o = options();
  o.debug = true;
  auto comm = kd::init_process_group(o);
  int r = comm->rank();
  g_rank = r;
  std::string msg;
  try {
    if (r == 0) {
      comm->barrier();
    } else {
      Tensor t = kiln::ones({4});
      comm->all_reduce(t);
    }
  } catch (const kiln::Error& e) { msg = e.what(); }
  expect(msg.find("out of step") != std::string::npos, "out-of-step error, got: " + msg);
  expect(msg.find("barrier") != std::string::npos && msg.find("all_reduce") != std::string::npos,
         "the error names both calls: " + msg);
  // Now rank 0 alone reaches a barrier: it must name the missing ranks.
  if (r == 0) {
    comm->set_timeout(std::chrono::milliseconds(1500));
    msg.clear();
    try {
      comm->barrier();
    } catch (const kiln::Error& e) { msg = e.what(); }
    expect(msg.find("ranks [1") != std::string::npos, "names the missing ranks, got: " + msg);
  }
  return g_failures ? 1 : 0;
}

// What kiln's launchers give every rank: the job token, and OMP_NUM_THREADS (KILN_TEST_EXPECT_OMP
// says which value) applied to kiln's own thread count.
void check_launched_env() {
  const char* token = std::getenv("KILN_STORE_TOKEN");
  expect(token && std::string(token).size() == 32 &&
             std::string(token).find_first_not_of("0123456789abcdef") == std::string::npos,
         std::string("a 32-hex-digit KILN_STORE_TOKEN, got ") + (token ? token : "none"));
  if (const char* want = std::getenv("KILN_TEST_EXPECT_OMP")) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    std::string w = want, got = omp ? omp : "unset";
    expect(got == w, "OMP_NUM_THREADS=" + w + ", got " + got);
    expect(kiln::get_num_threads() == std::atoi(want),
           "kiln::get_num_threads() == " + w + ", got " + std::to_string(kiln::get_num_threads()));
  }
}

int env_check() {
  auto env = kd::detect_environment();
  g_rank = env ? env->rank : -1;
  check_launched_env();
  // The ranks rendezvous through the store, which admits only the job's token.
  auto comm = kd::init_process_group(*env, options());
  Tensor t = kiln::ones({2});
  comm->all_reduce(t);
  expect_values(t, {double(env->world_size), double(env->world_size)}, "all_reduce after the token check");
  return g_failures ? 1 : 0;
}

// Started by `kiln-run --accelerator cpu --devices 2 --strategy ddp --precision bf16-mixed`: a
// Fabric built with its defaults takes those options from LT_* and joins the two-process job.
int fabric_env() {
  kiln::Fabric fabric;
  fabric.launch();
  g_rank = fabric.global_rank();
  if (fabric.world_size() != 2 || fabric.strategy() != "ddp" || fabric.precision() != "bf16-mixed" ||
      !fabric.device().is_cpu()) {
    std::cerr << "rank " << g_rank << ": fabric from LT_*: world " << fabric.world_size() << ", strategy "
              << fabric.strategy() << ", precision " << fabric.precision() << ", device " << fabric.device() << "\n";
    return 1;
  }
  Tensor t = fabric.all_reduce(kiln::ones({2}), "sum");
  expect_values(t, {2, 2}, "all_reduce of the LT_* job");
  return g_failures ? 1 : 0;
}

// Data-parallel SGD steps until the network fails (or 10 minutes pass): the test cuts the link
// between two nodes and expects each rank to end with a named error. Writes the last finished
// step to KILN_TEST_OUT/progress<rank>.
int train_until_cut() {
  auto comm = kd::init_process_group(options());
  int r = comm->rank();
  g_rank = r;
  std::string out = std::getenv("KILN_TEST_OUT") ? std::getenv("KILN_TEST_OUT") : "/tmp";
  auto params = make_params(1);
  kd::broadcast_tensors(*comm, params, 0);
  kd::Reducer reducer(comm, params);
  kiln::Generator data(100 + uint64_t(r));
  auto o = kiln::TensorOptions{.dtype = DType::f64};
  auto start = std::chrono::steady_clock::now();
  int step = 0;
  try {
    while (std::chrono::steady_clock::now() - start < std::chrono::minutes(10)) {
      loss_of(params, kiln::randn({16, 4}, o, &data), kiln::randn({16, 3}, o, &data)).backward();
      reducer.finalize();
      {
        kiln::NoGradGuard ng;
        for (auto& p : params) {
          p.add_(p.grad(), -0.01);
          p.mutable_grad() = Tensor();
        }
      }
      ++step;
      std::ofstream(out + "/progress" + std::to_string(r)) << step << "\n";
      ::usleep(20000);
    }
  } catch (const kiln::Error& e) {
    std::cerr << "rank " << r << " after step " << step << ": " << e.what() << "\n";
    return 3;
  }
  return 1;
}

// Serves a store with a soft limit of 64 descriptors until a client sets "stop"; writes its port
// and then its counters (accepted, evicted, refused for want of descriptors) to KILN_TEST_OUT.
int store_serve() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = 64;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  std::string out = std::getenv("KILN_TEST_OUT") ? std::getenv("KILN_TEST_OUT") : "/tmp";
  const char* token = std::getenv("KILN_STORE_TOKEN");
  kd::TCPStore server("127.0.0.1", 0,
                      kd::TCPStoreOptions{.is_server = true,
                                          .timeout = std::chrono::seconds(120),
                                          .token = token ? token : "",
                                          .handshake_timeout = std::chrono::seconds(60)});
  {
    std::ofstream tmp(out + "/port.tmp");
    tmp << server.port() << "\n";
  }
  std::filesystem::rename(out + "/port.tmp", out + "/port");
  server.wait({"stop"});
  auto st = *server.server_stats();
  std::ofstream(out + "/stats") << st.accepted << " " << st.closed_evicted << " " << st.refused_descriptors << "\n";
  return 0;
}

// launch() re-executes this program: the outer process becomes rank 0.
int launched(bool fail_rank2) {
  // The outer process stands for a program started by hand: no launcher's variables (and, when
  // the test checks launch()'s own choice, no OMP_NUM_THREADS).
  if (!std::getenv("KILN_TEST_CHILD")) {
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
                          "MASTER_ADDR", "MASTER_PORT"})
      ::unsetenv(v);
    if (std::getenv("KILN_TEST_EXPECT_OMP")) ::unsetenv("OMP_NUM_THREADS");
  }
  auto env = kd::launch(3, {.extra_env = {{"KILN_TEST_CHILD", "1"}}});
  g_rank = env.rank;
  check_launched_env();
  auto comm = kd::init_process_group(env, options());
  expect(comm->world_size() == 3, "world size 3");
  Tensor t = kiln::full({3}, double(env.rank));
  if (fail_rank2) {
    Tensor warm = kiln::ones({3});
    comm->all_reduce(warm);
    if (env.rank == 2) return 5;
  }
  try {
    for (int i = 0; i < (fail_rank2 ? 100000 : 1); ++i) comm->all_reduce(t);
  } catch (const kiln::Error& e) {
    std::string m = e.what();
    if (env.rank == 0) {
      // The error may come from the store or Gloo; the launcher's exit status is what counts.
      // On a loaded machine the watcher may take a while to see rank 2 go.
      std::cerr << "rank 0 saw: " << m << "\n";
      for (int i = 0; i < 6000 && kd::launched_worker_exit_code() == 0; ++i) ::usleep(10000);
      return kd::launched_worker_exit_code();
    }
    // Rank 1 waits to be stopped: exiting now could make it, not rank 2, the first failure the
    // watcher sees when both exits land in one wake-up.
    if (fail_rank2) ::pause();
    return 1;
  }
  expect_values(t, {3, 3, 3}, "launched all_reduce");
  return g_failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::function<int()>> scenarios = {
      {"collectives", collectives},
      {"ddp", ddp},
      {"cnn", cnn},
      {"zero", zero},
      {"zero2", zero2},
      {"zero2_errors", zero2_errors},
      {"fabric_zero", fabric_zero},
      {"fabric_literal", fabric_literal},
      {"crash", [] { return crash(false); }},
      {"crash_reduce_scatter", [] { return crash(true); }},
      {"out_of_step", out_of_step},
      {"env_check", env_check},
      {"fabric_env", fabric_env},
      {"store_serve", store_serve},
      {"train_until_cut", train_until_cut},
      {"launch", [] { return launched(false); }},
      {"launch_fail", [] { return launched(true); }},
  };
  if (argc < 2 || !scenarios.count(argv[1])) {
    std::cerr << "usage: kiln_dist_worker <scenario>; scenarios:";
    for (const auto& [name, fn] : scenarios) std::cerr << " " << name;
    std::cerr << "\n";
    return 2;
  }
  try {
    return scenarios[argv[1]]();
  } catch (const std::exception& e) {
    std::cerr << "rank " << g_rank << ": " << argv[1] << ": " << e.what() << "\n";
    return 1;
  }
}
