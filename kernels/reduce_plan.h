// How a reduction walks its input, shared by the CPU and CUDA backends: the input's dims split
// into kept ones (the output's size there equals the input's) and reduced ones (the output has
// size 1), size-1 dims dropped and neighbours that are contiguous with each other merged, so a
// dense reduction over trailing dims becomes one kept and one reduced dim.
//   ReducePlan s = plan_reduction(out, in);   // s.kept_numel outputs of s.red_numel inputs each
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace kiln::kernels {

struct ReducePlan {
  int nk = 0, nr = 0;  // kept and reduced dims, after merging
  int64_t ksizes[kMaxDims] = {}, kstrides[kMaxDims] = {};
  int64_t rsizes[kMaxDims] = {}, rstrides[kMaxDims] = {};
  int64_t kept_numel = 1, red_numel = 1;
};

inline ReducePlan plan_reduction(const View& out, const View& in) {
  ReducePlan s;
  for (int d = 0; d < in.ndim; ++d) {
    if (in.sizes[d] == 1) continue;
    const bool reduced = out.sizes[d] == 1;
    int64_t* sz = reduced ? s.rsizes : s.ksizes;
    int64_t* st = reduced ? s.rstrides : s.kstrides;
    int& n = reduced ? s.nr : s.nk;
    if (n > 0 && st[n - 1] == in.strides[d] * in.sizes[d]) {
      sz[n - 1] *= in.sizes[d];
      st[n - 1] = in.strides[d];
    } else {
      sz[n] = in.sizes[d];
      st[n] = in.strides[d];
      ++n;
    }
    (reduced ? s.red_numel : s.kept_numel) *= in.sizes[d];
  }
  return s;
}

}  // namespace kiln::kernels
