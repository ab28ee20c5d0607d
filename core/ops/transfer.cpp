// Copies and conversions: contiguous, clone, dtype casts, transfers between devices (pinned host
// memory included), copy_ and fill_, with their gradients.
#include "core/ops/internal.h"
#include "kernels/runtime.h"

namespace kiln {

using detail::record_view;

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  const Tensor& x = *this;
  Tensor out = detail::make_empty(x.sizes(), x.dtype(), x.device());
  if (out.numel()) detail::backend(x.device()).copy(detail::view_of(out), detail::view_of(x));
  return record_view("clone", x, out, [](const Tensor& g) { return g; });
}

Tensor Tensor::to(DType dtype) const {
  const Tensor& x = *this;
  if (dtype == x.dtype()) return x;
  Tensor out = detail::cast(x, dtype);
  if (!is_floating(dtype)) return out;
  return record_view("to", x, out, [](const Tensor& g) { return g; });  // the engine casts back
}

// Pinned host memory of the CUDA runtime for `shape`, freed back to its cache with the tensor.
static Tensor make_pinned(const Shape& shape, DType dtype, kernels::DeviceRuntime& rt) {
  const size_t nbytes = size_t(detail::shape_numel(shape)) * kiln::element_size(dtype);
  void* p = rt.host_allocate(nbytes);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<StorageImpl>(p, nbytes, Device::cpu(),
                                                [](void* q) { kernels::cuda_runtime()->host_deallocate(q); });
  impl->sizes = shape;
  impl->strides = detail::contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// The CUDA runtime when this build and machine have a GPU, else null.
static kernels::DeviceRuntime* gpu_runtime() {
  kernels::DeviceRuntime* rt = kernels::cuda_runtime();
  return rt && rt->device_count() > 0 ? rt : nullptr;
}

static Tensor transfer(const Tensor& x, Device device, bool non_blocking) {
  Tensor src = x.detach().contiguous();
  const size_t nbytes = size_t(src.numel()) * src.element_size();
  kernels::DeviceRuntime* rt = (device.is_cuda() || x.device().is_cuda()) ? gpu_runtime() : nullptr;
  if (device.is_cpu() && x.device().is_cuda() && non_blocking && rt) {
    // Device -> new pinned tensor, queued on the source device's current stream.
    detail::backend(x.device());  // makes the device current
    Tensor out = make_pinned(x.sizes(), x.dtype(), *rt);
    if (nbytes == 0) return out;
    kernels::StreamHandle stream = rt->current_stream(x.device().index);
    rt->copy_async(out.raw_data(), src.raw_data(), nbytes, /*to_device=*/false, stream);
    rt->host_record_use(out.raw_data(), stream);
    return out;
  }
  Tensor out = detail::make_empty(x.sizes(), x.dtype(), device);
  if (nbytes == 0) return out;
  if (device.is_cpu()) {
    detail::backend(x.device()).copy_to_host(out.raw_data(), src.raw_data(), nbytes);
  } else if (x.device().is_cpu()) {
    detail::backend(device);  // makes the device current
    if (rt && rt->is_pinned(src.raw_data())) {
      // From pinned memory the copy is asynchronous; the pinned block is not reused until the
      // stream has passed this point, and a blocking copy waits for it.
      kernels::StreamHandle stream = rt->current_stream(device.index);
      rt->copy_async(out.raw_data(), src.raw_data(), nbytes, /*to_device=*/true, stream);
      rt->host_record_use(src.raw_data(), stream);
      if (!non_blocking) rt->stream_synchronize(stream);
    } else {
      detail::backend(device).copy_from_host(out.raw_data(), src.raw_data(), nbytes);
    }
  } else {  // between two GPUs, through the host
    Tensor host = transfer(src, Device::cpu(), false);
    detail::backend(device).copy_from_host(out.raw_data(), host.raw_data(), nbytes);
  }
  return out;
}

Tensor Tensor::to(Device device) const { return to(device, false); }

Tensor Tensor::to(Device device, bool non_blocking) const {
  const Tensor& x = *this;
  if (device == x.device()) return x;
  Tensor out = transfer(x, device, non_blocking);
  Device from = x.device();
  return record_view("to", x, out, [from](const Tensor& g) { return g.to(from); });
}

Tensor Tensor::to(Device device, DType dtype) const { return to(device).to(dtype); }

Tensor& Tensor::copy_(const Tensor& src, bool non_blocking) {
  detail::check_inplace(*this, "copy_");
  KILN_CHECK(!(GradMode::is_enabled() && src.requires_grad()),
             "copy_: copying a tensor that "
             "requires grad is not recorded; detach() it or copy inside kiln::NoGradGuard");
  KILN_CHECK(broadcast_shapes(sizes(), src.sizes()) == sizes(), "copy_: source of shape ", src.sizes(),
             " does not broadcast to the destination's shape ", sizes());
  Tensor s = src.device() == device() ? src : transfer(src, device(), non_blocking);
  if (numel()) detail::backend(device()).copy(detail::view_of(*this), detail::view_as(s, sizes()));
  bump_version();
  return *this;
}

bool Tensor::is_pinned() const {
  if (!device().is_cpu() || !checked()->storage->data) return false;
  kernels::DeviceRuntime* rt = gpu_runtime();
  return rt && rt->is_pinned(checked()->storage->data);
}

Tensor Tensor::pin_memory() const {
  KILN_CHECK(device().is_cpu(), "pin_memory: only CPU tensors can be pinned, this one is on ", device());
  kernels::DeviceRuntime* rt = kernels::cuda_runtime();
  KILN_CHECK(rt && rt->device_count() > 0, "pin_memory: page-locked memory needs a CUDA GPU, and ",
             rt ? "this machine has none" : "this build of kiln has no CUDA backend",
             "; check kiln::cuda::is_available() before pinning (DataLoader's pin_memory=true does)");
  if (is_pinned()) return *this;
  Tensor out = make_pinned(sizes(), dtype(), *rt);
  if (numel()) kernels::cpu_backend().copy(detail::view_of(out), detail::view_of(detach()));
  return out;
}

Tensor& Tensor::fill_(double value) {
  detail::check_inplace(*this, "fill_");
  if (numel()) detail::backend(device()).fill(detail::view_of(*this), value);
  bump_version();
  return *this;
}

}  // namespace kiln
