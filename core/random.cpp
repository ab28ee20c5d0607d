// Random numbers: generators (Philox counters), kiln's default generator, and the random
// factories and in-place fills.
#include <mutex>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/ops/internal.h"
#include "kernels/philox.h"

namespace kiln {

namespace {
std::mutex& default_generator_mutex() {
  static std::mutex m;
  return m;
}
uint64_t reserve(Generator* gen, uint64_t numel) {
  const uint64_t counters = (numel + 3) / 4;
  if (gen) return gen->advance(counters);
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  return default_generator().advance(counters);
}
uint64_t seed_of(Generator* gen) { return gen ? gen->seed() : default_generator().seed(); }
}  // namespace

std::pair<uint64_t, uint64_t> detail::philox_reserve(Generator* gen, uint64_t counters) {
  if (gen) {
    const uint64_t seed = gen->seed();
    return {seed, gen->advance(counters)};
  }
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  const uint64_t seed = default_generator().seed();
  return {seed, default_generator().advance(counters)};
}

namespace {

Tensor random_tensor(kernels::RandomKind kind, Shape shape, TensorOptions o, Generator* gen, double a, double b) {
  Tensor t = detail::make_empty(shape, o.dtype, o.device);
  if (t.numel()) {
    uint64_t seed = seed_of(gen);
    uint64_t offset = reserve(gen, uint64_t(t.numel()));
    detail::backend(o.device).random(kind, detail::view_of(t), seed, offset, a, b);
  }
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}
}  // namespace

void Generator::manual_seed(uint64_t seed) {
  seed_ = seed;
  offset_ = 0;
}
uint64_t Generator::advance(uint64_t counters) {
  uint64_t first = offset_;
  offset_ += counters;
  return first;
}
uint64_t Generator::next_u64() {
  kernels::Philox4 r = kernels::philox4x32_10(seed_, advance(1));
  return (uint64_t(r.v[0]) << 32) | r.v[1];
}
double Generator::next_double() { return double(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
int64_t Generator::randint(int64_t low, int64_t high) {
  KILN_CHECK(high > low, "randint: empty range [", low, ", ", high, ")");
  return low + int64_t(next_u64() % uint64_t(high - low));
}

Generator& default_generator() {
  static Generator gen(0x5eed);
  return gen;
}
void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  default_generator().manual_seed(seed);
}
uint64_t initial_seed() { return default_generator().seed(); }

Tensor rand(Shape shape, TensorOptions o, Generator* gen) {
  KILN_CHECK(is_floating(o.dtype), "rand: expected a floating dtype, got ", o.dtype);
  return random_tensor(kernels::RandomKind::uniform, std::move(shape), o, gen, 0.0, 1.0);
}
Tensor randn(Shape shape, TensorOptions o, Generator* gen) {
  KILN_CHECK(is_floating(o.dtype), "randn: expected a floating dtype, got ", o.dtype);
  return random_tensor(kernels::RandomKind::normal, std::move(shape), o, gen, 0.0, 1.0);
}
Tensor randint(int64_t low, int64_t high, Shape shape, TensorOptions o, Generator* gen) {
  KILN_CHECK(high > low, "randint: expected low < high, got [", low, ", ", high, ")");
  return random_tensor(kernels::RandomKind::randint, std::move(shape), o, gen, double(low), double(high));
}
Tensor rand_like(const Tensor& t) { return rand(t.sizes(), t.options()); }
Tensor randn_like(const Tensor& t) { return randn(t.sizes(), t.options()); }
Tensor bernoulli(Shape shape, double p, TensorOptions o, Generator* gen) {
  KILN_CHECK(p >= 0 && p <= 1, "bernoulli: probability must be in [0, 1], got ", p);
  return random_tensor(kernels::RandomKind::bernoulli, std::move(shape), o, gen, p, 0.0);
}
Tensor& uniform_(Tensor& t, double low, double high, Generator* gen) {
  Tensor r = random_tensor(kernels::RandomKind::uniform, t.sizes(), t.options(), gen, low, high);
  NoGradGuard g;
  return t.copy_(r);
}
Tensor& normal_(Tensor& t, double mean, double std, Generator* gen) {
  Tensor r = random_tensor(kernels::RandomKind::normal, t.sizes(), t.options(), gen, mean, std);
  NoGradGuard g;
  return t.copy_(r);
}
Tensor randperm(int64_t n, Generator* gen) {
  KILN_CHECK(n >= 0, "randperm: n must be non-negative, got ", n);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
  Generator& g = gen ? *gen : default_generator();
  std::unique_lock<std::mutex> lock(default_generator_mutex(), std::defer_lock);
  if (!gen) lock.lock();
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[size_t(i)], v[size_t(g.randint(0, i + 1))]);
  return tensor(v);
}

}  // namespace kiln
