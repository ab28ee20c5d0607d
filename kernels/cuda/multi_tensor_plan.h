// How the multi-tensor kernels (multi_tensor.cu) split a list of tensors into launches: each
// launch names up to `max_tensors` tensors and up to `max_blocks` work items, one item being one
// chunk of `chunk` elements of one of its tensors; a tensor whose chunks do not fit goes on, as
// the first tensor, in the next launch. Empty tensors get no work. Host-only and CUDA-free, so
// the splitting is tested without a GPU (tests/gpu/test_multi_tensor_plan.cpp).
//   for (const auto& l : plan_multi_tensor(numels, 36, 320, 65536)) launch(l);
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kiln::kernels::cuda {

struct MultiTensorLaunch {
  std::vector<int64_t> tensors;  // indices into the planned list, one per slot
  struct Item {
    int slot;       // into `tensors`
    int64_t chunk;  // the chunk's number within its tensor
  };
  std::vector<Item> items;  // block b of the launch does items[b]
  int64_t first_item = 0;   // number of items in the launches before this one
};

inline std::vector<MultiTensorLaunch> plan_multi_tensor(const std::vector<int64_t>& numel, int max_tensors,
                                                        int max_blocks, int64_t chunk) {
  std::vector<MultiTensorLaunch> plan;
  std::vector<int64_t> todo;
  for (size_t i = 0; i < numel.size(); ++i)
    if (numel[i] > 0) todo.push_back(int64_t(i));
  MultiTensorLaunch cur;
  int64_t items = 0;
  for (size_t k = 0; k < todo.size(); ++k) {
    const int64_t i = todo[k];
    cur.tensors.push_back(i);
    const int64_t chunks = (numel[size_t(i)] + chunk - 1) / chunk;
    for (int64_t c = 0; c < chunks; ++c) {
      cur.items.push_back({int(cur.tensors.size()) - 1, c});
      const bool last_chunk = c == chunks - 1;
      const bool tensors_full = int(cur.tensors.size()) == max_tensors && last_chunk;
      const bool blocks_full = int(cur.items.size()) == max_blocks;
      const bool all_done = k + 1 == todo.size() && last_chunk;
      if (tensors_full || blocks_full || all_done) {
        cur.first_item = items;
        items += int64_t(cur.items.size());
        plan.push_back(std::move(cur));
        cur = MultiTensorLaunch{};
        if (!last_chunk) cur.tensors.push_back(i);  // the tensor goes on in the next launch
      }
    }
  }
  return plan;
}

}  // namespace kiln::kernels::cuda
