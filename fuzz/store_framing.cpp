// libFuzzer harness for the rendezvous store's message framing: the bytes of up to three client
// connections, cut into arbitrary chunks, go through StoreCore (the server's parser and query
// handling without sockets), with and without a job token. Any crash, sanitizer report, exception
// or broken bound is a finding. Builds on its own (fuzz/store_fuzz.sh):
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I. \
//           fuzz/store_framing.cpp distributed/store_core.cpp -o store_framing
// Input: byte 0 picks the mode (bit 0: token "job"; bits 1-2: connections - 1), then records
// [connection][length][bytes]; a connection the server closes is replaced by a fresh one.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unordered_map>

#include "distributed/store.h"
#include "distributed/store_core.h"

namespace sd = kiln::distributed;
namespace sdd = kiln::distributed::detail;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool token = data[0] & 1;
  const int nconn = 1 + std::min(2, (data[0] >> 1) & 3);
  std::unordered_map<sdd::ConnId, uint64_t> replied;
  sdd::StoreCore core(token ? "job" : "", [&](sdd::ConnId id, const std::string& bytes) {
    replied[id] += bytes.size();
    check(!bytes.empty());
  });
  sdd::ConnId ids[3];
  sdd::ConnId next = 1;
  for (int i = 0; i < nconn; ++i) {
    ids[i] = next++;
    core.open(ids[i]);
  }
  size_t pos = 1;
  while (pos + 2 <= size) {
    int which = data[pos] % nconn;
    size_t len = std::min<size_t>(data[pos + 1], size - pos - 2);
    const char* chunk = reinterpret_cast<const char*>(data + pos + 2);
    pos += 2 + len;
    sdd::Verdict v = core.feed(ids[which], chunk, len);
    // Bounds: a connection holds one unfinished query at most (and parsed bytes not yet dropped,
    // never more than it), and the store never grows past its limit.
    check(core.buffered(ids[which]) <= 2 * sd::kStoreMaxQueryBytes + 65536);
    check(core.stored_bytes() <= sd::kStoreMaxStoredBytes);
    if (v.kind != sdd::Verdict::ok) {
      check(!v.why.empty());
      core.close(ids[which]);
      ids[which] = next++;
      core.open(ids[which]);
    }
  }
  for (int i = 0; i < nconn; ++i) core.close(ids[i]);
  return 0;
}
