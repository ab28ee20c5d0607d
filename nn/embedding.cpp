// Embedding: the padding row is masked out of the output, which also keeps its gradient at zero
// without a special backward.
#include "nn/embedding.h"

#include <sstream>

#include "core/autograd.h"
#include "nn/functional.h"
#include "nn/init.h"

namespace kiln::nn {

Embedding::Embedding(int64_t num, int64_t dim, std::optional<int64_t> pad)
    : num_embeddings(num), embedding_dim(dim), padding_idx(pad) {
  KILN_CHECK(num > 0 && dim > 0, "Embedding: num_embeddings and embedding_dim must be positive, got ", num, " and ",
             dim);
  if (padding_idx) {
    KILN_CHECK(*padding_idx >= -num && *padding_idx < num,
               "Embedding: padding_idx must be within "
               "num_embeddings (",
               num, "), got ", *padding_idx);
    if (*padding_idx < 0) *padding_idx += num;
  }
  register_parameter("weight", weight, empty({num, dim}));
  reset_parameters();
}

void Embedding::reset_parameters(Generator* gen) {
  init::normal_(weight, 0.0, 1.0, gen);
  if (padding_idx) {
    NoGradGuard no_grad;
    weight.select(0, *padding_idx).fill_(0.0);
  }
}

Tensor Embedding::forward(const Tensor& input) {
  return run_forward(input, [this](const Tensor& indices) {
    Tensor out = functional::embedding(indices, weight);
    if (!padding_idx) return out;
    Tensor keep = ne(indices, double(*padding_idx)).to(out.dtype()).unsqueeze(-1);
    return mul(out, keep);
  });
}

std::string Embedding::extra_repr() const {
  std::ostringstream os;
  os << num_embeddings << ", " << embedding_dim;
  if (padding_idx) os << ", padding_idx=" << *padding_idx;
  return os.str();
}

}  // namespace kiln::nn
