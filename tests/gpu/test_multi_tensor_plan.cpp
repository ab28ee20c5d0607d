// How the multi-tensor kernels split tensor lists into launches (kernels/cuda/multi_tensor_plan.h),
// checked without a GPU: every chunk of every non-empty tensor is done exactly once, no launch
// exceeds its tensor or block limit, a tensor too long for one launch goes on as the first tensor
// of the next, and the work items are numbered without gaps across launches.
#include <doctest/doctest.h>

#include <cstddef>
#include <map>
#include <utility>
#include <vector>

#include "kernels/cuda/multi_tensor_plan.h"

namespace {

using kiln::kernels::cuda::MultiTensorLaunch;
using kiln::kernels::cuda::plan_multi_tensor;

void check_plan(const std::vector<int64_t>& numel, int max_tensors, int max_blocks, int64_t chunk) {
  const auto plan = plan_multi_tensor(numel, max_tensors, max_blocks, chunk);
  std::map<std::pair<int64_t, int64_t>, int> done;  // (tensor, chunk) -> times
  int64_t next_item = 0;
  for (size_t li = 0; li < plan.size(); ++li) {
    const MultiTensorLaunch& l = plan[li];
    INFO("launch " << li);
    CHECK(!l.items.empty());
    CHECK(int(l.tensors.size()) <= max_tensors);
    CHECK(int(l.items.size()) <= max_blocks);
    CHECK(l.first_item == next_item);
    next_item += int64_t(l.items.size());
    for (const auto& it : l.items) {
      REQUIRE(it.slot >= 0);
      REQUIRE(it.slot < int(l.tensors.size()));
      const int64_t t = l.tensors[size_t(it.slot)];
      CHECK(numel[size_t(t)] > 0);
      CHECK(it.chunk * chunk < numel[size_t(t)]);
      ++done[{t, it.chunk}];
    }
    // Every slot has work in this launch.
    std::vector<int> used(l.tensors.size());
    for (const auto& it : l.items) used[size_t(it.slot)] = 1;
    for (int u : used) CHECK(u == 1);
  }
  int64_t expected = 0;
  for (size_t t = 0; t < numel.size(); ++t) {
    const int64_t chunks = (numel[t] + chunk - 1) / chunk;
    expected += chunks;
    for (int64_t c = 0; c < chunks; ++c)
      CHECK_MESSAGE(done[std::make_pair(int64_t(t), c)] == 1, "tensor " << t << " chunk " << c);
  }
  CHECK(next_item == expected);
  CHECK(int64_t(done.size()) == expected);
}

}  // namespace

TEST_CASE("multi-tensor plan: every chunk once, within the per-launch limits") {
  // The reference CNN's parameters: one launch.
  const std::vector<int64_t> cnn = {864, 32, 18432, 64, 73728, 128, 524288, 256, 2560, 10};
  auto plan = plan_multi_tensor(cnn, 36, 320, 65536);
  CHECK(plan.size() == 1);
  CHECK(plan[0].tensors.size() == 10);
  CHECK(plan[0].items.size() == 18);  // 73728 elements are 2 chunks, 524288 are 8
  check_plan(cnn, 36, 320, 65536);

  check_plan({}, 36, 320, 65536);
  CHECK(plan_multi_tensor({0, 0}, 36, 320, 65536).empty());
  check_plan({0, 5, 0, 0, 7, 0}, 36, 320, 65536);  // empty tensors, also last

  // Exactly the tensor limit, one more, and many more.
  check_plan(std::vector<int64_t>(36, 100), 36, 320, 65536);
  CHECK(plan_multi_tensor(std::vector<int64_t>(36, 100), 36, 320, 65536).size() == 1);
  CHECK(plan_multi_tensor(std::vector<int64_t>(37, 100), 36, 320, 65536).size() == 2);
  check_plan(std::vector<int64_t>(1000, 3), 110, 320, 65536);

  // A tensor longer than one launch's blocks goes on into the next ones as their first tensor.
  const int64_t chunk = 16;
  std::vector<int64_t> long_one = {5, chunk * 700 + 1, 3};
  plan = plan_multi_tensor(long_one, 4, 320, chunk);
  REQUIRE(plan.size() == 3);
  CHECK(plan[0].tensors == std::vector<int64_t>{0, 1});
  CHECK(plan[1].tensors == std::vector<int64_t>{1});
  CHECK(plan[2].tensors == std::vector<int64_t>{1, 2});
  check_plan(long_one, 4, 320, chunk);

  // Chunk boundaries exactly and one past; block limit hit at a tensor's last chunk.
  check_plan({chunk, chunk + 1, 2 * chunk, 2 * chunk - 1, 1}, 3, 4, chunk);
  check_plan({4 * chunk, 1, 4 * chunk}, 5, 4, chunk);
  // Mixed sizes under small limits.
  std::vector<int64_t> mixed;
  for (int i = 0; i < 200; ++i) mixed.push_back((i * 7919) % (5 * chunk + 3));
  for (int mt : {1, 2, 5, 30})
    for (int mb : {1, 3, 320}) check_plan(mixed, mt, mb, chunk);
}
