// Tensor factories: empty, filled, strided, ranges, and tensors from host memory or values.
#include <cmath>
#include <cstring>

#include "core/dispatch.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace kiln {

Tensor empty(Shape shape, TensorOptions o) {
  Tensor t = detail::make_empty(shape, o.dtype, o.device);
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor full(Shape shape, double value, TensorOptions o) {
  Tensor t = detail::make_empty(shape, o.dtype, o.device);
  if (t.numel()) detail::backend(o.device).fill(detail::view_of(t), value);
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor zeros(Shape shape, TensorOptions o) { return full(std::move(shape), 0.0, o); }
Tensor ones(Shape shape, TensorOptions o) { return full(std::move(shape), 1.0, o); }
Tensor scalar_tensor(double value, TensorOptions o) { return full({}, value, o); }
Tensor empty_like(const Tensor& t) { return empty(t.sizes(), t.options()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), t.options()); }
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), t.options()); }
Tensor full_like(const Tensor& t, double v) { return full(t.sizes(), v, t.options()); }

Tensor empty_strided(Shape shape, Shape strides, TensorOptions o) {
  KILN_CHECK(shape.size() == strides.size(), "empty_strided: ", shape.size(), " sizes but ", strides.size(),
             " strides");
  int64_t extent = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    KILN_CHECK(shape[i] >= 0 && strides[i] >= 0, "empty_strided: negative size or stride in ", shape, " / ", strides);
    if (shape[i] == 0)
      extent = 0;
    else if (extent)
      extent += (shape[i] - 1) * strides[i];
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = StorageImpl::allocate(size_t(extent) * kiln::element_size(o.dtype), o.device);
  impl->sizes = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = o.dtype;
  return Tensor(std::move(impl));
}

Tensor arange(double end, TensorOptions o) { return arange(0, end, 1, o); }
Tensor arange(double start, double end, double step, TensorOptions o) {
  KILN_CHECK(step != 0, "arange: step must be non-zero");
  KILN_CHECK((end - start) / step >= 0, "arange: the range [", start, ", ", end, ") is empty or runs against the step ",
             step);
  int64_t n = int64_t(std::ceil((end - start) / step));
  Tensor t = detail::make_empty({n}, o.dtype, o.device);
  if (n) detail::backend(o.device).arange(detail::view_of(t), start, step);
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor linspace(double start, double end, int64_t steps, TensorOptions o) {
  KILN_CHECK(steps >= 0, "linspace: steps must be non-negative, got ", steps);
  double step = steps > 1 ? (end - start) / double(steps - 1) : 0.0;
  Tensor t = detail::make_empty({steps}, o.dtype, o.device);
  if (steps) detail::backend(o.device).arange(detail::view_of(t), start, step);
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor from_buffer(const void* data, Shape shape, DType dtype, TensorOptions o) {
  Tensor host = detail::make_empty(shape, dtype, Device::cpu());
  if (host.numel()) std::memcpy(host.raw_data(), data, size_t(host.numel()) * host.element_size());
  Tensor t = host.to(o.device);
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor from_blob(void* data, Shape shape, DType dtype, std::function<void(void*)> deleter, Device device) {
  auto impl = std::make_shared<TensorImpl>();
  size_t n = size_t(detail::shape_numel(shape)) * kiln::element_size(dtype);
  // Without a deleter the memory is borrowed: nothing is freed when the last view goes.
  if (!deleter) deleter = [](void*) {};
  impl->storage = std::make_shared<StorageImpl>(data, n, device, std::move(deleter));
  impl->strides = detail::contiguous_strides(shape);
  impl->sizes = std::move(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

template <class T>
Tensor tensor(const std::vector<T>& values, Shape shape, TensorOptions o) {
  if (shape.empty() && values.size() != 1) shape = {int64_t(values.size())};
  KILN_CHECK(detail::shape_numel(shape) == int64_t(values.size()), "tensor: ", values.size(),
             " values do not fill shape ", shape);
  Tensor host = detail::make_empty(shape, dtype_of_v<T>, Device::cpu());
  T* p = static_cast<T*>(host.raw_data());
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  Tensor t = host.to(o.device, o.dtype);
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}
template Tensor tensor<float>(const std::vector<float>&, Shape, TensorOptions);
template Tensor tensor<double>(const std::vector<double>&, Shape, TensorOptions);
template Tensor tensor<int32_t>(const std::vector<int32_t>&, Shape, TensorOptions);
template Tensor tensor<int64_t>(const std::vector<int64_t>&, Shape, TensorOptions);
template Tensor tensor<uint8_t>(const std::vector<uint8_t>&, Shape, TensorOptions);
template Tensor tensor<Half>(const std::vector<Half>&, Shape, TensorOptions);
template Tensor tensor<BFloat16>(const std::vector<BFloat16>&, Shape, TensorOptions);
template <>
Tensor tensor<bool>(const std::vector<bool>& values, Shape shape, TensorOptions o) {
  std::vector<uint8_t> bytes(values.begin(), values.end());
  return tensor<uint8_t>(bytes, std::move(shape), {.dtype = DType::u8, .device = o.device}).to(o.dtype);
}

}  // namespace kiln
