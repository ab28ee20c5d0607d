// CPU gather and scatter along one dim. Every position of `index` names, through its value, the
// coordinate along `dim` of an element of the other tensor; the remaining coordinates are the
// position's own. Gather runs in parallel over output rows; scatter runs on one thread, so that
// scatter-add sums in a fixed order and repeated indices never race.
#include <type_traits>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace kiln::kernels::cpu {
namespace {

// Visits rows [r0, r1) of a shape (a row: the positions along its last dim), handing each row's
// coordinates in the other dims to row(r, coord); the row sets coord[last] itself.
struct Walker {
  int ndim;
  const int64_t* sizes;

  template <class F>
  void rows_range(int64_t r0, int64_t r1, F&& row) const {
    int64_t coord[kMaxDims] = {};
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r;
      for (int d = ndim - 2; d >= 0; --d) {
        coord[d] = rem % sizes[d];
        rem /= sizes[d];
      }
      row(r, coord);
    }
  }
};

int64_t dot(const int64_t* coord, const int64_t* strides, int n, int skip) {
  int64_t off = 0;
  for (int d = 0; d < n; ++d)
    if (d != skip) off += coord[d] * strides[d];
  return off;
}

}  // namespace

void CpuBackend::gather(const View& out, const View& in, const View& index, int dim) {
  const int nd = index.ndim;
  if (nd == 0) {  // 0-d: one element
    KILN_DISPATCH_ALL(in.dtype, "gather", [&](auto tag) {
      using T = decltype(tag);
      out.ptr<T>()[0] = in.ptr<T>()[index.ptr<int64_t>()[0] * (in.ndim ? in.strides[0] : 0)];
    });
    return;
  }
  const int64_t n = index.sizes[nd - 1];
  const int64_t rows = n ? index.numel() / n : 0;
  const int last = nd - 1;
  KILN_DISPATCH_ALL(in.dtype, "gather", [&](auto tag) {
    using T = decltype(tag);
    const T* x = in.ptr<T>();
    T* y = out.ptr<T>();
    const int64_t* ix = index.ptr<int64_t>();
    Walker w{nd, index.sizes};
    parallel_chunks(rows, threads_for(rows * n), [&](int64_t r0, int64_t r1) {
      w.rows_range(r0, r1, [&](int64_t r, int64_t* coord) {
        for (int64_t j = 0; j < n; ++j) {
          coord[last] = j;
          const int64_t v = ix[dot(coord, index.strides, nd, -1)];
          y[r * n + j] = x[dot(coord, in.strides, nd, dim) + v * in.strides[dim]];
        }
      });
    });
  });
}

void CpuBackend::scatter(const View& self, const View& index, const View& src, int dim, bool accumulate) {
  const int nd = index.ndim;
  const int64_t n = nd ? index.sizes[nd - 1] : 1;
  const int64_t rows = nd ? (n ? index.numel() / n : 0) : 1;
  const int last = nd - 1;
  int64_t self_strides[kMaxDims];
  {
    int64_t st = 1;
    for (int d = self.ndim - 1; d >= 0; --d) {
      self_strides[d] = st;
      st *= self.sizes[d];
    }
  }
  KILN_DISPATCH_ALL(self.dtype, "scatter", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    T* y = self.ptr<T>();
    const T* s = src.ptr<T>();
    const int64_t* ix = index.ptr<int64_t>();
    auto put = [&](int64_t dst, int64_t from) {
      if constexpr (std::is_same_v<T, bool>) {
        y[dst] = accumulate ? (y[dst] || s[from]) : s[from];
      } else {
        y[dst] = accumulate ? T(C(y[dst]) + C(s[from])) : s[from];
      }
    };
    if (nd == 0) return put(ix[0] * (self.ndim ? self_strides[0] : 0), 0);
    Walker w{nd, index.sizes};
    w.rows_range(0, rows, [&](int64_t, int64_t* coord) {
      for (int64_t j = 0; j < n; ++j) {
        coord[last] = j;
        const int64_t v = ix[dot(coord, index.strides, nd, -1)];
        put(dot(coord, self_strides, nd, dim) + v * self_strides[dim], dot(coord, src.strides, nd, -1));
      }
    });
  });
}

}  // namespace kiln::kernels::cpu
