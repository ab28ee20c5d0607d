// CPU matrix products: f32 through sgemm, bf16 through bgemm (bf16 operands, f32 accumulation),
// f64 through Eigen. Operands are mapped in place when one of their two inner strides is 1 (row- or
// column-major, so transposed views cost nothing); anything else is packed first, and f16 is
// widened to f32. Batches run in parallel when the products are small.
#include <Eigen/Core>

#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/bgemm.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/loops.h"

namespace kiln::kernels::cpu {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Stride = Eigen::OuterStride<>;

// Runs f(map) with an Eigen map of the [rows, cols] matrix at p with strides (rs, cs); packs the
// matrix when neither inner stride is 1 (or a stride broadcasts).
template <class T, class F>
void with_map(const T* p, int64_t rows, int64_t cols, int64_t rs, int64_t cs, F&& f) {
  if (cs == 1 && (rs >= cols || rows == 1)) {
    Eigen::Map<const RowMat<T>, 0, Stride> m(p, rows, cols, Stride(rows > 1 ? rs : cols));
    f(m);
  } else if (rs == 1 && (cs >= rows || cols == 1)) {
    Eigen::Map<const ColMat<T>, 0, Stride> m(p, rows, cols, Stride(cols > 1 ? cs : rows));
    f(m);
  } else {
    RowMat<T> packed(rows, cols);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) packed(i, j) = p[i * rs + j * cs];
    f(packed);
  }
}

// f32 through the ISA-dispatched sgemm, bf16 through bgemm (f32 accumulation, one rounding): an
// operand with a unit inner stride maps in place (transposed when its row stride is 1), anything
// else is packed row-major first.
template <class T>
void matmul_blas(const View& out, const View& a, const View& b, double beta) {
  const int64_t B = out.sizes[0], M = out.sizes[1], N = out.sizes[2], K = a.sizes[2];
  auto one = [&](int64_t i) {
    T* c = out.ptr<T>() + i * M * N;
    const T* pa = a.ptr<T>() + i * a.strides[0];
    const T* pb = b.ptr<T>() + i * b.strides[0];
    std::vector<T> pack_a, pack_b;
    auto layout = [](const T* p, int64_t rows, int64_t cols, int64_t rs, int64_t cs, std::vector<T>& pack, bool& trans,
                     int64_t& ld) -> const T* {
      if (cs == 1 && (rs >= cols || rows == 1)) {
        trans = false;
        ld = rows > 1 ? rs : cols;
        return p;
      }
      if (rs == 1 && (cs >= rows || cols == 1)) {
        trans = true;
        ld = cols > 1 ? cs : rows;
        return p;
      }
      pack.resize(size_t(rows * cols));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c2 = 0; c2 < cols; ++c2) pack[size_t(r * cols + c2)] = p[r * rs + c2 * cs];
      trans = false;
      ld = cols;
      return pack.data();
    };
    bool ta, tb;
    int64_t lda, ldb;
    const T* ma = layout(pa, M, K, a.strides[1], a.strides[2], pack_a, ta, lda);
    const T* mb = layout(pb, K, N, b.strides[1], b.strides[2], pack_b, tb, ldb);
    if constexpr (std::is_same_v<T, float>)
      sgemm(ta, tb, M, N, K, ma, lda, mb, ldb, beta == 0 ? 0.f : 1.f, c, N);
    else
      bgemm(ta, tb, M, N, K, ma, lda, mb, ldb, beta == 0 ? 0.f : 1.f, c, N);
  };
  const bool batch_parallel = B > 1 && M * N * K < (1 << 18);
  if (batch_parallel) {
    parallel_for(0, B, max_threads(), one);
  } else {
    for (int64_t i = 0; i < B; ++i) one(i);
  }
}

template <class T>
void matmul_typed(const View& out, const View& a, const View& b, double beta) {
  const int64_t B = out.sizes[0], M = out.sizes[1], N = out.sizes[2], K = a.sizes[2];
  const T* pa = a.ptr<T>();
  const T* pb = b.ptr<T>();
  T* pc = out.ptr<T>();
  // Rows [r0, r1) of product i.
  auto rows = [&](int64_t i, int64_t r0, int64_t r1) {
    Eigen::Map<RowMat<T>> c(pc + (i * M + r0) * N, r1 - r0, N);
    if (K == 0) {
      if (beta == 0) c.setZero();
      return;
    }
    with_map(pa + i * a.strides[0] + r0 * a.strides[1], r1 - r0, K, a.strides[1], a.strides[2], [&](const auto& ma) {
      with_map(pb + i * b.strides[0], K, N, b.strides[1], b.strides[2], [&](const auto& mb) {
        if (beta == 0)
          c.noalias() = ma * mb;
        else
          c.noalias() += ma * mb;
      });
    });
  };
  // Many small products run in parallel over the batch; large ones split their rows.
  const bool batch_parallel = B > 1 && M * N * K < (1 << 18);
  if (batch_parallel) {
    parallel_for(0, B, max_threads(), [&](int64_t i) { rows(i, 0, M); });
    return;
  }
  const int threads = M * N * K >= (1 << 18) ? int(std::min<int64_t>(max_threads(), M)) : 1;
  for (int64_t i = 0; i < B; ++i) parallel_chunks(M, threads, [&](int64_t r0, int64_t r1) { rows(i, r0, r1); });
}

template <class T>
void matmul_int(const View& out, const View& a, const View& b, double beta) {
  const int64_t B = out.sizes[0], M = out.sizes[1], N = out.sizes[2], K = a.sizes[2];
  const T* pa = a.ptr<T>();
  const T* pb = b.ptr<T>();
  T* pc = out.ptr<T>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        T acc = beta == 0 ? T(0) : pc[(i * M + m) * N + n];
        for (int64_t k = 0; k < K; ++k)
          acc += pa[i * a.strides[0] + m * a.strides[1] + k * a.strides[2]] *
                 pb[i * b.strides[0] + k * b.strides[1] + n * b.strides[2]];
        pc[(i * M + m) * N + n] = acc;
      }
}

}  // namespace

void CpuBackend::matmul(const View& out, const View& a, const View& b, double beta) {
  KILN_CHECK(out.ndim == 3 && a.ndim == 3 && b.ndim == 3 && out.is_contiguous(),
             "matmul kernel: expected [B, M, K] x [B, K, N] into a dense [B, M, N]");
  switch (out.dtype) {
    case DType::f32: return matmul_blas<float>(out, a, b, beta);
    case DType::bf16: return matmul_blas<BFloat16>(out, a, b, beta);
    case DType::f64: return matmul_typed<double>(out, a, b, beta);
    case DType::i32: return matmul_int<int32_t>(out, a, b, beta);
    case DType::i64: return matmul_int<int64_t>(out, a, b, beta);
    case DType::f16: {
      // Widen to f32, multiply with f32 accumulation, round once on the way out.
      std::vector<float> abuf(size_t(a.numel())), bbuf(size_t(b.numel())), cbuf(size_t(out.numel()));
      auto dense_f32 = [](const View& v, float* data) {
        View w = v;
        w.dtype = DType::f32;
        w.data = data;
        w.strides[2] = 1;
        w.strides[1] = v.sizes[2];
        w.strides[0] = v.sizes[1] * v.sizes[2];
        return w;
      };
      View wa = dense_f32(a, abuf.data()), wb = dense_f32(b, bbuf.data()), wc = dense_f32(out, cbuf.data());
      copy(wa, a);
      copy(wb, b);
      if (beta != 0) copy(wc, out);
      matmul_blas<float>(wc, wa, wb, beta);
      copy(out, wc);
      return;
    }
    default: fail("matmul: not defined for dtype ", dtype_name(out.dtype));
  }
}

}  // namespace kiln::kernels::cpu
