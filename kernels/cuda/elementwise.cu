// Elementwise CUDA kernels: casts/copies, fills, arange, unary and binary maps, where, and
// Philox random numbers. Each reads every input element once and writes each output once, so
// they are bound by memory bandwidth: dense operands (maps, fill, where) run a flat grid-stride
// loop with 16-byte packed loads and stores (8 halves or bfloat16s, 4 floats; scalar tail),
// anything strided or broadcast runs an index-decoding loop over dims coalesced on the host.
// arange and random only write, element by element. The op is a uniform switch inside the
// functor (cheap next to the memory traffic, and one kernel per dtype keeps compile time down).
// Math is in f32 for f16/bf16, in the type itself otherwise, as on the CPU.
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/random_draw.h"

namespace kiln::kernels::cuda {
namespace {

// ---------------------------------------------------------------- generic map kernels

template <class O, class I, int N, class F>
__global__ void map1_dense(O* __restrict__ o, const I* __restrict__ a, int64_t n, F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t nvec = n / N;
  for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += stride) {
    Pack<I, N> in = reinterpret_cast<const Pack<I, N>*>(a)[v];
    Pack<O, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) out.v[j] = f(in.v[j]);
    reinterpret_cast<Pack<O, N>*>(o)[v] = out;
  }
  for (int64_t i = nvec * N + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) o[i] = f(a[i]);
}

template <class O, class I, class F>
__global__ void map1_strided(O* o, const I* a, Strided<2> g, F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.numel; i += stride) {
    int64_t off[2];
    g.offsets(i, off);
    o[off[0]] = f(a[off[1]]);
  }
}

// f maps a storage value of I to a storage value of O.
template <class O, class I, class F>
void map1(const View& out, const View& in, F f) {
  bool dense = false;
  const View* vs[2] = {&out, &in};
  Strided<2> g = coalesce<2>(vs, &dense);
  if (g.numel == 0) return;
  O* o = out.ptr<O>();
  const I* a = in.ptr<I>();
  cudaStream_t s = current_stream();
  if (dense) {
    constexpr int N = 16 / (sizeof(O) > sizeof(I) ? sizeof(O) : sizeof(I));
    if (N > 1 && aligned16(o) && aligned16(a)) {
      map1_dense<O, I, N><<<grid_for(g.numel, N), kThreads, 0, s>>>(o, a, g.numel, f);
    } else {
      map1_dense<O, I, 1><<<grid_for(g.numel), kThreads, 0, s>>>(o, a, g.numel, f);
    }
  } else {
    map1_strided<O, I><<<grid_for(g.numel), kThreads, 0, s>>>(o, a, g, f);
  }
  KILN_LAUNCH_CHECK("map1");
}

template <class O, class I, int N, class F>
__global__ void map2_dense(O* __restrict__ o, const I* __restrict__ a, const I* __restrict__ b, int64_t n, F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t nvec = n / N;
  for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += stride) {
    Pack<I, N> x = reinterpret_cast<const Pack<I, N>*>(a)[v];
    Pack<I, N> y = reinterpret_cast<const Pack<I, N>*>(b)[v];
    Pack<O, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) out.v[j] = f(x.v[j], y.v[j]);
    reinterpret_cast<Pack<O, N>*>(o)[v] = out;
  }
  for (int64_t i = nvec * N + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) o[i] = f(a[i], b[i]);
}

template <class O, class I, class F>
__global__ void map2_strided(O* o, const I* a, const I* b, Strided<3> g, F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.numel; i += stride) {
    int64_t off[3];
    g.offsets(i, off);
    o[off[0]] = f(a[off[1]], b[off[2]]);
  }
}

template <class O, class I, class F>
void map2(const View& out, const View& x, const View& y, F f) {
  bool dense = false;
  const View* vs[3] = {&out, &x, &y};
  Strided<3> g = coalesce<3>(vs, &dense);
  if (g.numel == 0) return;
  O* o = out.ptr<O>();
  const I* a = x.ptr<I>();
  const I* b = y.ptr<I>();
  cudaStream_t s = current_stream();
  if (dense) {
    constexpr int N = 16 / (sizeof(O) > sizeof(I) ? sizeof(O) : sizeof(I));
    if (N > 1 && aligned16(o) && aligned16(a) && aligned16(b)) {
      map2_dense<O, I, N><<<grid_for(g.numel, N), kThreads, 0, s>>>(o, a, b, g.numel, f);
    } else {
      map2_dense<O, I, 1><<<grid_for(g.numel), kThreads, 0, s>>>(o, a, b, g.numel, f);
    }
  } else {
    map2_strided<O, I><<<grid_for(g.numel), kThreads, 0, s>>>(o, a, b, g, f);
  }
  KILN_LAUNCH_CHECK("map2");
}

// ---------------------------------------------------------------- functors

template <class O, class I>
struct CastFn {
  __device__ __forceinline__ O operator()(I v) const { return store_c<O>(load_c(v)); }
};

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

template <class T>
struct UnaryFn {
  using C = acc_t<T>;
  UnaryOp op;
  C a, b;
  bool has_lo, has_hi;
  __device__ __forceinline__ T operator()(T raw) const {
    C x = load_c(raw);
    C r = x;
    switch (op) {
      case UnaryOp::neg: r = C(-x); break;
      case UnaryOp::abs:
        if constexpr (std::is_unsigned_v<C>)
          r = x;  // u8, bool: already non-negative
        else
          r = x < C(0) ? C(-x) : x;
        break;
      case UnaryOp::square: r = C(x * x); break;
      case UnaryOp::sign:
        if constexpr (std::is_unsigned_v<C>)
          r = C(x > C(0));
        else
          r = C((x > C(0)) - (x < C(0)));
        break;
      case UnaryOp::affine: r = C(a * x + b); break;
      case UnaryOp::clamp:
        if constexpr (is_float_v<T>) {
          if (x != x) break;
        }
        if (has_lo && x < a) r = a;
        if (has_hi && r > b) r = b;
        break;
      case UnaryOp::relu: r = x > C(0) ? x : C(0); break;
      case UnaryOp::logical_not: r = C(!x); break;
      default:
        if constexpr (is_float_v<T>) {
          switch (op) {
            case UnaryOp::exp: r = exp(x); break;
            case UnaryOp::log: r = log(x); break;
            case UnaryOp::sqrt: r = sqrt(x); break;
            case UnaryOp::rsqrt: r = C(1) / sqrt(x); break;
            case UnaryOp::reciprocal: r = C(1) / x; break;
            case UnaryOp::sigmoid: r = C(1) / (C(1) + exp(-x)); break;
            case UnaryOp::tanh: r = tanh(x); break;
            case UnaryOp::sin: r = sin(x); break;
            case UnaryOp::cos: r = cos(x); break;
            case UnaryOp::silu: r = x / (C(1) + exp(-x)); break;
            case UnaryOp::gelu: r = C(0.5) * x * (C(1) + erf(x * C(kSqrt1_2))); break;
            case UnaryOp::gelu_tanh: {
              C inner = C(kSqrt2OverPi) * (x + C(0.044715) * x * x * x);
              r = C(0.5) * x * (C(1) + tanh(inner));
              break;
            }
            case UnaryOp::leaky_relu: r = x > C(0) ? x : x * a; break;
            case UnaryOp::pow_scalar: r = a == C(2) ? x * x : (a == C(0.5) ? sqrt(x) : C(pow(x, a))); break;
            default: break;
          }
        }
    }
    return store_c<T>(r);
  }
};

template <class T>
struct BinaryFn {
  using C = acc_t<T>;
  BinaryOp op;
  C al, be;
  bool has_lo, has_hi;
  __device__ __forceinline__ T operator()(T ra, T rb) const {
    const C x = load_c(ra), y = load_c(rb);
    C r = C(0);
    switch (op) {
      case BinaryOp::add: r = C(x + y); break;
      case BinaryOp::sub: r = C(x - y); break;
      case BinaryOp::mul: r = C(x * y); break;
      case BinaryOp::add_scaled: r = C(x + al * y); break;
      case BinaryOp::maximum:
      case BinaryOp::minimum:
        if constexpr (is_float_v<T>) {
          if (x != x || y != y) {
            r = C(NAN);
            break;
          }
        }
        r = op == BinaryOp::maximum ? (x > y ? x : y) : (x < y ? x : y);
        break;
      default:
        if constexpr (is_float_v<T>) {
          switch (op) {
            case BinaryOp::div: r = x / y; break;
            case BinaryOp::pow: r = C(pow(x, y)); break;
            case BinaryOp::relu_backward: r = y > C(0) ? x : C(0); break;
            case BinaryOp::leaky_relu_backward: r = y > C(0) ? x : C(x * al); break;
            case BinaryOp::gelu_backward: {
              C cdf = C(0.5) * (C(1) + erf(y * C(kSqrt1_2)));
              C pdf = exp(C(-0.5) * y * y) * C(kInvSqrt2Pi);
              r = x * (cdf + y * pdf);
              break;
            }
            case BinaryOp::gelu_tanh_backward: {
              C k = C(kSqrt2OverPi);
              C t = tanh(k * (y + C(0.044715) * y * y * y));
              C dinner = k * (C(1) + C(3 * 0.044715) * y * y);
              r = x * (C(0.5) * (C(1) + t) + C(0.5) * y * (C(1) - t * t) * dinner);
              break;
            }
            case BinaryOp::sigmoid_backward: r = x * y * (C(1) - y); break;
            case BinaryOp::tanh_backward: r = x * (C(1) - y * y); break;
            case BinaryOp::silu_backward: {
              const C s = C(1) / (C(1) + exp(-y));
              r = x * s * (C(1) + y * (C(1) - s));
              break;
            }
            case BinaryOp::clamp_backward: r = ((!has_lo || y >= al) && (!has_hi || y <= be)) ? x : C(0); break;
            default: break;
          }
        }
    }
    return store_c<T>(r);
  }
};

template <class T>
struct CompareFn {
  using C = acc_t<T>;
  BinaryOp op;
  __device__ __forceinline__ bool operator()(T ra, T rb) const {
    const C x = load_c(ra), y = load_c(rb);
    switch (op) {
      case BinaryOp::eq: return x == y;
      case BinaryOp::ne: return x != y;
      case BinaryOp::lt: return x < y;
      case BinaryOp::le: return x <= y;
      case BinaryOp::gt: return x > y;
      case BinaryOp::ge: return x >= y;
      case BinaryOp::logical_and:
      case BinaryOp::mul: return x && y;
      case BinaryOp::logical_or:
      case BinaryOp::add: return x || y;
      default: return false;
    }
  }
};

bool unary_defined_for_all(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg:
    case UnaryOp::abs:
    case UnaryOp::square:
    case UnaryOp::sign:
    case UnaryOp::affine:
    case UnaryOp::clamp:
    case UnaryOp::relu:
    case UnaryOp::logical_not: return true;
    default: return false;
  }
}

bool is_compare(BinaryOp op) {
  switch (op) {
    case BinaryOp::eq:
    case BinaryOp::ne:
    case BinaryOp::lt:
    case BinaryOp::le:
    case BinaryOp::gt:
    case BinaryOp::ge:
    case BinaryOp::logical_and:
    case BinaryOp::logical_or: return true;
    default: return false;
  }
}

template <class T>
__global__ void fill_dense(T* __restrict__ o, int64_t n, double value) {
  constexpr int N = sizeof(T) >= 16 ? 1 : int(16 / sizeof(T));
  const T v = store_c<T>(acc_t<T>(value));
  Pack<T, N> pack;
#pragma unroll
  for (int j = 0; j < N; ++j) pack.v[j] = v;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t nvec = n / N;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec; i += stride)
    reinterpret_cast<Pack<T, N>*>(o)[i] = pack;
  for (int64_t i = nvec * N + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) o[i] = v;
}

template <class T>
__global__ void fill_strided(T* o, Strided<1> g, double value) {
  const T v = store_c<T>(acc_t<T>(value));
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.numel; i += stride) {
    int64_t off[1];
    g.offsets(i, off);
    o[off[0]] = v;
  }
}

template <class T>
__global__ void arange_kernel(T* o, int64_t n, double start, double step) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    o[i] = store_c<T>(acc_t<T>(start + double(i) * step));
}

template <class O, class T>
__global__ void where_kernel(T* o, const bool* c, const T* a, const T* b, Strided<4> g) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.numel; i += stride) {
    int64_t off[4];
    g.offsets(i, off);
    o[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
}

// Dense operands: N elements per thread per iteration, 16 bytes of each value operand and N
// bytes of the condition in one load each; the tail element by element.
template <class T, int N>
__global__ void where_dense(T* __restrict__ o, const bool* __restrict__ c, const T* __restrict__ a,
                            const T* __restrict__ b, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t nvec = n / N;
  for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += stride) {
    const Pack<bool, N> cp = reinterpret_cast<const Pack<bool, N>*>(c)[v];
    const Pack<T, N> ap = reinterpret_cast<const Pack<T, N>*>(a)[v];
    const Pack<T, N> bp = reinterpret_cast<const Pack<T, N>*>(b)[v];
    Pack<T, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) out.v[j] = cp.v[j] ? ap.v[j] : bp.v[j];
    reinterpret_cast<Pack<T, N>*>(o)[v] = out;
  }
  for (int64_t i = nvec * N + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    o[i] = c[i] ? a[i] : b[i];
}

// Same expressions as the CPU backend (double arithmetic, then one rounding to T).
// Under CUDA graph capture `offset` is relative to *offset_base, which each replay advances.
template <class T>
__global__ void random_kernel(T* o, int64_t n, RandomKind kind, uint64_t seed, uint64_t offset,
                              const unsigned long long* offset_base, double a, double b) {
  if (offset_base) offset += *offset_base;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double v = random_draw(kind, seed, offset, uint64_t(i), a, b);
    o[i] = store_c<T>(acc_t<T>(v));
  }
}

}  // namespace

void CudaBackend::copy(const View& out, const View& in) {
  if (out.numel() == 0) return;
  if (out.dtype == in.dtype && out.is_contiguous() && in.is_contiguous()) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, size_t(out.numel()) * element_size(out.dtype),
                                    cudaMemcpyDeviceToDevice, current_stream()));
    return;
  }
  dispatch_all(out.dtype, "copy", [&](auto otag) {
    using O = decltype(otag);
    dispatch_all(in.dtype, "copy", [&](auto itag) {
      using I = decltype(itag);
      map1<O, I>(out, in, CastFn<O, I>{});
    });
  });
}

void CudaBackend::fill(const View& out, double value) {
  dispatch_all(out.dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    bool dense = false;
    const View* vs[1] = {&out};
    Strided<1> g = coalesce<1>(vs, &dense);
    if (g.numel == 0) return;
    cudaStream_t s = current_stream();
    if (dense && aligned16(out.data)) {
      fill_dense<T><<<grid_for(g.numel, 4), kThreads, 0, s>>>(out.ptr<T>(), g.numel, value);
    } else {
      fill_strided<T><<<grid_for(g.numel), kThreads, 0, s>>>(out.ptr<T>(), g, value);
    }
    KILN_LAUNCH_CHECK("fill");
  });
}

void CudaBackend::arange(const View& out, double start, double step) {
  dispatch_all(out.dtype, "arange", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = out.numel();
    if (!n) return;
    arange_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(out.ptr<T>(), n, start, step);
    KILN_LAUNCH_CHECK("arange");
  });
}

void CudaBackend::unary(UnaryOp op, const View& out, const View& in, double a, double b) {
  dispatch_all(in.dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    using C = acc_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      KILN_CHECK(op == UnaryOp::logical_not, "unary kernel: op ", int(op), " is not defined for bool");
    } else if constexpr (!is_float_v<T>) {
      KILN_CHECK(unary_defined_for_all(op), "unary kernel: op ", int(op), " is not defined for dtype ",
                 dtype_name(in.dtype));
    }
    UnaryFn<T> f{op, C(a), C(b), !std::isnan(a), !std::isnan(b)};
    map1<T, T>(out, in, f);
  });
}

void CudaBackend::binary(BinaryOp op, const View& out, const View& x, const View& y, double alpha, double beta) {
  dispatch_all(x.dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    using C = acc_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      const bool ok = op == BinaryOp::logical_and || op == BinaryOp::mul || op == BinaryOp::logical_or ||
                      op == BinaryOp::add || op == BinaryOp::eq || op == BinaryOp::ne;
      KILN_CHECK(ok, "binary kernel: op ", int(op), " is not defined for bool");
      map2<bool, bool>(out, x, y, CompareFn<bool>{op});
    } else {
      if (is_compare(op)) return map2<bool, T>(out, x, y, CompareFn<T>{op});
      if constexpr (!is_float_v<T>) {
        const bool ok = op == BinaryOp::add || op == BinaryOp::sub || op == BinaryOp::mul ||
                        op == BinaryOp::add_scaled || op == BinaryOp::maximum || op == BinaryOp::minimum;
        KILN_CHECK(ok, "binary kernel: op ", int(op), " is not defined for dtype ", dtype_name(x.dtype));
      }
      BinaryFn<T> f{op, C(alpha), C(beta), !std::isnan(alpha), !std::isnan(beta)};
      map2<T, T>(out, x, y, f);
    }
  });
}

void CudaBackend::where(const View& out, const View& cond, const View& x, const View& y) {
  dispatch_all(out.dtype, "where", [&](auto tag) {
    using T = decltype(tag);
    const View* vs[4] = {&out, &cond, &x, &y};
    bool dense = false;
    Strided<4> g = coalesce<4>(vs, &dense);
    if (g.numel == 0) return;
    constexpr int N = sizeof(T) >= 16 ? 1 : int(16 / sizeof(T));
    const bool cond_aligned = (reinterpret_cast<uintptr_t>(cond.data) & (N - 1)) == 0;
    if (dense && N > 1 && cond_aligned && aligned16(out.data) && aligned16(x.data) && aligned16(y.data)) {
      where_dense<T, N><<<grid_for(g.numel, N), kThreads, 0, current_stream()>>>(out.ptr<T>(), cond.ptr<bool>(),
                                                                                 x.ptr<T>(), y.ptr<T>(), g.numel);
      KILN_LAUNCH_CHECK("where (dense)");
      return;
    }
    where_kernel<T, T><<<grid_for(g.numel), kThreads, 0, current_stream()>>>(out.ptr<T>(), cond.ptr<bool>(), x.ptr<T>(),
                                                                             y.ptr<T>(), g);
    KILN_LAUNCH_CHECK("where");
  });
}

void CudaBackend::random(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b) {
  KILN_CHECK(out.is_contiguous(), "random kernel: expected a dense output");
  dispatch_all(out.dtype, "random", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = out.numel();
    if (!n) return;
    cudaStream_t s = current_stream();
    const unsigned long long* base = nullptr;
    if (CaptureState* c = capture_state(s)) {
      // The host's offset would be baked into the graph: draw from the replay's counter instead.
      base = c->offset_base;
      offset = c->counters;
      c->counters += (uint64_t(n) + 3) / 4;
    }
    random_kernel<T><<<grid_for(n), kThreads, 0, s>>>(out.ptr<T>(), n, kind, seed, offset, base, a, b);
    KILN_LAUNCH_CHECK("random");
  });
}

}  // namespace kiln::kernels::cuda
