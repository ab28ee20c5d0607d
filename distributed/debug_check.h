// Out-of-step detection for collectives (internal). With the debug mode on, every rank publishes
// "call dtype shape extra" for its n-th collective through the store and waits for the others':
// a rank that never arrives, or one that called something else, is named in the error instead of
// leaving the job hanging in a mismatched collective. Costs a few store round trips per call.
#pragma once

#include <memory>
#include <string>

#include "core/tensor.h"
#include "distributed/store.h"

namespace kiln::distributed {

bool debug_from_env();  // KILN_DISTRIBUTED_DEBUG set and not "0"

class DebugCheck {
 public:
  DebugCheck(std::shared_ptr<Store> store, int rank, int world)
      : store_(std::move(store)), rank_(rank), world_(world) {}
  void check(const std::string& call, const Tensor& t, const std::string& extra, Milliseconds timeout);

 private:
  std::shared_ptr<Store> store_;
  int rank_, world_;
  uint64_t seq_ = 0;
};

}  // namespace kiln::distributed
