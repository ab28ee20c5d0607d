// The NCCL communicator on a real GPU, in a world of one (a one-GPU machine cannot hold two NCCL
// ranks): every collective and dtype against hand-computed results, non-contiguous tensors,
// errors for CPU tensors, and backend "auto" routing CPU tensors to Gloo and CUDA tensors to NCCL.
// Without a GPU the cases report themselves skipped.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "distributed/distributed.h"
#include "kiln.h"

using namespace kiln;
namespace kd = kiln::distributed;
using namespace std::chrono_literals;

namespace {

bool nccl_missing() {
  static const bool missing = [] {
    bool m = !kd::nccl_is_built() || !cuda::is_available();
    if (m)
      std::fprintf(stderr, "gpu suite (nccl): %s; its NCCL cases are reported as skipped\n",
                   kd::nccl_is_built() ? "no CUDA device" : "kiln was built without NCCL");
    return m;
  }();
  return missing;
}

std::vector<double> values(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>();
}

}  // namespace

TEST_CASE("gpu: NCCL collectives in a world of one, every dtype" * doctest::skip(nccl_missing())) {
  auto store = std::make_shared<kd::TCPStore>("127.0.0.1", 0, true, 30s);
  auto comm = kd::make_nccl_communicator(store, 0, 1, {.timeout = 30s});
  CHECK(comm->backend() == "nccl");
  const Device gpu = Device::cuda(0);
  for (DType d : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64}) {
    CAPTURE(d);
    for (auto op : {kd::ReduceOp::sum, kd::ReduceOp::avg, kd::ReduceOp::max, kd::ReduceOp::min}) {
      Tensor t = tensor(std::vector<double>{1, -2, 3, 7}).to(gpu, d);
      comm->all_reduce(t, op);
      CHECK(t.device() == gpu);
      CHECK(values(t) == std::vector<double>{1, -2, 3, 7});
    }
    Tensor b = tensor(std::vector<double>{4, 5, 6}).to(gpu, d);
    comm->broadcast(b, 0);
    CHECK(values(b) == std::vector<double>{4, 5, 6});
    Tensor g = comm->all_gather(tensor(std::vector<double>{1, 2, 3}).to(gpu, d));
    CHECK(g.sizes() == Shape{1, 3});
    CHECK(values(g) == std::vector<double>{1, 2, 3});
    Tensor rs = comm->reduce_scatter(tensor(std::vector<double>{1, 2, 3, 4}).reshape({2, 2}).to(gpu, d));
    CHECK(rs.sizes() == Shape{2, 2});
    CHECK(values(rs) == std::vector<double>{1, 2, 3, 4});
  }
  // A non-contiguous view is reduced in place through a contiguous copy.
  Tensor m = arange(6, {.dtype = DType::f32}).reshape({2, 3}).to(gpu);
  Tensor col = m.transpose(0, 1);
  comm->all_reduce(col, kd::ReduceOp::sum);
  CHECK(values(m) == std::vector<double>{0, 1, 2, 3, 4, 5});
  comm->barrier();
  Tensor big = ones({(1 << 20) + 7}, {.dtype = DType::f32, .device = gpu});
  comm->all_reduce(big, kd::ReduceOp::sum);
  CHECK(big.sum().item<double>() == double((1 << 20) + 7));

  Tensor host = tensor(std::vector<float>{1});
  CHECK_THROWS_WITH_AS(comm->all_reduce(host), doctest::Contains("handles CUDA tensors"), Error);
  Tensor b = zeros({2}, {.dtype = DType::f32, .device = gpu});
  CHECK_THROWS_WITH_AS(comm->broadcast(b, 1), doctest::Contains("src rank 1"), Error);
  Tensor u8 = zeros({2}, {.dtype = DType::u8, .device = gpu});
  CHECK_THROWS_WITH_AS(comm->all_reduce(u8), doctest::Contains("is not supported"), Error);
}

TEST_CASE("gpu: backend \"auto\" sends CPU tensors to Gloo and CUDA tensors to NCCL" * doctest::skip(nccl_missing())) {
  auto comm = kd::init_process_group({.backend = "auto", .timeout = 30s});
  CHECK(comm->backend() == "cpu:gloo,cuda:nccl");
  Tensor c = tensor(std::vector<float>{1, 2});
  comm->all_reduce(c, kd::ReduceOp::avg);
  CHECK(values(c) == std::vector<double>{1, 2});
  Tensor g = tensor(std::vector<float>{3, 4}).to(Device::cuda(0));
  comm->all_reduce(g, kd::ReduceOp::avg);
  CHECK(g.device() == Device::cuda(0));
  CHECK(values(g) == std::vector<double>{3, 4});
  CHECK(values(comm->all_gather(g)) == std::vector<double>{3, 4});
  comm->barrier();
  kd::destroy_process_group();
}
