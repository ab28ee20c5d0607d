// Embedding rows: gather (one thread per element, rows moved as raw bytes) with a device-side
// check of the indices, and the backward's scatter-add (atomicAdd for repeated indices).
#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

__global__ void first_bad_index(const int64_t* idx, int64_t n, int64_t v, unsigned long long* first) {
  KILN_GRID_LOOP(i, n) {
    if (idx[i] < 0 || idx[i] >= v) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

template <class T>
__global__ void gather_rows(T* out, const T* w, const int64_t* idx, int64_t n, int64_t d) {
  KILN_GRID_LOOP(i, n * d) { out[i] = w[idx[i / d] * d + i % d]; }
}

template <class T>
__global__ void scatter_add_rows(T* gw, const T* go, const int64_t* idx, int64_t n, int64_t d) {
  KILN_GRID_LOOP(i, n * d) { atomic_add(gw + idx[i / d] * d + i % d, load_c(go[i])); }
}

}  // namespace

int64_t CudaBackend::index_select_rows(const View& out, const View& weight, const View& index) {
  const int64_t n = index.numel(), v = weight.sizes[0];
  const int64_t d = weight.numel() / std::max<int64_t>(v, 1);
  if (n == 0) return -1;
  cudaStream_t s = current_stream();
  // Validate on the device; one 8-byte read back (a sync) tells whether any index is bad.
  Workspace flag(sizeof(unsigned long long));
  KILN_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0xff, sizeof(unsigned long long), s));
  first_bad_index<<<grid_for(n), kThreads, 0, s>>>(index.ptr<int64_t>(), n, v, flag.as<unsigned long long>());
  KILN_LAUNCH_CHECK("first_bad_index");
  unsigned long long first = 0;
  copy_to_host(&first, flag.get(), sizeof(first));
  if (first != ~0ull) {
    int64_t bad = 0;
    copy_to_host(&bad, index.ptr<int64_t>() + first, sizeof(bad));
    return bad;
  }
  if (n * d == 0) return -1;
  const size_t es = element_size(weight.dtype);
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    gather_rows<T><<<grid_for(n * d), kThreads, 0, s>>>(out.ptr<T>(), weight.ptr<T>(), index.ptr<int64_t>(), n, d);
    KILN_LAUNCH_CHECK("gather_rows");
  };
  // Rows are moved as raw bytes: the dtype only sets the element width.
  if (es == 8)
    launch(int64_t{});
  else if (es == 4)
    launch(int32_t{});
  else if (es == 2)
    launch(int16_t{});
  else
    launch(int8_t{});
  return -1;
}

void CudaBackend::index_add_rows(const View& grad_weight, const View& grad_out, const View& index) {
  dispatch_float(grad_weight.dtype, "embedding backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = index.numel(), v = grad_weight.sizes[0];
    const int64_t d = grad_weight.numel() / std::max<int64_t>(v, 1);
    if (n * d == 0) return;
    scatter_add_rows<T><<<grid_for(n * d), kThreads, 0, current_stream()>>>(grad_weight.ptr<T>(), grad_out.ptr<T>(),
                                                                            index.ptr<int64_t>(), n, d);
    KILN_LAUNCH_CHECK("scatter_add_rows");
  });
}

}  // namespace kiln::kernels::cuda
