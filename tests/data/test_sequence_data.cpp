// Examples of several tensors: the language-model (sequence, next-sequence) pairs through a
// Dataset of one's own and through TensorDataset, with workers and shuffling, and collate_fn for
// what the default collation cannot stack (sequences of several lengths).
#include <numeric>

#include "helpers.h"

using namespace kiln;
using namespace kiln::data;

namespace {

// Windows of a token stream: example i is (tokens[i, i + t), tokens[i + 1, i + t + 1)).
class NextTokenDataset : public Dataset {
 public:
  NextTokenDataset(Tensor tokens, int64_t block) : tokens_(std::move(tokens)), block_(block) {}
  int64_t size() const override { return tokens_.size(0) - block_; }
  Example get(int64_t i) const override {
    check_index(i);
    return {tokens_.narrow(0, i, block_), tokens_.narrow(0, i + 1, block_)};
  }

 private:
  Tensor tokens_;
  int64_t block_;
};

// Example i: a sequence of length 1 + i % 4 holding i.
class RaggedDataset : public Dataset {
 public:
  int64_t size() const override { return 10; }
  Example get(int64_t i) const override { return {full({1 + i % 4}, double(i), {.dtype = DType::i64})}; }
};

}  // namespace

TEST_CASE("DataLoader: (sequence, next-sequence) pairs from a Dataset of one's own") {
  Tensor tokens = arange(100);  // token i is i, so each pair is easy to check
  auto ds = std::make_shared<NextTokenDataset>(tokens, 8);
  auto [x0, y0] = ds->get(0);  // a two-tensor example does not bind as (data, target) ...
  CHECK(!x0.defined());
  CHECK(ds->get(0).tensors.size() == 2);  // ... its tensors hold it
  for (int workers : {0, 2}) {
    DataLoader loader(ds, {.batch_size = 16, .shuffle = true, .drop_last = true, .num_workers = workers, .seed = 3});
    int64_t seen = 0;
    for (auto& [x, y] : loader) {
      CHECK(x.sizes() == Shape{16, 8});
      CHECK(y.sizes() == Shape{16, 8});
      CHECK(x.dtype() == DType::i64);
      CHECK(equal(y, x + 1));  // the next token of every position
      seen += x.size(0);
    }
    CHECK(seen == 80);  // 92 windows, 5 full batches
  }
}

TEST_CASE("DataLoader: TensorDataset of two [N, T] tensors and of three tensors") {
  Tensor inputs = arange(60).reshape({10, 6});
  Tensor targets = inputs + 100;
  auto ds = std::make_shared<TensorDataset>(inputs, targets);  // not class labels: tuples of rows
  CHECK(ds->get(3).tensors.size() == 2);
  DataLoader loader(ds, {.batch_size = 4});
  int64_t batches = 0;
  for (auto& b : loader) {
    CHECK(b.size() == 2);
    CHECK(equal(b.target, b.data + 100));
    ++batches;
  }
  CHECK(batches == 3);

  auto three = std::make_shared<TensorDataset>(std::vector<Tensor>{inputs, targets, arange(10)});
  DataLoader l3(three, {.batch_size = 5, .num_workers = 1});
  auto it = l3.begin();
  Batch& b = *it;
  CHECK(b.size() == 3);
  CHECK(b[2].to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(equal(b[0], inputs.narrow(0, 0, 5)));
  auto [x, y] = b;  // a copy binds too
  CHECK(equal(y, targets.narrow(0, 0, 5)));

  // The classic (input, class index) pair keeps its int64 labels.
  TensorDataset classes(randn({4, 3}), tensor({2, 0, 1, 1}, {.dtype = DType::i32}));
  CHECK(classes.get(2).target == 1);
  CHECK(classes.targets().dtype() == DType::i64);
  CHECK_THROWS_WITH_AS(TensorDataset(std::vector<Tensor>{inputs, arange(9)}), doctest::Contains("one row per example"),
                       Error);
}

TEST_CASE("DataLoader: collate_fn pads sequences of several lengths") {
  auto pad_batch = [](const std::vector<Example>& examples) {
    int64_t longest = 0;
    for (const auto& e : examples) longest = std::max(longest, e.tensors[0].size(0));
    Tensor seqs = full({int64_t(examples.size()), longest}, -1, {.dtype = DType::i64});
    Tensor lengths = empty({int64_t(examples.size())}, {.dtype = DType::i64});
    for (size_t k = 0; k < examples.size(); ++k) {
      const Tensor& s = examples[k].tensors[0];
      seqs[int64_t(k)].narrow(0, 0, s.size(0)).copy_(s);
      lengths[int64_t(k)].fill_(double(s.size(0)));
    }
    return Batch{seqs, lengths, {}};
  };
  auto ds = std::make_shared<RaggedDataset>();
  CHECK_THROWS_WITH_AS(collate({ds->get(0), ds->get(1)}), doctest::Contains("pad the examples"), Error);
  for (int workers : {0, 2}) {
    DataLoader loader(ds, {.batch_size = 4, .num_workers = workers, .collate_fn = pad_batch});
    std::vector<int64_t> lengths;
    for (auto& [seqs, lens] : loader) {
      CHECK(seqs.size(1) == amax(lens).item<int64_t>());
      for (int64_t l : lens.to_vector<int64_t>()) lengths.push_back(l);
    }
    CHECK(lengths == std::vector<int64_t>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2});
  }
}
