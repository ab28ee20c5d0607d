// kiln::nn::Embedding: a lookup table from int64 indices to rows of a [num_embeddings, dim]
// weight, initialised from N(0, 1) like PyTorch's.
//   auto emb = std::make_shared<kiln::nn::Embedding>(1000, 64);
//   auto vectors = emb->forward(token_ids);   // [..., 64]
#pragma once

#include <optional>

#include "nn/module.h"

namespace kiln::nn {

class Embedding : public Module {
 public:
  // padding_idx: a row kept at zero that receives no gradient (its lookups return zeros).
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = {});
  Tensor forward(const Tensor& indices) override;
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;
  Tensor weight;  // [num_embeddings, embedding_dim]
};

}  // namespace kiln::nn
