// CUDA inclusive prefix sums along the middle dim of [outer, n, inner]: one thread per (outer,
// inner) column walks its n elements in order, accumulating in f64 for floating types (i64 for
// integers), the CPU kernel's order and precision, so both devices give the same sums. Reads are
// coalesced when inner > 1 (neighbouring threads, neighbouring columns); with inner == 1 each
// thread owns a row, which suits the short rows of sequence models.
#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

template <class T, class A>
__global__ void cumsum_columns(T* __restrict__ y, const T* __restrict__ x, int64_t outer, int64_t n, int64_t inner) {
  for (int64_t col = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; col < outer * inner;
       col += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (col / inner) * n * inner + col % inner;
    A acc = A(0);
    for (int64_t i = 0; i < n; ++i) {
      acc += A(load_c(x[base + i * inner]));
      y[base + i * inner] = store_c<T>(acc);
    }
  }
}

}  // namespace

void CudaBackend::cumsum(const View& out, const View& in, int64_t outer, int64_t n, int64_t inner) {
  dispatch_all(in.dtype, "cumsum", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      fail("cumsum: bool tensors are summed as int64; convert first");
    } else {
      using A = std::conditional_t<is_float_v<T>, double, int64_t>;
      if (outer * inner == 0) return;
      cumsum_columns<T, A>
          <<<grid_for(outer * inner), kThreads, 0, current_stream()>>>(out.ptr<T>(), in.ptr<T>(), outer, n, inner);
      KILN_LAUNCH_CHECK("cumsum_columns");
    }
  });
}

}  // namespace kiln::kernels::cuda
