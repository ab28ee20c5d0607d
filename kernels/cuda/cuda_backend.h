// The CUDA implementation of kernels::Backend: handwritten kernels for elementwise, reduction,
// pooling, softmax, loss and optimizer work; cuBLAS for matrix products and cuDNN for
// convolutions. Every kernel runs on the current stream of the current device; memory comes
// from one caching allocator per device. Member functions are defined in the file of their kind
// (device.cpp, elementwise.cu, reduce.cu, matmul.cu, conv.cpp, pool.cu, softmax.cu, loss.cu,
// embedding.cu, optim.cu, multi_tensor.cu, augment.cu, graph.cu).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/allocator.h"

typedef struct cublasContext* cublasHandle_t;
typedef struct cudnnContext* cudnnHandle_t;

namespace kiln::kernels::cuda {

// Public helpers for core/, bench/ and tests (the Backend interface stays narrow).
cudaStream_t current_stream();            // of this thread's current device
cudaStream_t current_stream(int device);  // of this thread on `device`
cudaStream_t default_stream(int device);  // the device's kiln stream (non-blocking)
void set_current_stream(cudaStream_t s);  // nullptr: back to the device's default kiln stream
void set_current_stream(int device, cudaStream_t s);
int current_device();
MemoryStats memory_stats(int device = -1);  // -1: the current device
void empty_cache(int device = -1);
void reset_peak_memory_stats(int device = -1);
void empty_all_caches();  // of every device kiln has used (touches no other device)
// Temporary device memory from the caching allocator, returned on destruction (stream-ordered).
class Workspace {
 public:
  explicit Workspace(size_t nbytes);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};
// Host synchronisations so far (copies to the host, stream/event/device synchronisations) on
// every device: tests and benchmarks count them per training step.
uint64_t host_sync_count();
void count_host_sync();

// Errors found by kernels (an out-of-range class index in nll_loss, ...) without a host round
// trip: the kernel records the first one in pinned host memory that the device writes, and the
// host reports it as a kiln::Error at its next synchronisation or the next call of the same op.
struct DeviceError {
  int code;  // DeviceErrorCode; 0 while nothing went wrong
  int pad;
  long long value;  // the offending value
  long long bound;  // the limit it broke
};
enum DeviceErrorCode : int { kNoDeviceError = 0, kNllTargetOutOfRange = 1 };
DeviceError* device_error_slot();  // the pointer kernels write through
void check_device_errors();        // throws the recorded error (and clears it)

// CUDA graph capture (graph.cu). While this thread captures on `stream`, allocations on it come
// from the graph's private pool and random kernels take their Philox offsets from the device
// (each replay advances them), so replays draw new numbers.
struct CaptureState {
  int device = 0;
  cudaStream_t stream = nullptr;
  uintptr_t pool = 0;                         // the allocator key of the graph's pool
  unsigned long long* offset_base = nullptr;  // device: Philox offset of this replay
  unsigned long long counters = 0;            // Philox counters drawn so far in the capture
};
CaptureState* capture_state(cudaStream_t stream);  // non-null while `stream` is being captured here
void begin_pool_capture(int device, uintptr_t pool);
void end_pool_capture(int device);
void release_pool(int device, uintptr_t pool, cudaStream_t stream);
void set_thread_capture(CaptureState* c);  // graph.cu, around a capture
void* graph_capture_begin(int device, cudaStream_t stream);
void graph_capture_end(void* graph);  // instantiates; on failure discards and throws
void graph_capture_abort(void* graph) noexcept;
void graph_replay(void* graph, cudaStream_t stream);
void graph_destroy(void* graph) noexcept;

cublasHandle_t cublas_handle();  // bound to the current stream
cudnnHandle_t cudnn_handle();    // bound to the current stream
int sm_count();

class CudaBackend final : public Backend {
 public:
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes) override;
  void synchronize() override;
  void set_device(int index) override;

  void copy(const View& out, const View& in) override;
  void fill(const View& out, double value) override;
  void arange(const View& out, double start, double step) override;
  void unary(UnaryOp op, const View& out, const View& in, double a, double b) override;
  void binary(BinaryOp op, const View& out, const View& x, const View& y, double alpha, double beta) override;
  void where(const View& out, const View& cond, const View& x, const View& y) override;
  void reduce(ReduceOp op, const View& out, const View& in) override;
  void reduce_index(ReduceOp op, const View& values, const View& indices, const View& in, int dim) override;
  void random(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b) override;
  void matmul(const View& out, const View& a, const View& b, double beta) override;
  void conv2d_forward(const Conv2dParams& p, const View& out, const View& in, const View& weight,
                      const View& bias) override;
  void conv2d_backward(const Conv2dParams& p, const View& grad_in, const View& grad_weight, const View& grad_bias,
                       const View& grad_out, const View& in, const View& weight) override;
  void max_pool2d_forward(const Pool2dParams& p, const View& out, const View& indices, const View& in) override;
  void max_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out,
                           const View& indices) override;
  void avg_pool2d_forward(const Pool2dParams& p, const View& out, const View& in) override;
  void avg_pool2d_backward(const Pool2dParams& p, const View& grad_in, const View& grad_out) override;
  void softmax_forward(const View& out, const View& in, int64_t outer, int64_t dim, int64_t inner, bool log) override;
  void softmax_backward(const View& grad_in, const View& grad_out, const View& out, int64_t outer, int64_t dim,
                        int64_t inner, bool log) override;
  void nll_forward(const View& loss, const View& weight_out, const View& logp, const View& target, const View& weight,
                   int64_t ignore_index) override;
  void nll_backward(const View& grad_logp, const View& grad_loss, const View& target, const View& weight,
                    int64_t ignore_index) override;
  int64_t index_select_rows(const View& out, const View& weight, const View& index) override;
  void index_add_rows(const View& grad_weight, const View& grad_out, const View& index) override;
  void adam_step(const AdamParams& p, const View& param, const View& grad, const View& exp_avg, const View& exp_avg_sq,
                 const View& max_exp_avg_sq) override;
  void sgd_step(const SgdParams& p, const View& param, const View& grad, const View& momentum_buffer) override;
  // Multi-tensor forms (multi_tensor.cu).
  void adam_step_multi(const AdamParams& p, std::span<const View> params, std::span<const View> grads,
                       std::span<const View> exp_avgs, std::span<const View> exp_avg_sqs,
                       std::span<const View> max_exp_avg_sqs, std::span<const View> steps) override;
  void sgd_step_multi(const SgdParams& p, std::span<const View> params, std::span<const View> grads,
                      std::span<const View> momentum_buffers) override;
  void scale_and_check_multi(std::span<const View> tensors, double factor, const View& factor_tensor,
                             const View& found_inf) override;
  void norm_multi(std::span<const View> tensors, double order, const View& out) override;
  void augment_images(const AugmentParams& p, const View& out, const View& out_labels, const View& images,
                      const View& labels, const View& indices) override;
  void update_scale(const View& scale, const View& inv_scale, const View& growth_tracker, const View& found_inf,
                    double growth, double backoff, int64_t growth_interval) override;
  // Sequence-model kernels (cumsum.cu, sort.cu, gather.cu, multinomial.cu, attention.cu).
  void cumsum(const View& out, const View& in, int64_t outer, int64_t n, int64_t inner) override;
  void sort(const View& values, const View& indices, const View& in, bool descending) override;
  void gather(const View& out, const View& in, const View& index, int dim) override;
  void scatter(const View& self, const View& index, const View& src, int dim, bool accumulate) override;
  void multinomial(const View& out, const View& probs, int64_t k, bool replacement, uint64_t seed,
                   uint64_t offset) override;
  void sdpa_forward(const SdpaParams& p, const View& out, const View& lse, const View& q, const View& k, const View& v,
                    const View& mask) override;
  void sdpa_backward(const SdpaParams& p, const View& grad_q, const View& grad_k, const View& grad_v,
                     const View& grad_out, const View& q, const View& k, const View& v, const View& out,
                     const View& lse, const View& mask) override;
};

}  // namespace kiln::kernels::cuda
