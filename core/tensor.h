// kiln::Tensor: a cheap, shared handle to an n-dimensional strided array on a device, with
// PyTorch's semantics (row-major, views share storage, broadcasting) and tape-based autograd.
//   auto x = kiln::randn({4, 3}, {.requires_grad = true});
//   auto y = (x * 2).sum();
//   y.backward();            // x.grad() == 2 everywhere
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace kiln {

using Shape = std::vector<int64_t>;

// A block of device memory. Views of it share one version counter, bumped by in-place writes, so
// autograd can tell when a tensor it saved has been overwritten.
struct StorageImpl {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  std::function<void(void*)> deleter;  // empty: freed through the device's backend
  std::atomic<uint64_t> version{0};

  StorageImpl(void* d, size_t n, Device dev, std::function<void(void*)> del = {})
      : data(d), nbytes(n), device(dev), deleter(std::move(del)) {}
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;
  ~StorageImpl();
  static std::shared_ptr<StorageImpl> allocate(size_t nbytes, Device device);
};

struct AutogradMeta;  // core/autograd.h

struct TensorImpl {
  std::shared_ptr<StorageImpl> storage;
  Shape sizes;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // set once the tensor takes part in autograd
};

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool requires_grad = false;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // Metadata.
  const Shape& sizes() const { return checked()->sizes; }
  const Shape& strides() const { return checked()->strides; }
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return int64_t(sizes().size()); }
  int64_t numel() const;
  int64_t storage_offset() const { return checked()->offset; }
  DType dtype() const { return checked()->dtype; }
  Device device() const { return checked()->storage->device; }
  TensorOptions options() const { return {dtype(), device(), false}; }
  size_t element_size() const { return kiln::element_size(dtype()); }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }
  uint64_t version() const { return checked()->storage->version.load(); }
  void bump_version() const { checked()->storage->version.fetch_add(1); }

  // Raw data (first element of this view). data_ptr<T>() checks T against dtype().
  void* raw_data() const;
  template <class T>
  T* data_ptr() const {
    KILN_CHECK(dtype_of_v<T> == dtype(), "data_ptr: tensor has dtype ", dtype(),
               ", not the requested ", dtype_of_v<T>);
    return static_cast<T*>(raw_data());
  }
  // The value of a one-element tensor as T (copies from the device, converts the dtype).
  template <class T>
  T item() const {
    return static_cast<T>(item_double());
  }
  double item_double() const;
  // All elements in row-major order, converted to T (copies from the device).
  template <class T>
  std::vector<T> to_vector() const;

  // Autograd.
  bool requires_grad() const;
  Tensor& requires_grad_(bool requires_grad = true);
  bool is_leaf() const;
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  Tensor& mutable_grad() const;  // the leaf's .grad slot
  void backward(const Tensor& gradient = {}, bool retain_graph = false) const;
  Tensor detach() const;
  Tensor& detach_();
  // Called with the accumulated .grad of this leaf once backward() has finished adding to it.
  void register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) const;

  // Conversion and copies.
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  // non_blocking: a copy to a CUDA device from pinned memory, or from a CUDA device into a new
  // pinned tensor, is queued on the current stream and returns at once (synchronise, or wait on
  // an event, before reading the result on the host); other copies block as without it.
  Tensor to(Device device, bool non_blocking) const;
  Tensor to(Device device, DType dtype) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor& copy_(const Tensor& src, bool non_blocking = false);  // broadcasts, converts dtype and device
  // A copy in page-locked host memory (this tensor if it already is), which CUDA copies read
  // asynchronously; needs a CUDA GPU. is_pinned() is false without one.
  Tensor pin_memory() const;
  bool is_pinned() const;
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // Views (share storage).
  Tensor view(Shape shape) const;
  Tensor reshape(Shape shape) const;
  Tensor permute(Shape dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor expand(Shape shape) const;
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // Common ops as methods (free functions in core/ops.h hold the full set).
  Tensor sum() const;
  Tensor sum(Shape dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(Shape dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor min() const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor abs() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor pow(double exponent) const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor matmul(const Tensor& other) const;
  Tensor neg() const;
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(const Tensor& other);
  Tensor& div_(double value);
  Tensor& clamp_(double lo, double hi);

 private:
  TensorImpl* checked() const {
    KILN_CHECK(impl_, "Tensor: this tensor is undefined (default-constructed); create it with a "
                      "factory such as kiln::zeros before use");
    return impl_.get();
  }
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Shape& s);
std::string shape_str(const Shape& s);

// ---- Factories ----
Tensor empty(Shape shape, TensorOptions options = {});
Tensor zeros(Shape shape, TensorOptions options = {});
Tensor ones(Shape shape, TensorOptions options = {});
Tensor full(Shape shape, double value, TensorOptions options = {});
Tensor scalar_tensor(double value, TensorOptions options = {});
Tensor arange(double end, TensorOptions options = {.dtype = DType::i64});
Tensor arange(double start, double end, double step = 1.0, TensorOptions options = {.dtype = DType::i64});
Tensor linspace(double start, double end, int64_t steps, TensorOptions options = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor empty_strided(Shape shape, Shape strides, TensorOptions options = {});

// From host data. `tensor` copies; `from_blob` wraps memory it does not own (the caller keeps it
// alive, or passes a deleter that frees it when the last view goes).
template <class T>
Tensor tensor(const std::vector<T>& values, Shape shape = {}, TensorOptions options = {
                                                                   .dtype = dtype_of_v<T>});
Tensor from_buffer(const void* data, Shape shape, DType dtype, TensorOptions options = {});
Tensor from_blob(void* data, Shape shape, DType dtype, std::function<void(void*)> deleter = {},
                 Device device = Device::cpu());

// ---- Random numbers (Philox4x32-10, counter-based: the same seed gives the same bits) ----
void manual_seed(uint64_t seed);
uint64_t initial_seed();
// A generator owns a seed and an offset into its Philox stream; each draw advances the offset.
// One generator is not thread-safe; the default one is guarded by kiln.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}
  void manual_seed(uint64_t seed);
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Reserves `counters` Philox counters and returns the first.
  uint64_t advance(uint64_t counters);
  // Host-side draws for samplers and transforms.
  uint64_t next_u64();
  double next_double();  // [0, 1)
  int64_t randint(int64_t low, int64_t high);

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};
Generator& default_generator();
Tensor rand(Shape shape, TensorOptions options = {}, Generator* gen = nullptr);
Tensor randn(Shape shape, TensorOptions options = {}, Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, Shape shape, TensorOptions options = {.dtype = DType::i64},
               Generator* gen = nullptr);
Tensor rand_like(const Tensor& t);
Tensor randn_like(const Tensor& t);
Tensor randperm(int64_t n, Generator* gen = nullptr);
Tensor& uniform_(Tensor& t, double low, double high, Generator* gen = nullptr);
Tensor& normal_(Tensor& t, double mean, double std, Generator* gen = nullptr);
Tensor bernoulli(Shape shape, double p, TensorOptions options = {}, Generator* gen = nullptr);

}  // namespace kiln
