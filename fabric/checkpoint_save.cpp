// Saving from several processes, and cleaning up after saves that did not finish.
//
// A multi-process save is collective: each rank does its part (rank 0 the file, or every rank its
// shard and then rank 0 the index) and then all ranks exchange how it went in one all_gather, so
// a failure on any rank (a full disk, say) fails every rank at once with that rank's message,
// instead of leaving the others waiting at a barrier until it times out. The new shard files of a
// failed save are removed on the spot; what a killed save left (temporary files, shards that never
// reached an index) is removed by the next save, which deletes only names kiln itself writes
// beside that checkpoint.
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "core/ops.h"
#include "fabric/checkpoint_io.h"

namespace kiln::detail {
namespace fs = std::filesystem;
namespace {

bool all_of(std::string_view s, int (*pred)(int)) {
  if (s.empty()) return false;
  for (char c : s)
    if (!pred(static_cast<unsigned char>(c))) return false;
  return true;
}
int is_lower_hex(int c) { return std::isdigit(c) || (c >= 'a' && c <= 'f'); }

// "<stem>.<12 hex digits>.rank<r>-of-<n>.safetensors": a shard as Fabric's sharded save names it.
bool is_shard_name(std::string_view f, const std::string& stem) {
  if (!f.starts_with(stem + ".") || !f.ends_with(".safetensors")) return false;
  f.remove_prefix(stem.size() + 1);
  f.remove_suffix(std::string_view(".safetensors").size());
  if (f.size() < 13 || !all_of(f.substr(0, 12), is_lower_hex) || f.substr(12, 5) != ".rank") return false;
  f.remove_prefix(17);
  size_t of = f.find("-of-");
  return of != std::string_view::npos && all_of(f.substr(0, of), isdigit) && all_of(f.substr(of + 4), isdigit);
}

// "<final name>.tmp.<pid>.<n>": AtomicFile's temporary file; returns its pid (0 if no match).
long tmp_pid(std::string_view f, std::string_view final_name) {
  if (!f.starts_with(final_name) || f.substr(final_name.size()).substr(0, 5) != ".tmp.") return 0;
  f.remove_prefix(final_name.size() + 5);
  size_t dot = f.find('.');
  if (dot == std::string_view::npos || dot > 9 || !all_of(f.substr(0, dot), isdigit) ||
      !all_of(f.substr(dot + 1), isdigit))
    return 0;
  return std::stol(std::string(f.substr(0, dot)));
}

// A process on this machine with that pid is running (its file may still be in the making). A
// zombie is not: a killed rank whose parent died too may wait long for a reaper.
bool alive_elsewhere(long pid) {
  if (pid == long(::getpid())) return false;
  if (::kill(pid_t(pid), 0) != 0 && errno != EPERM) return false;
  char buf[512] = {};
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return true;
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  // "pid (comm) S ...": the state follows the last ')'.
  const char* close = std::strrchr(buf, ')');
  return !(n && close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X'));
}

std::string shard_stem(const std::string& path) {
  fs::path p(path);
  return p.extension() == ".safetensors" ? p.stem().string() : p.filename().string();
}

// Every rank's outcome of one step of a save: empty when it went well. All ranks call this in
// the same order; each learns every rank's message.
constexpr int64_t kMessageBytes = 2048;

std::vector<std::string> exchange(const std::string& error, const SaveGroup& g) {
  // Bytes packed into int64 elements: every backend gathers int64.
  Tensor mine = zeros({kMessageBytes / 8}, {.dtype = DType::i64});
  auto* p = static_cast<uint8_t*>(mine.raw_data());
  if (!error.empty()) {
    p[0] = 1;
    std::memcpy(p + 1, error.data(), std::min<size_t>(error.size(), kMessageBytes - 1));
  }
  Tensor all = g.all_gather(mine).contiguous();
  KILN_CHECK(all.numel() * 8 == kMessageBytes * g.world_size, "save: the status exchange returned ", all.numel() * 8,
             " bytes for ", g.world_size, " ranks");
  std::vector<std::string> out;
  const auto* q = static_cast<const char*>(all.raw_data());
  for (int r = 0; r < g.world_size; ++r) {
    const char* m = q + int64_t(r) * kMessageBytes;
    out.push_back(m[0] ? std::string(m + 1, strnlen(m + 1, kMessageBytes - 1)) : std::string());
  }
  return out;
}

// Throws on every rank when any rank failed, after `cleanup`, with the first failing rank's message.
template <class F>
void agree(const std::string& path, const std::string& error, const SaveGroup& g, F&& cleanup) {
  std::vector<std::string> all = exchange(error, g);
  int first = -1, failed = 0;
  for (int r = 0; r < g.world_size; ++r)
    if (!all[size_t(r)].empty()) failed++, first = first < 0 ? r : first;
  if (first < 0) return;
  cleanup();
  fail("save ", path, " failed on rank ", first, failed > 1 ? concat(" (and ", failed - 1, " other ranks)") : "", ": ",
       all[size_t(first)], ". Every rank stopped this save; the checkpoint at ", path, " is the previous one");
}

// Runs one rank's part of a save; its error (any exception) as a message.
template <class F>
std::string attempt(F&& f) {
  try {
    f();
  } catch (const std::exception& e) { return e.what()[0] ? e.what() : "unknown error"; }
  return {};
}

}  // namespace

size_t remove_checkpoint_litter(const std::string& path) {
  fs::path p(path);
  fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string name = p.filename().string(), stem = shard_stem(path);
  if (name.empty()) return 0;
  // Shards the current index names are the checkpoint itself. An index that cannot be read keeps
  // every shard: nothing is deleted on a guess.
  std::set<std::string> keep;
  bool shards_known = false;
  try {
    if (auto named = indexed_shard_names(path)) {
      keep.insert(named->begin(), named->end());
      shards_known = true;
    }
  } catch (const std::exception&) {  // not a regular file: nothing to go by
  }
  size_t removed = 0;
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (long pid = tmp_pid(f, name)) {
      if (!alive_elsewhere(pid)) doomed.push_back(it->path());
      continue;
    }
    if (!f.starts_with(stem + ".")) continue;
    if (is_shard_name(f, stem)) {
      if (shards_known && !keep.count(f)) doomed.push_back(it->path());
      continue;
    }
    // A shard's temporary file: "<shard name>.tmp.<pid>.<n>".
    size_t tmp = f.rfind(".safetensors.tmp.");
    if (tmp != std::string::npos) {
      std::string shard = f.substr(0, tmp + 12);
      if (is_shard_name(shard, stem) && tmp_pid(f, shard) && !alive_elsewhere(tmp_pid(f, shard)))
        doomed.push_back(it->path());
    }
  }
  for (const auto& d : doomed) {
    std::error_code rm;
    if (fs::remove(d, rm)) ++removed;
  }
  return removed;
}

void save_distributed(const std::string& path, const State& state, const ShardContext* ctx, const SaveGroup& g,
                      const std::function<CheckpointContents()>& contents) {
  bool sharded = false;
  for (const auto& [key, value] : state)
    if (auto o = std::get_if<std::shared_ptr<optim::Optimizer>>(&value))
      sharded = sharded || (ctx && ctx->layouts.count(o->get()));
  // The shard files of a sharded checkpoint this save replaces go once the new one is in place,
  // each removed by one rank (on a cluster their folders may be local to each node).
  std::vector<std::string> old;
  if (ctx) {
    try {
      old = checkpoint_shard_files(path);
    } catch (const std::exception&) {  // a damaged index: this save replaces it, its shards stay
    }
  }
  auto remove_old = [&](const std::string& token) {
    std::error_code ec;
    for (size_t j = 0; j < old.size(); ++j)
      if (int(j % size_t(g.world_size)) == g.rank && old[j] != checkpoint_shard_path(path, token, int(j), g.world_size))
        fs::remove(old[j], ec);
  };
  if (!sharded) {  // no sharded optimizer in the state (a model alone, say): one file by rank 0
    // Every rank has read the previous index before rank 0 may replace it.
    if (ctx) g.barrier();
    std::string error;
    if (g.rank == 0) error = attempt([&] { write_checkpoint_file(path, contents()); });
    agree(path, error, g, [] {});
    remove_old("");
    return;
  }
  // Sharded: every rank writes its file under a fresh save id, then rank 0 the index. Rank 0
  // clears earlier litter first, while no rank writes (the others wait for the id).
  Tensor id = zeros({1}, {.dtype = DType::i64});
  if (g.rank == 0) {
    remove_checkpoint_litter(path);
    std::random_device rd;
    uint64_t bits =
        (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    id.fill_(double(bits & ((uint64_t(1) << 48) - 1)));
  }
  char token[16];
  std::snprintf(token, sizeof token, "%012llx", (unsigned long long)g.broadcast(id, 0).item<int64_t>());
  const std::string mine = checkpoint_shard_path(path, token, g.rank, g.world_size);
  auto remove_mine = [&] {
    std::error_code ec;
    fs::remove(mine, ec);
  };
  agree(path, attempt([&] { save_checkpoint_shard(path, token, state, *ctx); }), g, remove_mine);
  std::string error;
  if (g.rank == 0) error = attempt([&] { save_checkpoint_index(path, token, state, *ctx); });
  agree(path, error, g, remove_mine);
  remove_old(token);
  if (g.rank == 0) remove_checkpoint_litter(path);
}

}  // namespace kiln::detail
