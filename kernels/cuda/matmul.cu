// Matrix products through cuBLAS (strided batched GemmEx). kiln is row-major and cuBLAS
// column-major, so C[M,N] = A[M,K] B[K,N] is issued as C^T = B^T A^T; an operand whose inner
// stride is 1 (row-major) or whose row stride is 1 (a transposed view) is passed in place with
// the matching op flag, anything else is packed to a dense copy first. f32 runs in exact fp32
// (pedantic math, no TF32), f16/bf16 with f32 accumulation, f64 in f64. Integer products have a
// plain kernel (rare, small).
#include <cublas_v2.h>

#include <optional>

#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

struct Operand {
  const void* ptr;
  cublasOperation_t op;
  int64_t ld, batch_stride;
};

// The column-major operand that represents the row-major [rows, cols] matrix X^T.
// Returns false when X cannot be passed in place.
bool as_transposed(const View& v, int64_t rows, int64_t cols, Operand* o) {
  const int64_t rs = v.strides[1], cs = v.strides[2];
  if (cs == 1 && (rs >= cols || rows == 1) && rs >= 0) {
    *o = {v.data, CUBLAS_OP_N, rows == 1 ? std::max<int64_t>(cols, 1) : rs, v.strides[0]};
    return true;
  }
  if (rs == 1 && (cs >= rows || cols == 1) && cs >= 0) {
    *o = {v.data, CUBLAS_OP_T, cols == 1 ? std::max<int64_t>(rows, 1) : cs, v.strides[0]};
    return true;
  }
  return false;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f64: return CUDA_R_64F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: fail("matmul: no cuBLAS type for ", dtype_name(t));
  }
}

template <class T>
__global__ void matmul_int_kernel(T* c, const T* a, const T* b, int64_t B, int64_t M, int64_t N, int64_t K, int64_t sa0,
                                  int64_t sa1, int64_t sa2, int64_t sb0, int64_t sb1, int64_t sb2, bool accumulate) {
  const int64_t total = B * M * N, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t n = i % N, m = (i / N) % M, bi = i / (M * N);
    T acc = accumulate ? c[i] : T(0);
    for (int64_t k = 0; k < K; ++k) acc += a[bi * sa0 + m * sa1 + k * sa2] * b[bi * sb0 + k * sb1 + n * sb2];
    c[i] = acc;
  }
}

}  // namespace

void CudaBackend::matmul(const View& out, const View& a, const View& b, double beta) {
  KILN_CHECK(out.ndim == 3 && a.ndim == 3 && b.ndim == 3 && out.is_contiguous(),
             "matmul kernel: expected [B, M, K] x [B, K, N] into a dense [B, M, N]");
  const int64_t B = out.sizes[0], M = out.sizes[1], N = out.sizes[2], K = a.sizes[2];
  if (B * M * N == 0) return;
  if (out.dtype == DType::i32 || out.dtype == DType::i64) {
    dispatch_all(out.dtype, "matmul", [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>) {
        matmul_int_kernel<T><<<grid_for(B * M * N), kThreads, 0, current_stream()>>>(
            out.ptr<T>(), a.ptr<T>(), b.ptr<T>(), B, M, N, K, a.strides[0], a.strides[1], a.strides[2], b.strides[0],
            b.strides[1], b.strides[2], beta != 0);
        KILN_LAUNCH_CHECK("matmul_int");
      }
    });
    return;
  }
  if (K == 0) {
    if (beta == 0) fill(out, 0.0);
    return;
  }
  const cudaDataType_t type = cuda_type(out.dtype);
  const size_t esize = element_size(out.dtype);
  // Operands cuBLAS cannot read in place are packed into dense [B, rows, cols] copies.
  auto prepare = [&](const View& v, int64_t rows, int64_t cols, std::optional<Workspace>& ws, Operand* o) {
    if (as_transposed(v, rows, cols, o) && o->batch_stride >= 0) return;
    ws.emplace(size_t(v.sizes[0] * rows * cols) * esize);
    View dense = v;
    dense.data = ws->get();
    dense.strides[2] = 1;
    dense.strides[1] = cols;
    dense.strides[0] = rows * cols;
    copy(dense, v);
    *o = {ws->get(), CUBLAS_OP_N, std::max<int64_t>(cols, 1), rows * cols};
  };
  std::optional<Workspace> wa, wb;
  Operand oa{}, ob{};
  prepare(a, M, K, wa, &oa);
  prepare(b, K, N, wb, &ob);
  if (a.sizes[0] == 1) oa.batch_stride = 0;
  if (b.sizes[0] == 1) ob.batch_stride = 0;

  cublasHandle_t h = cublas_handle();
  const float alpha_f = 1.0f, beta_f = float(beta);
  const double alpha_d = 1.0, beta_d = beta;
  const bool f64 = out.dtype == DType::f64;
  const void* alpha = f64 ? static_cast<const void*>(&alpha_d) : static_cast<const void*>(&alpha_f);
  const void* betap = f64 ? static_cast<const void*>(&beta_d) : static_cast<const void*>(&beta_f);
  // CUBLAS_COMPUTE_32F with the default math mode never uses TF32 for f32 inputs.
  const cublasComputeType_t compute = f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
  // C^T [N, M] = op(B^T) [N, K] * op(A^T) [K, M].
  KILN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, ob.op, oa.op, int(N), int(M), int(K), alpha, ob.ptr, type, int(ob.ld),
                                               ob.batch_stride, oa.ptr, type, int(oa.ld), oa.batch_stride, betap,
                                               out.data, type, int(N), M * N, int(B), compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace kiln::kernels::cuda
