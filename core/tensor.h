// kiln::Tensor: a cheap, shared handle to an n-dimensional strided array on a device, with
// PyTorch's semantics (row-major, views share storage, broadcasting) and tape-based autograd.
//   auto x = kiln::randn({4, 3}, {.requires_grad = true});
//   auto y = (x * 2).sum();
//   y.backward();            // x.grad() == 2 everywhere
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace kiln {

// A tensor's sizes (or strides, or a list of dims). A vector type of kiln's own, so that
// `std::cout << t.sizes()` finds kiln's operator<< by argument-dependent lookup.
struct Shape : std::vector<int64_t> {
  using std::vector<int64_t>::vector;
  Shape() = default;
  Shape(const std::vector<int64_t>& v) : std::vector<int64_t>(v) {}        // NOLINT: a vector is a shape
  Shape(std::vector<int64_t>&& v) : std::vector<int64_t>(std::move(v)) {}  // NOLINT
};

// An integer naming a dim (or a size) where kiln also takes a Shape: x.sum(-1), x.view(4, -1).
template <class I>
concept DimIndex = std::integral<I> && !std::same_as<I, bool>;

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
    KILN_CHECK(dtype_of_v<T> == dtype(), "data_ptr: tensor has dtype ", dtype(), ", not the requested ", dtype_of_v<T>);
    return static_cast<T*>(raw_data());
  }
  // The value of a one-element tensor as T, double unless asked (copies from the device, converts
  // the dtype): loss.item(), n.item<int64_t>().
  template <class T = double>
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
  // The same with the sizes (dims) spelled out: x.view(b, t, -1), x.permute(0, 2, 1).
  template <DimIndex... I>
  Tensor view(I... sizes) const {
    return view(Shape{int64_t(sizes)...});
  }
  template <DimIndex... I>
  Tensor reshape(I... sizes) const {
    return reshape(Shape{int64_t(sizes)...});
  }
  template <DimIndex... I>
  Tensor permute(I... dims) const {
    return permute(Shape{int64_t(dims)...});
  }
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
  template <DimIndex... I>
  Tensor expand(I... sizes) const {
    return expand(Shape{int64_t(sizes)...});
  }
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  const Shape& shape() const { return sizes(); }
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // Common ops as methods, beside the free functions of core/ops.h (which hold the full set and
  // document the semantics). A reduction's dims may be one integer: x.sum(-1), x.amax(1, true).
  Tensor sum() const;
  Tensor sum(Shape dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(Shape dims, bool keepdim = false) const;
  Tensor var(Shape dims = {}, int64_t correction = 1, bool keepdim = false) const;
  Tensor std(Shape dims = {}, int64_t correction = 1, bool keepdim = false) const;
  Tensor amax(Shape dims = {}, bool keepdim = false) const;
  Tensor amin(Shape dims = {}, bool keepdim = false) const;
  template <DimIndex I>
  Tensor sum(I dim, bool keepdim = false) const {
    return sum(Shape{int64_t(dim)}, keepdim);
  }
  template <DimIndex I>
  Tensor mean(I dim, bool keepdim = false) const {
    return mean(Shape{int64_t(dim)}, keepdim);
  }
  template <DimIndex I>
  Tensor var(I dim, int64_t correction = 1, bool keepdim = false) const {
    return var(Shape{int64_t(dim)}, correction, keepdim);
  }
  template <DimIndex I>
  Tensor std(I dim, int64_t correction = 1, bool keepdim = false) const {
    return std(Shape{int64_t(dim)}, correction, keepdim);
  }
  template <DimIndex I>
  Tensor amax(I dim, bool keepdim = false) const {
    return amax(Shape{int64_t(dim)}, keepdim);
  }
  template <DimIndex I>
  Tensor amin(I dim, bool keepdim = false) const {
    return amin(Shape{int64_t(dim)}, keepdim);
  }
  Tensor max() const;
  Tensor min() const;
  std::tuple<Tensor, Tensor> max(int64_t dim, bool keepdim = false) const;  // (values, indices)
  std::tuple<Tensor, Tensor> min(int64_t dim, bool keepdim = false) const;
  Tensor argmax() const;  // the position in the flattened tensor
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor argmin() const;
  Tensor argmin(int64_t dim, bool keepdim = false) const;
  Tensor all() const;
  Tensor any() const;
  Tensor norm() const;
  Tensor cumsum(int64_t dim) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor masked_fill(const Tensor& mask, double value) const;
  Tensor masked_fill(const Tensor& mask, const Tensor& value) const;
  Tensor& masked_fill_(const Tensor& mask, double value);
  Tensor tril(int64_t diagonal = 0) const;
  Tensor triu(int64_t diagonal = 0) const;
  Tensor gather(int64_t dim, const Tensor& index) const;
  Tensor scatter(int64_t dim, const Tensor& index, const Tensor& src) const;
  Tensor scatter(int64_t dim, const Tensor& index, double value) const;
  Tensor scatter_add(int64_t dim, const Tensor& index, const Tensor& src) const;
  Tensor& scatter_(int64_t dim, const Tensor& index, const Tensor& src);
  Tensor& scatter_add_(int64_t dim, const Tensor& index, const Tensor& src);
  Tensor index_select(int64_t dim, const Tensor& index) const;
  std::tuple<Tensor, Tensor> sort(int64_t dim = -1, bool descending = false) const;
  Tensor argsort(int64_t dim = -1, bool descending = false) const;
  std::tuple<Tensor, Tensor> topk(int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true) const;
  Tensor flip(Shape dims) const;
  std::vector<Tensor> chunk(int64_t chunks, int64_t dim = 0) const;
  std::vector<Tensor> split(int64_t split_size, int64_t dim = 0) const;
  std::vector<Tensor> split(const std::vector<int64_t>& split_sizes, int64_t dim = 0) const;
  Tensor eq(const Tensor& other) const;
  Tensor ne(const Tensor& other) const;
  Tensor lt(const Tensor& other) const;
  Tensor le(const Tensor& other) const;
  Tensor gt(const Tensor& other) const;
  Tensor ge(const Tensor& other) const;
  Tensor abs() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor pow(double exponent) const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor sin() const;
  Tensor cos() const;
  Tensor silu() const;
  Tensor gelu(const std::string& approximate = "none") const;
  Tensor square() const;
  Tensor rsqrt() const;
  Tensor sign() const;
  Tensor clamp(std::optional<double> lo, std::optional<double> hi = std::nullopt) const;
  Tensor matmul(const Tensor& other) const;
  Tensor neg() const;
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other);
  Tensor& sub_(double value);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(const Tensor& other);
  Tensor& div_(double value);
  Tensor& clamp_(double lo, double hi);
  // Compound assignment works in place, as PyTorch's: x *= 2 is x.mul_(2).
  Tensor& operator+=(const Tensor& other) { return add_(other); }
  Tensor& operator-=(const Tensor& other) { return sub_(other); }
  Tensor& operator*=(const Tensor& other) { return mul_(other); }
  Tensor& operator/=(const Tensor& other) { return div_(other); }
  Tensor& operator+=(double value) { return add_(value); }
  Tensor& operator-=(double value) { return sub_(value); }
  Tensor& operator*=(double value) { return mul_(value); }
  Tensor& operator/=(double value) { return div_(value); }

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
Tensor tensor(const std::vector<T>& values, Shape shape = {}, TensorOptions options = {.dtype = dtype_of_v<T>});
template <>
Tensor tensor<bool>(const std::vector<bool>& values, Shape shape, TensorOptions options);
// From a braced list, with PyTorch's inferred dtypes: kiln::tensor({1, 2, 3}) is int64,
// kiln::tensor({0.5, 1.0}) float32, kiln::tensor({true, false}) bool; nested lists give rows:
// kiln::tensor({{1.0, 2.0}, {3.0, 4.0}}) is [2, 2]. With options, the values take its dtype.
namespace detail {
template <class T>
using literal_t =
    std::conditional_t<std::is_same_v<T, bool>, bool, std::conditional_t<std::is_integral_v<T>, int64_t, double>>;
template <class T>
constexpr DType literal_dtype() {
  if constexpr (std::is_same_v<T, bool>)
    return DType::boolean;
  else if constexpr (std::is_integral_v<T>)
    return DType::i64;
  else
    return DType::f32;
}
}  // namespace detail
template <class T>
Tensor tensor(std::initializer_list<T> values, TensorOptions options) {
  using L = detail::literal_t<T>;
  return tensor(std::vector<L>(values.begin(), values.end()), Shape{int64_t(values.size())}, options);
}
template <class T>
Tensor tensor(std::initializer_list<T> values) {
  return tensor(values, TensorOptions{.dtype = detail::literal_dtype<T>()});
}
template <class T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> rows, TensorOptions options) {
  using L = detail::literal_t<T>;
  std::vector<L> flat;
  const int64_t cols = rows.size() ? int64_t(rows.begin()->size()) : 0;
  for (const auto& r : rows) {
    KILN_CHECK(int64_t(r.size()) == cols, "tensor: rows of different lengths (", cols, " and ", r.size(), ")");
    flat.insert(flat.end(), r.begin(), r.end());
  }
  return tensor(flat, Shape{int64_t(rows.size()), cols}, options);
}
template <class T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> rows) {
  return tensor(rows, TensorOptions{.dtype = detail::literal_dtype<T>()});
}
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
