// Chooses between the fast convolution kernels (conv_fast.h) and prepares their operands: the
// weights re-laid with the output channel innermost (flipped and transposed for the input
// gradient), the bias in f32, and the scratch memory, kept per calling thread between calls so a
// training step does not map and fault in fresh pages for every convolution.
#include "kernels/cpu/conv_fast.h"

#include <algorithm>
#include <new>
#include <string>
#include <type_traits>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd_kernels.h"

namespace kiln::kernels::cpu {
namespace {

const SimdKernels* table() { return simd_kernels(); }

// bf16 goes through f32 arithmetic only where the CPU has no bf16 dot products of its own.
bool dtype_ok(DType t) {
  if (t == DType::f32) return true;
  static const bool native_bf16 = isa_enabled(Isa::avx512bf16);
  return t == DType::bf16 && !native_bf16;
}

bool shape_ok(const Conv2dParams& p) {
  return p.kh == 3 && p.kw == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 && p.dil_w == 1 &&
         p.groups == 1 && p.pad_h >= 0 && p.pad_h <= 2 && p.pad_w >= 0 && p.pad_w <= 2 && p.n > 0 &&
         p.h_out == p.h_in + 2 * p.pad_h - 2 && p.w_out == p.w_in + 2 * p.pad_w - 2;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Winograd pays with enough channels on both sides of the product (the transforms cost about
// as much as 8 input or output channels' products) and images that fill at least half of their
// 4x4 tiles.
bool winograd_fits(int64_t c_in, int64_t c_out, int64_t h_out, int64_t w_out) {
  return c_in >= 8 && c_out >= 8 && 2 * h_out * w_out >= 16 * ceil_div(h_out, 4) * ceil_div(w_out, 4);
}
bool direct_fits(int64_t c_in) { return c_in < 8; }

ConvShape shape_of(const Conv2dParams& p) {
  return {p.n, p.c_in, p.h_in, p.w_in, p.c_out, p.h_out, p.w_out, p.pad_h, p.pad_w};
}
// The convolution whose forward pass is p's input gradient: grad_out in, grad_in out.
ConvShape transposed_shape(const Conv2dParams& p) {
  return {p.n, p.c_out, p.h_out, p.w_out, p.c_in, p.h_in, p.w_in, 2 - p.pad_h, 2 - p.pad_w};
}

// Scratch floats, 64-byte aligned, one buffer per slot and calling thread, grown as needed.
class Scratch {
 public:
  ~Scratch() { release(); }
  float* get(int64_t n) {
    if (n > cap_) {
      release();
      p_ = static_cast<float*>(::operator new[](size_t(n) * sizeof(float), std::align_val_t(64)));
      cap_ = n;
    }
    return p_;
  }

 private:
  void release() {
    if (p_) ::operator delete[](p_, std::align_val_t(64));
    p_ = nullptr;
    cap_ = 0;
  }
  float* p_ = nullptr;
  int64_t cap_ = 0;
};
enum Slot { kWeights, kTransformed, kWork, kBias, kGradW, kGradB, kSlots };
float* scratch(Slot slot, int64_t n) {
  thread_local Scratch s[kSlots];
  return s[slot].get(std::max<int64_t>(n, 16));
}

float to_f32(float v) { return v; }
float to_f32(BFloat16 v) { return float(v); }

// wt [c_in][9][round_up(c_out, lanes)] = w[co][ci][tap]; or, flipped for the input gradient,
// wt [c_out][9][round_up(c_in, lanes)] = w[co][ci][8 - tap]. Padding is zero.
template <class T>
float* pack_weights(const Conv2dParams& p, const T* w, bool flipped, int lanes) {
  const int64_t k = flipped ? p.c_out : p.c_in, m = flipped ? p.c_in : p.c_out, mp = round_up(m, lanes);
  float* wt = scratch(kWeights, k * 9 * mp);
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t t = 0; t < 9; ++t) {
      float* row = wt + (kk * 9 + t) * mp;
      for (int64_t j = 0; j < m; ++j)
        row[j] = flipped ? to_f32(w[(kk * p.c_in + j) * 9 + 8 - t]) : to_f32(w[(j * p.c_in + kk) * 9 + t]);
      std::fill(row + m, row + mp, 0.f);
    }
  return wt;
}

template <class T>
const float* bias_f32(const View& bias, int64_t n) {
  if (!bias.data) return nullptr;
  if constexpr (std::is_same_v<T, float>) {
    return bias.ptr<float>();
  } else {
    float* b = scratch(kBias, n);
    for (int64_t i = 0; i < n; ++i) b[i] = to_f32(bias.ptr<T>()[i]);
    return b;
  }
}

// The kernels' element type: f32, or bf16 as its bits.
template <class T>
using Elem = std::conditional_t<std::is_same_v<T, float>, float, uint16_t>;
template <class T>
Elem<T>* elems(const View& v) {
  return reinterpret_cast<Elem<T>*>(v.data);
}

template <class T>
void winograd_forward(const SimdKernels& k, const ConvShape& s, const float* wt, const Elem<T>* x, Elem<T>* y,
                      const float* bias) {
  const int threads = max_threads();
  float* u = scratch(kTransformed, k.winograd_weights_size(s.c_in, s.c_out));
  k.winograd_weights(s.c_in, s.c_out, wt, u, threads);
  float* ws = scratch(kWork, k.winograd_forward_workspace(s, threads));
  if constexpr (std::is_same_v<T, float>)
    k.winograd_forward_f32(s, x, y, u, bias, ws, threads);
  else
    k.winograd_forward_bf16(s, x, y, u, bias, ws, threads);
}

template <class T>
bool forward(const Conv2dParams& p, const View& out, const View& in, const View& weight, const View& bias) {
  const SimdKernels& k = *table();
  const ConvShape s = shape_of(p);
  const bool wino = winograd_fits(p.c_in, p.c_out, p.h_out, p.w_out);
  if (!wino && !direct_fits(p.c_in)) return false;
  const float* wt = pack_weights(p, weight.ptr<T>(), false, k.lanes);
  const float* b = bias_f32<T>(bias, p.c_out);
  if (wino) {
    winograd_forward<T>(k, s, wt, elems<T>(in), elems<T>(out), b);
    return true;
  }
  const int threads = max_threads();
  float* ws = scratch(kWork, k.direct_forward_workspace(s, threads));
  if constexpr (std::is_same_v<T, float>)
    k.direct_forward_f32(s, elems<T>(in), elems<T>(out), wt, b, ws, threads);
  else
    k.direct_forward_bf16(s, elems<T>(in), elems<T>(out), wt, b, ws, threads);
  return true;
}

template <class T>
ConvGradsDone backward(const Conv2dParams& p, const View& grad_in, const View& grad_weight, const View& grad_bias,
                       const View& grad_out, const View& in, const View& weight) {
  const SimdKernels& k = *table();
  ConvGradsDone done;
  const int threads = max_threads();
  if (grad_in.data && winograd_fits(p.c_out, p.c_in, p.h_in, p.w_in)) {
    const float* wt = pack_weights(p, weight.ptr<T>(), true, k.lanes);
    winograd_forward<T>(k, transposed_shape(p), wt, elems<T>(grad_out), elems<T>(grad_in), nullptr);
    done.input = true;
  }
  const bool wino = winograd_fits(p.c_in, p.c_out, p.h_out, p.w_out);
  if (grad_weight.data && (wino || direct_fits(p.c_in))) {
    const ConvShape s = shape_of(p);
    constexpr bool f32 = std::is_same_v<T, float>;
    float* gw = f32 ? reinterpret_cast<float*>(grad_weight.data) : scratch(kGradW, p.c_out * p.c_in * 9);
    float* gb = !grad_bias.data ? nullptr : f32 ? reinterpret_cast<float*>(grad_bias.data) : scratch(kGradB, p.c_out);
    const Elem<T>* x = elems<T>(in);
    const Elem<T>* gy = elems<T>(grad_out);
    if (wino) {
      float* ws = scratch(kWork, k.winograd_weight_grad_workspace(s, threads));
      if constexpr (f32)
        k.winograd_weight_grad_f32(s, x, gy, gw, gb, ws, threads);
      else
        k.winograd_weight_grad_bf16(s, x, gy, gw, gb, ws, threads);
    } else {
      float* ws = scratch(kWork, k.direct_weight_grad_workspace(s, threads));
      if constexpr (f32)
        k.direct_weight_grad_f32(s, x, gy, gw, gb, ws, threads);
      else
        k.direct_weight_grad_bf16(s, x, gy, gw, gb, ws, threads);
    }
    if constexpr (!f32) {  // one rounding of each f32 sum
      for (int64_t i = 0; i < p.c_out * p.c_in * 9; ++i) grad_weight.ptr<T>()[i] = T(gw[i]);
      if (gb)
        for (int64_t i = 0; i < p.c_out; ++i) grad_bias.ptr<T>()[i] = T(gb[i]);
    }
    done.weight = true;
  }
  return done;
}

}  // namespace

bool conv2d_forward_fast(const Conv2dParams& p, const View& out, const View& in, const View& weight, const View& bias) {
  if (!table() || !dtype_ok(in.dtype) || !shape_ok(p)) return false;
  if (in.dtype == DType::f32) return forward<float>(p, out, in, weight, bias);
  return forward<BFloat16>(p, out, in, weight, bias);
}

ConvGradsDone conv2d_backward_fast(const Conv2dParams& p, const View& grad_in, const View& grad_weight,
                                   const View& grad_bias, const View& grad_out, const View& in, const View& weight) {
  if (!table() || !dtype_ok(grad_out.dtype) || !shape_ok(p)) return {};
  if (grad_out.dtype == DType::f32) return backward<float>(p, grad_in, grad_weight, grad_bias, grad_out, in, weight);
  return backward<BFloat16>(p, grad_in, grad_weight, grad_bias, grad_out, in, weight);
}

ConvKernels conv2d_fast_kernels(const Conv2dParams& p, DType dtype) {
  if (!table() || !dtype_ok(dtype) || !shape_ok(p)) return {};
  const std::string isa = simd_kernels_isa();
  const bool wino = winograd_fits(p.c_in, p.c_out, p.h_out, p.w_out);
  ConvKernels k;
  k.forward = wino ? "winograd-" + isa : direct_fits(p.c_in) ? "direct-" + isa : "";
  k.input_grad = winograd_fits(p.c_out, p.c_in, p.h_in, p.w_in) ? "winograd-" + isa : "";
  k.weight_grad = k.forward;
  return k;
}

}  // namespace kiln::kernels::cpu
