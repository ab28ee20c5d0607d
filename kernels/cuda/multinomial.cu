// CUDA multinomial sampling, one thread per row, with the CPU kernel's arithmetic step for step:
// f64 running sums left to right, the same Philox draw per (row, sample), the first column whose
// running sum exceeds the target. So both devices draw the same samples from the same generator.
// Without replacement the row's weights are copied to scratch, and a drawn column's weight zeroed.
#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"

namespace kiln::kernels::cuda {
namespace {

__device__ __forceinline__ double draw(uint64_t seed, uint64_t counter) {
  const Philox4 r = philox4x32_10(seed, counter);
  return double(((uint64_t(r.v[0]) << 32) | r.v[1]) >> 11) * (1.0 / 9007199254740992.0);
}

template <class T>
__global__ void multinomial_rows(int64_t* out, const T* probs, double* scratch, int64_t rows, int64_t c, int64_t k,
                                 bool replacement, uint64_t seed, uint64_t offset) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    const T* p = probs + r * c;
    int64_t* o = out + r * k;
    if (replacement) {
      double total = 0;
      int64_t last_positive = 0;
      for (int64_t j = 0; j < c; ++j) {
        const double w = double(load_c(p[j]));
        total += w;
        if (w > 0) last_positive = j;
      }
      for (int64_t i = 0; i < k; ++i) {
        const double target = draw(seed, offset + uint64_t(r * k + i)) * total;
        double acc = 0;
        int64_t pick = last_positive;
        for (int64_t j = 0; j < c; ++j) {
          acc += double(load_c(p[j]));
          if (acc > target) {
            pick = j < last_positive ? j : last_positive;
            break;
          }
        }
        o[i] = pick;
      }
      continue;
    }
    double* w = scratch + r * c;
    for (int64_t j = 0; j < c; ++j) w[j] = double(load_c(p[j]));
    for (int64_t i = 0; i < k; ++i) {
      double s = 0;
      for (int64_t j = 0; j < c; ++j) s += w[j];
      const double target = draw(seed, offset + uint64_t(r * k + i)) * s;
      double acc = 0;
      int64_t pick = -1;
      for (int64_t j = 0; j < c; ++j) {
        if (w[j] <= 0) continue;
        pick = j;
        acc += w[j];
        if (acc > target) break;
      }
      o[i] = pick;
      w[pick] = 0;
    }
  }
}

}  // namespace

void CudaBackend::multinomial(const View& out, const View& probs, int64_t k, bool replacement, uint64_t seed,
                              uint64_t offset) {
  const int64_t rows = probs.sizes[0], c = probs.sizes[1];
  if (rows == 0) return;
  dispatch_float(probs.dtype, "multinomial", [&](auto tag) {
    using T = decltype(tag);
    Workspace scratch(replacement ? 1 : sizeof(double) * size_t(rows * c));
    multinomial_rows<T><<<grid_for(rows), kThreads, 0, current_stream()>>>(
        out.ptr<int64_t>(), probs.ptr<T>(), scratch.as<double>(), rows, c, k, replacement, seed, offset);
    KILN_LAUNCH_CHECK("multinomial_rows");
  });
}

}  // namespace kiln::kernels::cuda
