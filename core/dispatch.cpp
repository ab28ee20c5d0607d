// Storage and the helpers every op front-end uses to reach a backend: the backend of a device,
// kernel views of tensors, strides, dim wrapping and empty tensors.
#include <algorithm>
#include <memory>

#include "core/dispatch.h"
#include "core/tensor.h"

namespace kiln {

StorageImpl::~StorageImpl() {
  if (!data) return;
  try {
    if (deleter)
      deleter(data);
    else
      detail::backend(device).deallocate(data, nbytes);
  } catch (...) {
    // A destructor must not throw; a failed free is not recoverable here.
  }
}

std::shared_ptr<StorageImpl> StorageImpl::allocate(size_t nbytes, Device device) {
  void* p = detail::backend(device).allocate(nbytes);
  return std::make_shared<StorageImpl>(p, nbytes, device);
}

namespace detail {

kernels::Backend& backend(Device device) {
  if (device.is_cpu()) return kernels::cpu_backend();
  kernels::Backend* b = kernels::cuda_backend();
  KILN_CHECK(b, "device ", device,
             ": this build of kiln has no CUDA backend; rebuild with "
             "-Dcuda=enabled on a machine with the CUDA Toolkit, or use the CPU");
  int count = kernels::cuda_device_count();
  KILN_CHECK(count > 0, "device ", device,
             ": no CUDA GPU is available on this machine; use "
             "kiln::Device::cpu() (check kiln::cuda::is_available() first)");
  KILN_CHECK(device.index < count, "device ", device, ": this machine has ", count,
             " CUDA device(s), cuda:0 to cuda:", count - 1);
  b->set_device(device.index);
  return *b;
}

kernels::View view_of(const Tensor& t) {
  KILN_CHECK(t.dim() <= kernels::kMaxDims, "kiln supports tensors of up to ", kernels::kMaxDims, " dims, got ", t.dim(),
             " (shape ", t.sizes(), ")");
  kernels::View v;
  v.data = t.raw_data();
  v.dtype = t.dtype();
  v.ndim = int(t.dim());
  for (int i = 0; i < v.ndim; ++i) {
    v.sizes[i] = t.sizes()[size_t(i)];
    v.strides[i] = t.strides()[size_t(i)];
  }
  return v;
}

kernels::View view_as(const Tensor& t, const Shape& shape) {
  KILN_CHECK(int64_t(shape.size()) <= kernels::kMaxDims, "kiln supports tensors of up to ", kernels::kMaxDims,
             " dims, got shape ", shape);
  kernels::View v;
  v.data = t.raw_data();
  v.dtype = t.dtype();
  v.ndim = int(shape.size());
  const int64_t lead = int64_t(shape.size()) - t.dim();
  for (int i = 0; i < v.ndim; ++i) {
    v.sizes[i] = shape[size_t(i)];
    int64_t src = i - lead;
    v.strides[i] = (src < 0 || t.sizes()[size_t(src)] == 1) ? 0 : t.strides()[size_t(src)];
  }
  return v;
}

kernels::View null_view(DType dtype) {
  kernels::View v;
  v.dtype = dtype;
  return v;
}

Shape contiguous_strides(const Shape& sizes) {
  Shape st(sizes.size());
  int64_t s = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    st[i] = s;
    s *= std::max<int64_t>(sizes[i], 1);
  }
  return st;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t n = std::max<int64_t>(ndim, 1);
  KILN_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " is out of range for a tensor of ", ndim, " dims (expected ", -n,
             " to ", n - 1, ")");
  return dim < 0 ? dim + n : dim;
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  KILN_CHECK(a.device() == b.device(), op, ": expected all tensors on the same device, got ", a.device(), " and ",
             b.device());
}

Tensor make_empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) KILN_CHECK(s >= 0, "empty: sizes must be non-negative, got ", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = StorageImpl::allocate(size_t(shape_numel(shape)) * kiln::element_size(dtype), device);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

}  // namespace detail

}  // namespace kiln
