// CUDA gather and scatter along one dim: one thread per position of `index` (which has at most
// kMaxDims dims), its coordinates unravelled once, the index value read, and the element moved.
// Gather and plain scatter move raw bytes (any dtype); scatter-add adds with atomics (f32, f64, f16,
// bf16, i32, i64), so repeated indices sum in an order that may vary between runs (one thread in
// index order under kiln::use_deterministic_algorithms).
#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

struct Geometry {
  int ndim;
  int dim;
  int64_t sizes[kMaxDims];  // index's shape
  int64_t index_strides[kMaxDims];
  int64_t other_strides[kMaxDims];  // of the gathered input, or of the dense self
  int64_t src_strides[kMaxDims];    // scatter's src (viewed with index's shape)
  int64_t numel;
};

Geometry geometry(const View& index, const View& other, const View* src, int dim, bool other_dense) {
  Geometry g{};
  g.ndim = index.ndim;
  g.dim = dim;
  g.numel = index.numel();
  int64_t dense = 1;
  for (int d = other.ndim - 1; d >= 0; --d) {
    g.other_strides[d] = other_dense ? dense : other.strides[d];
    dense *= other.sizes[d];
  }
  for (int d = 0; d < index.ndim; ++d) {
    g.sizes[d] = index.sizes[d];
    g.index_strides[d] = index.strides[d];
    g.src_strides[d] = src ? src->strides[d] : 0;
  }
  return g;
}

// Offsets of position i in index, in the other tensor (with the index value along dim) and in src.
__device__ __forceinline__ void offsets(const Geometry& g, const int64_t* idx, int64_t i, int64_t& other,
                                        int64_t& src) {
  int64_t io = 0, oo = 0, so = 0;
  for (int d = g.ndim - 1; d >= 0; --d) {
    const int64_t c = i % g.sizes[d];
    i /= g.sizes[d];
    io += c * g.index_strides[d];
    so += c * g.src_strides[d];
    if (d != g.dim) oo += c * g.other_strides[d];
  }
  if (g.ndim == 0) {  // 0-d index and tensor: the one element (core checked the index is 0)
    other = 0;
    src = 0;
    return;
  }
  other = oo + idx[io] * g.other_strides[g.dim];
  src = so;
}

template <class R>
__global__ void gather_kernel(Geometry g, R* out, const R* in, const int64_t* idx) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t o, s;
    offsets(g, idx, i, o, s);
    out[i] = in[o];
  }
}

template <class R>
__global__ void scatter_kernel(Geometry g, R* self, const int64_t* idx, const R* src) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t o, s;
    offsets(g, idx, i, o, s);
    self[o] = src[s];
  }
}

template <class T>
__global__ void scatter_add_kernel(Geometry g, T* self, const int64_t* idx, const T* src) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t o, s;
    offsets(g, idx, i, o, s);
    if constexpr (std::is_same_v<T, int64_t>)
      atomicAdd(reinterpret_cast<unsigned long long*>(self + o), static_cast<unsigned long long>(src[s]));
    else
      atomicAdd(self + o, src[s]);
  }
}

// Calls f(R{}) with an unsigned type as wide as one element of dtype t.
template <class F>
void by_width(DType t, F&& f) {
  switch (element_size(t)) {
    case 8: return f(uint64_t{});
    case 4: return f(uint32_t{});
    case 2: return f(uint16_t{});
    default: return f(uint8_t{});
  }
}

}  // namespace

void CudaBackend::gather(const View& out, const View& in, const View& index, int dim) {
  if (index.numel() == 0) return;
  const Geometry g = geometry(index, in, nullptr, dim, false);
  by_width(in.dtype, [&](auto tag) {
    using R = decltype(tag);
    gather_kernel<R>
        <<<grid_for(g.numel), kThreads, 0, current_stream()>>>(g, out.ptr<R>(), in.ptr<R>(), index.ptr<int64_t>());
    KILN_LAUNCH_CHECK("gather_kernel");
  });
}

void CudaBackend::scatter(const View& self, const View& index, const View& src, int dim, bool accumulate) {
  if (index.numel() == 0) return;
  const Geometry g = geometry(index, self, &src, dim, true);
  if (!accumulate) {
    by_width(self.dtype, [&](auto tag) {
      using R = decltype(tag);
      scatter_kernel<R>
          <<<grid_for(g.numel), kThreads, 0, current_stream()>>>(g, self.ptr<R>(), index.ptr<int64_t>(), src.ptr<R>());
      KILN_LAUNCH_CHECK("scatter_kernel");
    });
    return;
  }
  dispatch_all(self.dtype, "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, uint8_t>) {
      fail("scatter_add: ", dtype_name(self.dtype),
           " tensors have no atomic add on CUDA; convert to int32 or "
           "int64 first");
    } else {
      // Atomics add in whatever order the threads arrive; under kiln::use_deterministic_algorithms
      // one thread adds in index order instead (slow, and bit-identical to the CPU's sums).
      const bool det = deterministic();
      scatter_add_kernel<T><<<det ? 1 : grid_for(g.numel), det ? 1 : kThreads, 0, current_stream()>>>(
          g, self.ptr<T>(), index.ptr<int64_t>(), src.ptr<T>());
      KILN_LAUNCH_CHECK("scatter_add_kernel");
    }
  });
}

}  // namespace kiln::kernels::cuda
