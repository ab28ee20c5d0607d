// GradScaler: skipping on inf/NaN with backoff, growth after clean steps, unscaled gradients equal
// the unscaled computation, state round trip, option errors.
#include <cmath>
#include <limits>

#include "helpers.h"
#include "optim/grad_scaler.h"
#include "optim/sgd.h"

using namespace kiln;
using kiln::optim::GradScaler;

TEST_CASE("an injected inf skips the step and halves the scale") {
  auto w = ones({3}, {.requires_grad = true});
  optim::SGD opt({w}, 0.1);
  GradScaler scaler;
  auto loss = (w * tensor(std::vector<float>{1, std::numeric_limits<float>::infinity(), 1})).sum();
  scaler.scale(loss).backward();
  CHECK_FALSE(scaler.step(opt));
  scaler.update();
  kiln::test::check_values(w, {1, 1, 1});  // untouched
  CHECK(scaler.get_scale() == 32768.0);
  CHECK(scaler.growth_tracker() == 0);
}

TEST_CASE("growth_interval clean steps double the scale") {
  auto w = ones({2}, {.requires_grad = true});
  optim::SGD opt({w}, 0.0);
  GradScaler scaler({.init_scale = 8.0, .growth_interval = 2000});
  for (int i = 0; i < 2000; ++i) {
    opt.zero_grad();
    scaler.scale(w.sum()).backward();
    CHECK(scaler.step(opt));
    scaler.update();
    if (i == 1998) CHECK(scaler.get_scale() == 8.0);
  }
  CHECK(scaler.get_scale() == 16.0);
  CHECK(scaler.growth_tracker() == 0);
}

TEST_CASE("unscaled float16 gradients equal float32 gradients to float16 precision") {
  manual_seed(0);
  auto x = randn({16, 8});
  auto w32 = randn({4, 8}, {.requires_grad = true});
  auto w16 = w32.detach().to(DType::f16).requires_grad_(true);
  kiln::mse_loss(kiln::linear(x, w32), zeros({16, 4})).backward();
  optim::SGD opt({w16}, 0.0);
  GradScaler scaler({.init_scale = 1024.0});  // 65536 would overflow these float16 gradients
  auto loss16 = kiln::mse_loss(kiln::linear(x.to(DType::f16), w16).to(DType::f32), zeros({16, 4}));
  scaler.scale(loss16).backward();
  scaler.unscale_(opt);
  kiln::test::check_close(w16.grad().to(DType::f32), w32.grad(), 1e-2, 1e-3);
  CHECK_THROWS_AS(scaler.unscale_(opt), Error);  // once per step
  CHECK(scaler.step(opt));
  scaler.update();
}

TEST_CASE("state round trip and option checks") {
  GradScaler a({.init_scale = 1024.0, .growth_interval = 10});
  auto s = a.state_dict();
  GradScaler b;
  b.load_state_dict(s);
  CHECK(b.get_scale() == 1024.0);
  CHECK(b.options().growth_interval == 10);
  CHECK_THROWS_AS(GradScaler({.init_scale = -1}), Error);
  CHECK_THROWS_AS(GradScaler({.backoff_factor = 1.5}), Error);
  CHECK_THROWS_AS(b.load_state_dict({{"scale", 2.0}}), Error);
  GradScaler off({.enabled = false});
  auto w = ones({1}, {.requires_grad = true});
  CHECK(off.scale(w).is_same(w));
}
