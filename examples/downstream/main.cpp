// Fits y = 3x - 1 with kiln's tensors and autograd, using only the installed headers and library.
#include <kiln/kiln.h>

#include <iostream>

int main() {
  kiln::manual_seed(0);
  auto x = kiln::rand({64, 1});
  auto y = x * 3.0 - 1.0;
  auto w = kiln::zeros({1, 1}, {.requires_grad = true});
  auto b = kiln::zeros({1}, {.requires_grad = true});
  for (int step = 0; step < 500; ++step) {
    auto loss = kiln::mse_loss(kiln::linear(x, w, b), y);
    loss.backward();
    kiln::NoGradGuard no_grad;
    w.sub_(w.grad() * 0.5);
    b.sub_(b.grad() * 0.5);
    w.grad().zero_();
    b.grad().zero_();
  }
  std::cout << "w=" << w.item<float>() << " b=" << b.item<float>() << "\n";
  bool ok = std::abs(w.item<float>() - 3) < 1e-2 && std::abs(b.item<float>() + 1) < 1e-2;
  return ok ? 0 : 1;
}
