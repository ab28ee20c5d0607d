// The parser is resumable: a query's fields are taken one at a time as their bytes arrive, and a
// field's length is checked the moment its 8 bytes are in, so a stalled or hostile stream costs
// at most one field's bound in memory and each byte is parsed once.
#include "distributed/store_core.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "distributed/store.h"

namespace kiln::distributed::detail {

namespace {

// Command bytes in the order of each dialect (index = code).
constexpr Op kCurrent[] = {Op::validate,    Op::set,      Op::compare_set, Op::get,       Op::add,       Op::check,
                           Op::wait,        Op::num_keys, Op::erase,       Op::append,    Op::multi_get, Op::multi_set,
                           Op::cancel_wait, Op::ping,     Op::queue_push,  Op::queue_pop, Op::queue_len};
constexpr Op kLegacy[] = {Op::set,       Op::compare_set, Op::get,        Op::add,   Op::check,
                          Op::wait,      Op::num_keys,    Op::watch_key,  Op::erase, Op::append,
                          Op::multi_get, Op::multi_set,   Op::cancel_wait};

enum class Field { u32, i64, count, key, value, token, end };

Field field_of(Op op, size_t f, uint64_t count) {
  switch (op) {
    case Op::validate:
    case Op::ping: return f == 0 ? Field::u32 : Field::end;
    case Op::set:
    case Op::append:
    case Op::queue_push: return f == 0 ? Field::key : f == 1 ? Field::value : Field::end;
    case Op::compare_set: return f == 0 ? Field::key : f <= 2 ? Field::value : Field::end;
    case Op::get:
    case Op::erase:
    case Op::watch_key:
    case Op::queue_pop:
    case Op::queue_len: return f == 0 ? Field::key : Field::end;
    case Op::add: return f == 0 ? Field::key : f == 1 ? Field::i64 : Field::end;
    case Op::check:
    case Op::wait:
    case Op::multi_get: return f == 0 ? Field::count : f <= count ? Field::key : Field::end;
    case Op::multi_set:
      return f == 0 ? Field::count : f <= 2 * count ? (f % 2 ? Field::key : Field::value) : Field::end;
    case Op::num_keys:
    case Op::cancel_wait: return Field::end;
    case Op::auth: return f == 0 ? Field::token : Field::end;
  }
  return Field::end;
}

Verdict bad(std::string why) { return {Verdict::misbehaving, std::move(why)}; }

// A stored counter: an optional sign and digits, within int64.
bool parse_i64(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  size_t i = s[0] == '-' || s[0] == '+' ? 1 : 0;
  if (i == s.size()) return false;
  int64_t v = 0;
  bool neg = s[0] == '-';
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    int digit = s[i] - '0';
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -digit : digit, &v)) return false;
  }
  out = v;
  return true;
}

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::validate: return "VALIDATE";
    case Op::set: return "SET";
    case Op::compare_set: return "COMPARE_SET";
    case Op::get: return "GET";
    case Op::add: return "ADD";
    case Op::check: return "CHECK";
    case Op::wait: return "WAIT";
    case Op::num_keys: return "GETNUMKEYS";
    case Op::watch_key: return "WATCH_KEY";
    case Op::erase: return "DELETE_KEY";
    case Op::append: return "APPEND";
    case Op::multi_get: return "MULTI_GET";
    case Op::multi_set: return "MULTI_SET";
    case Op::cancel_wait: return "CANCEL_WAIT";
    case Op::ping: return "PING";
    case Op::queue_push: return "QUEUE_PUSH";
    case Op::queue_pop: return "QUEUE_POP";
    case Op::queue_len: return "QUEUE_LEN";
    case Op::auth: return "AUTH";
  }
  return "?";
}

std::optional<uint8_t> op_code(Op op, Dialect dialect) {
  if (op == Op::auth) return kAuthCode;
  const Op* table = dialect == Dialect::current ? kCurrent : kLegacy;
  size_t n = dialect == Dialect::current ? std::size(kCurrent) : std::size(kLegacy);
  for (size_t i = 0; i < n; ++i)
    if (table[i] == op) return uint8_t(i);
  return std::nullopt;
}

std::optional<Op> op_of(uint8_t code, Dialect dialect) {
  if (code == kAuthCode && dialect == Dialect::current) return Op::auth;
  if (dialect == Dialect::current) {
    if (code < std::size(kCurrent)) return kCurrent[code];
  } else if (code < std::size(kLegacy)) {
    return kLegacy[code];
  }
  return std::nullopt;
}

StoreCore::StoreCore(std::string token, SendFn send) : token_(std::move(token)), send_(std::move(send)) {}

void StoreCore::open(ConnId id) { conns_[id] = Conn{}; }

void StoreCore::close(ConnId id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  clear_wait(it->second, id);
  conns_.erase(it);
}

bool StoreCore::proven(ConnId id) const {
  auto it = conns_.find(id);
  return it != conns_.end() && it->second.proven;
}

bool StoreCore::mid_message(ConnId id) const {
  auto it = conns_.find(id);
  return it != conns_.end() && (it->second.in_query || it->second.pos < it->second.in.size());
}

size_t StoreCore::buffered(ConnId id) const {
  auto it = conns_.find(id);
  return it == conns_.end() ? 0 : it->second.in.size();
}

Verdict StoreCore::feed(ConnId id, const char* data, size_t n) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return bad("unknown connection");
  Conn& c = it->second;
  c.in.append(data, n);
  for (;;) {
    Verdict v;
    if (!c.in_query) {
      if (c.pos >= c.in.size()) break;
      uint8_t code = uint8_t(c.in[c.pos]);
      if (!c.dialect_known) {
        // Byte 0 opens both dialects' first query: PyTorch >= 2.2's VALIDATE (then the magic) or
        // an older client's SET (then a key length, which the magic would make ~1 GB: too long).
        if (code == 0) {
          if (c.in.size() - c.pos < 5) break;
          c.dialect = get_u32(c.in.data() + c.pos + 1) == kValidateMagic ? Dialect::current : Dialect::legacy;
        } else {
          c.dialect = Dialect::legacy;
        }
        c.dialect_known = true;
      }
      auto op = op_of(code, c.dialect);
      if (!op) return bad("unknown command byte " + std::to_string(code));
      v = admit(c, *op);
      if (v.kind != Verdict::ok) return v;
      c.in_query = true;
      c.op = *op;
      c.field = 0;
      c.count = 0;
      c.query_bytes = 1;
      c.keys.clear();
      c.values.clear();
      c.number = 0;
      ++c.pos;
    }
    Parse p = parse(c, v);
    if (p == Parse::bad) return v;
    if (p == Parse::need_more) break;
    c.in_query = false;
    v = serve(id, c);
    if (v.kind != Verdict::ok) return v;
  }
  // Drop what was parsed once it is all of the buffer or a good part of it.
  if (c.pos == c.in.size()) {
    c.in.clear();
    c.pos = 0;
  } else if (c.pos > 65536 && c.pos * 2 > c.in.size()) {
    c.in.erase(0, c.pos);
    c.pos = 0;
  }
  return {};
}

// Which commands a connection may send at this point of its life.
Verdict StoreCore::admit(Conn& c, Op op) {
  if (c.dialect == Dialect::current && !c.validated) {
    if (op != Op::validate) return bad(std::string("first query is ") + op_name(op) + ", not VALIDATE");
    return {};
  }
  if (op == Op::validate) return bad("VALIDATE after the handshake");
  if (!token_.empty() && !c.authed) {
    if (c.dialect == Dialect::legacy)
      return {Verdict::refused, "a client without a job token (PyTorch 2.1 or older protocol)"};
    if (op != Op::auth)
      return {Verdict::refused, std::string("a client without a job token (first query ") + op_name(op) + ")"};
    return {};
  }
  if (op == Op::auth && c.authed) return bad("AUTH twice");
  return {};
}

StoreCore::Parse StoreCore::parse(Conn& c, Verdict& v) {
  for (;;) {
    Field f = field_of(c.op, c.field, c.count);
    if (f == Field::end) return Parse::done;
    const size_t avail = c.in.size() - c.pos;
    const char* p = c.in.data() + c.pos;
    size_t take = 0;
    switch (f) {
      case Field::u32:
        if (avail < 4) return Parse::need_more;
        c.number = get_u32(p);
        take = 4;
        break;
      case Field::i64:
        if (avail < 8) return Parse::need_more;
        c.number = get_u64(p);
        take = 8;
        break;
      case Field::count:
        if (avail < 8) return Parse::need_more;
        c.count = get_u64(p);
        if (c.count > kStoreMaxKeysPerQuery) {
          v = bad(std::string(op_name(c.op)) + " with " + std::to_string(c.count) + " keys; the limit is " +
                  std::to_string(kStoreMaxKeysPerQuery) + " (kStoreMaxKeysPerQuery)");
          return Parse::bad;
        }
        take = 8;
        break;
      case Field::key:
      case Field::value:
      case Field::token: {
        if (avail < 8) return Parse::need_more;
        uint64_t len = get_u64(p);
        uint64_t limit = f == Field::key     ? kStoreMaxKeyBytes
                         : f == Field::value ? kStoreMaxValueBytes
                                             : kStoreMaxTokenBytes;
        const char* limit_name = f == Field::key     ? "kStoreMaxKeyBytes"
                                 : f == Field::value ? "kStoreMaxValueBytes"
                                                     : "kStoreMaxTokenBytes";
        if (len > limit) {
          v = bad(std::string(op_name(c.op)) + " with a " +
                  (f == Field::key     ? "key"
                   : f == Field::value ? "value"
                                       : "token") +
                  " of " + std::to_string(len) + " bytes; the limit is " + std::to_string(limit) + " (" + limit_name +
                  ")");
          return Parse::bad;
        }
        if (c.query_bytes + 8 + len > kStoreMaxQueryBytes) {
          v = bad(std::string(op_name(c.op)) + " longer than " + std::to_string(kStoreMaxQueryBytes) +
                  " bytes (kStoreMaxQueryBytes)");
          return Parse::bad;
        }
        if (avail < 8 + len) return Parse::need_more;
        std::string s(p + 8, size_t(len));
        if (f == Field::value)
          c.values.push_back(std::move(s));
        else
          c.keys.push_back(std::move(s));
        take = 8 + size_t(len);
        break;
      }
      case Field::end: return Parse::done;
    }
    c.pos += take;
    c.query_bytes += take;
    ++c.field;
  }
}

bool StoreCore::put(const std::string& key, std::string value, Verdict& v) {
  auto it = data_.find(key);
  size_t old = it == data_.end() ? 0 : key.size() + it->second.size();
  size_t now = key.size() + value.size();
  if (stored_bytes_ - old + now > kStoreMaxStoredBytes) {
    v = bad("the store would hold more than " + std::to_string(kStoreMaxStoredBytes) + " bytes (kStoreMaxStoredBytes)");
    return false;
  }
  stored_bytes_ = stored_bytes_ - old + now;
  if (it == data_.end())
    data_.emplace(key, std::move(value));
  else
    it->second = std::move(value);
  wake(key);
  return true;
}

void StoreCore::wake(const std::string& key) {
  auto w = waiters_.find(key);
  if (w == waiters_.end()) return;
  std::vector<ConnId> ids = std::move(w->second);
  waiters_.erase(w);
  for (ConnId id : ids) {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second.awaited == 0) continue;
    if (--it->second.awaited == 0) {
      it->second.awaiting.clear();
      std::string r;
      put_u8(r, kStopWaiting);
      send_(id, r);
    }
  }
}

void StoreCore::clear_wait(Conn& c, ConnId id) {
  for (const auto& key : c.awaiting) {
    auto w = waiters_.find(key);
    if (w == waiters_.end()) continue;
    std::erase(w->second, id);
    if (w->second.empty()) waiters_.erase(w);
  }
  c.awaiting.clear();
  c.awaited = 0;
}

Verdict StoreCore::serve(ConnId id, Conn& c) {
  Verdict v;
  std::string r;
  auto lookup = [&](const std::string& k) -> const std::string* {
    auto it = data_.find(k);
    return it == data_.end() ? nullptr : &it->second;
  };
  if (c.op != Op::validate && c.op != Op::auth) c.proven = c.proven || token_.empty();
  switch (c.op) {
    case Op::validate:
      if (c.number != kValidateMagic) return bad("VALIDATE with a wrong magic number");
      c.validated = true;
      return v;
    case Op::auth: {
      // Constant time in the token's bytes, so the reply's timing says nothing about a prefix.
      const std::string& t = c.keys[0];
      unsigned diff = t.size() != token_.size();
      for (size_t i = 0; i < t.size(); ++i) diff |= uint8_t(t[i]) ^ uint8_t(i < token_.size() ? token_[i] : 0);
      put_u8(r, token_.empty() || diff == 0 ? kAuthAccepted : kAuthRefused);
      send_(id, r);
      if (!token_.empty() && diff != 0) return {Verdict::refused, "a client with another job's token"};
      c.authed = c.proven = true;
      return v;
    }
    case Op::set: put(c.keys[0], std::move(c.values[0]), v); return v;
    case Op::compare_set: {
      const std::string* cur = lookup(c.keys[0]);
      std::string reply;
      if (!cur) {
        // PyTorch's semantics: a missing key is created only when the expected value is empty.
        if (c.values[0].empty()) {
          if (!put(c.keys[0], c.values[1], v)) return v;
          reply = c.values[1];
        } else {
          reply = c.values[0];
        }
      } else {
        if (*cur == c.values[0] && !put(c.keys[0], c.values[1], v)) return v;
        reply = *lookup(c.keys[0]);
      }
      put_str(r, reply);
      send_(id, r);
      return v;
    }
    case Op::get: {
      const std::string* cur = lookup(c.keys[0]);
      put_str(r, cur ? *cur : std::string());
      send_(id, r);
      return v;
    }
    case Op::add: {
      int64_t value = int64_t(c.number), old = 0;
      if (const std::string* cur = lookup(c.keys[0])) {
        if (!parse_i64(*cur, old))
          return bad("ADD on key '" + c.keys[0].substr(0, 64) + "', whose value is not an integer");
        if (__builtin_add_overflow(old, value, &value))
          return bad("ADD overflows int64 on key '" + c.keys[0].substr(0, 64) + "'");
      }
      if (!put(c.keys[0], std::to_string(value), v)) return v;
      put_u64(r, uint64_t(value));
      send_(id, r);
      return v;
    }
    case Op::check: {
      bool all = std::all_of(c.keys.begin(), c.keys.end(), [&](const std::string& k) { return lookup(k) != nullptr; });
      put_u8(r, all ? kReady : kNotReady);
      send_(id, r);
      return v;
    }
    case Op::wait: {
      if (c.awaited > 0) return bad("WAIT while an earlier WAIT is pending");
      for (const auto& k : c.keys)
        if (!lookup(k)) {
          waiters_[k].push_back(id);
          c.awaiting.push_back(k);
          ++c.awaited;
        }
      if (c.awaited == 0) {
        put_u8(r, kStopWaiting);
        send_(id, r);
      }
      return v;
    }
    case Op::num_keys:
      put_u64(r, uint64_t(data_.size()));
      send_(id, r);
      return v;
    case Op::erase: {
      auto it = data_.find(c.keys[0]);
      int64_t n = 0;
      if (it != data_.end()) {
        stored_bytes_ -= it->first.size() + it->second.size();
        data_.erase(it);
        n = 1;
      }
      put_u64(r, uint64_t(n));
      send_(id, r);
      return v;
    }
    case Op::append: {
      const std::string* cur = lookup(c.keys[0]);
      if (cur && cur->size() + c.values[0].size() > kStoreMaxValueBytes)
        return bad("APPEND would make the value of '" + c.keys[0].substr(0, 64) + "' longer than " +
                   std::to_string(kStoreMaxValueBytes) + " bytes (kStoreMaxValueBytes)");
      put(c.keys[0], cur ? *cur + c.values[0] : std::move(c.values[0]), v);
      return v;
    }
    case Op::multi_get:
      for (const auto& k : c.keys) {
        const std::string* cur = lookup(k);
        put_str(r, cur ? *cur : std::string());
      }
      if (!r.empty()) send_(id, r);  // no keys, no reply
      return v;
    case Op::multi_set:
      for (size_t i = 0; i < c.keys.size(); ++i)
        if (!put(c.keys[i], std::move(c.values[i]), v)) return v;
      return v;
    case Op::cancel_wait:
      clear_wait(c, id);
      put_u8(r, kWaitCanceled);
      send_(id, r);
      return v;
    case Op::ping:
      put_u32(r, uint32_t(c.number));
      send_(id, r);
      return v;
    case Op::watch_key:
    case Op::queue_push:
    case Op::queue_pop:
    case Op::queue_len: return bad(std::string(op_name(c.op)) + " is not supported by kiln's store");
  }
  return v;
}

}  // namespace kiln::distributed::detail
