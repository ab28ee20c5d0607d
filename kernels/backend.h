// The narrow interface between core/ and the device kernels. Kernels see raw pointers, sizes and
// strides (in elements) and never a Tensor, so each one can be tested and benchmarked on its own.
// core/ picks the Backend for a tensor's device and calls it; kernels/cpu and kernels/cuda
// implement it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/augment.h"

namespace kiln::kernels {

constexpr int kMaxDims = 8;

// A strided view of device memory. Strides are in elements; a stride of 0 broadcasts.
struct View {
  void* data = nullptr;
  DType dtype = DType::f32;
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= sizes[i];
    return n;
  }
  bool is_contiguous() const {
    int64_t expected = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (sizes[i] != 1 && strides[i] != expected) return false;
      expected *= sizes[i];
    }
    return true;
  }
  template <class T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

enum class UnaryOp : uint8_t {
  neg,
  abs,
  exp,
  log,
  sqrt,
  rsqrt,
  relu,
  sigmoid,
  tanh,
  gelu,
  gelu_tanh,
  sign,
  square,
  reciprocal,
  sin,
  cos,
  silu,
  leaky_relu,  // a = negative slope
  pow_scalar,  // x^a
  clamp,       // clamp(x, a, b); NaN bounds mean "no bound"
  affine,      // a*x + b
  logical_not,
};

enum class BinaryOp : uint8_t {
  add,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,  // produce bool
  logical_and,
  logical_or,
  add_scaled,           // x + alpha*y
  relu_backward,        // g * (x > 0); x = input
  leaky_relu_backward,  // g * (x > 0 ? 1 : alpha)
  gelu_backward,        // g * gelu'(x), exact erf form
  gelu_tanh_backward,   // g * gelu'(x), tanh approximation
  sigmoid_backward,     // g * y * (1 - y); y = output
  tanh_backward,        // g * (1 - y^2); y = output
  clamp_backward,       // g where lo <= x <= hi (alpha: lo, beta: hi), else 0
  silu_backward,        // g * silu'(x); x = input
};

enum class ReduceOp : uint8_t { sum, max, min, prod, argmax, argmin, any, all };

enum class RandomKind : uint8_t {
  uniform,    // [a, b)
  normal,     // mean a, std b
  randint,    // integers in [a, b)
  bernoulli,  // 1 with probability a
};

struct Conv2dParams {
  int64_t n, c_in, h_in, w_in;  // input [n, c_in, h_in, w_in]
  int64_t c_out, kh, kw;        // weight [c_out, c_in / groups, kh, kw]
  int64_t h_out, w_out;         // output [n, c_out, h_out, w_out]
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
};

struct Pool2dParams {
  int64_t n, c, h_in, w_in, h_out, w_out;
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad = true;  // avg pooling only
};

struct AdamParams {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;    // 1-based, after increment (host step counts; see adam_step_multi)
  bool decoupled;  // AdamW: weight decay applied to the parameter, not the gradient
  bool amsgrad;
  bool maximize;
  // Multi-tensor form only: one f32 on the device (GradScaler's flag); while it is nonzero the
  // step changes nothing, so a skipped step is decided without reading the flag on the host.
  const float* found_inf = nullptr;
};

struct SgdParams {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  bool first_step;                   // momentum buffer is initialised to the gradient on the first step
  const float* found_inf = nullptr;  // as in AdamParams
};

// Fused scaled dot-product attention over dense q [batch, tq, d], k [batch, tk, d] and
// v [batch, tk, dv] (batch: every leading dim flattened): out = softmax(scale * q k^T + mask) v.
struct SdpaParams {
  int64_t batch, tq, tk, d, dv;
  double scale;
  bool causal;       // query i sees keys j <= i only (top-left aligned, as PyTorch's is_causal)
  double dropout_p;  // attention weights dropped with this probability, the rest scaled by 1/(1-p)
  // Dropout draws: weight (b, i, j) is kept when Philox lane (b * tq + i) * tk + j of (seed, offset)
  // gives a uniform >= dropout_p, so backward redraws the same mask and every device agrees.
  uint64_t seed, offset;
};

// All views given to a Backend live on that backend's device. Unless a method says otherwise,
// `out` views are dense (contiguous) and inputs may be arbitrarily strided or broadcast (stride 0)
// to out's shape. Floating inputs of f16/bf16 are computed in f32.
class Backend {
 public:
  virtual ~Backend() = default;

  // Memory. allocate(0) may return nullptr.
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  // Host <-> device byte copies (contiguous). For the CPU backend these are memcpy.
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void synchronize() = 0;
  // Makes `index` the current device of this thread (CUDA); a no-op on the CPU.
  virtual void set_device(int index) { (void)index; }

  // Elementwise. `out` may be strided here (copy_ and in-place ops write through views).
  virtual void copy(const View& out, const View& in) = 0;  // casts between any dtypes
  virtual void fill(const View& out, double value) = 0;
  virtual void arange(const View& out, double start, double step) = 0;  // dense out
  virtual void unary(UnaryOp op, const View& out, const View& in, double a, double b) = 0;
  virtual void binary(BinaryOp op, const View& out, const View& x, const View& y, double alpha, double beta) = 0;
  virtual void where(const View& out, const View& cond, const View& x, const View& y) = 0;

  // Reductions. `out` has in's ndim with size 1 in every reduced dim; `in` is strided.
  virtual void reduce(ReduceOp op, const View& out, const View& in) = 0;
  // max/min/argmax/argmin along `dim` producing values (may be null data) and i64 indices.
  virtual void reduce_index(ReduceOp op, const View& values, const View& indices, const View& in, int dim) = 0;

  // Philox4x32-10 counter-based random numbers; element i uses counter (offset + i / 4).
  virtual void random(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b) = 0;

  // out[b] (+)= a[b] @ b[b]; a [B, M, K], b [B, K, N], out dense [B, M, N]; a and b strided
  // (batch stride 0 broadcasts). beta = 0 overwrites out, beta = 1 accumulates.
  virtual void matmul(const View& out, const View& a, const View& b, double beta) = 0;

  // Convolution on dense NCHW tensors; bias may have null data.
  virtual void conv2d_forward(const Conv2dParams& p, const View& out, const View& in, const View& weight,
                              const View& bias) = 0;
  // Any of grad_in, grad_weight, grad_bias may have null data (not wanted); they are overwritten.
  virtual void conv2d_backward(const Conv2dParams& p, const View& grad_in, const View& grad_weight,
                               const View& grad_bias, const View& grad_out, const View& in, const View& weight) = 0;

  // Pooling on dense NCHW tensors. indices (i64) hold the flat h*w_in+w position of each maximum.
  virtual void max_pool2d_forward(const Pool2dParams& p, const View& out, const View& indices, const View& in) = 0;
  virtual void max_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out,
                                   const View& indices) = 0;
  virtual void avg_pool2d_forward(const Pool2dParams& p, const View& out, const View& in) = 0;
  virtual void avg_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out) = 0;

  // Softmax over the middle dim of a dense [outer, dim, inner] tensor.
  virtual void softmax_forward(const View& out, const View& in, int64_t outer, int64_t dim, int64_t inner,
                               bool log) = 0;
  virtual void softmax_backward(const View& grad_in, const View& grad_out, const View& out, int64_t outer, int64_t dim,
                                int64_t inner, bool log) = 0;

  // Negative log-likelihood on dense logp [n, c] with i64 targets [n]: loss[i] = -w*logp[i, t_i]
  // (0 where t_i == ignore_index). weight may have null data (all ones); weight_out receives the
  // per-sample weight (0 for ignored samples) so the caller can form a weighted mean.
  virtual void nll_forward(const View& loss, const View& weight_out, const View& logp, const View& target,
                           const View& weight, int64_t ignore_index) = 0;
  // grad_logp (dense, zero-filled by the kernel) [i, t_i] = -w * grad_loss[i].
  virtual void nll_backward(const View& grad_logp, const View& grad_loss, const View& target, const View& weight,
                            int64_t ignore_index) = 0;

  // out[i, :] = weight[index[i], :] for dense weight [v, d] and i64 index [n]; errors on
  // out-of-range indices are reported by returning the first bad index (or -1 when all are fine).
  virtual int64_t index_select_rows(const View& out, const View& weight, const View& index) = 0;
  // grad_weight[index[i], :] += grad_out[i, :]  (grad_weight dense, pre-zeroed by the caller).
  virtual void index_add_rows(const View& grad_weight, const View& grad_out, const View& index) = 0;

  // Optimizer updates on dense tensors of one dtype (state in the parameter's dtype).
  virtual void adam_step(const AdamParams& p, const View& param, const View& grad, const View& exp_avg,
                         const View& exp_avg_sq, const View& max_exp_avg_sq) = 0;
  virtual void sgd_step(const SgdParams& p, const View& param, const View& grad, const View& momentum_buffer) = 0;

  // Multi-tensor ("foreach") forms for many parameters at once: parallel lists (entry i of each
  // belongs to tensor i), every view dense, each tensor's state in its own dtype; dtypes may
  // differ between tensors. The defaults loop over the per-tensor methods; the CUDA backend packs
  // many tensors into each launch. max_exp_avg_sqs is empty unless p.amsgrad, momentum_buffers
  // unless p.momentum != 0. `steps`, when not empty, holds each tensor's step count as one f32 on
  // the device: the counts are incremented there (unless p.found_inf is set) and the bias
  // corrections read from them, so no step count needs the host (p.step is then unused). The
  // defaults loop on host memory (the CPU backend), found_inf and step counts included.
  virtual void adam_step_multi(const AdamParams& p, std::span<const View> params, std::span<const View> grads,
                               std::span<const View> exp_avgs, std::span<const View> exp_avg_sqs,
                               std::span<const View> max_exp_avg_sqs, std::span<const View> steps = {}) {
    if (p.found_inf && *p.found_inf != 0.0f) return;
    KILN_CHECK(steps.empty() || steps.size() == params.size(), "adam_step_multi: ", steps.size(), " step counts for ",
               params.size(), " tensors");
    for (size_t i = 0; i < params.size(); ++i) {
      AdamParams q = p;
      if (!steps.empty()) {
        float& count = *steps[i].ptr<float>();
        count += 1.0f;
        q.step = int64_t(count);
      }
      adam_step(q, params[i], grads[i], exp_avgs[i], exp_avg_sqs[i],
                p.amsgrad ? max_exp_avg_sqs[i] : View{nullptr, params[i].dtype});
    }
  }
  virtual void sgd_step_multi(const SgdParams& p, std::span<const View> params, std::span<const View> grads,
                              std::span<const View> momentum_buffers) {
    if (p.found_inf && *p.found_inf != 0.0f) return;
    for (size_t i = 0; i < params.size(); ++i)
      sgd_step(p, params[i], grads[i], p.momentum != 0 ? momentum_buffers[i] : View{nullptr, params[i].dtype});
  }
  // GradScaler's update of its scale, kept where the scale lives: scale, inv_scale (1/scale) and
  // found_inf are one f32 each, growth_tracker one i32. With found_inf nonzero the scale is
  // multiplied by backoff and the tracker reset; else the tracker counts up and at
  // growth_interval the scale is multiplied by growth (unless that would overflow f32) and the
  // tracker reset. found_inf is then cleared for the next step. The default works on host
  // memory (the CPU backend).
  virtual void update_scale(const View& scale, const View& inv_scale, const View& growth_tracker, const View& found_inf,
                            double growth, double backoff, int64_t growth_interval) {
    float& s = *scale.ptr<float>();
    int32_t& tracker = *growth_tracker.ptr<int32_t>();
    float& found = *found_inf.ptr<float>();
    if (found != 0.0f) {
      s = float(double(s) * backoff);
      tracker = 0;
    } else if (++tracker >= growth_interval) {
      const double grown = double(s) * growth;
      if (grown < 3.4028234663852886e38) s = float(grown);
      tracker = 0;
    }
    *inv_scale.ptr<float>() = 1.0f / s;
    found = 0.0f;
  }
  // tensors[i] *= factor in place, where factor is factor_tensor's value when that has data (a
  // one-element f32 on this device); when found_inf has data (a one-element f32), sets it to 1 if
  // any element was inf or NaN before scaling, and never resets it. A factor of exactly 1 without
  // factor_tensor writes nothing: a pure non-finite check. (GradScaler's unscale, clipping.)
  virtual void scale_and_check_multi(std::span<const View> tensors, double factor, const View& factor_tensor,
                                     const View& found_inf) {
    (void)tensors, (void)factor, (void)factor_tensor, (void)found_inf;
    fail("scale_and_check_multi: not provided by this backend; use the per-tensor ops");
  }
  // out (a one-element f32 or f64 on this device): the norm of order 2 or infinity of all
  // elements of all tensors together, accumulated in f32 (f64 when every tensor is f64); NaN
  // anywhere gives NaN.
  // A training batch built from uint8 images (kernels/augment.h): out f32 dense
  // [p.batch, channels, h_out, w_out], out_labels i64 [p.batch] = labels[indices[b]]; images
  // uint8 dense [N, channels, h_in, w_in], labels i64 [N], indices i64 [p.batch]. The default
  // works on host memory (the CPU backend); an index outside [0, N) is an error there, and on a
  // GPU gives a zero image with label -1.
  virtual void augment_images(const AugmentParams& p, const View& out, const View& out_labels, const View& images,
                              const View& labels, const View& indices);

  virtual void norm_multi(std::span<const View> tensors, double order, const View& out) {
    (void)tensors, (void)order, (void)out;
    fail("norm_multi: not provided by this backend; use the per-tensor ops");
  }

  // ---- Scans, sorting, gather/scatter, sampling and attention (the ops of sequence models) ----

  // Inclusive prefix sums along the middle dim of a dense [outer, n, inner] tensor (out likewise).
  virtual void cumsum(const View& out, const View& in, int64_t outer, int64_t n, int64_t inner) {
    (void)out, (void)in, (void)outer, (void)n, (void)inner;
    fail("cumsum: not provided by this backend");
  }
  // Sorts every row of a dense [rows, n] tensor into values (its dtype) and i64 indices, both dense
  // [rows, n]. Stable; NaN counts as larger than any number (last ascending, first descending).
  virtual void sort(const View& values, const View& indices, const View& in, bool descending) {
    (void)values, (void)indices, (void)in, (void)descending;
    fail("sort: not provided by this backend");
  }
  // out (dense, index's shape) = in at each position with the coordinate along dim replaced by
  // index's (i64) value there. in and index are strided; the caller has checked the indices.
  virtual void gather(const View& out, const View& in, const View& index, int dim) {
    (void)out, (void)in, (void)index, (void)dim;
    fail("gather: not provided by this backend");
  }
  // The reverse: self (dense, written in place) at each position of index, with the coordinate
  // along dim replaced by the index value, receives src's element at that position (src is viewed
  // with index's shape); accumulate adds instead of assigning.
  virtual void scatter(const View& self, const View& index, const View& src, int dim, bool accumulate) {
    (void)self, (void)index, (void)src, (void)dim, (void)accumulate;
    fail("scatter: not provided by this backend");
  }
  // k column indices per row of probs (dense [rows, c], non-negative, positive row sums) into out
  // (dense i64 [rows, k]); without replacement a drawn column is not drawn again. Draw s of row r
  // uses Philox counter offset + r * k + s.
  virtual void multinomial(const View& out, const View& probs, int64_t k, bool replacement, uint64_t seed,
                           uint64_t offset) {
    (void)out, (void)probs, (void)k, (void)replacement, (void)seed, (void)offset;
    fail("multinomial: not provided by this backend");
  }
  // Fused attention (SdpaParams): tiles of keys stream past each tile of queries with an online
  // softmax, so no [tq, tk] matrix is ever held. mask (null data: none) is bool (true: attend) or
  // floating (added to the scores), viewed with shape [lead..., tq, tk] whose lead dims flatten to
  // batch (broadcast dims have stride 0). lse (dense f32, f64 for f64 inputs, [batch, tq]) receives
  // each row's log-sum-exp for backward; a row that sees no key gets out 0 and lse -inf.
  virtual void sdpa_forward(const SdpaParams& p, const View& out, const View& lse, const View& q, const View& k,
                            const View& v, const View& mask) {
    (void)p, (void)out, (void)lse, (void)q, (void)k, (void)v, (void)mask;
    fail("scaled_dot_product_attention: not provided by this backend");
  }
  // Gradients of sdpa_forward, recomputing the weights tile by tile from q, k and lse. grad_q,
  // grad_k and grad_v are dense and overwritten; all inputs are the forward's.
  virtual void sdpa_backward(const SdpaParams& p, const View& grad_q, const View& grad_k, const View& grad_v,
                             const View& grad_out, const View& q, const View& k, const View& v, const View& out,
                             const View& lse, const View& mask) {
    (void)p, (void)grad_q, (void)grad_k, (void)grad_v, (void)grad_out, (void)q, (void)k, (void)v, (void)out, (void)lse,
        (void)mask;
    fail("scaled_dot_product_attention backward: not provided by this backend");
  }
};

// The CPU backend (always present).
Backend& cpu_backend();
// Bytes of CPU tensor storage kiln has handed out and not yet freed (rounded block sizes), the peak
// since the last reset, and the number of allocations so far.
struct CpuMemoryStats {
  size_t allocated = 0;
  size_t peak_allocated = 0;
  uint64_t num_allocs = 0;
};
CpuMemoryStats cpu_memory_stats();
void reset_cpu_peak_memory();
// The CUDA backend: null when kiln was built without it. cuda_device_count() is 0 then, and also
// when the backend is built but the machine has no usable GPU.
Backend* cuda_backend();
int cuda_device_count();

// Threads used by CPU kernels (kernels/cpu/parallel.h). Defaults to OMP_NUM_THREADS, else the CPUs
// this process may run on.
void set_num_threads(int n);
int get_num_threads();

// Whether kernels must give bit-identical results from run to run (kiln::use_deterministic_algorithms):
// then cuDNN's algorithms that accumulate with atomics are not chosen.
void set_deterministic(bool on);
bool deterministic();
// Whether float32 convolutions on a GPU may use TF32 tensor cores (kiln::cuda::set_conv_allow_tf32).
void set_conv_tf32(bool on);
bool conv_tf32();

}  // namespace kiln::kernels
