// CPU 2-D convolution as im2col + GEMM (Eigen). Each image is unfolded into a
// [C_in/groups * kh * kw, H_out * W_out] column matrix, so the forward pass is W[C_out, CKK] @ col,
// the input gradient is W^T @ grad_out folded back (col2im), and the weight gradient is
// grad_out @ col^T summed over the batch. Images run in parallel, one column buffer per thread.
// bf16 runs the same plan on bgemm (conv_bf16.cpp).
#include <Eigen/Core>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/conv_fast.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"

namespace kiln::kernels::cpu {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapR = Eigen::Map<RowMat<T>>;

// C = op(A) @ op(B) (+ C when beta is 1), row-major: f32 through the ISA-dispatched sgemm, f64
// through Eigen.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
          float beta, float* c, int64_t ldc) {
  sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb,
          double beta, double* c, int64_t ldc) {
  using S = Eigen::OuterStride<>;
  using R = Eigen::Map<const RowMat<double>, 0, S>;
  using C = Eigen::Map<const Eigen::MatrixXd, 0, S>;
  Eigen::Map<RowMat<double>, 0, S> cm(c, m, n, S(ldc));
  auto go = [&](const auto& ma, const auto& mb) {
    if (beta == 0)
      cm.noalias() = ma * mb;
    else
      cm.noalias() += ma * mb;
  };
  if (!ta && !tb)
    go(R(a, m, k, S(lda)), R(b, k, n, S(ldb)));
  else if (!ta)
    go(R(a, m, k, S(lda)), C(b, k, n, S(ldb)));
  else if (!tb)
    go(C(a, m, k, S(lda)), R(b, k, n, S(ldb)));
  else
    go(C(a, m, k, S(lda)), C(b, k, n, S(ldb)));
}

template <class T>
void forward_typed(const Conv2dParams& p, T* y, const T* x, const T* w, const T* b) {
  const int64_t cin_g = p.c_in / p.groups, cout_g = p.c_out / p.groups;
  const int64_t ckk = cin_g * p.kh * p.kw, hw_out = p.h_out * p.w_out;
  const bool pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  // One image per thread; a single image leaves the threads to the product itself.
  parallel_region(p.n > 1 ? max_threads() : 1, [&](int t, int nt) {
    std::vector<T> col(pointwise ? 0 : size_t(ckk * hw_out));
    int64_t first, last;
    static_range(p.n, t, nt, first, last);
    for (int64_t n = first; n < last; ++n) {
      for (int64_t g = 0; g < p.groups; ++g) {
        const T* xg = x + (n * p.c_in + g * cin_g) * p.h_in * p.w_in;
        const T* cp = xg;
        if (!pointwise) {
          im2col(p, xg, cin_g, col.data());
          cp = col.data();
        }
        T* yo = y + (n * p.c_out + g * cout_g) * hw_out;
        gemm(false, false, cout_g, hw_out, ckk, w + g * cout_g * ckk, ckk, cp, hw_out, T(0), yo, hw_out);
        MapR<T> out(yo, cout_g, hw_out);
        if (b) out.colwise() += Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(b + g * cout_g, cout_g);
      }
    }
  });
}

template <class T>
void backward_typed(const Conv2dParams& p, T* gx, T* gw, T* gb, const T* gy, const T* x, const T* w) {
  const int64_t cin_g = p.c_in / p.groups, cout_g = p.c_out / p.groups;
  const int64_t ckk = cin_g * p.kh * p.kw, hw_out = p.h_out * p.w_out;
  const int64_t wsize = p.c_out * ckk;
  const int threads = p.n > 1 ? max_threads() : 1;
  std::vector<T> gw_partial(gw ? size_t(threads) * size_t(wsize) : 0, T(0));
  if (gx) std::memset(gx, 0, sizeof(T) * size_t(p.n * p.c_in * p.h_in * p.w_in));
  parallel_region(threads, [&](int t, int nt) {
    std::vector<T> col(size_t(ckk * hw_out));
    T* my_gw = gw ? gw_partial.data() + size_t(t) * size_t(wsize) : nullptr;
    int64_t first, last;
    static_range(p.n, t, nt, first, last);
    for (int64_t n = first; n < last; ++n) {
      for (int64_t g = 0; g < p.groups; ++g) {
        const T* gout = gy + (n * p.c_out + g * cout_g) * hw_out;
        const T* wg = w + g * cout_g * ckk;
        if (my_gw) {
          im2col(p, x + (n * p.c_in + g * cin_g) * p.h_in * p.w_in, cin_g, col.data());
          gemm(false, true, cout_g, ckk, hw_out, gout, hw_out, col.data(), hw_out, T(1), my_gw + g * cout_g * ckk, ckk);
        }
        if (gx) {
          gemm(true, false, ckk, hw_out, cout_g, wg, ckk, gout, hw_out, T(0), col.data(), hw_out);
          col2im(p, col.data(), cin_g, gx + (n * p.c_in + g * cin_g) * p.h_in * p.w_in);
        }
      }
    }
  });
  if (gw) {
    for (int64_t i = 0; i < wsize; ++i) {
      T s = T(0);
      for (int t = 0; t < threads; ++t) s += gw_partial[size_t(t) * size_t(wsize) + size_t(i)];
      gw[i] = s;
    }
  }
  if (gb) {
    for (int64_t c = 0; c < p.c_out; ++c) {
      double s = 0;
      for (int64_t n = 0; n < p.n; ++n) {
        const T* row = gy + (n * p.c_out + c) * hw_out;
        for (int64_t i = 0; i < hw_out; ++i) s += double(row[i]);
      }
      gb[c] = T(s);
    }
  }
}

template <class F>
void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(BFloat16{});
    default:
      fail(op, ": the CPU kernel takes f32, f64 or bf16 (got ", dtype_name(t), "); convert with .to(kiln::DType::f32)");
  }
}

}  // namespace

void CpuBackend::conv2d_forward(const Conv2dParams& p, const View& out, const View& in, const View& weight,
                                const View& bias) {
  if (conv2d_forward_fast(p, out, in, weight, bias)) return;
  dispatch_float(in.dtype, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, BFloat16>)
      conv2d_forward_bf16(p, out.ptr<T>(), in.ptr<T>(), weight.ptr<T>(), bias.ptr<T>());
    else
      forward_typed<T>(p, out.ptr<T>(), in.ptr<T>(), weight.ptr<T>(), bias.ptr<T>());
  });
}

void CpuBackend::conv2d_backward(const Conv2dParams& p, const View& grad_in, const View& grad_weight,
                                 const View& grad_bias, const View& grad_out, const View& in, const View& weight) {
  // The fast kernels first; this file's paths compute whatever they left.
  const ConvGradsDone done = conv2d_backward_fast(p, grad_in, grad_weight, grad_bias, grad_out, in, weight);
  const View gi = done.input ? View{} : grad_in;
  const View gw = done.weight ? View{} : grad_weight, gb = done.weight ? View{} : grad_bias;
  if (!gi.data && !gw.data && !gb.data) return;
  dispatch_float(grad_out.dtype, "conv2d backward", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, BFloat16>) {
      conv2d_backward_bf16(p, gi.ptr<T>(), gw.ptr<T>(), gb.ptr<T>(), grad_out.ptr<T>(), in.ptr<T>(), weight.ptr<T>());
    } else
      backward_typed<T>(p, gi.ptr<T>(), gw.ptr<T>(), gb.ptr<T>(), grad_out.ptr<T>(), in.ptr<T>(), weight.ptr<T>());
  });
}

}  // namespace kiln::kernels::cpu
