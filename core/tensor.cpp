// Tensor handles: metadata, element access, autograd accessors and the methods that forward to ops.
#include "core/tensor.h"

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"

namespace kiln {

// ---------------------------------------------------------------- metadata

int64_t Tensor::size(int64_t dim) const { return sizes()[size_t(detail::wrap_dim(dim, this->dim(), "size"))]; }
int64_t Tensor::stride(int64_t dim) const { return strides()[size_t(detail::wrap_dim(dim, this->dim(), "stride"))]; }
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
  KILN_CHECK(numel() == 1, "item: expected a tensor with one element, got shape ", sizes(), " (", numel(),
             " elements)");
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
    KILN_CHECK(is_floating(impl->dtype),
               "requires_grad_: only floating-point tensors can require "
               "gradients, got ",
               impl->dtype);
  }
  if (!impl->autograd) {
    if (!requires_grad) return *this;
    impl->autograd = std::make_shared<AutogradMeta>();
  }
  KILN_CHECK(impl->autograd->is_leaf || requires_grad,
             "requires_grad_: you can only change "
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
    KILN_CHECK(grad.device() == device(), "set_grad: gradient on ", grad.device(), " for a tensor on ", device());
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

}  // namespace kiln
