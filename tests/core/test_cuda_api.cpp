// kiln::cuda and the pinned-memory API where there is no GPU (this build without CUDA, or a
// machine without a device): every call that needs one is a kiln::Error that says what is missing
// and to check kiln::cuda::is_available(); the calls that make sense anyway (is_available,
// synchronize, empty_cache, is_pinned, non_blocking copies) quietly do the ordinary thing. On a
// machine with a GPU these cases are skipped (the gpu suite covers that side).
#include <doctest/doctest.h>

#include <string>

#include "kiln.h"

using namespace kiln;

namespace {

bool has_gpu() { return cuda::is_available(); }

template <class F>
void expect_no_gpu_error(F&& f, const std::string& what) {
  try {
    f();
    FAIL_CHECK(what << ": expected a kiln::Error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(what << ": " << msg);
    CHECK(msg.find(what) != std::string::npos);
    CHECK(msg.find("kiln::cuda::is_available()") != std::string::npos);
    const bool says_why = msg.find("no CUDA backend") != std::string::npos ||
                          msg.find("no CUDA GPU") != std::string::npos || msg.find("has none") != std::string::npos;
    CHECK(says_why);
  }
}

}  // namespace

TEST_CASE("cuda API without a GPU: clear errors, harmless no-ops" * doctest::skip(has_gpu())) {
  CHECK_FALSE(cuda::is_available());
  CHECK(cuda::device_count() == 0);
  CHECK_NOTHROW(cuda::synchronize());
  CHECK_NOTHROW(cuda::empty_cache());

  expect_no_gpu_error([] { cuda::current_device(); }, "current_device");
  expect_no_gpu_error([] { cuda::set_device(0); }, "set_device");
  expect_no_gpu_error([] { cuda::synchronize(0); }, "synchronize");
  expect_no_gpu_error([] { cuda::DeviceGuard g(0); }, "current_device");
  expect_no_gpu_error([] { cuda::Stream::create(); }, "Stream::create");
  expect_no_gpu_error([] { cuda::current_stream(); }, "current_stream");
  expect_no_gpu_error([] { cuda::default_stream(); }, "default_stream");
  expect_no_gpu_error([] { cuda::memory_stats(); }, "memory_stats");
  expect_no_gpu_error([] { cuda::host_memory_stats(); }, "host_memory_stats");
  expect_no_gpu_error(
      [] {
        cuda::Event e;
        e.record();
      },
      "current_stream");

  // An event that was never recorded is complete and waits for nothing, as in PyTorch.
  cuda::Event e(/*enable_timing=*/true);
  CHECK_FALSE(e.is_recorded());
  CHECK(e.query());
  CHECK_NOTHROW(e.synchronize());
  cuda::Event moved = std::move(e);
  CHECK_FALSE(moved.is_recorded());

  Tensor x = arange(6.0, {.dtype = DType::f32});
  CHECK_FALSE(x.is_pinned());
  expect_no_gpu_error([&] { x.pin_memory(); }, "pin_memory");
  // Copies that cannot be asynchronous without a GPU stay ordinary ones.
  Tensor y = x.to(Device::cpu(), /*non_blocking=*/true);
  CHECK(y.is_same(x));
  Tensor z = zeros({6});
  z.copy_(x, /*non_blocking=*/true);
  CHECK(z.to_vector<float>() == x.to_vector<float>());
  CHECK_THROWS_AS(x.to(Device::cuda(0), true), Error);
}
