// Devices, streams, events and pinned memory on a real GPU: guards and current streams, event
// ordering between streams and timing, pinned round trips at odd sizes in both directions, a
// non-blocking copy's pinned source not reused while the copy is still queued, and DataLoader
// batches that arrive pinned. Without a GPU every case reports itself skipped.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "gpu_helpers.h"

using namespace kiln;
using namespace kiln::gpu_test;

namespace {

// Enough work on the current stream to keep the GPU busy for tens of milliseconds, so that what
// is queued after it is certainly still pending when the host looks.
Tensor busy_work(int rounds = 24) {
  Tensor a = randn({4096, 4096}, {.device = kGpu});
  Tensor acc = a;
  for (int i = 0; i < rounds; ++i) acc = matmul(acc, a) * (1.0 / 64);
  return acc;
}

}  // namespace

TEST_CASE("gpu: devices, guards, default and current streams" * doctest::skip(gpu_missing())) {
  CHECK(cuda::device_count() >= 1);
  CHECK(cuda::current_device() == 0);
  {
    cuda::DeviceGuard on(0);
    CHECK(cuda::current_device() == 0);
  }
  CHECK_THROWS_WITH_AS(cuda::set_device(cuda::device_count()), doctest::Contains("does not exist"), Error);
  CHECK_THROWS_AS(cuda::DeviceGuard(Device::cpu()), Error);

  cuda::Stream def = cuda::default_stream();
  CHECK(cuda::current_stream() == def);
  CHECK(def.device() == kGpu);
  cuda::Stream side = cuda::Stream::create();
  CHECK_FALSE(side == def);
  Tensor x = rnd({1 << 16}).to(kGpu);
  Tensor y;
  {
    cuda::StreamGuard on(side);
    CHECK(cuda::current_stream() == side);
    cuda::current_stream().wait([&] {
      cuda::Event e;
      e.record(def);  // x was written on the default stream
      return e;
    }());
    y = x * 2.0;  // queued on `side`
  }
  CHECK(cuda::current_stream() == def);
  side.synchronize();
  CHECK(side.query());
  expect_close(y, x.to(kCpu) * 2.0, 0, 0, "work queued on a side stream");
  cuda::Stream high = cuda::Stream::create(0, /*high_priority=*/true);
  high.synchronize();
  cuda::synchronize(0);
  cuda::synchronize();
}

TEST_CASE("gpu: events order work between streams and time it" * doctest::skip(gpu_missing())) {
  cuda::Stream side = cuda::Stream::create();
  const int64_t n = (int64_t(1) << 24) + 3;
  Tensor x = rnd({n}).to(kGpu);
  cuda::Event x_ready;
  x_ready.record();
  Tensor y;
  cuda::Event y_ready;
  {
    cuda::StreamGuard on(side);
    side.wait(x_ready);
    busy_work(8);  // delays y on the side stream
    y = x * 3.0;
    y_ready.record();
  }
  CHECK(y_ready.is_recorded());
  // Without this wait the default stream could read y before the side stream wrote it.
  cuda::current_stream().wait(y_ready);
  Tensor z = y + 1.0;
  expect_close(z, x.to(kCpu) * 3.0 + 1.0, 1e-6, 1e-6, "ordered by an event");
  y_ready.synchronize();
  CHECK(y_ready.query());

  cuda::Event start(true), stop(true);
  start.record();
  busy_work(4);
  stop.record();
  stop.synchronize();
  const float ms = start.elapsed_time(stop);
  MESSAGE("4 f32 4096^3 matmuls: " << ms << " ms");
  CHECK(ms > 0);
  cuda::Event untimed;
  untimed.record();
  CHECK_THROWS_WITH_AS(untimed.elapsed_time(stop), doctest::Contains("enable_timing"), Error);
  cuda::Event never(true);
  CHECK_THROWS_WITH_AS(start.elapsed_time(never), doctest::Contains("recorded"), Error);
  // Moving keeps the recorded event.
  cuda::Event moved = std::move(stop);
  CHECK(moved.is_recorded());
  CHECK(moved.query());
}

TEST_CASE("gpu: pinned memory round trips, blocking and not, at odd sizes" * doctest::skip(gpu_missing())) {
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::i64, DType::u8}) {
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(3), int64_t(1023), (int64_t(1) << 20) + 7}) {
      const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
      Tensor x = t == DType::u8 ? randint(0, 256, {n}, {.dtype = DType::u8}) : rnd({n}).mul_(50).to(t);
      CHECK_FALSE(x.is_pinned());
      Tensor p = x.pin_memory();
      CHECK(p.device() == kCpu);
      if (n > 0) CHECK(p.is_pinned());
      CHECK(p.pin_memory().is_same(p) == (n > 0));
      expect_close(p, x, 0, 0, what + " pinned copy");

      Tensor g = p.to(kGpu, /*non_blocking=*/true);
      Tensor back = g.to(kCpu, /*non_blocking=*/true);
      if (n > 0) CHECK(back.is_pinned());
      cuda::current_stream().synchronize();
      expect_close(back, x, 0, 0, what + " async round trip");

      expect_close(p.to(kGpu), x, 0, 0, what + " blocking copy from pinned memory");
      Tensor dst = zeros({n}, {.dtype = t, .device = kGpu});
      dst.copy_(p, /*non_blocking=*/true);
      expect_close(dst, x, 0, 0, what + " copy_ non_blocking");
    }
  }
  // A strided view pins as a dense copy.
  Tensor m = rnd({7, 5});
  Tensor pt = m.t().pin_memory();
  CHECK(pt.is_contiguous());
  expect_close(pt, m.t(), 0, 0, "transposed view pinned");
  CHECK(cuda::host_memory_stats().reserved > 0);
}

TEST_CASE("gpu: a pinned source is not reused while its asynchronous copy is queued" * doctest::skip(gpu_missing())) {
  const int64_t n = int64_t(16) << 20;  // 64 MiB of f32
  Tensor x = rnd({n});
  Tensor pinned = x.pin_memory();
  const void* block = pinned.raw_data();

  busy_work();  // the copy below waits behind this
  Tensor g = pinned.to(kGpu, /*non_blocking=*/true);
  cuda::Event copied;
  copied.record();
  pinned = Tensor();  // freed at once, while the copy is still queued
  const bool still_queued = !copied.query();
  MESSAGE("copy still queued when its source was freed: " << still_queued);
  if (still_queued) CHECK(cuda::host_memory_stats().in_flight_blocks >= 1);

  // A new pinned tensor of the same size must not get the block the copy still reads.
  Tensor other = zeros({n}).pin_memory();
  if (still_queued) CHECK(other.raw_data() != block);
  other.fill_(-1.0);  // would corrupt the copy if it shared the block
  copied.synchronize();
  expect_close(g, x, 0, 0, "async copy after its source was freed and memory reallocated");

  // Once the copy has finished, its block is reused: no new page-locked allocation.
  other = Tensor();
  const uint64_t allocs = cuda::host_memory_stats().num_host_allocs;
  Tensor again = zeros({n}).pin_memory();
  Tensor and_again = zeros({n}).pin_memory();
  CHECK(cuda::host_memory_stats().in_flight_blocks == 0);
  CHECK(cuda::host_memory_stats().num_host_allocs == allocs);
}

TEST_CASE("gpu: DataLoader pin_memory=true gives pinned batches that copy asynchronously" *
          doctest::skip(gpu_missing())) {
  Tensor data = rnd({37, 3, 8, 8});
  Tensor target = arange(37.0);
  auto ds = std::make_shared<data::TensorDataset>(data, target);
  for (int workers : {0, 2}) {
    data::DataLoader loader(ds, {.batch_size = 8, .num_workers = workers, .pin_memory = true});
    int64_t seen = 0;
    for (auto& [x, y] : loader) {
      CHECK(x.is_pinned());
      CHECK(y.is_pinned());
      Tensor xg = x.to(kGpu, true), yg = y.to(kGpu, true);
      expect_close(xg, data.narrow(0, seen, x.size(0)), 0, 0, "pinned batch");
      expect_close(yg, target.narrow(0, seen, x.size(0)), 0, 0, "pinned targets");
      seen += x.size(0);
    }
    CHECK(seen == 37);
  }
  data::DataLoader plain(ds, {.batch_size = 8});
  CHECK_FALSE((*plain.begin()).data.is_pinned());
}

TEST_CASE("gpu: memory statistics and empty_cache through kiln::cuda" * doctest::skip(gpu_missing())) {
  Tensor big = empty({int64_t(8) << 20}, {.device = kGpu});
  cuda::MemoryStats s = cuda::memory_stats();
  CHECK(s.allocated >= size_t(32) << 20);
  CHECK(s.reserved >= s.allocated);
  CHECK(cuda::memory_stats(0).reserved == s.reserved);
  big = Tensor();
  cuda::synchronize();
  cuda::empty_cache();
  CHECK(cuda::memory_stats().reserved <= s.reserved);
  CHECK_THROWS_AS(cuda::memory_stats(cuda::device_count()), Error);
}
