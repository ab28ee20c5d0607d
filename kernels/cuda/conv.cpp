// 2-D convolution through cuDNN 9's legacy convolution API on dense NCHW tensors. For each shape
// and dtype the descriptors and the fastest algorithm of each direction (forward, backward data,
// backward filter; measured once with cudnnFind*Ex on kiln's own buffers) are cached; workspaces
// come from the caching allocator. f32 uses FMA math only (no TF32, so results match the CPU to
// fp32 rounding) unless kiln::cuda::set_conv_allow_tf32 allows TF32; f16/bf16 use tensor cores
// with f32 accumulation.
#include <cudnn.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_backend.h"

namespace kiln::kernels::cuda {
namespace {

constexpr size_t kMaxWorkspace = size_t(256) << 20;

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: fail("conv2d: expected a floating-point tensor, got ", dtype_name(t));
  }
}

struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool have_fwd = false, have_bwd_data = false, have_bwd_filter = false;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;
};

// device, dtype, deterministic, f32 on TF32 tensor cores, params
using Key = std::tuple<int, int, bool, bool, std::vector<int64_t>>;

Key key_of(const Conv2dParams& p, DType t) {
  return {current_device(),
          int(t),
          deterministic(),
          t == DType::f32 && conv_tf32(),
          {p.n, p.c_in, p.h_in, p.w_in, p.c_out, p.kh, p.kw, p.h_out, p.w_out, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
           p.dil_h, p.dil_w, p.groups}};
}

std::mutex g_mu;
std::map<Key, std::unique_ptr<Plan>> g_plans;  // lives for the process, like cuDNN's handle

Plan& plan_for(const Conv2dParams& p, DType t) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto& slot = g_plans[key_of(p, t)];
  if (slot) return *slot;
  auto plan = std::make_unique<Plan>();
  const cudnnDataType_t dt = cudnn_type(t);
  KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x));
  KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y));
  KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->bias));
  KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan->w));
  KILN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv));
  KILN_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(plan->x, CUDNN_TENSOR_NCHW, dt, int(p.n), int(p.c_in), int(p.h_in), int(p.w_in)));
  KILN_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(plan->y, CUDNN_TENSOR_NCHW, dt, int(p.n), int(p.c_out), int(p.h_out), int(p.w_out)));
  KILN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->bias, CUDNN_TENSOR_NCHW, dt, 1, int(p.c_out), 1, 1));
  KILN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->w, dt, CUDNN_TENSOR_NCHW, int(p.c_out), int(p.c_in / p.groups),
                                              int(p.kh), int(p.kw)));
  const cudnnDataType_t compute = t == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  KILN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->conv, int(p.pad_h), int(p.pad_w), int(p.stride_h),
                                                   int(p.stride_w), int(p.dil_h), int(p.dil_w), CUDNN_CROSS_CORRELATION,
                                                   compute));
  KILN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(plan->conv, int(p.groups)));
  const cudnnMathType_t math = (t == DType::f16 || t == DType::bf16) ? CUDNN_TENSOR_OP_MATH
                               : t == DType::f32 ? (conv_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH)
                                                 : CUDNN_DEFAULT_MATH;
  KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, math));
  // Cross-check the output shape core computed against cuDNN's.
  int n = 0, c = 0, h = 0, w = 0;
  KILN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->conv, plan->x, plan->w, &n, &c, &h, &w));
  KILN_CHECK(n == p.n && c == p.c_out && h == p.h_out && w == p.w_out, "conv2d (cuDNN): output shape [", n, ", ", c,
             ", ", h, ", ", w, "] differs from the expected [", p.n, ", ", p.c_out, ", ", p.h_out, ", ", p.w_out, "]");
  slot = std::move(plan);
  return *slot;
}

// A scratch buffer for algorithm search: as large as allowed, smaller when memory is short.
std::unique_ptr<Workspace> search_workspace(size_t* size) {
  for (size_t s = kMaxWorkspace; s >= (size_t(1) << 20); s /= 4) {
    try {
      auto ws = std::make_unique<Workspace>(s);
      *size = s;
      return ws;
    } catch (const Error&) {}
  }
  *size = 0;
  return std::make_unique<Workspace>(0);
}

// The fastest successful result that fits the workspace, or one that needs less workspace while
// taking at most 10% longer: the workspace is held during every call and adds to the step's peak
// memory, and the fastest algorithm's margin is often within the search's own timing noise.
// With kiln::use_deterministic_algorithms only algorithms cuDNN reports deterministic count.
template <class Perf>
const Perf& pick(const Perf* results, int count, size_t ws_limit, const char* what) {
  const bool det = deterministic();
  auto usable = [&](const Perf& r) {
    return r.status == CUDNN_STATUS_SUCCESS && r.memory <= ws_limit && (!det || r.determinism == CUDNN_DETERMINISTIC);
  };
  const Perf* best = nullptr;
  for (int i = 0; i < count && !best; ++i)
    if (usable(results[i])) best = &results[i];
  KILN_CHECK(best, "conv2d (cuDNN): no ", det ? "deterministic " : "", what, " algorithm works for this shape",
             det ? "; turn kiln::use_deterministic_algorithms off to allow the others" : "");
  const Perf* chosen = best;
  for (int i = 0; i < count; ++i)
    if (usable(results[i]) && results[i].memory < chosen->memory && results[i].time <= best->time * 1.10f)
      chosen = &results[i];
  return *chosen;
}

void check_dense(const View& v, const char* name) {
  KILN_CHECK(v.data == nullptr || v.is_contiguous(), "conv2d (CUDA): ", name, " must be dense NCHW");
}

}  // namespace

void CudaBackend::conv2d_forward(const Conv2dParams& p, const View& out, const View& in, const View& weight,
                                 const View& bias) {
  check_dense(out, "out");
  check_dense(in, "input");
  check_dense(weight, "weight");
  if (p.n * p.c_out * p.h_out * p.w_out == 0) return;
  Plan& plan = plan_for(p, in.dtype);
  cudnnHandle_t h = cudnn_handle();
  const float one_f = 1.f, zero_f = 0.f;
  const double one_d = 1.0, zero_d = 0.0;
  const bool f64 = in.dtype == DType::f64;
  const void* one = f64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = f64 ? static_cast<const void*>(&zero_d) : &zero_f;
  if (!plan.have_fwd) {
    size_t limit = 0;
    auto ws = search_workspace(&limit);
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    KILN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, plan.x, in.data, plan.w, weight.data, plan.conv, plan.y,
                                                            out.data, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf,
                                                            ws->get(), limit));
    const auto& best = pick(perf, count, limit, "forward");
    plan.fwd = best.algo;
    plan.fwd_ws = best.memory;
    plan.have_fwd = true;
  }
  Workspace ws(plan.fwd_ws);
  KILN_CUDNN_CHECK(cudnnConvolutionForward(h, one, plan.x, in.data, plan.w, weight.data, plan.conv, plan.fwd, ws.get(),
                                           plan.fwd_ws, zero, plan.y, out.data));
  if (bias.data) KILN_CUDNN_CHECK(cudnnAddTensor(h, one, plan.bias, bias.data, one, plan.y, out.data));
}

void CudaBackend::conv2d_backward(const Conv2dParams& p, const View& grad_in, const View& grad_weight,
                                  const View& grad_bias, const View& grad_out, const View& in, const View& weight) {
  check_dense(grad_in, "grad_in");
  check_dense(grad_weight, "grad_weight");
  check_dense(grad_out, "grad_out");
  check_dense(in, "input");
  check_dense(weight, "weight");
  const DType t = grad_out.dtype;
  Plan& plan = plan_for(p, t);
  cudnnHandle_t h = cudnn_handle();
  const float one_f = 1.f, zero_f = 0.f;
  const double one_d = 1.0, zero_d = 0.0;
  const bool f64 = t == DType::f64;
  const void* one = f64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = f64 ? static_cast<const void*>(&zero_d) : &zero_f;
  const bool empty = p.n * p.c_out * p.h_out * p.w_out == 0;
  if (grad_in.data) {
    if (empty) {
      fill(grad_in, 0.0);
    } else {
      if (!plan.have_bwd_data) {
        size_t limit = 0;
        auto ws = search_workspace(&limit);
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        int count = 0;
        KILN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
            h, plan.w, weight.data, plan.y, grad_out.data, plan.conv, plan.x, grad_in.data,
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf, ws->get(), limit));
        const auto& best = pick(perf, count, limit, "backward-data");
        plan.bwd_data = best.algo;
        plan.bwd_data_ws = best.memory;
        plan.have_bwd_data = true;
      }
      Workspace ws(plan.bwd_data_ws);
      KILN_CUDNN_CHECK(cudnnConvolutionBackwardData(h, one, plan.w, weight.data, plan.y, grad_out.data, plan.conv,
                                                    plan.bwd_data, ws.get(), plan.bwd_data_ws, zero, plan.x,
                                                    grad_in.data));
    }
  }
  if (grad_weight.data) {
    if (empty) {
      fill(grad_weight, 0.0);
    } else {
      if (!plan.have_bwd_filter) {
        size_t limit = 0;
        auto ws = search_workspace(&limit);
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        int count = 0;
        KILN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
            h, plan.x, in.data, plan.y, grad_out.data, plan.conv, plan.w, grad_weight.data,
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf, ws->get(), limit));
        const auto& best = pick(perf, count, limit, "backward-filter");
        plan.bwd_filter = best.algo;
        plan.bwd_filter_ws = best.memory;
        plan.have_bwd_filter = true;
      }
      Workspace ws(plan.bwd_filter_ws);
      KILN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, one, plan.x, in.data, plan.y, grad_out.data, plan.conv,
                                                      plan.bwd_filter, ws.get(), plan.bwd_filter_ws, zero, plan.w,
                                                      grad_weight.data));
    }
  }
  if (grad_bias.data) {
    // The bias gradient is a sum over (n, h, w): kiln's own reduction, which takes every dtype
    // (cuDNN's backward-bias refuses bfloat16).
    View gb = grad_bias;
    gb.ndim = 4;
    gb.sizes[0] = 1;
    gb.sizes[1] = p.c_out;
    gb.sizes[2] = 1;
    gb.sizes[3] = 1;
    gb.strides[0] = p.c_out;
    gb.strides[1] = 1;
    gb.strides[2] = 1;
    gb.strides[3] = 1;
    if (empty)
      fill(grad_bias, 0.0);
    else
      reduce(ReduceOp::sum, gb, grad_out);
  }
}

}  // namespace kiln::kernels::cuda
