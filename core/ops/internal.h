// Internal helpers shared by the op front-ends: kernel calls without autograd ("raw" ops) and the
// in-place protocol.
#pragma once

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"

namespace kiln::detail {

// PyTorch's result type: promotion, except that a 0-d operand does not widen a dimensioned one
// of the same kind (float tensor * 0-d double stays float).
DType result_type(const Tensor& a, const Tensor& b);
// A 0-d tensor holding v, with the dtype it should have next to t.
Tensor scalar_like(double v, const Tensor& t);
Tensor cast(const Tensor& x, DType dtype);
Tensor unary_raw(kernels::UnaryOp op, const Tensor& x, double a = 0, double b = 0);
// Broadcasting binary op; inputs are cast to their result type; comparisons give bool.
Tensor binary_raw(kernels::BinaryOp op, const Tensor& x, const Tensor& y, double alpha = 0, double beta = 0);
// Rejects an in-place write into a leaf that requires grad while grad mode is on.
void check_inplace(const Tensor& self, const char* op);
// In place: self = op(self, other), other broadcast to self's shape.
void binary_inplace(kernels::BinaryOp op, Tensor& self, const Tensor& other, double alpha = 0, double beta = 0);
// When the in-place op must be recorded: self takes over the history (and the data) of `result`.
Tensor& rebase(Tensor& self, const Tensor& result, const char* op);
// Output shape of a reduction over dims (keepdim form: 1 in reduced dims).
Shape reduced_shape(const Shape& in, const std::vector<bool>& reduce_mask);
std::vector<bool> reduce_mask(const Tensor& x, const Shape& dims, const char* op);
// Reserves `counters` Philox counters of gen (kiln's default generator when null, under its lock)
// and returns the generator's seed and the first counter.
std::pair<uint64_t, uint64_t> philox_reserve(Generator* gen, uint64_t counters);

// Records a view op whose gradient is `back(g)`.
template <class Back>
Tensor record_view(const char* name, const Tensor& x, Tensor out, Back back) {
  if (autograd::needs_grad({&x})) {
    autograd::record(name, {x}, {out},
                     [back](const std::vector<Tensor>& g) { return std::vector<Tensor>{back(g[0])}; });
  }
  return out;
}

}  // namespace kiln::detail
