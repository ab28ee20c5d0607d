// PyTorch spellings that a port carries over as they are: comparison and compound-assignment
// operators, ops as Tensor methods with integer dims, braced-list tensors, item() as a double,
// printing through ADL, and the README's short tour as written. The code here sits outside
// namespace kiln on purpose (no using-directive), as a user's does.
#include <sstream>

#include "helpers.h"

TEST_CASE("idioms: comparisons and logical operators give bool tensors") {
  auto x = kiln::tensor({-1.0, 0.0, 2.0});
  auto y = kiln::tensor({0.0, 0.0, 3.0});
  CHECK((x > 0).dtype() == kiln::DType::boolean);
  CHECK((x > 0).to_vector<bool>() == std::vector<bool>{false, false, true});
  CHECK((x >= 0).to_vector<bool>() == std::vector<bool>{false, true, true});
  CHECK((x == y).to_vector<bool>() == std::vector<bool>{false, true, false});
  CHECK((x != y).to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK((x < y).to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK((0 < x).to_vector<bool>() == std::vector<bool>{false, false, true});
  CHECK(((x > -2) & (x < 1)).to_vector<bool>() == std::vector<bool>{true, true, false});
  CHECK(((x < 0) | (x > 1)).to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK((~(x > 0)).to_vector<bool>() == std::vector<bool>{true, true, false});
  CHECK(((x > 0) ^ (y > 0)).to_vector<bool>() == std::vector<bool>{false, false, false});
  CHECK_THROWS_WITH_AS(x & y, doctest::Contains("bool tensors"), kiln::Error);
}

TEST_CASE("idioms: compound assignment works in place, through views too") {
  auto x = kiln::ones({2, 3});
  auto alias = x;
  x *= 2;
  x += kiln::tensor({1.0, 2.0, 3.0});
  x -= 1;
  x /= 2;
  CHECK(alias.to_vector<float>() == std::vector<float>{1, 1.5, 2, 1, 1.5, 2});
  x[0] *= 0;  // a view writes through
  CHECK(x.to_vector<float>() == std::vector<float>{0, 0, 0, 1, 1.5, 2});
  auto w = kiln::ones({2}, {.requires_grad = true});
  CHECK_THROWS_WITH_AS(w *= 2, doctest::Contains("leaf"), kiln::Error);
}

TEST_CASE("idioms: methods beside the free functions, with integer dims") {
  auto x = kiln::tensor({{1.0, 5.0, 3.0}, {4.0, 2.0, 6.0}});
  CHECK(x.sum(-1).to_vector<float>() == std::vector<float>{9, 12});
  CHECK(x.sum(0, true).sizes() == kiln::Shape{1, 3});
  CHECK(x.mean(1).to_vector<float>() == std::vector<float>{3, 4});
  CHECK(x.amax(-1).to_vector<float>() == std::vector<float>{5, 6});
  CHECK(x.amin(0).to_vector<float>() == std::vector<float>{1, 2, 3});
  CHECK(kiln::sum(x, 1).to_vector<float>() == std::vector<float>{9, 12});
  CHECK(x.argmax().item<int64_t>() == 5);
  CHECK(x.argmax(1).to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  auto [values, indices] = x.max(1);
  CHECK(values.to_vector<float>() == std::vector<float>{5, 6});
  CHECK(indices.to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  kiln::test::check_close(x.softmax(-1).sum(-1), kiln::ones({2}));
  kiln::test::check_close(x.log_softmax(1).exp(), x.softmax(1));
  CHECK(x.masked_fill(x > 4, 0.0).to_vector<float>() == std::vector<float>{1, 0, 3, 4, 2, 0});
  CHECK(x.view(3, 2).sizes() == kiln::Shape{3, 2});
  CHECK(x.view(-1).sizes() == kiln::Shape{6});
  CHECK(x.reshape(1, -1).sizes() == kiln::Shape{1, 6});
  CHECK(x.permute(1, 0).sizes() == kiln::Shape{3, 2});
  CHECK(x.unsqueeze(0).expand(4, 2, 3).sizes() == kiln::Shape{4, 2, 3});
  CHECK(x.to(kiln::DType::f64).dtype() == kiln::DType::f64);
  CHECK(x.var(1).to_vector<float>() == std::vector<float>{4, 4});
  CHECK(x.tril().to_vector<float>() == std::vector<float>{1, 0, 0, 4, 2, 0});
  CHECK(x.shape() == x.sizes());
}

TEST_CASE("idioms: tensor({...}) infers PyTorch's dtypes; item() is a double") {
  CHECK(kiln::tensor({1, 2, 3}).dtype() == kiln::DType::i64);
  CHECK(kiln::tensor({0.5, 1.0}).dtype() == kiln::DType::f32);
  CHECK(kiln::tensor({true, false}).dtype() == kiln::DType::boolean);
  auto m = kiln::tensor({{1, 2}, {3, 4}});
  CHECK(m.sizes() == kiln::Shape{2, 2});
  CHECK(m.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 4});
  auto d = kiln::tensor({1, 2}, {.dtype = kiln::DType::f64, .requires_grad = true});
  CHECK(d.dtype() == kiln::DType::f64);
  CHECK(d.requires_grad());
  CHECK_THROWS_WITH_AS(kiln::tensor({{1.0, 2.0}, {3.0}}), doctest::Contains("rows of different lengths"), kiln::Error);
  double v = kiln::tensor({2.5}).item();
  CHECK(v == 2.5);
  CHECK(kiln::tensor({7}).item<int64_t>() == 7);
}

TEST_CASE("idioms: shapes and tensors print through std::cout by argument-dependent lookup") {
  std::ostringstream os;
  os << kiln::zeros({2, 3}).sizes();
  CHECK(os.str() == "[2, 3]");
  std::ostringstream ts;
  ts << kiln::tensor({1, 2});
  CHECK(ts.str().find("tensor([1, 2]") == 0);
}

TEST_CASE("README: the short tour compiles and runs as written") {
  std::ostringstream cout;  // stands in for std::cout
  // ---- begin README tour ----
  kiln::manual_seed(0);                  // Philox: same seed, same bits
  auto x = kiln::randn({8, 3, 32, 32});  // NCHW, float32, on the CPU
  auto w = kiln::randn({16, 3, 3, 3}, {.requires_grad = true});
  auto y = kiln::relu(kiln::conv2d(x, w, {}, {1, 1}, {1, 1}));
  auto loss = kiln::cross_entropy(y.flatten(1).narrow(1, 0, 10), kiln::randint(0, 10, {8}));
  loss.backward();  // w.grad() now holds dloss/dw
  {
    kiln::NoGradGuard no_grad;  // nothing is recorded in here
    w.sub_(w.grad() * 0.1);
  }
  cout << w.grad().sizes() << "\n";  // [16, 3, 3, 3]
  // ---- end README tour ----
  CHECK(cout.str() == "[16, 3, 3, 3]\n");
}
