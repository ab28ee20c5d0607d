// Views (sharing storage) and concatenation, with their gradients.
#include <numeric>

#include "core/ops/internal.h"

namespace kiln {

using detail::record_view;

namespace {

Tensor make_view(const Tensor& base, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Strides that let `sizes` view the same memory as (old_sizes, old_strides), or nothing.
// Dims are grouped into chunks that are contiguous among themselves, as PyTorch's view does.
std::optional<Shape> view_strides(const Shape& old_sizes, const Shape& old_strides, const Shape& sizes) {
  if (old_sizes.empty()) return detail::contiguous_strides(sizes);
  Shape st(sizes.size());
  int64_t numel = detail::shape_numel(old_sizes);
  if (numel == 0) return detail::contiguous_strides(sizes);
  int64_t view_d = int64_t(sizes.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(old_sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_sizes[size_t(d)];
    if (d == 0 || (old_sizes[size_t(d - 1)] != 1 && old_strides[size_t(d - 1)] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || sizes[size_t(view_d)] == 1)) {
        st[size_t(view_d)] = view_numel * chunk_base_stride;
        view_numel *= sizes[size_t(view_d)];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[size_t(d - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

Shape infer_shape(Shape shape, int64_t numel, const char* op) {
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      KILN_CHECK(infer < 0, op, ": only one dim can be -1, got ", shape);
      infer = int64_t(i);
    } else {
      KILN_CHECK(shape[i] >= 0, op, ": invalid size ", shape[i], " in ", shape);
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    KILN_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape, " is invalid for a tensor of ", numel,
               " elements");
    shape[size_t(infer)] = numel / known;
  }
  KILN_CHECK(detail::shape_numel(shape) == numel, op, ": shape ", shape, " is invalid for a tensor of ", numel,
             " elements");
  return shape;
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    KILN_CHECK(x == y || x == 1 || y == 1, "shapes ", a, " and ", b,
               " cannot be broadcast together "
               "(dim ",
               i, ": ", x, " vs ", y, ")");
    out[i] = x == 1 ? y : x;
  }
  return out;
}

Tensor reshape(const Tensor& x, Shape shape) {
  shape = infer_shape(std::move(shape), x.numel(), "reshape");
  if (shape == x.sizes()) return x;
  Tensor out;
  if (auto st = view_strides(x.sizes(), x.strides(), shape)) {
    out = make_view(x, shape, *st, x.storage_offset());
  } else {
    Tensor c = x.detach().contiguous();
    out = make_view(c, shape, detail::contiguous_strides(shape), c.storage_offset());
  }
  Shape in = x.sizes();
  return record_view("reshape", x, out, [in](const Tensor& g) { return g.reshape(in); });
}

Tensor Tensor::reshape(Shape shape) const { return kiln::reshape(*this, std::move(shape)); }

Tensor Tensor::view(Shape shape) const {
  shape = infer_shape(std::move(shape), numel(), "view");
  KILN_CHECK(view_strides(sizes(), strides(), shape).has_value(), "view: shape ", shape,
             " is not compatible with the strides ", strides(), " of this tensor (shape ", sizes(),
             "); use reshape(), which copies when it must");
  return kiln::reshape(*this, std::move(shape));
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return x.reshape({1});
  int64_t s = detail::wrap_dim(start_dim, x.dim(), "flatten"), e = detail::wrap_dim(end_dim, x.dim(), "flatten");
  KILN_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape shape(x.sizes().begin(), x.sizes().begin() + s);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= x.sizes()[size_t(i)];
  shape.push_back(m);
  shape.insert(shape.end(), x.sizes().begin() + e + 1, x.sizes().end());
  return x.reshape(shape);
}

Tensor permute(const Tensor& x, Shape dims) {
  KILN_CHECK(int64_t(dims.size()) == x.dim(), "permute: expected ", x.dim(), " dims, got ", dims);
  Shape sizes(dims.size()), strides(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = detail::wrap_dim(dims[i], x.dim(), "permute");
    KILN_CHECK(!seen[size_t(d)], "permute: dim ", dims[i], " repeats in ", dims);
    seen[size_t(d)] = true;
    sizes[i] = x.sizes()[size_t(d)];
    strides[i] = x.strides()[size_t(d)];
    inverse[size_t(d)] = int64_t(i);
  }
  Tensor out = make_view(x, sizes, strides, x.storage_offset());
  return record_view("permute", x, out, [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  if (x.dim() < 2 && (d0 == 0 || d0 == -1) && (d1 == 0 || d1 == -1)) return x;
  Shape dims(size_t(x.dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[size_t(detail::wrap_dim(d0, x.dim(), "transpose"))],
            dims[size_t(detail::wrap_dim(d1, x.dim(), "transpose"))]);
  return permute(x, dims);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return x;
  int64_t d = detail::wrap_dim(dim, x.dim(), "squeeze");
  if (x.sizes()[size_t(d)] != 1) return x;
  Shape sizes = x.sizes(), strides = x.strides();
  sizes.erase(sizes.begin() + d);
  strides.erase(strides.begin() + d);
  Tensor out = make_view(x, sizes, strides, x.storage_offset());
  Shape in = x.sizes();
  return record_view("squeeze", x, out, [in](const Tensor& g) { return g.reshape(in); });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  int64_t d = detail::wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape sizes = x.sizes(), strides = x.strides();
  int64_t st = d < x.dim() ? sizes[size_t(d)] * strides[size_t(d)] : 1;
  sizes.insert(sizes.begin() + d, 1);
  strides.insert(strides.begin() + d, st);
  Tensor out = make_view(x, sizes, strides, x.storage_offset());
  Shape in = x.sizes();
  return record_view("unsqueeze", x, out, [in](const Tensor& g) { return g.reshape(in); });
}

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  const Tensor& x = *this;
  int64_t d = detail::wrap_dim(dim, x.dim(), "slice");
  KILN_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = x.sizes()[size_t(d)];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sizes = x.sizes(), strides = x.strides();
  sizes[size_t(d)] = (end - start + step - 1) / step;
  strides[size_t(d)] *= step;
  Tensor out = make_view(x, sizes, strides, x.storage_offset() + start * x.strides()[size_t(d)]);
  Shape in = x.sizes();
  return record_view("slice", x, out, [in, d, start, end, step](const Tensor& g) {
    Tensor full_g = zeros(in, g.options());
    full_g.slice(d, start, end, step).copy_(g);
    return full_g;
  });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  int64_t d = detail::wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.sizes()[size_t(d)];
  if (start < 0) start += n;
  KILN_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ", start + length,
             ") is outside dim ", dim, " of size ", n);
  return x.slice(d, start, start + length);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  KILN_CHECK(x.dim() > 0, "select: cannot index a 0-d tensor");
  int64_t d = detail::wrap_dim(dim, x.dim(), "select");
  const int64_t n = x.sizes()[size_t(d)];
  KILN_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", dim, " of size ", n);
  if (index < 0) index += n;
  return squeeze(narrow(x, d, index, 1), d);
}

Tensor expand(const Tensor& x, Shape shape) {
  KILN_CHECK(int64_t(shape.size()) >= x.dim(), "expand: cannot expand shape ", x.sizes(), " to ", shape,
             " (fewer dims)");
  const int64_t lead = int64_t(shape.size()) - x.dim();
  Shape strides(shape.size());
  for (int64_t i = 0; i < int64_t(shape.size()); ++i) {
    if (i < lead) {
      KILN_CHECK(shape[size_t(i)] >= 0, "expand: -1 is not allowed for new leading dims in ", shape);
      strides[size_t(i)] = 0;
      continue;
    }
    int64_t s = x.sizes()[size_t(i - lead)];
    if (shape[size_t(i)] == -1) shape[size_t(i)] = s;
    KILN_CHECK(s == shape[size_t(i)] || s == 1, "expand: the size ", s, " at dim ", i - lead,
               " must be 1 to expand to ", shape[size_t(i)], " (shape ", x.sizes(), " to ", shape, ")");
    strides[size_t(i)] = s == shape[size_t(i)] ? x.strides()[size_t(i - lead)] : 0;
  }
  if (shape == x.sizes()) return x;
  Tensor out = make_view(x, shape, strides, x.storage_offset());
  Shape in = x.sizes();
  return record_view("expand", x, out, [in](const Tensor& g) { return sum_to(g, in); });
}

// ---------------------------------------------------------------- concatenation

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  KILN_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& first = tensors[0];
  int64_t d = detail::wrap_dim(dim, first.dim(), "cat");
  KILN_CHECK(first.dim() > 0, "cat: zero-dimensional tensors cannot be concatenated; use stack");
  Shape shape = first.sizes();
  DType dt = first.dtype();
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    detail::check_same_device("cat", first, t);
    KILN_CHECK(t.dim() == first.dim(), "cat: tensor ", i, " has ", t.dim(), " dims, tensor 0 has ", first.dim());
    for (int64_t k = 0; k < t.dim(); ++k)
      KILN_CHECK(k == d || t.sizes()[size_t(k)] == shape[size_t(k)],
                 "cat: sizes must match except "
                 "in dim ",
                 d, "; tensor ", i, " has shape ", t.sizes(), ", tensor 0 has ", shape);
    total += t.sizes()[size_t(d)];
    dt = promote_types(dt, t.dtype());
  }
  shape[size_t(d)] = total;
  Tensor out = detail::make_empty(shape, dt, first.device());
  std::vector<int64_t> lengths;
  int64_t pos = 0;
  for (const Tensor& t : tensors) {
    const int64_t len = t.sizes()[size_t(d)];
    lengths.push_back(len);
    if (len && t.numel()) {
      Tensor dst = out.detach().narrow(d, pos, len);
      detail::backend(out.device()).copy(detail::view_of(dst), detail::view_of(t));
    }
    pos += len;
  }
  if (autograd::needs_grad(tensors)) {
    autograd::record("cat", tensors, {out}, [d, lengths](const std::vector<Tensor>& g) {
      std::vector<Tensor> grads;
      int64_t p = 0;
      for (int64_t len : lengths) {
        grads.push_back(g[0].narrow(d, p, len));
        p += len;
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  KILN_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  int64_t d = detail::wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    KILN_CHECK(tensors[i].sizes() == tensors[0].sizes(), "stack: tensor ", i, " has shape ", tensors[i].sizes(),
               ", tensor 0 has ", tensors[0].sizes(), "; all must match");
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  KILN_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32,
             "index_select: index must "
             "be an integer tensor, got ",
             index.dtype());
  KILN_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got shape ", index.sizes());
  int64_t d = detail::wrap_dim(dim, x.dim(), "index_select");
  // Move dim to the front, gather rows, move it back.
  Tensor moved = x.transpose(0, d).contiguous();
  Shape rest(moved.sizes().begin() + 1, moved.sizes().end());
  Tensor rows = moved.reshape({moved.size(0), -1});
  Tensor out = embedding(index.reshape({-1}), rows);
  Shape out_shape = rest;
  out_shape.insert(out_shape.begin(), index.numel());
  return out.reshape(out_shape).transpose(0, d);
}

}  // namespace kiln
