// One checker per CUDA library: every status of the runtime, cuBLAS and cuDNN and every kernel
// launch goes through these, and a failure throws kiln::Error naming the call, the status's name
// and file:line. Host-only header (included by .cu and .cpp files alike).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

namespace kiln::kernels::cuda {

[[noreturn]] void throw_cuda(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line);
[[noreturn]] void throw_cudnn(cudnnStatus_t s, const char* call, const char* file, int line);

}  // namespace kiln::kernels::cuda

#define KILN_CUDA_CHECK(call)                                                                          \
  do {                                                                                                 \
    cudaError_t kiln_e_ = (call);                                                                      \
    if (kiln_e_ != cudaSuccess) ::kiln::kernels::cuda::throw_cuda(kiln_e_, #call, __FILE__, __LINE__); \
  } while (0)
#define KILN_CUBLAS_CHECK(call)                                                                                    \
  do {                                                                                                             \
    cublasStatus_t kiln_s_ = (call);                                                                               \
    if (kiln_s_ != CUBLAS_STATUS_SUCCESS) ::kiln::kernels::cuda::throw_cublas(kiln_s_, #call, __FILE__, __LINE__); \
  } while (0)
#define KILN_CUDNN_CHECK(call)                                                                                   \
  do {                                                                                                           \
    cudnnStatus_t kiln_s_ = (call);                                                                              \
    if (kiln_s_ != CUDNN_STATUS_SUCCESS) ::kiln::kernels::cuda::throw_cudnn(kiln_s_, #call, __FILE__, __LINE__); \
  } while (0)
// After every <<<...>>>: launch-configuration errors surface here, not at a later call.
#define KILN_LAUNCH_CHECK(name)                                                                                    \
  do {                                                                                                             \
    cudaError_t kiln_e_ = cudaGetLastError();                                                                      \
    if (kiln_e_ != cudaSuccess) ::kiln::kernels::cuda::throw_cuda(kiln_e_, "launch of " name, __FILE__, __LINE__); \
  } while (0)
