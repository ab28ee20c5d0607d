// kiln_bench --mode kernels: bandwidth of the memory-bound kernels and throughput of GEMM and
// convolution, straight through the Backend interface (no autograd, outputs preallocated).
// CUDA: CUDA events around each repetition, L2 flushed before each one (a 256 MiB memset),
// median of the repetitions, achieved GB/s as a fraction of a measured device-to-device copy;
// GEMM and conv next to the same call made directly to cuBLAS/cuDNN. CPU: the same kernels timed
// with a steady clock. The last line is one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench.h"
#include "core/dispatch.h"
#include "kernels/backend.h"
#include "kiln.h"

#if KILN_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_backend.h"
#endif

namespace kiln::bench {
namespace {

using kernels::View;
using json = nlohmann::json;

View view(const Tensor& t) { return kiln::detail::view_of(t); }

struct Timer {
  bool cuda = false;
#if KILN_WITH_CUDA
  cudaEvent_t start{}, stop{};
  void* flush = nullptr;
  size_t flush_bytes = size_t(256) << 20;
#endif
  explicit Timer(bool on_cuda) : cuda(on_cuda) {
#if KILN_WITH_CUDA
    if (cuda) {
      KILN_CUDA_CHECK(cudaEventCreate(&start));
      KILN_CUDA_CHECK(cudaEventCreate(&stop));
      KILN_CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
    }
#endif
  }
  ~Timer() {
#if KILN_WITH_CUDA
    if (cuda) {
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
      cudaFree(flush);
    }
#endif
  }
  // Median milliseconds of f() over reps, after warm-up.
  double time_ms(const std::function<void()>& f, int reps = 10, int warmup = 3) {
    for (int i = 0; i < warmup; ++i) f();
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
#if KILN_WITH_CUDA
      if (cuda) {
        cudaStream_t s = kernels::cuda::current_stream();
        KILN_CUDA_CHECK(cudaMemsetAsync(flush, i & 0xff, flush_bytes, s));
        KILN_CUDA_CHECK(cudaEventRecord(start, s));
        f();
        KILN_CUDA_CHECK(cudaEventRecord(stop, s));
        KILN_CUDA_CHECK(cudaEventSynchronize(stop));
        float t = 0;
        KILN_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
        ms.push_back(t);
        continue;
      }
#endif
      auto t0 = std::chrono::steady_clock::now();
      f();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
};

}  // namespace

int run_kernels(const Args& args) {
  const bool cuda = args.device == "cuda" || args.device == "gpu";
  KILN_CHECK(!cuda || kiln::cuda::is_available(), "kiln_bench kernels: --device cuda, but no CUDA device is available");
  if (args.threads > 0) kiln::set_num_threads(args.threads);
  const Device dev = cuda ? Device::cuda(0) : Device::cpu();
  kernels::Backend& be = kiln::detail::backend(dev);  // makes the device current
  Timer timer(cuda);
  const int64_t n = cuda ? (int64_t(1) << 26) : (int64_t(1) << 24);  // 256 MiB / 64 MiB of f32
  json results = json::array();
  auto want = [&](const std::string& name) {
    return args.filter.empty() || name.find(args.filter) != std::string::npos;
  };

  // Ceiling: a device-to-device (or memcpy) copy of n floats.
  Tensor a = randn({n}, {.device = dev}), b = randn({n}, {.device = dev}), c = empty({n}, {.device = dev});
  const double copy_ms = timer.time_ms([&] { be.copy(view(c), view(a)); });
  const double copy_gbs = 2.0 * 4 * double(n) / copy_ms / 1e6;
  std::printf("%-46s %12s %10s %9s\n", "kernel", "elements", "GB/s", "of copy");
  std::printf("%-46s %12lld %10.1f %8.0f%%\n", "copy (ceiling)", (long long)n, copy_gbs, 100.0);

  auto report = [&](const std::string& name, int64_t elems, double bytes, double ms) {
    const double gbs = bytes / ms / 1e6;
    std::printf("%-46s %12lld %10.1f %8.1f%%\n", name.c_str(), (long long)elems, gbs, 100.0 * gbs / copy_gbs);
    results.push_back(
        {{"kernel", name}, {"elements", elems}, {"ms", ms}, {"gb_per_s", gbs}, {"fraction_of_copy", gbs / copy_gbs}});
  };
  auto bw = [&](const std::string& name, int64_t elems, double bytes, const std::function<void()>& f) {
    if (want(name)) report(name, elems, bytes, timer.time_ms(f));
  };

  using kernels::BinaryOp;
  bw("add f32", n, 12.0 * n, [&] { be.binary(BinaryOp::add, view(c), view(a), view(b), 1, 0); });
  bw("mul f32", n, 12.0 * n, [&] { be.binary(BinaryOp::mul, view(c), view(a), view(b), 1, 0); });
  // Random tensors (bytes written): rand, randn, and the dropout mask.
  using kernels::RandomKind;
  bw("random uniform f32", n, 4.0 * n, [&] { be.random(RandomKind::uniform, view(c), 7, 0, 0.0, 1.0); });
  bw("random normal f32", n, 4.0 * n, [&] { be.random(RandomKind::normal, view(c), 7, 0, 0.0, 1.0); });
  bw("random bernoulli f32", n, 4.0 * n, [&] { be.random(RandomKind::bernoulli, view(c), 7, 0, 0.75, 0.0); });
  {
    Tensor h = empty({n}, {.dtype = DType::bf16, .device = dev});
    bw("cast f32->bf16", n, 6.0 * n, [&] { be.copy(view(h), view(a)); });
    Tensor hb = randn({n}, {.dtype = DType::bf16, .device = dev}),
           hc = empty({n}, {.dtype = DType::bf16, .device = dev});
    bw("add bf16", n, 6.0 * n, [&] { be.binary(BinaryOp::add, view(hc), view(hb), view(hb), 1, 0); });
  }
  {
    const int64_t m = n / 2;
    Tensor w = randn({m}, {.device = dev}), g = randn({m}, {.device = dev}), m1 = zeros({m}, {.device = dev}),
           v = zeros({m}, {.device = dev});
    kernels::AdamParams p{1e-3, 0.9, 0.999, 1e-8, 1e-2, 1, true, false, false};
    View none;
    bw("adamw f32", m, 7.0 * 4 * m, [&] { be.adam_step(p, view(w), view(g), view(m1), view(v), none); });
  }
  // Multi-tensor ("foreach") optimizer steps, unscale and norm next to the per-tensor loop over
  // the same tensors: one huge tensor, the reference CNN's ten parameters, and 1000 tensors of
  // 16 Ki elements. Bytes per element: AdamW 7 words (4 read, 3 written), SGD with momentum 5,
  // unscale 2, norm 1.
  {
    struct Lists {
      std::vector<Tensor> w, g, m, v;
      std::vector<View> vw, vg, vm, vv;
      int64_t elems = 0;
    };
    auto make_lists = [&](const std::vector<int64_t>& sizes, DType t) {
      Lists l;
      for (int64_t s : sizes) {
        l.w.push_back(randn({s}, {.dtype = t, .device = dev}));
        l.g.push_back(randn({s}, {.dtype = t, .device = dev}));
        l.m.push_back(zeros({s}, {.dtype = t, .device = dev}));
        l.v.push_back(zeros({s}, {.dtype = t, .device = dev}));
        l.elems += s;
      }
      for (size_t i = 0; i < sizes.size(); ++i) {
        l.vw.push_back(view(l.w[i]));
        l.vg.push_back(view(l.g[i]));
        l.vm.push_back(view(l.m[i]));
        l.vv.push_back(view(l.v[i]));
      }
      return l;
    };
    const std::vector<int64_t> cnn = {864, 32, 18432, 64, 73728, 128, 524288, 256, 2560, 10};
    const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
        {"1 x " + std::to_string(n / 2), {n / 2}},
        {"SimpleCNN (10)", cnn},
        {"1000 x 16Ki", std::vector<int64_t>(1000, 16384)},
    };
    kernels::AdamParams ap{1e-3, 0.9, 0.999, 1e-8, 1e-2, 1, true, false, false};
    kernels::SgdParams sp{0.1, 0.9, 0.0, 0.0, false, false, false};
    for (DType t : {DType::f32, DType::bf16}) {
      const double word = double(element_size(t));
      const std::string ts(dtype_name(t));
      for (const auto& [shape, sizes] : shapes) {
        bool wanted = false;
        for (const char* k : {"adamw ", "sgd momentum ", "unscale+check ", "norm2 "})
          for (const char* how : {" per-tensor ", " multi "}) wanted = wanted || want(k + ts + how + shape);
        if (!wanted) continue;  // spares allocating the lists
        Lists l = make_lists(sizes, t);
        const double e = double(l.elems);
        bw("adamw " + ts + " per-tensor " + shape, l.elems, 7 * word * e, [&] {
          for (size_t i = 0; i < l.w.size(); ++i)
            be.adam_step(ap, l.vw[i], l.vg[i], l.vm[i], l.vv[i], View{nullptr, t});
        });
        bw("adamw " + ts + " multi " + shape, l.elems, 7 * word * e,
           [&] { be.adam_step_multi(ap, l.vw, l.vg, l.vm, l.vv, {}); });
        bw("sgd momentum " + ts + " per-tensor " + shape, l.elems, 5 * word * e, [&] {
          for (size_t i = 0; i < l.w.size(); ++i) be.sgd_step(sp, l.vw[i], l.vg[i], l.vm[i]);
        });
        bw("sgd momentum " + ts + " multi " + shape, l.elems, 5 * word * e,
           [&] { be.sgd_step_multi(sp, l.vw, l.vg, l.vm); });
        if (!cuda) continue;  // the CPU backend has no multi-tensor unscale or norm
        Tensor found = zeros({1}, {.device = dev});
        Tensor norm = zeros({1}, {.device = dev});
        // Unscale by 1/1 would only check; 0.5 writes (and keeps the values bounded over repeats).
        bw("unscale+check " + ts + " multi " + shape, l.elems, 2 * word * e,
           [&] { be.scale_and_check_multi(l.vg, 0.5, View{}, view(found)); });
        bw("norm2 " + ts + " multi " + shape, l.elems, word * e, [&] { be.norm_multi(l.vg, 2.0, view(norm)); });
      }
    }
  }
  {
    Tensor s = empty({1}, {.device = dev});
    View in = view(a), out = view(s);
    out.ndim = 1;
    bw("sum f32 (all)", n, 4.0 * n, [&] { be.reduce(kernels::ReduceOp::sum, out, in); });
    Tensor rows = empty({n / 1024, 1}, {.device = dev});
    View in2 = view(a.reshape({n / 1024, 1024}));
    bw("sum f32 (rows of 1024)", n, 4.0 * n, [&] { be.reduce(kernels::ReduceOp::sum, view(rows), in2); });
  }
  {
    const int64_t classes = 1000, rows = n / classes;
    Tensor x = a.narrow(0, 0, rows * classes).reshape({rows, classes});
    Tensor y = empty({rows, classes}, {.device = dev});
    bw("softmax f32 [.,1000]", rows * classes, 8.0 * rows * classes,
       [&] { be.softmax_forward(view(y), view(x), rows, classes, 1, false); });
    Tensor target = randint(0, classes, {rows}, {.dtype = DType::i64, .device = dev});
    Tensor loss = empty({rows}, {.device = dev}), wout = empty({rows}, {.device = dev});
    View none;
    none.dtype = DType::f32;
    // Cross-entropy forward = log_softmax + nll: the logits are read once and written once.
    bw("cross_entropy fwd f32", rows * classes, 8.0 * rows * classes, [&] {
      be.softmax_forward(view(y), view(x), rows, classes, 1, true);
      be.nll_forward(view(loss), view(wout), view(y), view(target), none, -100);
    });
  }

  // GEMM: kiln's matmul next to the library call it makes.
  json compute = json::array();
  const int64_t g = cuda ? 4096 : 512;
  for (DType t : {DType::f32, DType::bf16}) {
    if (!cuda && t != DType::f32) continue;
    const std::string name = std::string("gemm ") + std::string(dtype_name(t));
    if (!want(name)) continue;
    Tensor x = randn({1, g, g}, {.dtype = t, .device = dev}), y = randn({1, g, g}, {.dtype = t, .device = dev});
    Tensor z = empty({1, g, g}, {.dtype = t, .device = dev});
    const double kiln_ms = timer.time_ms([&] { be.matmul(view(z), view(x), view(y), 0.0); }, 10, 2);
    double lib_ms = 0;
#if KILN_WITH_CUDA
    if (cuda) {
      const cudaDataType_t ct = t == DType::f32 ? CUDA_R_32F : CUDA_R_16BF;
      const float one = 1, zero = 0;
      lib_ms = timer.time_ms(
          [&] {
            KILN_CUBLAS_CHECK(cublasGemmEx(kernels::cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, int(g), int(g),
                                           int(g), &one, y.raw_data(), ct, int(g), x.raw_data(), ct, int(g), &zero,
                                           z.raw_data(), ct, int(g), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
          },
          10, 2);
    }
#endif
    const double tflops = 2.0 * double(g) * g * g / kiln_ms / 1e9;
    std::printf("%-28s %5lld^3 %8.2f TFLOP/s  kiln %.3f ms  cuBLAS %.3f ms  ratio %.3f\n", name.c_str(), (long long)g,
                tflops, kiln_ms, lib_ms, lib_ms > 0 ? kiln_ms / lib_ms : 0.0);
    compute.push_back({{"kernel", name}, {"n", g}, {"kiln_ms", kiln_ms}, {"library_ms", lib_ms}, {"tflops", tflops}});
  }

  // Convolution: the reference CNN's second layer at batch 128.
  if (want("conv")) {
    kernels::Conv2dParams p{128, 32, 16, 16, 64, 3, 3, 16, 16, 1, 1, 1, 1, 1, 1, 1};
    Tensor x = randn({p.n, p.c_in, p.h_in, p.w_in}, {.device = dev});
    Tensor w = randn({p.c_out, p.c_in, p.kh, p.kw}, {.device = dev});
    Tensor y = empty({p.n, p.c_out, p.h_out, p.w_out}, {.device = dev});
    View none;
    none.dtype = DType::f32;
    const double kiln_ms = timer.time_ms([&] { be.conv2d_forward(p, view(y), view(x), view(w), none); }, 10, 3);
    double lib_ms = 0;
#if KILN_WITH_CUDA
    if (cuda) {
      cudnnHandle_t h = kernels::cuda::cudnn_handle();
      cudnnTensorDescriptor_t xd, yd;
      cudnnFilterDescriptor_t wd;
      cudnnConvolutionDescriptor_t cd;
      KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
      KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
      KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd));
      KILN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
      KILN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 128, 32, 16, 16));
      KILN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 128, 64, 16, 16));
      KILN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 64, 32, 3, 3));
      KILN_CUDNN_CHECK(
          cudnnSetConvolution2dDescriptor(cd, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH));
      cudnnConvolutionFwdAlgoPerf_t perf[8];
      int count = 0;
      KILN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, xd, wd, cd, yd, 8, &count, perf));
      void* ws = nullptr;
      if (perf[0].memory) KILN_CUDA_CHECK(cudaMalloc(&ws, perf[0].memory));
      const float one = 1, zero = 0;
      lib_ms = timer.time_ms(
          [&] {
            KILN_CUDNN_CHECK(cudnnConvolutionForward(h, &one, xd, x.raw_data(), wd, w.raw_data(), cd, perf[0].algo, ws,
                                                     perf[0].memory, &zero, yd, y.raw_data()));
          },
          10, 3);
      cudaFree(ws);
      cudnnDestroyTensorDescriptor(xd);
      cudnnDestroyTensorDescriptor(yd);
      cudnnDestroyFilterDescriptor(wd);
      cudnnDestroyConvolutionDescriptor(cd);
    }
#endif
    const double flops = 2.0 * p.n * p.c_out * p.h_out * p.w_out * p.c_in * p.kh * p.kw;
    std::printf("%-28s %8.2f TFLOP/s  kiln %.3f ms  cuDNN %.3f ms  ratio %.3f\n", "conv2d f32 fwd [128,32,16,16]",
                flops / kiln_ms / 1e9, kiln_ms, lib_ms, lib_ms > 0 ? kiln_ms / lib_ms : 0.0);
    compute.push_back({{"kernel", "conv2d f32 fwd"},
                       {"kiln_ms", kiln_ms},
                       {"library_ms", lib_ms},
                       {"tflops", flops / kiln_ms / 1e9}});
  }

  std::string device_name = "cpu";
#if KILN_WITH_CUDA
  if (cuda) {
    cudaDeviceProp prop{};
    KILN_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    device_name = prop.name;
  }
#endif
  json out = {{"mode", "kernels"},
              {"device", device_name},
              {"copy_gb_per_s", copy_gbs},
              {"bandwidth", results},
              {"compute", compute}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace kiln::bench
