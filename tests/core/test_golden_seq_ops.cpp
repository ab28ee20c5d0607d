// The ops of sequence models and modern layers against PyTorch's float64 values
// (golden/ops2.safetensors, written by golden/make_golden.py): forward and every input gradient.
#include "golden.h"

using namespace kiln;
using kiln::test::check_close;

namespace {

void check_golden(const std::string& name, int n_in, const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                  double tol = 1e-10) {
  kiln::test::Golden g("ops2.safetensors");
  std::vector<Tensor> in;
  for (int j = 0; j < n_in; ++j) {
    Tensor t = g.get(name + ".in" + std::to_string(j));
    if (t.is_floating_point()) t.requires_grad_(true);
    in.push_back(t);
  }
  Tensor out = fn(in);
  INFO(name);
  check_close(out, g.get(name + ".out"), tol, tol);
  out.backward(g.get(name + ".gout"));
  for (int j = 0; j < n_in; ++j) {
    std::string key = name + ".gin" + std::to_string(j);
    if (!g.has(key)) continue;
    INFO(key);
    REQUIRE(in[size_t(j)].grad().defined());
    check_close(in[size_t(j)].grad(), g.get(key), tol, tol);
  }
}

Tensor as_mask(const Tensor& t) { return t != 0; }

}  // namespace

TEST_CASE("golden: masked_fill, tril, triu") {
  check_golden("masked_fill", 2, [](auto& in) { return in[0].masked_fill(as_mask(in[1]), -2.5); });
  check_golden("tril", 1, [](auto& in) { return tril(in[0], -1); });
  check_golden("triu", 1, [](auto& in) { return in[0].triu(1); });
}

TEST_CASE("golden: gather, scatter, scatter_add") {
  check_golden("gather", 2, [](auto& in) { return gather(in[0], 1, in[1]); });
  check_golden("scatter", 3, [](auto& in) { return scatter(in[0], 0, in[1], in[2]); });
  check_golden("scatter_add", 3, [](auto& in) { return in[0].scatter_add(1, in[1], in[2]); });
}

TEST_CASE("golden: sort, topk, cumsum") {
  kiln::test::Golden g("ops2.safetensors");
  check_golden("sort_desc", 1, [&](auto& in) {
    auto [v, i] = sort(in[0], 1, true);
    CHECK(equal(i, g.get("sort_desc.indices")));
    return v;
  });
  check_golden("topk", 1, [&](auto& in) {
    auto [v, i] = in[0].topk(3, 0);
    CHECK(equal(i, g.get("topk.indices")));
    return v;
  });
  check_golden("cumsum", 1, [](auto& in) { return in[0].cumsum(1); });
}

TEST_CASE("golden: chunk and split route gradients to their pieces") {
  check_golden("chunk", 1, [](auto& in) {
    auto parts = chunk(in[0], 3, 0);
    std::vector<Tensor> scaled;
    for (size_t i = 0; i < parts.size(); ++i) scaled.push_back(parts[i] * double(i + 1));
    return cat(scaled, 0);
  });
  check_golden("split_sizes", 1, [](auto& in) {
    auto parts = in[0].split(std::vector<int64_t>{1, 3, 2}, 1);
    std::vector<Tensor> scaled;
    for (size_t i = 0; i < parts.size(); ++i) scaled.push_back(parts[i] * double(i + 1));
    return cat(scaled, 1);
  });
}

TEST_CASE("golden: sin, cos, silu, rms_norm, group_norm, conv1d") {
  check_golden("sin", 1, [](auto& in) { return sin(in[0]); });
  check_golden("cos", 1, [](auto& in) { return in[0].cos(); });
  check_golden("silu", 1, [](auto& in) { return silu(in[0]); });
  check_golden("rms_norm", 2, [](auto& in) { return rms_norm(in[0], {6}, in[1], 1e-6); });
  check_golden("group_norm", 3, [](auto& in) { return group_norm(in[0], 3, in[1], in[2], 1e-5); });
  check_golden("conv1d", 3, [](auto& in) { return conv1d(in[0], in[1], in[2], 2, 1, 2, 2); });
}

TEST_CASE("golden: pad in every mode") {
  check_golden("pad_constant", 1, [](auto& in) { return pad(in[0], {1, 2, 0, 1}, "constant", 0.5); });
  check_golden("pad_reflect", 1, [](auto& in) { return pad(in[0], {2, 1}, "reflect"); });
  check_golden("pad_replicate", 1, [](auto& in) { return pad(in[0], {1, 2, 2, 0}, "replicate"); });
  check_golden("pad_circular", 1, [](auto& in) { return pad(in[0], {2, 1}, "circular"); });
}

TEST_CASE("golden: einsum") {
  check_golden("einsum_bmm", 2, [](auto& in) { return einsum("bij,bjk->bik", {in[0], in[1]}); });
  check_golden("einsum_diag", 1, [](auto& in) { return einsum("ii->i", {in[0]}); });
  check_golden("einsum_attn", 2, [](auto& in) { return einsum("bhqd,bhkd->bhqk", {in[0], in[1]}); });
  check_golden("einsum_ellipsis", 2, [](auto& in) { return einsum("...ij,...jk->...ik", {in[0], in[1]}); });
  check_golden("einsum_chain", 3, [](auto& in) { return einsum("ij,jk,kl->il", {in[0], in[1], in[2]}); });
  check_golden("einsum_implicit", 2, [](auto& in) { return einsum("kj,ji", {in[0], in[1]}); });
}

TEST_CASE("golden: scaled_dot_product_attention, fused and math paths") {
  for (SdpaBackend b : {SdpaBackend::fused, SdpaBackend::math}) {
    set_sdpa_backend(b);
    INFO("backend " << (b == SdpaBackend::fused ? "fused" : "math"));
    kiln::test::Golden g("ops2.safetensors");
    check_golden("sdpa_float_mask", 3, [&](auto& in) {
      return scaled_dot_product_attention(in[0], in[1], in[2], g.get("sdpa_float_mask.mask"));
    });
    check_golden("sdpa_bool_mask", 4, [](auto& in) {
      return scaled_dot_product_attention(in[0], in[1], in[2], as_mask(in[3]), 0.0, false, 0.3);
    });
    check_golden("sdpa_causal", 3,
                 [](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {}, 0.0, true); });
    check_golden("sdpa_causal_rect", 3,
                 [](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {}, 0.0, true); });
  }
  set_sdpa_backend(SdpaBackend::automatic);
}
