// CPU fused scaled dot-product attention (flash-attention style).
//
// Forward: each task owns a tile of kBr queries of one batch entry and streams tiles of kBc keys
// past it: S = scale * Q K^T + mask (a kBr x kBc tile), an online softmax rescales the running
// output when the row maximum grows, and O += P V. Memory is O(t * d); the [tq, tk] matrix never
// exists. The log-sum-exp of each row is kept for backward.
// Backward recomputes P tile by tile from Q, K and the log-sum-exp, in two passes that need no
// locks: one task per key tile accumulates dK and dV over all queries, one task per query tile
// accumulates dQ over all keys (the price: S is computed twice).
// Arithmetic is f32 for f32/f16/bf16 inputs (tile products through sgemm) and f64 for f64.
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/vmath.h"
#include "kernels/philox.h"

namespace kiln::kernels::cpu {
namespace {

constexpr int64_t kBr = 32;  // queries per tile
constexpr int64_t kBc = 64;  // keys per tile

// x[i] = exp(x[i] - shift) over a row of scores: the vector kernels of vmath.h for f32, libm for f64.
template <class A>
void exp_shifted(A* x, A shift, int64_t n) {
  if constexpr (std::is_same_v<A, float>) {
    exp_shifted_f32(x, x, shift, n);
  } else {
    for (int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i] - shift);
  }
}

// C[m, n] (+)= op(A) op(B), row-major: sgemm for f32, Eigen for f64.
template <class A>
void mm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const A* a, int64_t lda, const A* b, int64_t ldb,
        bool accumulate, A* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if constexpr (std::is_same_v<A, float>) {
    sgemm(ta, tb, m, n, k, a, lda, b, ldb, accumulate ? 1.f : 0.f, c, ldc);
  } else {
    using Row = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Col = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
    using S = Eigen::OuterStride<>;
    Eigen::Map<Row, 0, S> cm(c, m, n, S(ldc));
    auto run = [&](const auto& ma, const auto& mb) {
      if (accumulate)
        cm.noalias() += ma * mb;
      else
        cm.noalias() = ma * mb;
    };
    auto with_b = [&](const auto& ma) {
      if (tb)
        run(ma, Eigen::Map<const Col, 0, S>(b, k, n, S(ldb)));
      else
        run(ma, Eigen::Map<const Row, 0, S>(b, k, n, S(ldb)));
    };
    if (ta)
      with_b(Eigen::Map<const Col, 0, S>(a, m, k, S(lda)));
    else
      with_b(Eigen::Map<const Row, 0, S>(a, m, k, S(lda)));
  }
}

template <class T, class A>
class Attention {
 public:
  Attention(const SdpaParams& p, const View& q, const View& k, const View& v, const View& mask)
      : p_(p), q_(q.ptr<T>()), k_(k.ptr<T>()), v_(v.ptr<T>()), mask_(mask) {
    keep_scale_ = p.dropout_p > 0 ? A(1.0 / (1.0 - p.dropout_p)) : A(1);
  }

  // Rows [r0, r0 + n) of a [batch, t, width] tensor of type T as A values: the tensor itself when
  // T is A, else converted into buf.
  const A* rows(const T* base, int64_t b, int64_t t, int64_t width, int64_t r0, int64_t n, std::vector<A>& buf) const {
    const T* src = base + (b * t + r0) * width;
    if constexpr (std::is_same_v<T, A>) {
      return src;
    } else {
      buf.resize(size_t(n * width));
      for (int64_t i = 0; i < n * width; ++i) buf[size_t(i)] = A(float(src[i]));
      return buf.data();
    }
  }
  const A* q_rows(int64_t b, int64_t i0, int64_t n, std::vector<A>& buf) const {
    return rows(q_, b, p_.tq, p_.d, i0, n, buf);
  }
  const A* k_rows(int64_t b, int64_t j0, int64_t n, std::vector<A>& buf) const {
    return rows(k_, b, p_.tk, p_.d, j0, n, buf);
  }
  const A* v_rows(int64_t b, int64_t j0, int64_t n, std::vector<A>& buf) const {
    return rows(v_, b, p_.tk, p_.dv, j0, n, buf);
  }

  // The last key a query tile can see plus one (every key without is_causal).
  int64_t key_end(int64_t i0, int64_t nr) const { return p_.causal ? std::min(p_.tk, i0 + nr) : p_.tk; }
  // The first query that can see a key tile (0 without is_causal).
  int64_t query_begin(int64_t j0) const { return p_.causal ? std::min(p_.tq, j0) : 0; }

  // S[nr, nc] = scale * Q_tile K_tile^T + mask; -inf where the mask or causality hides a key.
  void scores(int64_t b, int64_t i0, int64_t nr, int64_t j0, int64_t nc, const A* qt, const A* kt, A* s) const {
    mm<A>(false, true, nr, nc, p_.d, qt, p_.d, kt, p_.d, false, s, nc);
    const A scale = A(p_.scale);
    const A ninf = -std::numeric_limits<A>::infinity();
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < nc; ++c) {
        A& x = s[r * nc + c];
        x *= scale;
        if (p_.causal && j0 + c > i0 + r) x = ninf;
      }
    if (mask_.data) add_mask(b, i0, nr, j0, nc, s);
  }

  // Whether dropout keeps weight (b, i, j).
  bool keep(int64_t b, int64_t i, int64_t j) const {
    if (p_.dropout_p <= 0) return true;
    const uint64_t lane = uint64_t((b * p_.tq + i) * p_.tk + j);
    return double(philox_uniform(p_.seed, p_.offset, lane)) >= p_.dropout_p;
  }
  A keep_scale() const { return keep_scale_; }
  const SdpaParams& params() const { return p_; }

 private:
  void add_mask(int64_t b, int64_t i0, int64_t nr, int64_t j0, int64_t nc, A* s) const {
    const int lead = mask_.ndim - 2;
    int64_t base = 0, rem = b;
    for (int d = lead - 1; d >= 0; --d) {
      base += (rem % mask_.sizes[d]) * mask_.strides[d];
      rem /= mask_.sizes[d];
    }
    const int64_t sq = mask_.strides[lead], sk = mask_.strides[lead + 1];
    KILN_DISPATCH_ALL(mask_.dtype, "scaled_dot_product_attention mask", [&](auto tag) {
      using M = decltype(tag);
      const M* m = mask_.ptr<M>() + base;
      const A ninf = -std::numeric_limits<A>::infinity();
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t c = 0; c < nc; ++c) {
          const M mv = m[(i0 + r) * sq + (j0 + c) * sk];
          if constexpr (std::is_same_v<M, bool>) {
            if (!mv) s[r * nc + c] = ninf;
          } else {
            s[r * nc + c] += A(compute_t<M>(mv));
          }
        }
    });
  }

  const SdpaParams& p_;
  const T* q_;
  const T* k_;
  const T* v_;
  const View& mask_;
  A keep_scale_;
};

template <class T, class A>
void forward_typed(const SdpaParams& p, const View& out, const View& lse, const View& q, const View& k, const View& v,
                   const View& mask) {
  const Attention<T, A> at(p, q, k, v, mask);
  const int64_t qtiles = (p.tq + kBr - 1) / kBr;
  T* o = out.ptr<T>();
  A* l_out = lse.ptr<A>();
  parallel_for(0, p.batch * qtiles, threads_for(p.batch * p.tq * p.tk * (p.d + p.dv)), [&](int64_t task) {
    const int64_t b = task / qtiles, i0 = (task % qtiles) * kBr, nr = std::min(kBr, p.tq - i0);
    std::vector<A> qbuf, kbuf, vbuf, s(size_t(kBr * kBc)), acc(size_t(kBr * p.dv), A(0));
    std::vector<A> mrow(size_t(nr), -std::numeric_limits<A>::infinity()), lrow(size_t(nr), A(0));
    const A* qt = at.q_rows(b, i0, nr, qbuf);
    const int64_t jend = at.key_end(i0, nr);
    for (int64_t j0 = 0; j0 < jend; j0 += kBc) {
      const int64_t nc = std::min(kBc, jend - j0);
      const A* kt = at.k_rows(b, j0, nc, kbuf);
      const A* vt = at.v_rows(b, j0, nc, vbuf);
      at.scores(b, i0, nr, j0, nc, qt, kt, s.data());
      for (int64_t r = 0; r < nr; ++r) {
        A* sr = s.data() + r * nc;
        A mx = mrow[size_t(r)];
        for (int64_t c = 0; c < nc; ++c) mx = std::max(mx, sr[c]);
        if (mx == -std::numeric_limits<A>::infinity()) {  // nothing visible yet: P is all zero
          for (int64_t c = 0; c < nc; ++c) sr[c] = A(0);
          continue;
        }
        const A alpha = std::exp(mrow[size_t(r)] - mx);
        exp_shifted(sr, mx, nc);
        A sum = 0;
        for (int64_t c = 0; c < nc; ++c) {
          const A pv = sr[c];
          sum += pv;
          sr[c] = at.keep(b, i0 + r, j0 + c) ? pv * at.keep_scale() : A(0);
        }
        lrow[size_t(r)] = lrow[size_t(r)] * alpha + sum;
        mrow[size_t(r)] = mx;
        A* ar = acc.data() + r * p.dv;
        if (alpha != A(1))
          for (int64_t e = 0; e < p.dv; ++e) ar[e] *= alpha;
      }
      mm<A>(false, false, nr, p.dv, nc, s.data(), nc, vt, p.dv, true, acc.data(), p.dv);
    }
    for (int64_t r = 0; r < nr; ++r) {
      const A l = lrow[size_t(r)];
      const A inv = l > A(0) ? A(1) / l : A(0);
      T* orow = o + (b * p.tq + i0 + r) * p.dv;
      for (int64_t e = 0; e < p.dv; ++e) orow[e] = T(compute_t<T>(acc[size_t(r * p.dv + e)] * inv));
      l_out[b * p.tq + i0 + r] = l > A(0) ? mrow[size_t(r)] + std::log(l) : -std::numeric_limits<A>::infinity();
    }
  });
}

// The backward of one (query tile, key tile) pair: P, the dropout-scaled P, and dS in place of S.
template <class T, class A>
struct TileGrads {
  std::vector<A> s, pd, dp;  // [nr, nc] each

  void compute(const Attention<T, A>& at, int64_t b, int64_t i0, int64_t nr, int64_t j0, int64_t nc, const A* qt,
               const A* kt, const A* vt, const A* dot, const A* lse, const A* delta) {
    const SdpaParams& p = at.params();
    s.resize(size_t(nr * nc));
    pd.resize(size_t(nr * nc));
    dp.resize(size_t(nr * nc));
    at.scores(b, i0, nr, j0, nc, qt, kt, s.data());
    mm<A>(false, true, nr, nc, p.dv, dot, p.dv, vt, p.dv, false, dp.data(), nc);  // dO V^T
    for (int64_t r = 0; r < nr; ++r) {
      const A l = lse[i0 + r];
      if (l == -std::numeric_limits<A>::infinity())
        std::fill_n(s.data() + r * nc, nc, A(0));
      else
        exp_shifted(s.data() + r * nc, l, nc);
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t x = r * nc + c;
        const A pv = s[size_t(x)];
        const bool kept = at.keep(b, i0 + r, j0 + c);
        pd[size_t(x)] = kept ? pv * at.keep_scale() : A(0);
        const A dpv = kept ? dp[size_t(x)] * at.keep_scale() : A(0);
        s[size_t(x)] = pv * (dpv - delta[i0 + r]);  // dS
      }
    }
  }
};

template <class T, class A>
void backward_typed(const SdpaParams& p, const View& grad_q, const View& grad_k, const View& grad_v,
                    const View& grad_out, const View& q, const View& k, const View& v, const View& out, const View& lse,
                    const View& mask) {
  const Attention<T, A> at(p, q, k, v, mask);
  const T* go = grad_out.ptr<T>();
  const T* o = out.ptr<T>();
  const A* l_all = lse.ptr<A>();
  const int threads = threads_for(p.batch * p.tq * p.tk * (p.d + p.dv));
  // delta_i = dO_i . O_i, the softmax backward's row term.
  std::vector<A> delta(size_t(p.batch * p.tq));
  parallel_for(0, p.batch * p.tq, threads, [&](int64_t row) {
    A s = 0;
    for (int64_t e = 0; e < p.dv; ++e) s += A(compute_t<T>(go[row * p.dv + e])) * A(compute_t<T>(o[row * p.dv + e]));
    delta[size_t(row)] = s;
  });
  const A scale = A(p.scale);
  auto store = [](T* dst, const std::vector<A>& src, int64_t n, A factor) {
    for (int64_t i = 0; i < n; ++i) dst[i] = T(compute_t<T>(src[size_t(i)] * factor));
  };

  // dK, dV: one task per key tile.
  const int64_t ktiles = (p.tk + kBc - 1) / kBc;
  parallel_for(0, p.batch * ktiles, threads, [&](int64_t task) {
    const int64_t b = task / ktiles, j0 = (task % ktiles) * kBc, nc = std::min(kBc, p.tk - j0);
    std::vector<A> qbuf, kbuf, vbuf, gbuf, dk(size_t(nc * p.d), A(0)), dv(size_t(nc * p.dv), A(0));
    TileGrads<T, A> tg;
    const A* kt = at.k_rows(b, j0, nc, kbuf);
    const A* vt = at.v_rows(b, j0, nc, vbuf);
    for (int64_t i0 = at.query_begin(j0) / kBr * kBr; i0 < p.tq; i0 += kBr) {
      const int64_t nr = std::min(kBr, p.tq - i0);
      const A* qt = at.q_rows(b, i0, nr, qbuf);
      const A* dot = at.rows(go, b, p.tq, p.dv, i0, nr, gbuf);
      tg.compute(at, b, i0, nr, j0, nc, qt, kt, vt, dot, l_all + b * p.tq, delta.data() + b * p.tq);
      mm<A>(true, false, nc, p.dv, nr, tg.pd.data(), nc, dot, p.dv, true, dv.data(), p.dv);  // Pd^T dO
      mm<A>(true, false, nc, p.d, nr, tg.s.data(), nc, qt, p.d, true, dk.data(), p.d);       // dS^T Q
    }
    store(grad_k.ptr<T>() + (b * p.tk + j0) * p.d, dk, nc * p.d, scale);
    store(grad_v.ptr<T>() + (b * p.tk + j0) * p.dv, dv, nc * p.dv, A(1));
  });

  // dQ: one task per query tile.
  const int64_t qtiles = (p.tq + kBr - 1) / kBr;
  parallel_for(0, p.batch * qtiles, threads, [&](int64_t task) {
    const int64_t b = task / qtiles, i0 = (task % qtiles) * kBr, nr = std::min(kBr, p.tq - i0);
    std::vector<A> qbuf, kbuf, vbuf, gbuf, dq(size_t(nr * p.d), A(0));
    TileGrads<T, A> tg;
    const A* qt = at.q_rows(b, i0, nr, qbuf);
    const A* dot = at.rows(go, b, p.tq, p.dv, i0, nr, gbuf);
    const int64_t jend = at.key_end(i0, nr);
    for (int64_t j0 = 0; j0 < jend; j0 += kBc) {
      const int64_t nc = std::min(kBc, jend - j0);
      const A* kt = at.k_rows(b, j0, nc, kbuf);
      const A* vt = at.v_rows(b, j0, nc, vbuf);
      tg.compute(at, b, i0, nr, j0, nc, qt, kt, vt, dot, l_all + b * p.tq, delta.data() + b * p.tq);
      mm<A>(false, false, nr, p.d, nc, tg.s.data(), nc, kt, p.d, true, dq.data(), p.d);  // dS K
    }
    store(grad_q.ptr<T>() + (b * p.tq + i0) * p.d, dq, nr * p.d, scale);
  });
}

}  // namespace

void CpuBackend::sdpa_forward(const SdpaParams& p, const View& out, const View& lse, const View& q, const View& k,
                              const View& v, const View& mask) {
  dispatch_floating(q.dtype, "scaled_dot_product_attention", [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    forward_typed<T, A>(p, out, lse, q, k, v, mask);
  });
}

void CpuBackend::sdpa_backward(const SdpaParams& p, const View& grad_q, const View& grad_k, const View& grad_v,
                               const View& grad_out, const View& q, const View& k, const View& v, const View& out,
                               const View& lse, const View& mask) {
  dispatch_floating(q.dtype, "scaled_dot_product_attention backward", [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    backward_typed<T, A>(p, grad_q, grad_k, grad_v, grad_out, q, k, v, out, lse, mask);
  });
}

}  // namespace kiln::kernels::cpu
