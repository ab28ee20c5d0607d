// CUDA sort of the rows of a dense [rows, n] tensor through CUB's segmented radix sort, which is
// stable. The keys sorted are a copy with NaN made positive and -0 made +0, so that NaN sorts above
// every number in either direction and zeros keep their order, as on the CPU; the values written
// out are gathered from the input by the sorted positions, so they are the original bits. Rows go
// in chunks of under 2^31 elements (CUB counts items in int).
#include <cub/device/device_segmented_radix_sort.cuh>

#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

#define KILN_GRID(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// Radix-sortable key type of each storage type.
template <class T>
struct key_of {
  using type = T;
};
template <>
struct key_of<bool> {
  using type = uint8_t;
};

template <class T, class K>
__global__ void prepare_keys(K* keys, int64_t* positions, int* offsets, const T* x, int64_t count, int64_t n,
                             int64_t rows) {
  KILN_GRID(i, count) {
    T v = x[i];
    if constexpr (is_float_v<T>) {
      const auto c = load_c(v);
      if (c != c)
        v = store_c<T>(NAN);
      else if (c == decltype(c)(0))
        v = store_c<T>(0.0f);
    }
    if constexpr (std::is_same_v<T, bool>)
      keys[i] = uint8_t(v);
    else
      keys[i] = v;
    positions[i] = i % n;
  }
  KILN_GRID(r, rows + 1) offsets[r] = int(r * n);
}

template <class T>
__global__ void gather_sorted(T* values, const int64_t* positions, const T* x, int64_t count, int64_t n) {
  KILN_GRID(i, count) values[i] = x[(i / n) * n + positions[i]];
}

template <class T>
void sort_rows(T* values, int64_t* indices, const T* x, int64_t rows, int64_t n, bool descending) {
  using K = typename key_of<T>::type;
  cudaStream_t s = current_stream();
  const int64_t count = rows * n;
  Workspace keys_in(sizeof(K) * size_t(count)), keys_out(sizeof(K) * size_t(count));
  Workspace positions(sizeof(int64_t) * size_t(count)), offsets(sizeof(int) * size_t(rows + 1));
  prepare_keys<T, K><<<grid_for(std::max(count, rows + 1)), kThreads, 0, s>>>(keys_in.as<K>(), positions.as<int64_t>(),
                                                                              offsets.as<int>(), x, count, n, rows);
  KILN_LAUNCH_CHECK("prepare_keys");
  size_t temp_bytes = 0;
  auto run = [&](void* temp) {
    const int* off = offsets.as<int>();
    if (descending)
      return cub::DeviceSegmentedRadixSort::SortPairsDescending(temp, temp_bytes, keys_in.as<K>(), keys_out.as<K>(),
                                                                positions.as<int64_t>(), indices, int(count), int(rows),
                                                                off, off + 1, 0, int(sizeof(K) * 8), s);
    return cub::DeviceSegmentedRadixSort::SortPairs(temp, temp_bytes, keys_in.as<K>(), keys_out.as<K>(),
                                                    positions.as<int64_t>(), indices, int(count), int(rows), off,
                                                    off + 1, 0, int(sizeof(K) * 8), s);
  };
  KILN_CUDA_CHECK(run(nullptr));
  Workspace temp(std::max<size_t>(temp_bytes, 1));
  KILN_CUDA_CHECK(run(temp.get()));
  if (values) {
    gather_sorted<T><<<grid_for(count), kThreads, 0, s>>>(values, indices, x, count, n);
    KILN_LAUNCH_CHECK("gather_sorted");
  }
}

}  // namespace

void CudaBackend::sort(const View& values, const View& indices, const View& in, bool descending) {
  const int64_t n = in.ndim ? in.sizes[in.ndim - 1] : 1;
  const int64_t rows = n ? in.numel() / n : 0;
  if (rows == 0 || n == 0) return;
  KILN_CHECK(n < (int64_t(1) << 31), "sort: rows of ", n, " elements are too long for the CUDA kernel (< 2^31)");
  const int64_t chunk = std::max<int64_t>(1, ((int64_t(1) << 31) - 1) / n);  // rows per CUB call
  dispatch_all(in.dtype, "sort", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t nr = std::min(chunk, rows - r0);
      sort_rows<T>(values.data ? values.ptr<T>() + r0 * n : nullptr, indices.ptr<int64_t>() + r0 * n,
                   in.ptr<T>() + r0 * n, nr, n, descending);
    }
  });
}

}  // namespace kiln::kernels::cuda
