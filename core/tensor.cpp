// Tensor handles: storage, metadata, views, conversions, factories and printing.
#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <mutex>
#include <sstream>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops/internal.h"
#include "core/ops.h"
#include "kernels/philox.h"

namespace kiln {

// ---------------------------------------------------------------- storage and dispatch helpers

StorageImpl::~StorageImpl() {
  if (!data) return;
  try {
    if (deleter) deleter(data);
    else detail::backend(device).deallocate(data, nbytes);
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
  KILN_CHECK(b, "device ", device, ": this build of kiln has no CUDA backend; rebuild with "
                "-Dcuda=enabled on a machine with the CUDA Toolkit, or use the CPU");
  int count = kernels::cuda_device_count();
  KILN_CHECK(count > 0, "device ", device, ": no CUDA GPU is available on this machine; use "
                        "kiln::Device::cpu() (check kiln::cuda::is_available() first)");
  KILN_CHECK(device.index < count, "device ", device, ": this machine has ", count,
             " CUDA device(s), cuda:0 to cuda:", count - 1);
  b->set_device(device.index);
  return *b;
}

kernels::View view_of(const Tensor& t) {
  KILN_CHECK(t.dim() <= kernels::kMaxDims, "kiln supports tensors of up to ", kernels::kMaxDims,
             " dims, got ", t.dim(), " (shape ", t.sizes(), ")");
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
  KILN_CHECK(int64_t(shape.size()) <= kernels::kMaxDims, "kiln supports tensors of up to ",
             kernels::kMaxDims, " dims, got shape ", shape);
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
  KILN_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " is out of range for a tensor of ", ndim,
             " dims (expected ", -n, " to ", n - 1, ")");
  return dim < 0 ? dim + n : dim;
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  KILN_CHECK(a.device() == b.device(), op, ": expected all tensors on the same device, got ",
             a.device(), " and ", b.device());
}

Tensor make_empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape)
    KILN_CHECK(s >= 0, "empty: sizes must be non-negative, got ", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = StorageImpl::allocate(size_t(shape_numel(shape)) * kiln::element_size(dtype), device);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

}  // namespace detail

// ---------------------------------------------------------------- metadata

int64_t Tensor::size(int64_t dim) const {
  return sizes()[size_t(detail::wrap_dim(dim, this->dim(), "size"))];
}
int64_t Tensor::stride(int64_t dim) const {
  return strides()[size_t(detail::wrap_dim(dim, this->dim(), "stride"))];
}
int64_t Tensor::numel() const { return detail::shape_numel(sizes()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  const auto& sz = sizes();
  const auto& st = strides();
  for (size_t i = sz.size(); i-- > 0;) {
    if (sz[i] != 1 && st[i] != expected) return false;
    expected *= sz[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  auto* impl = checked();
  if (!impl->storage->data) return nullptr;
  return static_cast<char*>(impl->storage->data) + impl->offset * int64_t(element_size());
}

double Tensor::item_double() const {
  KILN_CHECK(numel() == 1, "item: expected a tensor with one element, got shape ", sizes(),
             " (", numel(), " elements)");
  Tensor host = to(Device::cpu()).contiguous();
  return KILN_DISPATCH_ALL(dtype(), "item", [&](auto tag) -> double {
    using T = decltype(tag);
    return double(*static_cast<const T*>(host.raw_data()));
  });
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu()).to(dtype_of_v<T>).contiguous();
  const T* p = static_cast<const T*>(host.raw_data());
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

// ---------------------------------------------------------------- autograd accessors

bool Tensor::requires_grad() const {
  auto* impl = checked();
  return impl->autograd && impl->autograd->requires_grad;
}

Tensor& Tensor::requires_grad_(bool requires_grad) {
  auto* impl = checked();
  if (requires_grad) {
    KILN_CHECK(is_floating(impl->dtype), "requires_grad_: only floating-point tensors can require "
               "gradients, got ", impl->dtype);
  }
  if (!impl->autograd) {
    if (!requires_grad) return *this;
    impl->autograd = std::make_shared<AutogradMeta>();
  }
  KILN_CHECK(impl->autograd->is_leaf || requires_grad, "requires_grad_: you can only change "
             "requires_grad of leaf tensors; use detach() to get a tensor without history");
  impl->autograd->requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const {
  auto* impl = checked();
  return !impl->autograd || impl->autograd->is_leaf;
}

Tensor Tensor::grad() const {
  auto* impl = checked();
  return impl->autograd ? impl->autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  auto* impl = checked();
  if (grad.defined()) {
    KILN_CHECK(grad.sizes() == sizes(), "set_grad: gradient of shape ", grad.sizes(),
               " does not match the tensor's shape ", sizes());
    KILN_CHECK(grad.device() == device(), "set_grad: gradient on ", grad.device(),
               " for a tensor on ", device());
  }
  if (!impl->autograd) impl->autograd = std::make_shared<AutogradMeta>();
  impl->autograd->grad = grad;
}

Tensor& Tensor::mutable_grad() const {
  auto* impl = checked();
  if (!impl->autograd) impl->autograd = std::make_shared<AutogradMeta>();
  return impl->autograd->grad;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, {gradient}, retain_graph);
}

Tensor Tensor::detach() const {
  auto* impl = checked();
  auto d = std::make_shared<TensorImpl>();
  d->storage = impl->storage;
  d->sizes = impl->sizes;
  d->strides = impl->strides;
  d->offset = impl->offset;
  d->dtype = impl->dtype;
  return Tensor(std::move(d));
}

Tensor& Tensor::detach_() {
  checked()->autograd.reset();
  return *this;
}

void Tensor::register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) const {
  KILN_CHECK(requires_grad() && is_leaf(), "register_post_accumulate_grad_hook: only leaf tensors "
             "that require grad accumulate gradients");
  checked()->autograd->post_accumulate_hooks.push_back(std::move(hook));
}

// ---------------------------------------------------------------- methods forwarding to ops

Tensor Tensor::permute(Shape dims) const { return kiln::permute(*this, std::move(dims)); }
Tensor Tensor::transpose(int64_t d0, int64_t d1) const { return kiln::transpose(*this, d0, d1); }
Tensor Tensor::t() const {
  KILN_CHECK(dim() <= 2, "t: expects a tensor with <= 2 dims, got ", dim(), "; use transpose()");
  return dim() < 2 ? *this : transpose(0, 1);
}
Tensor Tensor::squeeze(int64_t dim) const { return kiln::squeeze(*this, dim); }
Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t v : sizes())
    if (v != 1) s.push_back(v);
  return reshape(s);
}
Tensor Tensor::unsqueeze(int64_t dim) const { return kiln::unsqueeze(*this, dim); }
Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  return kiln::narrow(*this, dim, start, length);
}
Tensor Tensor::select(int64_t dim, int64_t index) const { return kiln::select(*this, dim, index); }
Tensor Tensor::expand(Shape shape) const { return kiln::expand(*this, std::move(shape)); }
Tensor Tensor::flatten(int64_t s, int64_t e) const { return kiln::flatten(*this, s, e); }

Tensor Tensor::sum() const { return kiln::sum(*this); }
Tensor Tensor::sum(Shape dims, bool keepdim) const { return kiln::sum(*this, std::move(dims), keepdim); }
Tensor Tensor::mean() const { return kiln::mean(*this); }
Tensor Tensor::mean(Shape dims, bool keepdim) const { return kiln::mean(*this, std::move(dims), keepdim); }
Tensor Tensor::max() const { return kiln::max(*this); }
Tensor Tensor::min() const { return kiln::min(*this); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return kiln::argmax(*this, dim, keepdim); }
Tensor Tensor::argmax() const { return kiln::argmax(reshape({-1}), 0); }
Tensor Tensor::argmin(int64_t dim, bool keepdim) const { return kiln::argmin(*this, dim, keepdim); }
Tensor Tensor::argmin() const { return kiln::argmin(reshape({-1}), 0); }
Tensor Tensor::var(Shape dims, int64_t correction, bool keepdim) const {
  return kiln::var(*this, std::move(dims), correction, keepdim);
}
Tensor Tensor::std(Shape dims, int64_t correction, bool keepdim) const {
  return kiln::std(*this, std::move(dims), correction, keepdim);
}
Tensor Tensor::amax(Shape dims, bool keepdim) const { return kiln::amax(*this, std::move(dims), keepdim); }
Tensor Tensor::amin(Shape dims, bool keepdim) const { return kiln::amin(*this, std::move(dims), keepdim); }
std::tuple<Tensor, Tensor> Tensor::max(int64_t dim, bool keepdim) const { return kiln::max(*this, dim, keepdim); }
std::tuple<Tensor, Tensor> Tensor::min(int64_t dim, bool keepdim) const { return kiln::min(*this, dim, keepdim); }
Tensor Tensor::all() const { return kiln::all(*this); }
Tensor Tensor::any() const { return kiln::any(*this); }
Tensor Tensor::norm() const { return kiln::norm(*this); }
Tensor Tensor::cumsum(int64_t dim) const { return kiln::cumsum(*this, dim); }
Tensor Tensor::softmax(int64_t dim) const { return kiln::softmax(*this, dim); }
Tensor Tensor::log_softmax(int64_t dim) const { return kiln::log_softmax(*this, dim); }
Tensor Tensor::masked_fill(const Tensor& mask, double value) const { return kiln::masked_fill(*this, mask, value); }
Tensor Tensor::masked_fill(const Tensor& mask, const Tensor& value) const {
  return kiln::masked_fill(*this, mask, value);
}
Tensor& Tensor::masked_fill_(const Tensor& mask, double value) { return kiln::masked_fill_(*this, mask, value); }
Tensor Tensor::tril(int64_t diagonal) const { return kiln::tril(*this, diagonal); }
Tensor Tensor::triu(int64_t diagonal) const { return kiln::triu(*this, diagonal); }
Tensor Tensor::gather(int64_t dim, const Tensor& index) const { return kiln::gather(*this, dim, index); }
Tensor Tensor::scatter(int64_t dim, const Tensor& index, const Tensor& src) const {
  return kiln::scatter(*this, dim, index, src);
}
Tensor Tensor::scatter(int64_t dim, const Tensor& index, double value) const {
  return kiln::scatter(*this, dim, index, value);
}
Tensor Tensor::scatter_add(int64_t dim, const Tensor& index, const Tensor& src) const {
  return kiln::scatter_add(*this, dim, index, src);
}
Tensor& Tensor::scatter_(int64_t dim, const Tensor& index, const Tensor& src) {
  return kiln::scatter_(*this, dim, index, src);
}
Tensor& Tensor::scatter_add_(int64_t dim, const Tensor& index, const Tensor& src) {
  return kiln::scatter_add_(*this, dim, index, src);
}
Tensor Tensor::index_select(int64_t dim, const Tensor& index) const { return kiln::index_select(*this, dim, index); }
std::tuple<Tensor, Tensor> Tensor::sort(int64_t dim, bool descending) const {
  return kiln::sort(*this, dim, descending);
}
Tensor Tensor::argsort(int64_t dim, bool descending) const { return kiln::argsort(*this, dim, descending); }
std::tuple<Tensor, Tensor> Tensor::topk(int64_t k, int64_t dim, bool largest, bool sorted) const {
  return kiln::topk(*this, k, dim, largest, sorted);
}
Tensor Tensor::flip(Shape dims) const { return kiln::flip(*this, dims); }
std::vector<Tensor> Tensor::chunk(int64_t chunks, int64_t dim) const { return kiln::chunk(*this, chunks, dim); }
std::vector<Tensor> Tensor::split(int64_t split_size, int64_t dim) const { return kiln::split(*this, split_size, dim); }
std::vector<Tensor> Tensor::split(const std::vector<int64_t>& sizes, int64_t dim) const {
  return kiln::split(*this, sizes, dim);
}
Tensor Tensor::eq(const Tensor& o) const { return kiln::eq(*this, o); }
Tensor Tensor::ne(const Tensor& o) const { return kiln::ne(*this, o); }
Tensor Tensor::lt(const Tensor& o) const { return kiln::lt(*this, o); }
Tensor Tensor::le(const Tensor& o) const { return kiln::le(*this, o); }
Tensor Tensor::gt(const Tensor& o) const { return kiln::gt(*this, o); }
Tensor Tensor::ge(const Tensor& o) const { return kiln::ge(*this, o); }
Tensor Tensor::sin() const { return kiln::sin(*this); }
Tensor Tensor::cos() const { return kiln::cos(*this); }
Tensor Tensor::silu() const { return kiln::silu(*this); }
Tensor Tensor::gelu(const std::string& approximate) const { return kiln::gelu(*this, approximate); }
Tensor Tensor::square() const { return kiln::square(*this); }
Tensor Tensor::rsqrt() const { return kiln::rsqrt(*this); }
Tensor Tensor::sign() const { return kiln::sign(*this); }
Tensor Tensor::clamp(std::optional<double> lo, std::optional<double> hi) const { return kiln::clamp(*this, lo, hi); }
Tensor& Tensor::sub_(double v) { return kiln::add_(*this, -v); }
Tensor Tensor::abs() const { return kiln::abs(*this); }
Tensor Tensor::exp() const { return kiln::exp(*this); }
Tensor Tensor::log() const { return kiln::log(*this); }
Tensor Tensor::sqrt() const { return kiln::sqrt(*this); }
Tensor Tensor::pow(double e) const { return kiln::pow(*this, e); }
Tensor Tensor::relu() const { return kiln::relu(*this); }
Tensor Tensor::sigmoid() const { return kiln::sigmoid(*this); }
Tensor Tensor::tanh() const { return kiln::tanh(*this); }
Tensor Tensor::matmul(const Tensor& o) const { return kiln::matmul(*this, o); }
Tensor Tensor::neg() const { return kiln::neg(*this); }
Tensor& Tensor::add_(const Tensor& o, double alpha) { return kiln::add_(*this, o, alpha); }
Tensor& Tensor::add_(double v) { return kiln::add_(*this, v); }
Tensor& Tensor::sub_(const Tensor& o) { return kiln::sub_(*this, o); }
Tensor& Tensor::mul_(const Tensor& o) { return kiln::mul_(*this, o); }
Tensor& Tensor::mul_(double v) { return kiln::mul_(*this, v); }
Tensor& Tensor::div_(const Tensor& o) { return kiln::div_(*this, o); }
Tensor& Tensor::div_(double v) { return kiln::div_(*this, v); }
Tensor& Tensor::clamp_(double lo, double hi) { return kiln::clamp_(*this, lo, hi); }

// ---------------------------------------------------------------- factories

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
  KILN_CHECK(shape.size() == strides.size(), "empty_strided: ", shape.size(), " sizes but ",
             strides.size(), " strides");
  int64_t extent = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    KILN_CHECK(shape[i] >= 0 && strides[i] >= 0, "empty_strided: negative size or stride in ",
               shape, " / ", strides);
    if (shape[i] == 0) extent = 0;
    else if (extent) extent += (shape[i] - 1) * strides[i];
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
  KILN_CHECK((end - start) / step >= 0, "arange: the range [", start, ", ", end,
             ") is empty or runs against the step ", step);
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

Tensor from_blob(void* data, Shape shape, DType dtype, std::function<void(void*)> deleter,
                 Device device) {
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
  return tensor<uint8_t>(bytes, std::move(shape), {.dtype = DType::u8, .device = o.device})
      .to(o.dtype);
}

// ---------------------------------------------------------------- random numbers

namespace {
std::mutex& default_generator_mutex() {
  static std::mutex m;
  return m;
}
uint64_t reserve(Generator* gen, uint64_t numel) {
  const uint64_t counters = (numel + 3) / 4;
  if (gen) return gen->advance(counters);
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  return default_generator().advance(counters);
}
uint64_t seed_of(Generator* gen) { return gen ? gen->seed() : default_generator().seed(); }
}  // namespace

std::pair<uint64_t, uint64_t> detail::philox_reserve(Generator* gen, uint64_t counters) {
  if (gen) {
    const uint64_t seed = gen->seed();
    return {seed, gen->advance(counters)};
  }
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  const uint64_t seed = default_generator().seed();
  return {seed, default_generator().advance(counters)};
}

namespace {

Tensor random_tensor(kernels::RandomKind kind, Shape shape, TensorOptions o, Generator* gen,
                     double a, double b) {
  Tensor t = detail::make_empty(shape, o.dtype, o.device);
  if (t.numel()) {
    uint64_t seed = seed_of(gen);
    uint64_t offset = reserve(gen, uint64_t(t.numel()));
    detail::backend(o.device).random(kind, detail::view_of(t), seed, offset, a, b);
  }
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}
}  // namespace

void Generator::manual_seed(uint64_t seed) {
  seed_ = seed;
  offset_ = 0;
}
uint64_t Generator::advance(uint64_t counters) {
  uint64_t first = offset_;
  offset_ += counters;
  return first;
}
uint64_t Generator::next_u64() {
  kernels::Philox4 r = kernels::philox4x32_10(seed_, advance(1));
  return (uint64_t(r.v[0]) << 32) | r.v[1];
}
double Generator::next_double() { return double(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
int64_t Generator::randint(int64_t low, int64_t high) {
  KILN_CHECK(high > low, "randint: empty range [", low, ", ", high, ")");
  return low + int64_t(next_u64() % uint64_t(high - low));
}

Generator& default_generator() {
  static Generator gen(0x5eed);
  return gen;
}
void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  default_generator().manual_seed(seed);
}
uint64_t initial_seed() { return default_generator().seed(); }

Tensor rand(Shape shape, TensorOptions o, Generator* gen) {
  KILN_CHECK(is_floating(o.dtype), "rand: expected a floating dtype, got ", o.dtype);
  return random_tensor(kernels::RandomKind::uniform, std::move(shape), o, gen, 0.0, 1.0);
}
Tensor randn(Shape shape, TensorOptions o, Generator* gen) {
  KILN_CHECK(is_floating(o.dtype), "randn: expected a floating dtype, got ", o.dtype);
  return random_tensor(kernels::RandomKind::normal, std::move(shape), o, gen, 0.0, 1.0);
}
Tensor randint(int64_t low, int64_t high, Shape shape, TensorOptions o, Generator* gen) {
  KILN_CHECK(high > low, "randint: expected low < high, got [", low, ", ", high, ")");
  return random_tensor(kernels::RandomKind::randint, std::move(shape), o, gen, double(low), double(high));
}
Tensor rand_like(const Tensor& t) { return rand(t.sizes(), t.options()); }
Tensor randn_like(const Tensor& t) { return randn(t.sizes(), t.options()); }
Tensor bernoulli(Shape shape, double p, TensorOptions o, Generator* gen) {
  KILN_CHECK(p >= 0 && p <= 1, "bernoulli: probability must be in [0, 1], got ", p);
  return random_tensor(kernels::RandomKind::bernoulli, std::move(shape), o, gen, p, 0.0);
}
Tensor& uniform_(Tensor& t, double low, double high, Generator* gen) {
  Tensor r = random_tensor(kernels::RandomKind::uniform, t.sizes(), t.options(), gen, low, high);
  NoGradGuard g;
  return t.copy_(r);
}
Tensor& normal_(Tensor& t, double mean, double std, Generator* gen) {
  Tensor r = random_tensor(kernels::RandomKind::normal, t.sizes(), t.options(), gen, mean, std);
  NoGradGuard g;
  return t.copy_(r);
}
Tensor randperm(int64_t n, Generator* gen) {
  KILN_CHECK(n >= 0, "randperm: n must be non-negative, got ", n);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
  Generator& g = gen ? *gen : default_generator();
  std::unique_lock<std::mutex> lock(default_generator_mutex(), std::defer_lock);
  if (!gen) lock.lock();
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[size_t(i)], v[size_t(g.randint(0, i + 1))]);
  return tensor(v);
}

// ---------------------------------------------------------------- printing

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}
std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << shape_str(s); }

namespace {
void print_values(std::ostream& os, const std::vector<double>& v, const Shape& sizes, size_t dim,
                  int64_t& pos, bool floating, int indent) {
  if (sizes.empty()) {
    os << v[0];
    return;
  }
  const int64_t n = sizes[dim];
  const int64_t inner = detail::shape_numel(Shape(sizes.begin() + int64_t(dim) + 1, sizes.end()));
  const bool summarize = n > 6;
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && i == 3) {
      os << "...";
      pos += (n - 6) * inner;
      i = n - 3;
      os << (dim + 1 == sizes.size() ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
    }
    if (dim + 1 == sizes.size()) {
      double x = v[size_t(pos++)];
      if (floating) os << std::fixed << std::setprecision(4) << x;
      else os << int64_t(x);
    } else {
      print_values(os, v, sizes, dim + 1, pos, floating, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == sizes.size() ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
  }
  os << ']';
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  std::ostringstream body;
  std::vector<double> values = t.to_vector<double>();
  int64_t pos = 0;
  if (t.dim() == 0) {
    if (t.is_floating_point()) body << std::fixed << std::setprecision(4) << values[0];
    else body << int64_t(values[0]);
  } else {
    print_values(body, values, t.sizes(), 0, pos, t.is_floating_point(), 7);
  }
  os << "tensor(" << body.str() << ", shape=" << t.sizes() << ", dtype=" << t.dtype()
     << ", device=" << t.device();
  if (t.requires_grad()) os << ", requires_grad=true";
  return os << ')';
}

}  // namespace kiln
