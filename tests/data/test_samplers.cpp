// Samplers: orders, reshuffling per epoch, DistributedSampler's padding and partition.
#include <algorithm>
#include <set>

#include "data/data.h"
#include "helpers.h"

using namespace kiln::data;

TEST_CASE("SequentialSampler and RandomSampler") {
  CHECK(SequentialSampler(4).indices() == std::vector<int64_t>{0, 1, 2, 3});
  RandomSampler r(100, 7);
  auto e0 = r.indices();
  auto sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == SequentialSampler(100).indices());
  CHECK(RandomSampler(100, 7).indices() == e0);  // same seed and epoch, same order
  r.set_epoch(1);
  CHECK(r.indices() != e0);
  CHECK(RandomSampler(100, 8).indices() != e0);
  CHECK_THROWS_AS(RandomSampler(-1), kiln::Error);
}

TEST_CASE("DistributedSampler: every index appears, counts equal, epochs differ") {
  for (int64_t n : {10, 11, 13, 3}) {
    for (bool drop_last : {false, true}) {
      const int64_t replicas = 4;
      if (drop_last && n < replicas) continue;
      std::vector<int64_t> all;
      std::vector<std::vector<int64_t>> per_rank;
      for (int64_t rank = 0; rank < replicas; ++rank) {
        DistributedSampler s(n, {.num_replicas = replicas, .rank = rank, .seed = 3, .drop_last = drop_last});
        s.set_epoch(2);
        auto mine = s.indices();
        CHECK(int64_t(mine.size()) == s.size());
        CHECK(s.size() == (drop_last ? n / replicas : (n + replicas - 1) / replicas));
        per_rank.push_back(mine);
        all.insert(all.end(), mine.begin(), mine.end());
      }
      std::set<int64_t> distinct(all.begin(), all.end());
      if (!drop_last) {
        CHECK(int64_t(distinct.size()) == n);  // padding repeats indices, never invents them
      } else {
        CHECK(int64_t(all.size()) == (n / replicas) * replicas);
        CHECK(distinct.size() == all.size());  // nothing repeated when cutting
      }
      for (int64_t i : all) CHECK((i >= 0 && i < n));
    }
  }
  // PyTorch's layout without shuffle: padded list 0..9, 0, 1 split round-robin.
  DistributedSampler s1(10, {.num_replicas = 4, .rank = 1, .shuffle = false});
  CHECK(s1.indices() == std::vector<int64_t>{1, 5, 9});
  DistributedSampler s3(10, {.num_replicas = 4, .rank = 3, .shuffle = false});
  CHECK(s3.indices() == std::vector<int64_t>{3, 7, 1});
  DistributedSampler small(2, {.num_replicas = 5, .rank = 4, .shuffle = false});
  CHECK(small.indices() == std::vector<int64_t>{0});  // padding wraps more than once
  // Epochs reshuffle; all ranks agree on the permutation (rank 0 of a 1-replica sampler is it).
  DistributedSampler a(50, {.num_replicas = 2, .rank = 0, .seed = 1});
  auto e0 = a.indices();
  a.set_epoch(1);
  CHECK(a.indices() != e0);
  CHECK_THROWS_WITH_AS(DistributedSampler(10, {.num_replicas = 2, .rank = 2}), doctest::Contains("rank 2"),
                       kiln::Error);
}

TEST_CASE("DistributedSamplerWrapper: ranks take disjoint shares of another sampler's order") {
  // The wrapped sampler: a seeded permutation of 10 (any sampler; all ranks compute the same).
  auto inner = std::make_shared<RandomSampler>(10, 5);
  for (int64_t epoch : {0, 1}) {
    CAPTURE(epoch);
    inner->set_epoch(epoch);
    const auto order = inner->indices();
    std::vector<int64_t> all;
    for (int64_t rank = 0; rank < 3; ++rank) {
      DistributedSamplerWrapper w(inner, {.num_replicas = 3, .rank = rank, .shuffle = false});
      w.set_epoch(epoch);
      auto mine = w.indices();
      CHECK(int64_t(mine.size()) == w.size());
      CHECK(w.size() == 4);  // 10 over 3, padded
      // Without shuffle: every third element of the wrapped order, from `rank` on.
      for (size_t k = 0; k < mine.size(); ++k) CHECK(mine[k] == order[(size_t(rank) + 3 * k) % order.size()]);
      all.insert(all.end(), mine.begin(), mine.end());
    }
    CHECK(std::set<int64_t>(all.begin(), all.end()).size() == 10);
  }
  // The wrapper's epoch reaches the wrapped sampler.
  DistributedSamplerWrapper w(inner, {.num_replicas = 1, .rank = 0, .shuffle = false});
  w.set_epoch(1);
  auto e1 = w.indices();
  w.set_epoch(2);
  CHECK(w.indices() != e1);
  CHECK_THROWS_WITH_AS(DistributedSamplerWrapper(nullptr, {}), doctest::Contains("null"), kiln::Error);
}
