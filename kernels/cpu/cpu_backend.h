// The CPU implementation of kernels::Backend: kiln's thread pool (parallel.h), Eigen for f32/f64
// matrix products (gemm.h), handwritten AMX / AVX512-BF16 kernels for bf16 ones (bgemm.h), plain
// vectorisable loops for the rest. Member functions are defined in the file of their kind
// (elementwise.cpp, reduce.cpp, matmul.cpp, conv.cpp, pool.cpp, softmax.cpp, optim.cpp, and the
// sequence-model kernels listed below).
#pragma once

#include "kernels/backend.h"

namespace kiln::kernels::cpu {

class CpuBackend final : public Backend {
 public:
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes) override;
  void synchronize() override {}

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
  // Sequence-model kernels (cumsum.cpp, sort.cpp, gather.cpp, multinomial.cpp, attention.cpp).
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

}  // namespace kiln::kernels::cpu
