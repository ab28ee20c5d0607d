// The store server's logic without sockets: each connection's byte stream is parsed as it arrives
// (every length checked against the limits in store.h before anything is allocated), queries act
// on the key-value data, and replies go out through a callback, WAIT's wake-ups included. The
// epoll loop (store_server.cpp) feeds it what it reads; the fuzz harness feeds it anything.
// Not installed.
//   StoreCore core("", [&](ConnId id, const std::string& bytes) { out[id] += bytes; });
//   core.open(1);
//   if (auto v = core.feed(1, data, n); v.kind != Verdict::ok) close_connection(1, v.why);
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "distributed/store_protocol.h"

namespace kiln::distributed::detail {

using ConnId = uint64_t;

struct Verdict {
  enum Kind { ok, misbehaving, refused };  // refused: no token, or another job's
  Kind kind = ok;
  std::string why;
};

class StoreCore {
 public:
  using SendFn = std::function<void(ConnId, const std::string&)>;
  // token: empty admits every client; otherwise a client must VALIDATE, then present it (AUTH).
  StoreCore(std::string token, SendFn send);

  void open(ConnId id);
  // Parses and serves what `data` completes. Anything but Verdict::ok: the caller closes the
  // connection (and then calls close()).
  Verdict feed(ConnId id, const char* data, size_t n);
  // Forgets the connection, its buffered bytes and its pending WAIT.
  void close(ConnId id);

  // A connection is proven once it presented the token (with one) or completed a query past the
  // handshake (without); until then a server may drop it to make room.
  bool proven(ConnId id) const;
  bool mid_message(ConnId id) const;  // part of a query is buffered
  size_t buffered(ConnId id) const;   // bytes held for the connection's unfinished query
  size_t stored_bytes() const { return stored_bytes_; }
  size_t num_keys() const { return data_.size(); }
  bool has_token() const { return !token_.empty(); }

 private:
  struct Conn {
    std::string in;  // received bytes; in[pos..] is not parsed yet
    size_t pos = 0;
    bool dialect_known = false;
    Dialect dialect = Dialect::current;
    bool validated = false, authed = false, proven = false;
    // The query being parsed: its command, the next field, the bytes it took so far.
    bool in_query = false;
    Op op = Op::set;
    size_t field = 0;
    uint64_t count = 0;
    uint64_t query_bytes = 0;
    std::vector<std::string> keys, values;
    uint64_t number = 0;
    // A pending WAIT: the keys it registered and how many are still missing.
    std::vector<std::string> awaiting;
    size_t awaited = 0;
  };
  enum class Parse { need_more, done, bad };
  Parse parse(Conn& c, Verdict& v);
  Verdict admit(Conn& c, Op op);
  Verdict serve(ConnId id, Conn& c);
  bool put(const std::string& key, std::string value, Verdict& v);
  void wake(const std::string& key);
  void clear_wait(Conn& c, ConnId id);

  std::string token_;
  SendFn send_;
  std::unordered_map<ConnId, Conn> conns_;
  std::unordered_map<std::string, std::string> data_;
  std::unordered_map<std::string, std::vector<ConnId>> waiters_;
  size_t stored_bytes_ = 0;
};

}  // namespace kiln::distributed::detail
