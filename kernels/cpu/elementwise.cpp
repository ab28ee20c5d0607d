// CPU elementwise kernels: copies with casts, fills, unary and binary maps, where, random numbers.
// Each op is a small functor instantiated into the strided loop of loops.h, so the switch on the
// op runs once per call, not once per element; dense operands become one flat loop.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/bf16_ops.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/simd_bf16.h"
#include "kernels/cpu/vmath.h"
#include "kernels/random_draw.h"

namespace kiln::kernels {

Backend& cpu_backend() {
  static cpu::CpuBackend backend;
  return backend;
}

namespace {
std::atomic<bool> g_deterministic{false};
}
void set_deterministic(bool on) { g_deterministic.store(on, std::memory_order_relaxed); }
bool deterministic() { return g_deterministic.load(std::memory_order_relaxed); }
namespace {
std::atomic<bool> g_conv_tf32{false};
}
void set_conv_tf32(bool on) { g_conv_tf32.store(on, std::memory_order_relaxed); }
bool conv_tf32() { return g_conv_tf32.load(std::memory_order_relaxed); }

namespace cpu {

namespace {

// Large blocks are cached by size instead of going back to glibc, which unmaps them at every free
// and so makes each training step fault in and zero its activations afresh. Blocks of 1 MiB and
// up are rounded to 64 KiB and kept on a free list per size, up to 1 GiB in all; smaller ones use
// malloc directly (its own free lists already serve them well).
class LargeBlockCache {
 public:
  static constexpr size_t kMin = size_t(1) << 20, kGrain = size_t(64) << 10;
  static constexpr size_t kMaxCached = size_t(1) << 30;
  static size_t rounded(size_t nbytes) {
    return nbytes >= kMin ? (nbytes + kGrain - 1) & ~(kGrain - 1) : (nbytes + 63) & ~size_t(63);
  }
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= size;
    return p;
  }
  bool give(void* p, size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_ + size > kMaxCached) return false;
    free_[size].push_back(p);
    cached_ += size;
    return true;
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

// Never destroyed: tensors with static lifetime may free their storage after it would have been.
LargeBlockCache& large_blocks() {
  static LargeBlockCache* cache = new LargeBlockCache;
  return *cache;
}

std::atomic<size_t> g_allocated{0}, g_peak{0};
std::atomic<uint64_t> g_num_allocs{0};

void count_allocation(size_t size) {
  const size_t now = g_allocated.fetch_add(size, std::memory_order_relaxed) + size;
  size_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {}
  g_num_allocs.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void* CpuBackend::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  // 64-byte alignment: whole cache lines and full AVX-512 vectors.
  const size_t size = LargeBlockCache::rounded(nbytes);
  void* p = size >= LargeBlockCache::kMin ? large_blocks().take(size) : nullptr;
  if (!p) p = std::aligned_alloc(64, size);
  KILN_CHECK(p, "out of CPU memory: could not allocate ", nbytes, " bytes");
  count_allocation(size);
  return p;
}
void CpuBackend::deallocate(void* ptr, size_t nbytes) {
  if (!ptr) return;
  const size_t size = LargeBlockCache::rounded(nbytes);
  g_allocated.fetch_sub(size, std::memory_order_relaxed);
  if (size >= LargeBlockCache::kMin && large_blocks().give(ptr, size)) return;
  std::free(ptr);
}

}  // namespace cpu

CpuMemoryStats cpu_memory_stats() { return {cpu::g_allocated.load(), cpu::g_peak.load(), cpu::g_num_allocs.load()}; }
void reset_cpu_peak_memory() { cpu::g_peak.store(cpu::g_allocated.load()); }

namespace cpu {
void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}
void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}

namespace {

// bf16 runs: bf16 <-> f32 conversions 16 lanes at a time (bf16_ops.h) around the op applied to f32
// chunks that stay in L1, instead of one scalar conversion per element.
template <class T>
constexpr bool is_bf16_or_f32_v = std::is_same_v<T, BFloat16> || std::is_same_v<T, float>;
template <class O, class I>
constexpr bool bf16_chunked_v = (std::is_same_v<O, BFloat16> ||
                                 std::is_same_v<I, BFloat16>)&&is_bf16_or_f32_v<O>&& is_bf16_or_f32_v<I>;
constexpr int64_t kChunk = 512;

// Points at n f32 values of p: p itself, or its bf16 values converted into buf.
template <class I>
const float* as_f32(const I* p, int64_t n, float* buf) {
  if constexpr (std::is_same_v<I, BFloat16>) {
    bf16_to_f32(p, buf, n);
    return buf;
  } else {
    (void)n, (void)buf;
    return p;
  }
}
// Where the f32 results go before the store: the output itself when it is f32.
template <class O>
float* f32_out(O* p, float* buf) {
  if constexpr (std::is_same_v<O, BFloat16>)
    return buf;
  else
    return (void)buf, p;
}
template <class O>
void store_f32(O* p, const float* buf, int64_t n) {
  if constexpr (std::is_same_v<O, BFloat16>)
    f32_to_bf16(buf, p, n);
  else
    (void)p, (void)buf, (void)n;
}

// The chunk loops below, compiled twice: for the baseline ISA and for AVX-512, where the op
// (inlined from its lambda) vectorises 16 lanes wide along with the conversions.
#define KILN_BF16_CHUNK_LOOPS(SUFFIX, ATTR)                                                                    \
  template <class O, class I, class F>                                                                         \
  ATTR void map1_bf16_##SUFFIX(O* po, const I* pa, int64_t n, F& f) {                                          \
    alignas(64) float in[kChunk], out[kChunk];                                                                 \
    for (int64_t s = 0; s < n; s += kChunk) {                                                                  \
      const int64_t len = std::min(kChunk, n - s);                                                             \
      const float* x = as_f32(pa + s, len, in);                                                                \
      float* y = f32_out(po + s, out);                                                                         \
      for (int64_t i = 0; i < len; ++i) y[i] = float(f(x[i]));                                                 \
      store_f32(po + s, out, len);                                                                             \
    }                                                                                                          \
  }                                                                                                            \
  /* st_x, st_y: 1 (dense) or 0 (a broadcast scalar). */                                                       \
  template <class O, class I, class F>                                                                         \
  ATTR void map2_bf16_##SUFFIX(O* po, const I* pa, const I* pb, int64_t st_x, int64_t st_y, int64_t n, F& f) { \
    alignas(64) float xa[kChunk], ya[kChunk], out[kChunk];                                                     \
    const float sx = float(pa[0]), sy = float(pb[0]);                                                          \
    for (int64_t s = 0; s < n; s += kChunk) {                                                                  \
      const int64_t len = std::min(kChunk, n - s);                                                             \
      float* z = f32_out(po + s, out);                                                                         \
      if (st_x && st_y) {                                                                                      \
        const float* x = as_f32(pa + s, len, xa);                                                              \
        const float* y = as_f32(pb + s, len, ya);                                                              \
        for (int64_t i = 0; i < len; ++i) z[i] = float(f(x[i], y[i]));                                         \
      } else if (st_x) {                                                                                       \
        const float* x = as_f32(pa + s, len, xa);                                                              \
        for (int64_t i = 0; i < len; ++i) z[i] = float(f(x[i], sy));                                           \
      } else {                                                                                                 \
        const float* y = as_f32(pb + s, len, ya);                                                              \
        for (int64_t i = 0; i < len; ++i) z[i] = float(f(sx, y[i]));                                           \
      }                                                                                                        \
      store_f32(po + s, out, len);                                                                             \
    }                                                                                                          \
  }
KILN_BF16_CHUNK_LOOPS(generic, )
KILN_BF16_CHUNK_LOOPS(avx512, KILN_TARGET_AVX512)
#undef KILN_BF16_CHUNK_LOOPS

bool bf16_loops_avx512() {
  static const bool yes = isa_enabled(Isa::avx512);
  return yes;
}

template <class O, class I, class F>
void map1_bf16(O* po, const I* pa, int64_t n, F& f) {
  if (bf16_loops_avx512())
    map1_bf16_avx512(po, pa, n, f);
  else
    map1_bf16_generic(po, pa, n, f);
}
template <class O, class I, class F>
void map2_bf16(O* po, const I* pa, const I* pb, int64_t st_x, int64_t st_y, int64_t n, F& f) {
  if (bf16_loops_avx512())
    map2_bf16_avx512(po, pa, pb, st_x, st_y, n, f);
  else
    map2_bf16_generic(po, pa, pb, st_x, st_y, n, f);
}

template <class O, class I, class F>
void map1(const View& out, const View& in, F f) {
  const View* vs[2] = {&out, &in};
  auto g = coalesce<2>(vs);
  O* o = out.ptr<O>();
  const I* a = in.ptr<I>();
  for_each_run<2>(g, [&](const int64_t* off, int64_t n, const int64_t* st) {
    O* po = o + off[0];
    const I* pa = a + off[1];
    if (st[0] == 1 && st[1] == 1) {
      if constexpr (bf16_chunked_v<O, I>) return map1_bf16(po, pa, n, f);
      for (int64_t i = 0; i < n; ++i) po[i] = O(f(compute_t<I>(pa[i])));
    } else {
      for (int64_t i = 0; i < n; ++i) po[i * st[0]] = O(f(compute_t<I>(pa[i * st[1]])));
    }
  });
}

template <class O, class I, class F>
void map2(const View& out, const View& x, const View& y, F f) {
  const View* vs[3] = {&out, &x, &y};
  auto g = coalesce<3>(vs);
  O* o = out.ptr<O>();
  const I* a = x.ptr<I>();
  const I* b = y.ptr<I>();
  for_each_run<3>(g, [&](const int64_t* off, int64_t n, const int64_t* st) {
    O* po = o + off[0];
    const I* pa = a + off[1];
    const I* pb = b + off[2];
    using C = compute_t<I>;
    if constexpr (bf16_chunked_v<O, I>) {
      if (st[0] == 1 && st[1] + st[2] >= 1 && st[1] <= 1 && st[2] <= 1)
        return map2_bf16(po, pa, pb, st[1], st[2], n, f);
    }
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) po[i] = O(f(C(pa[i]), C(pb[i])));
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
      const C s = C(pb[0]);
      for (int64_t i = 0; i < n; ++i) po[i] = O(f(C(pa[i]), s));
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const C s = C(pa[0]);
      for (int64_t i = 0; i < n; ++i) po[i] = O(f(s, C(pb[i])));
    } else {
      for (int64_t i = 0; i < n; ++i) po[i * st[0]] = O(f(C(pa[i * st[1]]), C(pb[i * st[2]])));
    }
  });
}

template <class T>
constexpr bool is_float_v = std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

constexpr double kSqrt1_2 = 0.70710678118654752440;

constexpr double kSqrt2OverPi = 0.79788456080286535588;

template <class T>
void unary_typed(UnaryOp op, const View& out, const View& in, double a, double b) {
  using C = compute_t<T>;
  if constexpr (std::is_same_v<T, float>) {
    if (op == UnaryOp::gelu && out.is_contiguous() && in.is_contiguous() && in.numel() == out.numel())
      return gelu_f32(out.ptr<float>(), in.ptr<float>(), out.numel());
  }
  const C ca = C(a), cb = C(b);
  switch (op) {
    case UnaryOp::neg: return map1<T, T>(out, in, [](C x) { return C(-x); });
    case UnaryOp::abs: return map1<T, T>(out, in, [](C x) { return x < C(0) ? C(-x) : x; });
    case UnaryOp::square: return map1<T, T>(out, in, [](C x) { return C(x * x); });
    case UnaryOp::sign: return map1<T, T>(out, in, [](C x) { return C((x > C(0)) - (x < C(0))); });
    case UnaryOp::affine: return map1<T, T>(out, in, [=](C x) { return C(ca * x + cb); });
    case UnaryOp::clamp: {
      const bool has_lo = !std::isnan(a), has_hi = !std::isnan(b);
      return map1<T, T>(out, in, [=](C x) {
        if constexpr (is_float_v<T>) {
          if (x != x) return x;  // NaN passes through, as in PyTorch
        }
        if (has_lo && x < ca) x = ca;
        if (has_hi && x > cb) x = cb;
        return x;
      });
    }
    case UnaryOp::relu: return map1<T, T>(out, in, [](C x) { return x > C(0) ? x : C(0); });
    case UnaryOp::logical_not: return map1<T, T>(out, in, [](C x) { return C(!x); });
    default: break;
  }
  if constexpr (is_float_v<T>) {
    switch (op) {
      case UnaryOp::exp: return map1<T, T>(out, in, [](C x) { return std::exp(x); });
      case UnaryOp::log: return map1<T, T>(out, in, [](C x) { return std::log(x); });
      case UnaryOp::sqrt: return map1<T, T>(out, in, [](C x) { return std::sqrt(x); });
      case UnaryOp::rsqrt: return map1<T, T>(out, in, [](C x) { return C(1) / std::sqrt(x); });
      case UnaryOp::reciprocal: return map1<T, T>(out, in, [](C x) { return C(1) / x; });
      case UnaryOp::sigmoid: return map1<T, T>(out, in, [](C x) { return C(1) / (C(1) + std::exp(-x)); });
      case UnaryOp::tanh: return map1<T, T>(out, in, [](C x) { return std::tanh(x); });
      case UnaryOp::sin: return map1<T, T>(out, in, [](C x) { return std::sin(x); });
      case UnaryOp::cos: return map1<T, T>(out, in, [](C x) { return std::cos(x); });
      case UnaryOp::silu: return map1<T, T>(out, in, [](C x) { return x / (C(1) + std::exp(-x)); });
      case UnaryOp::gelu:
        return map1<T, T>(out, in, [](C x) { return C(0.5) * x * (C(1) + std::erf(x * C(kSqrt1_2))); });
      case UnaryOp::gelu_tanh:
        return map1<T, T>(out, in, [](C x) {
          C inner = C(kSqrt2OverPi) * (x + C(0.044715) * x * x * x);
          return C(0.5) * x * (C(1) + std::tanh(inner));
        });
      case UnaryOp::leaky_relu: return map1<T, T>(out, in, [=](C x) { return x > C(0) ? x : x * ca; });
      case UnaryOp::pow_scalar:
        if (a == 2.0) return map1<T, T>(out, in, [](C x) { return x * x; });
        if (a == 0.5) return map1<T, T>(out, in, [](C x) { return std::sqrt(x); });
        return map1<T, T>(out, in, [=](C x) { return C(std::pow(x, ca)); });
      default: break;
    }
  }
  fail("unary kernel: op ", int(op), " is not defined for dtype ", dtype_name(in.dtype));
}

template <class T>
void binary_typed(BinaryOp op, const View& out, const View& x, const View& y, double alpha, double beta) {
  using C = compute_t<T>;
  const C al = C(alpha), be = C(beta);
  if constexpr (std::is_same_v<T, float>) {
    if (op == BinaryOp::gelu_backward && out.is_contiguous() && x.is_contiguous() && y.is_contiguous() &&
        x.numel() == out.numel() && y.numel() == out.numel())
      return gelu_backward_f32(out.ptr<float>(), x.ptr<float>(), y.ptr<float>(), out.numel());
  }
  switch (op) {
    case BinaryOp::add: return map2<T, T>(out, x, y, [](C a, C b) { return C(a + b); });
    case BinaryOp::sub: return map2<T, T>(out, x, y, [](C a, C b) { return C(a - b); });
    case BinaryOp::mul: return map2<T, T>(out, x, y, [](C a, C b) { return C(a * b); });
    case BinaryOp::add_scaled: return map2<T, T>(out, x, y, [=](C a, C b) { return C(a + al * b); });
    case BinaryOp::maximum:
      return map2<T, T>(out, x, y, [](C a, C b) {
        if constexpr (is_float_v<T>) {
          if (a != a || b != b) return std::numeric_limits<C>::quiet_NaN();
        }
        return a > b ? a : b;
      });
    case BinaryOp::minimum:
      return map2<T, T>(out, x, y, [](C a, C b) {
        if constexpr (is_float_v<T>) {
          if (a != a || b != b) return std::numeric_limits<C>::quiet_NaN();
        }
        return a < b ? a : b;
      });
    case BinaryOp::eq: return map2<bool, T>(out, x, y, [](C a, C b) { return a == b; });
    case BinaryOp::ne: return map2<bool, T>(out, x, y, [](C a, C b) { return a != b; });
    case BinaryOp::lt: return map2<bool, T>(out, x, y, [](C a, C b) { return a < b; });
    case BinaryOp::le: return map2<bool, T>(out, x, y, [](C a, C b) { return a <= b; });
    case BinaryOp::gt: return map2<bool, T>(out, x, y, [](C a, C b) { return a > b; });
    case BinaryOp::ge: return map2<bool, T>(out, x, y, [](C a, C b) { return a >= b; });
    case BinaryOp::logical_and: return map2<bool, T>(out, x, y, [](C a, C b) { return a && b; });
    case BinaryOp::logical_or: return map2<bool, T>(out, x, y, [](C a, C b) { return a || b; });
    case BinaryOp::div:
      if constexpr (is_float_v<T>) return map2<T, T>(out, x, y, [](C a, C b) { return a / b; });
      break;
    default: break;
  }
  if constexpr (is_float_v<T>) {
    switch (op) {
      case BinaryOp::pow: return map2<T, T>(out, x, y, [](C a, C b) { return C(std::pow(a, b)); });
      case BinaryOp::relu_backward: return map2<T, T>(out, x, y, [](C g, C v) { return v > C(0) ? g : C(0); });
      case BinaryOp::leaky_relu_backward:
        return map2<T, T>(out, x, y, [=](C g, C v) { return v > C(0) ? g : C(g * al); });
      case BinaryOp::gelu_backward:
        return map2<T, T>(out, x, y, [](C g, C v) {
          C cdf = C(0.5) * (C(1) + std::erf(v * C(kSqrt1_2)));
          C pdf = std::exp(C(-0.5) * v * v) * C(0.39894228040143267794);
          return g * (cdf + v * pdf);
        });
      case BinaryOp::gelu_tanh_backward:
        return map2<T, T>(out, x, y, [](C g, C v) {
          C k = C(kSqrt2OverPi);
          C inner = k * (v + C(0.044715) * v * v * v);
          C t = std::tanh(inner);
          C dinner = k * (C(1) + C(3 * 0.044715) * v * v);
          return g * (C(0.5) * (C(1) + t) + C(0.5) * v * (C(1) - t * t) * dinner);
        });
      case BinaryOp::sigmoid_backward: return map2<T, T>(out, x, y, [](C g, C s) { return g * s * (C(1) - s); });
      case BinaryOp::tanh_backward: return map2<T, T>(out, x, y, [](C g, C t) { return g * (C(1) - t * t); });
      case BinaryOp::silu_backward:
        return map2<T, T>(out, x, y, [](C g, C v) {
          const C s = C(1) / (C(1) + std::exp(-v));
          return g * s * (C(1) + v * (C(1) - s));
        });
      case BinaryOp::clamp_backward: {
        const bool has_lo = !std::isnan(alpha), has_hi = !std::isnan(beta);
        return map2<T, T>(out, x, y, [=](C g, C v) {
          bool pass = (!has_lo || v >= al) && (!has_hi || v <= be);
          return pass ? g : C(0);
        });
      }
      default: break;
    }
  } else if (op == BinaryOp::div) {
    // Integer division is refused by core (PyTorch's true division promotes to float).
  }
  fail("binary kernel: op ", int(op), " is not defined for dtype ", dtype_name(x.dtype));
}

// Runs f(start, count) over [0, n) in one chunk per thread (one chunk for small n).
template <class F>
void dense_chunks(int64_t n, F&& f) {
  parallel_chunks(n, threads_for(n), [&](int64_t b, int64_t e) { f(b, e - b); });
}

}  // namespace

void CpuBackend::copy(const View& out, const View& in) {
  KILN_DISPATCH_ALL(out.dtype, "copy", [&](auto otag) {
    using O = decltype(otag);
    KILN_DISPATCH_ALL(in.dtype, "copy", [&](auto itag) {
      using I = decltype(itag);
      if constexpr (std::is_same_v<O, I>) {
        if (out.is_contiguous() && in.is_contiguous()) {
          std::memcpy(out.data, in.data, size_t(out.numel()) * sizeof(O));
          return;
        }
      }
      if constexpr (std::is_same_v<O, bool>) {
        map1<O, I>(out, in, [](auto v) { return v != decltype(v)(0); });
      } else if constexpr (std::is_same_v<O, Half> || std::is_same_v<O, BFloat16>) {
        map1<O, I>(out, in, [](auto v) { return float(v); });
      } else {
        map1<O, I>(out, in, [](auto v) { return O(v); });
      }
    });
  });
}

void CpuBackend::fill(const View& out, double value) {
  KILN_DISPATCH_ALL(out.dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    const T v = T(compute_t<T>(value));
    const View* vs[1] = {&out};
    auto g = coalesce<1>(vs);
    T* o = out.ptr<T>();
    for_each_run<1>(g, [&](const int64_t* off, int64_t n, const int64_t* st) {
      T* p = o + off[0];
      for (int64_t i = 0; i < n; ++i) p[i * st[0]] = v;
    });
  });
}

void CpuBackend::arange(const View& out, double start, double step) {
  KILN_DISPATCH_ALL(out.dtype, "arange", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.ptr<T>();
    const int64_t n = out.numel();
    for (int64_t i = 0; i < n; ++i) o[i] = T(compute_t<T>(start + double(i) * step));
  });
}

void CpuBackend::unary(UnaryOp op, const View& out, const View& in, double a, double b) {
  KILN_DISPATCH_ALL(in.dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      if (op == UnaryOp::logical_not) return map1<bool, bool>(out, in, [](bool x) { return !x; });
      fail("unary kernel: op ", int(op), " is not defined for bool");
    } else {
      if constexpr (std::is_same_v<T, BFloat16>) {
        if (op == UnaryOp::relu && out.is_contiguous() && in.is_contiguous())
          return dense_chunks(out.numel(),
                              [&](int64_t s, int64_t n) { bf16_relu(in.ptr<T>() + s, out.ptr<T>() + s, n); });
      }
      unary_typed<T>(op, out, in, a, b);
    }
  });
}

void CpuBackend::binary(BinaryOp op, const View& out, const View& x, const View& y, double alpha, double beta) {
  KILN_DISPATCH_ALL(x.dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      switch (op) {
        case BinaryOp::logical_and:
        case BinaryOp::mul: return map2<bool, bool>(out, x, y, [](bool a, bool b) { return a && b; });
        case BinaryOp::logical_or:
        case BinaryOp::add: return map2<bool, bool>(out, x, y, [](bool a, bool b) { return a || b; });
        case BinaryOp::eq: return map2<bool, bool>(out, x, y, [](bool a, bool b) { return a == b; });
        case BinaryOp::ne: return map2<bool, bool>(out, x, y, [](bool a, bool b) { return a != b; });
        default: fail("binary kernel: op ", int(op), " is not defined for bool");
      }
    } else {
      if constexpr (std::is_same_v<T, BFloat16>) {
        if (op == BinaryOp::relu_backward && out.is_contiguous() && x.is_contiguous() && y.is_contiguous() &&
            x.numel() == out.numel() && y.numel() == out.numel())
          return dense_chunks(out.numel(), [&](int64_t s, int64_t n) {
            bf16_relu_backward(x.ptr<T>() + s, y.ptr<T>() + s, out.ptr<T>() + s, n);
          });
      }
      binary_typed<T>(op, out, x, y, alpha, beta);
    }
  });
}

void CpuBackend::where(const View& out, const View& cond, const View& x, const View& y) {
  KILN_DISPATCH_ALL(out.dtype, "where", [&](auto tag) {
    using T = decltype(tag);
    const View* vs[4] = {&out, &cond, &x, &y};
    auto g = coalesce<4>(vs);
    T* o = out.ptr<T>();
    const bool* c = cond.ptr<bool>();
    const T* a = x.ptr<T>();
    const T* b = y.ptr<T>();
    for_each_run<4>(g, [&](const int64_t* off, int64_t n, const int64_t* st) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * st[0]] = c[off[1] + i * st[1]] ? a[off[2] + i * st[2]] : b[off[3] + i * st[3]];
    });
  });
}

namespace {

// One Philox block per four elements (random_draw per element would compute each block four
// times); the kind is a template argument, so the loop carries no switch, and normal draws take
// each Box-Muller pair's logarithm, square root and angle once for both of its elements.
template <RandomKind K, class T>
void random_blocks(T* o, int64_t n, uint64_t seed, uint64_t offset, double a, double b) {
  parallel_chunks((n + 3) / 4, threads_for(n), [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const Philox4 r = philox4x32_10(seed, offset + uint64_t(j));
      double v[4];
      if constexpr (K == RandomKind::normal) {
        float z[4];
        normal_pair_from_block(r, 0, z[0], z[1]);
        normal_pair_from_block(r, 1, z[2], z[3]);
        for (int l = 0; l < 4; ++l) v[l] = a + b * double(z[l]);
      } else {
        for (unsigned l = 0; l < 4; ++l) v[l] = draw_from_block(K, r, l, a, b);
      }
      const int64_t i0 = 4 * j, m = std::min<int64_t>(4, n - i0);
      for (int64_t l = 0; l < m; ++l) o[i0 + l] = T(compute_t<T>(v[l]));
    }
  });
}

template <class T>
void random_typed(RandomKind kind, T* o, int64_t n, uint64_t seed, uint64_t offset, double a, double b) {
  switch (kind) {
    case RandomKind::uniform: return random_blocks<RandomKind::uniform>(o, n, seed, offset, a, b);
    case RandomKind::normal: return random_blocks<RandomKind::normal>(o, n, seed, offset, a, b);
    case RandomKind::randint: return random_blocks<RandomKind::randint>(o, n, seed, offset, a, b);
    case RandomKind::bernoulli: return random_blocks<RandomKind::bernoulli>(o, n, seed, offset, a, b);
  }
}

}  // namespace

void CpuBackend::random(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b) {
  KILN_CHECK(out.is_contiguous(), "random kernel: expected a dense output");
  KILN_DISPATCH_ALL(out.dtype, "random", [&](auto tag) {
    using T = decltype(tag);
    random_typed<T>(kind, out.ptr<T>(), out.numel(), seed, offset, a, b);
  });
}

}  // namespace cpu
}  // namespace kiln::kernels
