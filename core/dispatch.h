// Internal: from tensors to kernel views and the backend of their device.
#pragma once

#include "core/tensor.h"
#include "kernels/backend.h"

namespace kiln::detail {

// The backend for `device`, made current for it (a clear error if kiln or the machine lacks it).
kernels::Backend& backend(Device device);
// The tensor as a kernel view (sizes and strides as they are).
kernels::View view_of(const Tensor& t);
// The tensor broadcast to `shape` (stride 0 along broadcast dims).
kernels::View view_as(const Tensor& t, const Shape& shape);
// A view with null data: "not given" for optional kernel operands.
kernels::View null_view(DType dtype = DType::f32);

Shape contiguous_strides(const Shape& sizes);
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
int64_t shape_numel(const Shape& s);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
// Fresh dense tensor (no autograd) with the given shape and options.
Tensor make_empty(const Shape& shape, DType dtype, Device device);

}  // namespace kiln::detail
