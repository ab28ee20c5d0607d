// CPU 2-D convolution in bf16: conv.cpp's im2col + GEMM plan on bgemm (bf16 operands, f32
// accumulation; bgemm.h): the weights are packed once per call, the column matrix stays bf16, and
// the weight gradient is summed over the batch in f32 and rounded once. Where the shape allows, the
// column matrix is packed straight from the input (fused im2col packing, below).
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/bf16_ops.h"
#include "kernels/cpu/bgemm.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd_bf16.h"

namespace kiln::kernels::cpu {
namespace {

// Per-thread buffers that outlive a call, grown as needed: the packed operands of each image are
// hundreds of KiB, which glibc would map (and the kernel fault in and zero) afresh at every call.
template <class T, int Slot>
T* scratch(int64_t n) {
  thread_local std::vector<T> buf;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

// im2col for bf16 with stride_w 1: each output row's run of up to 32 values is one masked 64-byte
// load and store (the mask zeroes the padding), where the generic loop calls memcpy per row.
KILN_TARGET_AVX512 void im2col_bf16_avx512(const Conv2dParams& p, const BFloat16* x, int64_t channels, BFloat16* col) {
  const int64_t hw_out = p.h_out * p.w_out;
  for (int64_t c = 0; c < channels; ++c) {
    const BFloat16* xc = x + c * p.h_in * p.w_in;
    for (int64_t i = 0; i < p.kh; ++i) {
      for (int64_t j = 0; j < p.kw; ++j) {
        BFloat16* row = col + ((c * p.kh + i) * p.kw + j) * hw_out;
        const int64_t off = j * p.dil_w - p.pad_w;
        const int64_t lo = std::max<int64_t>(0, -off), hi = std::min(p.w_out, p.w_in - off);
        for (int64_t oh = 0; oh < p.h_out; ++oh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
          const bool inside = ih >= 0 && ih < p.h_in;
          const BFloat16* src = (inside ? xc + ih * p.w_in : xc) + off;
          BFloat16* dst = row + oh * p.w_out;
          for (int64_t ow0 = 0; ow0 < p.w_out; ow0 += 32) {
            const int64_t len = std::min<int64_t>(32, p.w_out - ow0);
            const int64_t a = std::clamp<int64_t>(lo - ow0, 0, len), b = std::clamp<int64_t>(hi - ow0, 0, len);
            const __mmask32 store = __mmask32((uint64_t(1) << len) - 1);
            const __mmask32 load =
                inside && b > a ? __mmask32(((uint64_t(1) << b) - 1) & ~((uint64_t(1) << a) - 1)) : 0;
            // Masked-off lanes are not read, so src may point outside x there.
            _mm512_mask_storeu_epi16(dst + ow0, store, _mm512_maskz_loadu_epi16(load, src + ow0));
          }
        }
      }
    }
  }
}

void im2col_bf16(const Conv2dParams& p, const BFloat16* x, int64_t channels, BFloat16* col) {
  static const bool avx512 = isa_enabled(Isa::avx512);
  if (avx512 && p.stride_w == 1)
    im2col_bf16_avx512(p, x, channels, col);
  else
    im2col(p, x, channels, col);
}

// ------------------------------------------------------------------ bf16, fused im2col packing
//
// For "same" convolutions with stride 1 on rows narrower than 32 (the reference CNN's), the
// column matrix is never written: the 32 values of 32 / w_out consecutive output rows of a column
// row come from as many consecutive input rows, one contiguous load, so each 32-value chunk is one
// load and one permutation (zeros for the padding), made straight into bgemm's packed tiles. Forward
// packs it as B (two rows interleaved into VNNI pairs), the weight gradient as A (it computes
// grad_w^T = col @ grad_out^T), and the input gradient runs as the transposed convolution of
// grad_out, a convolution of the same kind, so no col2im is needed either.

bool fused_ok(const Conv2dParams& p) {
  static const bool avx512 = isa_enabled(Isa::avx512);
  return avx512 && p.stride_h == 1 && p.stride_w == 1 && p.w_out == p.w_in && 32 % p.w_out == 0 &&
         !(p.kh == 1 && p.kw == 1) && p.h_in * p.w_in < (int64_t(1) << 31);
}

// The convolution whose forward pass is p's input gradient: grad_out in, grad_in out, the kernel
// flipped and its in/out channels swapped (flip_weights). Defined for stride 1 when the padding is
// at most the dilated kernel's reach.
Conv2dParams transposed_params(const Conv2dParams& p) {
  Conv2dParams t = p;
  t.c_in = p.c_out, t.c_out = p.c_in;
  t.h_in = p.h_out, t.w_in = p.w_out, t.h_out = p.h_in, t.w_out = p.w_in;
  t.pad_h = p.dil_h * (p.kh - 1) - p.pad_h, t.pad_w = p.dil_w * (p.kw - 1) - p.pad_w;
  return t;
}
bool transposed_fused_ok(const Conv2dParams& p) {
  const Conv2dParams t = transposed_params(p);
  return t.pad_h >= 0 && t.pad_w >= 0 && fused_ok(t);
}

// The tables that make a chunk of a column row cheap. Per kernel column j: the permutation of a
// 32-value chunk of input rows into a chunk of column row (c, i, j), and which lanes are inside the
// image. Per kernel row i and chunk q: where the chunk's input rows start and which are inside.
struct ColRows {
  const Conv2dParams& p;
  int64_t w, rows, ckk, hw_out, chunks;
  std::vector<uint16_t> perm;       // [kw][32]
  std::vector<uint32_t> valid;      // [kw]
  std::vector<uint32_t> load;       // [kh][chunks]
  std::vector<int64_t> offset;      // [kh][chunks], in elements from the plane (may be negative)
  std::vector<int32_t> ci, ki, kj;  // [ckk]: row k's channel, kernel row and kernel column
  explicit ColRows(const Conv2dParams& q) : p(q) {
    w = p.w_out, rows = 32 / w, ckk = p.c_in / p.groups * p.kh * p.kw, hw_out = p.h_out * p.w_out;
    chunks = (hw_out + 31) / 32;
    ci.resize(size_t(ckk)), ki.resize(size_t(ckk)), kj.resize(size_t(ckk));
    for (int64_t k = 0; k < ckk; ++k) {
      ci[size_t(k)] = int32_t(k / (p.kh * p.kw));
      ki[size_t(k)] = int32_t(k / p.kw % p.kh);
      kj[size_t(k)] = int32_t(k % p.kw);
    }
    perm.assign(size_t(p.kw * 32), 0);
    valid.assign(size_t(p.kw), 0);
    for (int64_t j = 0; j < p.kw; ++j) {
      const int64_t off = j * p.dil_w - p.pad_w;
      for (int64_t l = 0; l < 32; ++l) {
        const int64_t ow = l % w, iw = ow + off;
        const bool in = iw >= 0 && iw < w;
        perm[size_t(j * 32 + l)] = uint16_t(in ? l - ow + iw : 0);
        valid[size_t(j)] |= uint32_t(in) << l;
      }
    }
    load.assign(size_t(p.kh * chunks), 0);
    offset.assign(size_t(p.kh * chunks), 0);
    for (int64_t i = 0; i < p.kh; ++i)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t oh0 = c * rows, ih0 = oh0 + i * p.dil_h - p.pad_h;
        // Rows outside the image, or past the output's last row, are not loaded (they read as 0).
        const int64_t rlo = std::clamp<int64_t>(-ih0, 0, rows);
        const int64_t rhi = std::min(std::clamp<int64_t>(p.h_in - ih0, 0, rows), p.h_out - oh0);
        load[size_t(i * chunks + c)] =
            rhi > rlo ? uint32_t(((uint64_t(1) << (rhi * w)) - 1) & ~((uint64_t(1) << (rlo * w)) - 1)) : 0;
        offset[size_t(i * chunks + c)] = ih0 * w;
      }
  }
};

// Column row k = (c, i, j) of the image (group) at x, 32 columns at a time; zero past the matrix.
class ColRow {
 public:
  KILN_TARGET_AVX512 ColRow(const ColRows& g, const BFloat16* x, int64_t k) : g_(g) {
    const Conv2dParams& p = g.p;
    if (k >= g.ckk) return;
    const int64_t c = g.ci[size_t(k)], j = g.kj[size_t(k)];
    i_ = g.ki[size_t(k)];
    plane_ = reinterpret_cast<uintptr_t>(x + c * p.h_in * p.w_in);
    perm_ = _mm512_loadu_si512(g.perm.data() + j * 32);
    valid_ = __mmask32(g.valid[size_t(j)]);
    inside_ = true;
  }
  // Columns [32q, 32q + 32).
  KILN_TARGET_AVX512 __m512i chunk(int64_t q) const {
    if (!inside_) return _mm512_setzero_si512();
    const size_t t = size_t(i_ * g_.chunks + q);
    // Masked-off rows are never read, so the address may lie outside the image there.
    const auto* src = reinterpret_cast<const BFloat16*>(plane_ + uintptr_t(g_.offset[t] * int64_t(sizeof(BFloat16))));
    return _mm512_maskz_permutexvar_epi16(valid_, perm_, _mm512_maskz_loadu_epi16(__mmask32(g_.load[t]), src));
  }

 private:
  const ColRows& g_;
  int64_t i_ = 0;
  uintptr_t plane_ = 0;
  __m512i perm_{};
  __mmask32 valid_ = 0;
  bool inside_ = false;
};

// The column matrix [ckk, hw_out] of one image as bgemm's packed B.
KILN_TARGET_AVX512 void pack_col_b(const ColRows& g, const BFloat16* x, BFloat16* out) {
  const int64_t kb_count = (g.ckk + 31) / 32, nb_count = (g.hw_out + 15) / 16;
  alignas(64) uint16_t lo_idx[32], hi_idx[32];
  for (int t = 0; t < 32; ++t) {
    lo_idx[t] = uint16_t((t & 1 ? 32 : 0) + t / 2);
    hi_idx[t] = uint16_t((t & 1 ? 32 : 0) + 16 + t / 2);
  }
  const __m512i lo = _mm512_load_si512(lo_idx), hi = _mm512_load_si512(hi_idx);
  for (int64_t kb = 0; kb < kb_count; ++kb)
    for (int64_t pr = 0; pr < 16; ++pr) {
      const int64_t k0 = kb * 32 + 2 * pr;
      const ColRow r0(g, x, k0), r1(g, x, k0 + 1);
      for (int64_t q = 0; q < g.chunks; ++q) {
        const __m512i v0 = r0.chunk(q), v1 = r1.chunk(q);
        _mm512_storeu_si512(out + bf16_packed_tile(2 * q, kb, g.ckk) + pr * 32, _mm512_permutex2var_epi16(v0, lo, v1));
        if (2 * q + 1 < nb_count)
          _mm512_storeu_si512(out + bf16_packed_tile(2 * q + 1, kb, g.ckk) + pr * 32,
                              _mm512_permutex2var_epi16(v0, hi, v1));
      }
    }
}

// The column matrix [ckk, hw_out] of one image as columns [kb0 * 32, kb0 * 32 + hw_out) of bgemm's
// packed A whose sum runs over k_total, with a row of ones below it when ones_row (its product
// with grad_out^T is the bias gradient).
KILN_TARGET_AVX512 void pack_col_a(const ColRows& g, const BFloat16* x, BFloat16* out, bool ones_row, int64_t k_total,
                                   int64_t kb0) {
  const int64_t m = g.ckk + (ones_row ? 1 : 0), mb_count = (m + 15) / 16;
  for (int64_t mb = 0; mb < mb_count; ++mb)
    for (int64_t r = 0; r < 16; ++r) {
      const int64_t k = mb * 16 + r;
      if (k == g.ckk && ones_row) {
        for (int64_t q = 0; q < g.chunks; ++q) {
          const int64_t len = std::min<int64_t>(32, g.hw_out - 32 * q);
          const __mmask32 in = __mmask32((uint64_t(1) << len) - 1);
          _mm512_storeu_si512(out + bf16_packed_tile(mb, kb0 + q, k_total) + r * 32,
                              _mm512_maskz_mov_epi16(in, _mm512_set1_epi16(0x3f80)));  // bf16 1.0
        }
        continue;
      }
      const ColRow row(g, x, k);
      for (int64_t q = 0; q < g.chunks; ++q)
        _mm512_storeu_si512(out + bf16_packed_tile(mb, kb0 + q, k_total) + r * 32, row.chunk(q));
    }
}

// grad_out's transposed convolution's weights, per group [cin_g, cout_g * kh * kw]:
// w'[ci, (co * kh + i) * kw + j] = w[co, ci, kh - 1 - i, kw - 1 - j], packed as A.
std::vector<BFloat16> flip_weights(const Conv2dParams& p, const BFloat16* w) {
  const int64_t cin_g = p.c_in / p.groups, cout_g = p.c_out / p.groups, kk = p.kh * p.kw;
  const int64_t size = bf16_packed_a_size(cin_g, cout_g * kk);
  std::vector<BFloat16> flipped(size_t(cin_g * cout_g * kk)), packed(size_t(size * p.groups));
  for (int64_t g = 0; g < p.groups; ++g) {
    for (int64_t co = 0; co < cout_g; ++co)
      for (int64_t ci = 0; ci < cin_g; ++ci)
        for (int64_t t = 0; t < kk; ++t)
          flipped[size_t((ci * cout_g + co) * kk + t)] = w[((g * cout_g + co) * cin_g + ci) * kk + (kk - 1 - t)];
    bf16_pack_a(false, cin_g, cout_g * kk, flipped.data(), cout_g * kk, packed.data() + g * size);
  }
  return packed;
}

// Each group's weights [cout_g, ckk] packed as bgemm's A operand (transposed for the input
// gradient, whose product is W^T @ grad_out).
std::vector<BFloat16> pack_weights(const Conv2dParams& p, const BFloat16* w, bool transposed) {
  const int64_t cout_g = p.c_out / p.groups, ckk = p.c_in / p.groups * p.kh * p.kw;
  const int64_t size = transposed ? bf16_packed_a_size(ckk, cout_g) : bf16_packed_a_size(cout_g, ckk);
  std::vector<BFloat16> packed(size_t(size * p.groups));
  for (int64_t g = 0; g < p.groups; ++g) {
    const BFloat16* wg = w + g * cout_g * ckk;
    if (transposed)
      bf16_pack_a(true, ckk, cout_g, wg, ckk, packed.data() + g * size);
    else
      bf16_pack_a(false, cout_g, ckk, wg, ckk, packed.data() + g * size);
  }
  return packed;
}

void forward_bf16(const Conv2dParams& p, BFloat16* y, const BFloat16* x, const BFloat16* w, const BFloat16* b) {
  const int64_t cin_g = p.c_in / p.groups, cout_g = p.c_out / p.groups;
  const int64_t ckk = cin_g * p.kh * p.kw, hw_out = p.h_out * p.w_out;
  const bool pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  const std::vector<BFloat16> pw = pack_weights(p, w, false);
  const int64_t pw_size = bf16_packed_a_size(cout_g, ckk);
  std::vector<float> bias(b ? size_t(p.c_out) : 0);
  if (b) bf16_to_f32(b, bias.data(), p.c_out);
  const bool fused = fused_ok(p);
  const ColRows rows(p);
  parallel_region(p.n > 1 ? max_threads() : 1, [&](int t, int nt) {
    std::vector<BFloat16> col(pointwise || fused ? 0 : size_t(ckk * hw_out));
    BFloat16* pcol = scratch<BFloat16, 0>(bf16_packed_b_size(ckk, hw_out));
    int64_t first, last;
    static_range(p.n, t, nt, first, last);
    for (int64_t n = first; n < last; ++n) {
      for (int64_t g = 0; g < p.groups; ++g) {
        const BFloat16* xg = x + (n * p.c_in + g * cin_g) * p.h_in * p.w_in;
        const BFloat16* cp = xg;
        if (fused) {
          pack_col_b(rows, xg, pcol);
        } else if (!pointwise) {
          im2col_bf16(p, xg, cin_g, col.data());
          cp = col.data();
        }
        if (!fused) bf16_pack_b(false, ckk, hw_out, cp, hw_out, pcol);
        bgemm_packed(cout_g, hw_out, ckk, pw.data() + g * pw_size, pcol, 0.f, y + (n * p.c_out + g * cout_g) * hw_out,
                     hw_out, b ? bias.data() + g * cout_g : nullptr);
      }
    }
  });
}

// grad_b[c] = the sum of grad_out over the batch and the plane, each plane summed in f32.
void bias_grad_bf16(const Conv2dParams& p, BFloat16* gb, const BFloat16* gy) {
  const int64_t hw_out = p.h_out * p.w_out;
  parallel_for(0, p.c_out, max_threads(), [&](int64_t c) {
    double s = 0;
    for (int64_t n = 0; n < p.n; ++n) s += double(bf16_sum(gy + (n * p.c_out + c) * hw_out, hw_out));
    gb[c] = BFloat16(float(s));
  });
}

void backward_bf16(const Conv2dParams& p, BFloat16* gx, BFloat16* gw, BFloat16* gb, const BFloat16* gy,
                   const BFloat16* x, const BFloat16* w) {
  const int64_t cin_g = p.c_in / p.groups, cout_g = p.c_out / p.groups;
  const int64_t ckk = cin_g * p.kh * p.kw, hw_out = p.h_out * p.w_out, hw_in = p.h_in * p.w_in;
  const int64_t wsize = p.c_out * ckk;
  const int threads = p.n > 1 ? max_threads() : 1;
  const std::vector<BFloat16> pwt = gx ? pack_weights(p, w, true) : std::vector<BFloat16>();
  const int64_t pwt_size = bf16_packed_a_size(ckk, cout_g);
  std::vector<float> gw_partial(gw ? size_t(threads) * size_t(wsize) : 0, 0.f);
  parallel_region(threads, [&](int t, int nt) {
    std::vector<BFloat16> col(gw ? size_t(ckk * hw_out) : 0);
    std::vector<BFloat16> pa(size_t(std::max(bf16_packed_a_size(cout_g, hw_out), int64_t(1))));
    std::vector<BFloat16> pb(size_t(std::max(bf16_packed_b_size(hw_out, ckk), bf16_packed_b_size(cout_g, hw_out))));
    std::vector<float> gcol(gx ? size_t(ckk * hw_out) : 0), gimg(gx ? size_t(cin_g * hw_in) : 0);
    float* my_gw = gw ? gw_partial.data() + size_t(t) * size_t(wsize) : nullptr;
    int64_t first, last;
    static_range(p.n, t, nt, first, last);
    for (int64_t n = first; n < last; ++n) {
      for (int64_t g = 0; g < p.groups; ++g) {
        const BFloat16* gout = gy + (n * p.c_out + g * cout_g) * hw_out;
        if (my_gw) {  // grad_w[cout_g, ckk] += grad_out[cout_g, hw] @ col^T[hw, ckk]
          im2col_bf16(p, x + (n * p.c_in + g * cin_g) * hw_in, cin_g, col.data());
          bf16_pack_a(false, cout_g, hw_out, gout, hw_out, pa.data());
          bf16_pack_b(true, hw_out, ckk, col.data(), hw_out, pb.data());
          bgemm_packed(cout_g, ckk, hw_out, pa.data(), pb.data(), 1.f, my_gw + g * cout_g * ckk, ckk);
        }
        if (gx) {  // col[ckk, hw] = W^T[ckk, cout_g] @ grad_out[cout_g, hw], folded back in f32
          bf16_pack_b(false, cout_g, hw_out, gout, hw_out, pb.data());
          bgemm_packed(ckk, hw_out, cout_g, pwt.data() + g * pwt_size, pb.data(), 0.f, gcol.data(), hw_out);
          std::memset(gimg.data(), 0, sizeof(float) * gimg.size());
          col2im(p, gcol.data(), cin_g, gimg.data());
          f32_to_bf16(gimg.data(), gx + (n * p.c_in + g * cin_g) * hw_in, cin_g * hw_in);
        }
      }
    }
  });
  if (gw) {
    std::vector<float> sum(size_t(wsize), 0.f);
    for (int t = 0; t < threads; ++t)
      for (int64_t i = 0; i < wsize; ++i) sum[size_t(i)] += gw_partial[size_t(t) * size_t(wsize) + size_t(i)];
    f32_to_bf16(sum.data(), gw, wsize);
  }
  if (gb) bias_grad_bf16(p, gb, gy);
}

void backward_bf16_fused(const Conv2dParams& p, BFloat16* gx, BFloat16* gw, BFloat16* gb, const BFloat16* gy,
                         const BFloat16* x, const BFloat16* w) {
  const int64_t cin_g = p.c_in / p.groups, cout_g = p.c_out / p.groups;
  const int64_t ckk = cin_g * p.kh * p.kw, hw_out = p.h_out * p.w_out, hw_in = p.h_in * p.w_in;
  // With a bias, the weight-gradient product carries one more row: the bias gradient.
  const bool with_bias = gw && gb;
  const int64_t rows_w = ckk + (with_bias ? 1 : 0), wsize = p.groups * rows_w * cout_g;
  const int threads = p.n > 1 ? max_threads() : 1;
  const Conv2dParams t = transposed_params(p);
  const ColRows rows(p), trows(t);
  const std::vector<BFloat16> pwt = gx ? flip_weights(p, w) : std::vector<BFloat16>();
  const int64_t pwt_size = bf16_packed_a_size(cin_g, trows.ckk);
  // grad_w^T [ckk, cout_g] per group and thread, summed over the batch in f32. Images whose planes
  // fill whole 32-wide k blocks are stacked along the product's k (about 1024 at a time), so the
  // f32 accumulator is read and written once per stack instead of once per image.
  const int64_t stack = hw_out % 32 == 0 ? std::max<int64_t>(1, 1024 / hw_out) : 1;
  const int64_t k_stack = stack * hw_out;
  std::vector<float*> gwt_partial(size_t(threads), nullptr);
  parallel_region(threads, [&](int th, int nth) {
    BFloat16* pa = gw ? scratch<BFloat16, 1>(bf16_packed_a_size(rows_w, k_stack)) : nullptr;
    BFloat16* pb = gw ? scratch<BFloat16, 2>(bf16_packed_b_size(k_stack, cout_g)) : nullptr;
    BFloat16* pcol = gx ? scratch<BFloat16, 0>(bf16_packed_b_size(trows.ckk, hw_in)) : nullptr;
    float* my_gwt = gw ? scratch<float, 0>(wsize) : nullptr;
    if (my_gwt) std::fill(my_gwt, my_gwt + wsize, 0.f);
    gwt_partial[size_t(th)] = my_gwt;
    // This thread's images, in stacks.
    const int64_t first = p.n * th / nth, last = p.n * (th + 1) / nth;
    for (int64_t n0 = first; n0 < last; n0 += stack) {
      const int64_t count = std::min(stack, last - n0), k_used = count * hw_out;
      for (int64_t g = 0; g < p.groups; ++g) {
        if (my_gwt) {  // grad_w^T[ckk (+1), cout_g] += [col; 1][ckk (+1), k] @ grad_out^T[k, cout_g]
          for (int64_t i = 0; i < count; ++i) {
            const int64_t n = n0 + i;
            pack_col_a(rows, x + (n * p.c_in + g * cin_g) * hw_in, pa, with_bias, k_used, i * hw_out / 32);
            bf16_pack_b_rows(true, hw_out, cout_g, gy + (n * p.c_out + g * cout_g) * hw_out, hw_out, pb, k_used,
                             i * hw_out);
          }
          bgemm_packed(rows_w, cout_g, k_used, pa, pb, 1.f, my_gwt + g * rows_w * cout_g, cout_g);
        }
        if (gx) {  // grad_in = the transposed convolution of grad_out, straight to bf16
          for (int64_t n = n0; n < n0 + count; ++n) {
            pack_col_b(trows, gy + (n * p.c_out + g * cout_g) * hw_out, pcol);
            bgemm_packed(cin_g, hw_in, trows.ckk, pwt.data() + g * pwt_size, pcol, 0.f,
                         gx + (n * p.c_in + g * cin_g) * hw_in, hw_in);
          }
        }
      }
    }
  });
  if (gw) {
    std::vector<float> sum(size_t(wsize), 0.f);
    for (const float* part : gwt_partial)
      if (part)
        for (int64_t i = 0; i < wsize; ++i) sum[size_t(i)] += part[i];
    std::vector<float> gw32(static_cast<size_t>(p.c_out * ckk)), gb32(with_bias ? size_t(p.c_out) : 0);
    for (int64_t g = 0; g < p.groups; ++g) {
      const float* sg = sum.data() + g * rows_w * cout_g;
      for (int64_t kk = 0; kk < ckk; ++kk)
        for (int64_t co = 0; co < cout_g; ++co) gw32[size_t((g * cout_g + co) * ckk + kk)] = sg[kk * cout_g + co];
      if (with_bias)
        for (int64_t co = 0; co < cout_g; ++co) gb32[size_t(g * cout_g + co)] = sg[ckk * cout_g + co];
    }
    f32_to_bf16(gw32.data(), gw, p.c_out * ckk);
    if (with_bias) f32_to_bf16(gb32.data(), gb, p.c_out);
  }
  if (gb && !with_bias) bias_grad_bf16(p, gb, gy);
}

}  // namespace

void conv2d_forward_bf16(const Conv2dParams& p, BFloat16* y, const BFloat16* x, const BFloat16* w, const BFloat16* b) {
  forward_bf16(p, y, x, w, b);
}

void conv2d_backward_bf16(const Conv2dParams& p, BFloat16* gx, BFloat16* gw, BFloat16* gb, const BFloat16* gy,
                          const BFloat16* x, const BFloat16* w) {
  if (fused_ok(p) && (!gx || transposed_fused_ok(p))) return backward_bf16_fused(p, gx, gw, gb, gy, x, w);
  backward_bf16(p, gx, gw, gb, gy, x, w);
}

}  // namespace kiln::kernels::cpu
