#include "distributed/debug_check.h"

#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace kiln::distributed {

bool debug_from_env() {
  const char* v = std::getenv("KILN_DISTRIBUTED_DEBUG");
  return v && *v && std::string(v) != "0";
}

void DebugCheck::check(const std::string& call, const Tensor& t, const std::string& extra, Milliseconds timeout) {
  uint64_t seq = ++seq_;
  std::ostringstream d;
  d << call;
  if (t.defined()) d << " " << t.dtype() << " " << shape_str(t.sizes());
  if (!extra.empty()) d << " " << extra;
  std::string mine = d.str();
  std::string base = std::to_string(seq) + "/";
  store_->set(base + std::to_string(rank_), mine);
  if (seq > 2) store_->erase(std::to_string(seq - 2) + "/" + std::to_string(rank_));
  std::vector<std::string> keys;
  for (int r = 0; r < world_; ++r) keys.push_back(base + std::to_string(r));
  try {
    store_->wait(keys, timeout);
  } catch (const Error&) {
    auto miss = store_->missing(keys);
    std::vector<int> ranks;
    for (auto& k : miss) ranks.push_back(std::stoi(k.substr(base.size())));
    fail(call, " (collective #", seq, " on rank ", rank_, ": ", mine, "): ranks ", ranks,
         " did not reach their collective #", seq, " within ", timeout.count(),
         " ms; they have exited, hung, or skipped a collective that this rank called (a barrier, "
         "save or all_gather reached by some ranks only)");
  }
  std::vector<int> differ;
  std::string others;
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    std::string theirs = store_->get(keys[r]);
    if (theirs != mine) {
      differ.push_back(r);
      others += "; rank " + std::to_string(r) + " called " + theirs;
    }
  }
  if (!differ.empty())
    fail("collectives out of step at #", seq, ": rank ", rank_, " called ", mine, others,
         ". Every rank must call the same collectives in the same order with the same shapes "
         "(ranks ",
         differ, " differ)");
}

}  // namespace kiln::distributed
