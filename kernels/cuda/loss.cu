// Negative log-likelihood forward and backward, one thread per sample. An out-of-range target
// is recorded in the device error slot (cuda_backend.h) and reported by the host at its next
// synchronisation, so the loss needs no read-back per call.
#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

// An out-of-range target is recorded in `err` (the first one wins; the host reports it at its
// next synchronisation) and gives a NaN loss instead of reading outside the row.
template <class T>
__global__ void nll_fwd(T* loss, T* wout, const T* logp, const int64_t* target, const T* w, int64_t n, int64_t c,
                        int64_t ignore, DeviceError* err) {
  KILN_GRID_LOOP(i, n) {
    const int64_t k = target[i];
    if (k == ignore) {
      loss[i] = store_c<T>(0.0);
      if (wout) wout[i] = store_c<T>(0.0);
      continue;
    }
    if (k < 0 || k >= c) {
      if (atomicCAS(&err->code, int(kNoDeviceError), int(kNllTargetOutOfRange)) == int(kNoDeviceError)) {
        err->value = k;
        err->bound = c;
        __threadfence_system();
      }
      loss[i] = store_c<T>(__longlong_as_double(0x7ff8000000000000LL));
      if (wout) wout[i] = store_c<T>(0.0);
      continue;
    }
    const double wi = w ? double(load_c(w[k])) : 1.0;
    loss[i] = store_c<T>(-wi * double(load_c(logp[i * c + k])));
    if (wout) wout[i] = store_c<T>(wi);
  }
}

template <class T>
__global__ void nll_bwd(T* g, const T* gl, int64_t gl_stride, const int64_t* target, const T* w, int64_t n, int64_t c,
                        int64_t ignore) {
  KILN_GRID_LOOP(i, n) {
    const int64_t k = target[i];
    if (k == ignore || k < 0 || k >= c) continue;  // out of range: reported by the forward
    const double wi = w ? double(load_c(w[k])) : 1.0;
    g[i * c + k] = store_c<T>(-wi * double(load_c(gl[i * gl_stride])));
  }
}

}  // namespace

void CudaBackend::nll_forward(const View& loss, const View& weight_out, const View& logp, const View& target,
                              const View& weight, int64_t ignore_index) {
  dispatch_float(logp.dtype, "nll_loss", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = logp.sizes[0], c = logp.sizes[1];
    if (!n) return;
    check_device_errors();  // one recorded by an earlier call (a host read, no synchronisation)
    nll_fwd<T><<<grid_for(n), kThreads, 0, current_stream()>>>(loss.ptr<T>(), weight_out.ptr<T>(), logp.ptr<T>(),
                                                               target.ptr<int64_t>(), weight.ptr<T>(), n, c,
                                                               ignore_index, device_error_slot());
    KILN_LAUNCH_CHECK("nll_fwd");
  });
}

void CudaBackend::nll_backward(const View& grad_logp, const View& grad_loss, const View& target, const View& weight,
                               int64_t ignore_index) {
  dispatch_float(grad_logp.dtype, "nll_loss backward", [&](auto tag) {
    using T = decltype(tag);
    fill(grad_logp, 0.0);
    const int64_t n = grad_logp.sizes[0], c = grad_logp.sizes[1];
    if (!n) return;
    nll_bwd<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        grad_logp.ptr<T>(), grad_loss.ptr<T>(), grad_loss.ndim > 0 ? grad_loss.strides[0] : 0, target.ptr<int64_t>(),
        weight.ptr<T>(), n, c, ignore_index);
    KILN_LAUNCH_CHECK("nll_bwd");
  });
}

}  // namespace kiln::kernels::cuda
