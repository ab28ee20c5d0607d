// TCPStore's client side: PyTorch's wire format (store_protocol.h), one query outstanding per
// connection, every read and write bounded by a deadline. Keys go on the wire behind "/", as
// PyTorch's TCPStore sends them, so kiln and PyTorch clients of one store see the same keys.
#include "distributed/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "distributed/store_protocol.h"
#include "distributed/store_server.h"

namespace kiln::distributed {

namespace {

using Clock = std::chrono::steady_clock;
using detail::Dialect;
using detail::Op;

std::string fmt_keys(const std::vector<std::string>& keys) {
  std::string s = "[";
  for (size_t i = 0; i < keys.size(); ++i) s += (i ? ", " : "") + keys[i];
  return s + "]";
}

const std::string kKeyPrefix = "/";

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Milliseconds>(deadline - Clock::now()).count();
  return int(std::clamp<long long>(left, 0, 1 << 30));
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return true;  // the read or write that follows reports it
    if (r == 0 && Clock::now() >= deadline) return false;
  }
}

// One non-blocking connect to any address of host:port before the deadline; -1 (and `error`) if
// none answers.
int connect_once(const std::string& host, int port, Clock::time_point deadline, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  KILN_CHECK(rc == 0, "TCPStore: cannot resolve MASTER_ADDR '", host, "': ", gai_strerror(rc));
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    int r = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      int err = ETIMEDOUT;
      if (wait_fd(fd, POLLOUT, deadline)) {
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      }
      r = err == 0 ? 0 : -1;
      errno = err;
    }
    if (r != 0) {
      error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

std::string query(Op op, Dialect d) {
  std::string b;
  detail::put_u8(b, *detail::op_code(op, d));
  return b;
}

void check_key(const char* op, const std::string& key) {
  KILN_CHECK(key.size() + kKeyPrefix.size() <= kStoreMaxKeyBytes, "TCPStore::", op, ": a key of ", key.size(),
             " bytes is longer than the store allows (kStoreMaxKeyBytes = ", kStoreMaxKeyBytes, ")");
}

}  // namespace

void check_timeout(const std::string& what, Milliseconds timeout) {
  KILN_CHECK(timeout.count() > 0 && timeout <= kStoreMaxTimeout, what, ": timeout ", timeout.count(),
             " ms is out of range; use a value between 1 ms and ", kStoreMaxTimeout.count(),
             " ms (366 days, kStoreMaxTimeout)");
}

void Store::set_timeout(Milliseconds timeout) {
  check_timeout("Store::set_timeout", timeout);
  timeout_ = timeout;
}

TCPStore::TCPStore(const std::string& host, int port, bool is_server, Milliseconds timeout)
    : TCPStore(host, port, TCPStoreOptions{.is_server = is_server, .timeout = timeout}) {}

TCPStore::TCPStore(const std::string& host, int port, const TCPStoreOptions& options)
    : host_(host), port_(port), options_(options), protocol_(options.protocol) {
  check_timeout("TCPStore", options.timeout);
  check_timeout("TCPStore (handshake_timeout)", options.handshake_timeout);
  check_timeout("TCPStore (message_timeout)", options.message_timeout);
  KILN_CHECK(options.token.size() <= kStoreMaxTokenBytes, "TCPStore: the job token has ", options.token.size(),
             " bytes; the limit is ", kStoreMaxTokenBytes, " (kStoreMaxTokenBytes)");
  KILN_CHECK(!(options.is_server && options.protocol == StoreProtocol::legacy),
             "TCPStore: a server's own "
             "client speaks the current protocol; StoreProtocol::legacy is for joining PyTorch 2.1 or older");
  timeout_ = options.timeout;
  if (options.is_server) {
    server_ = std::make_unique<detail::StoreServer>(options.listen_address.empty() ? host : options.listen_address,
                                                    port, options);
    port_ = server_->port();
    protocol_ = StoreProtocol::current;
  }
  KILN_CHECK(port_ >= 1 && port_ <= 65535, "TCPStore: a client needs the server's port (MASTER_PORT), got ", port_);
  connect(options.timeout);
}

TCPStore::~TCPStore() {
  disconnect();
  server_.reset();
}

std::optional<StoreServerStats> TCPStore::server_stats() const {
  if (!server_) return std::nullopt;
  return server_->stats();
}

void TCPStore::disconnect() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// Connects and runs the dialect's handshake, retrying while the server comes up (or drops this
// connection to make room) until the timeout.
void TCPStore::connect(Milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  const std::string target = server_ ? server_->connect_address() : host_;
  auto backoff = Milliseconds(5);
  std::string problem = "no answer";
  int attempts = 0;
  for (;;) {
    ++attempts;
    disconnect();
    std::string error;
    fd_ = connect_once(target, port_, deadline, error);
    bool refused = false;
    if (fd_ < 0) {
      problem = error;
    } else {
      try {
        if (handshake(deadline, refused)) return;
        problem = "it closed the connection at the handshake (not a kiln store of this job, or one that "
                  "dropped this connection to make room)";
      } catch (const Error& e) { problem = e.what(); }
    }
    if (refused) {
      disconnect();
      fail("TCPStore: the rendezvous store at ", host_, ":", port_, " refused this rank's job token (",
           kStoreTokenVariable, "): it serves another job. Give every rank of a job the same ", kStoreTokenVariable,
           " (kiln's launchers do), and each job its own MASTER_PORT");
    }
    if (Clock::now() + backoff > deadline) {
      disconnect();
      fail("TCPStore: could not connect to the rendezvous store at ", host_, ":", port_, " within ", timeout.count(),
           " ms (", attempts, " attempts; last: ", problem,
           "); rank 0 (or torchrun's agent) "
           "serves it: check that it is running and that MASTER_ADDR/MASTER_PORT are the same for every rank");
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, Milliseconds(250));
  }
}

// The handshake of the client's dialect on a fresh connection. False: the server closed it (try
// again); `refused`: it refused the job token.
bool TCPStore::handshake(Clock::time_point deadline, bool& refused) {
  auto read_all = [&](char* out, size_t n) {
    size_t got = 0;
    while (got < n) {
      KILN_CHECK(wait_fd(fd_, POLLIN, deadline), "no answer to the handshake in time");
      ssize_t r = ::recv(fd_, out + got, n - got, 0);
      if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (r <= 0) break;
      got += size_t(r);
    }
    return got;
  };
  if (protocol_ == StoreProtocol::legacy) return true;  // PyTorch <= 2.1: no handshake
  std::string b = query(Op::validate, Dialect::current);
  detail::put_u32(b, detail::kValidateMagic);
  if (protocol_ == StoreProtocol::detect) {
    // VALIDATE, then four GETNUMKEYS: PyTorch >= 2.2 answers 32 bytes. An older server reads byte
    // 0 as SET and the next eight as a key length of ~5e17, fails to allocate it and closes the
    // connection; the client then reconnects and speaks the older protocol.
    b += std::string(4, char(*detail::op_code(Op::num_keys, Dialect::current)));
    send(b, "connect");
    char reply[32];
    protocol_ = read_all(reply, sizeof reply) == sizeof reply ? StoreProtocol::current : StoreProtocol::legacy;
    if (protocol_ == StoreProtocol::current) return true;
    disconnect();
    fd_ = -1;
    return false;
  }
  if (!options_.token.empty()) {
    detail::put_u8(b, detail::kAuthCode);
    detail::put_str(b, options_.token);
  }
  send(b, "connect");
  if (options_.token.empty()) return true;
  char c = 0;
  if (read_all(&c, 1) != 1) return false;
  refused = uint8_t(c) != detail::kAuthAccepted;
  return !refused;
}

void TCPStore::lost(const char* op) {
  disconnect();
  fail("TCPStore: the rendezvous store at ", host_, ":", port_, " closed the connection during ", op,
       "; the process that serves it (rank 0, or torchrun's agent) has probably exited or crashed");
}

void TCPStore::send(const std::string& bytes, const char* op) {
  if (fd_ < 0) connect(timeout_);
  auto deadline = Clock::now() + timeout_;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t r = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (r > 0) {
      done += size_t(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_fd(fd_, POLLOUT, deadline)) continue;
      disconnect();
      fail("TCPStore: ", op, ": could not send to the rendezvous store at ", host_, ":", port_, " within ",
           timeout_.count(), " ms");
    }
    lost(op);
  }
}

void TCPStore::receive(char* out, size_t n, const char* op, Clock::time_point deadline) {
  size_t done = 0;
  while (done < n) {
    if (!wait_fd(fd_, POLLIN, deadline)) {
      disconnect();  // a reply may still come: this connection is out of step now
      fail("TCPStore: ", op, ": no reply from the rendezvous store at ", host_, ":", port_, " within ",
           timeout_.count(), " ms");
    }
    ssize_t r = ::recv(fd_, out + done, n - done, 0);
    if (r > 0) {
      done += size_t(r);
      continue;
    }
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    lost(op);
  }
}

uint8_t TCPStore::receive_u8(const char* op) {
  char c;
  receive(&c, 1, op, Clock::now() + timeout_);
  return uint8_t(c);
}

int64_t TCPStore::receive_i64(const char* op) {
  char b[8];
  receive(b, 8, op, Clock::now() + timeout_);
  return int64_t(detail::get_u64(b));
}

std::string TCPStore::receive_bytes(const char* op) {
  auto deadline = Clock::now() + timeout_;
  char b[8];
  receive(b, 8, op, deadline);
  uint64_t len = detail::get_u64(b);
  if (len > kStoreMaxValueBytes) {
    disconnect();
    fail("TCPStore: ", op, ": the rendezvous store at ", host_, ":", port_, " announced a value of ", len,
         " bytes, more than kStoreMaxValueBytes (", kStoreMaxValueBytes, "); it is not a well-behaved store");
  }
  std::string v(size_t(len), '\0');
  receive(v.data(), v.size(), op, deadline);
  return v;
}

void TCPStore::set(const std::string& key, const std::string& value) {
  check_key("set", key);
  KILN_CHECK(value.size() <= kStoreMaxValueBytes, "TCPStore::set: a value of ", value.size(), " bytes for key '", key,
             "' is longer than the store allows (kStoreMaxValueBytes = ", kStoreMaxValueBytes, ")");
  std::lock_guard<std::mutex> g(mu_);
  Dialect d = protocol_ == StoreProtocol::legacy ? Dialect::legacy : Dialect::current;
  std::string b = query(Op::set, d);
  detail::put_str(b, kKeyPrefix + key);
  detail::put_str(b, value);
  send(b, "set");
}

std::string TCPStore::get(const std::string& key) {
  wait({key});
  std::lock_guard<std::mutex> g(mu_);
  Dialect d = protocol_ == StoreProtocol::legacy ? Dialect::legacy : Dialect::current;
  std::string b = query(Op::get, d);
  detail::put_str(b, kKeyPrefix + key);
  send(b, "get");
  return receive_bytes("get");
}

int64_t TCPStore::add(const std::string& key, int64_t delta) {
  check_key("add", key);
  std::lock_guard<std::mutex> g(mu_);
  Dialect d = protocol_ == StoreProtocol::legacy ? Dialect::legacy : Dialect::current;
  std::string b = query(Op::add, d);
  detail::put_str(b, kKeyPrefix + key);
  detail::put_u64(b, uint64_t(delta));
  send(b, "add");
  return receive_i64("add");
}

void TCPStore::wait(const std::vector<std::string>& keys, std::optional<Milliseconds> timeout) {
  Milliseconds t = timeout.value_or(timeout_);
  check_timeout("TCPStore::wait", t);
  KILN_CHECK(keys.size() <= kStoreMaxKeysPerQuery, "TCPStore::wait: ", keys.size(), " keys; the store takes at most ",
             kStoreMaxKeysPerQuery, " per query (kStoreMaxKeysPerQuery)");
  for (const auto& k : keys) check_key("wait", k);
  {
    std::lock_guard<std::mutex> g(mu_);
    Dialect d = protocol_ == StoreProtocol::legacy ? Dialect::legacy : Dialect::current;
    std::string b = query(Op::wait, d);
    detail::put_u64(b, keys.size());
    for (const auto& k : keys) detail::put_str(b, kKeyPrefix + k);
    send(b, "wait");
    if (wait_fd(fd_, POLLIN, Clock::now() + t)) {
      uint8_t r = receive_u8("wait");
      if (r != detail::kStopWaiting) {
        disconnect();
        fail("TCPStore::wait: the rendezvous store at ", host_, ":", port_, " answered WAIT with ", int(r),
             " instead of STOP_WAITING; it is not a well-behaved store");
      }
      return;
    }
    // Timed out: withdraw the WAIT so the connection stays usable (PyTorch 2.1 and older have no
    // CANCEL_WAIT: that connection is dropped and the next query reconnects).
    bool resynced = false;
    if (d == Dialect::current) {
      try {
        send(query(Op::cancel_wait, d), "wait");
        uint8_t r = receive_u8("wait");
        if (r == detail::kStopWaiting) r = receive_u8("wait");  // the keys came just in time
        resynced = r == detail::kWaitCanceled;
      } catch (const Error&) {}
    }
    if (!resynced) disconnect();
  }
  auto miss = missing(keys);
  fail("TCPStore::wait: timed out after ", t.count(), " ms waiting for keys ", fmt_keys(keys),
       "; still missing: ", fmt_keys(miss));
}

std::vector<std::string> TCPStore::missing(const std::vector<std::string>& keys) {
  for (const auto& k : keys) check_key("missing", k);
  std::lock_guard<std::mutex> g(mu_);
  Dialect d = protocol_ == StoreProtocol::legacy ? Dialect::legacy : Dialect::current;
  // One CHECK per key, sent together, answered in order.
  std::string b;
  for (const auto& k : keys) {
    b += query(Op::check, d);
    detail::put_u64(b, 1);
    detail::put_str(b, kKeyPrefix + k);
  }
  if (!b.empty()) send(b, "missing");
  std::vector<std::string> out;
  for (const auto& k : keys)
    if (receive_u8("missing") != detail::kReady) out.push_back(k);
  return out;
}

bool TCPStore::erase(const std::string& key) {
  check_key("erase", key);
  std::lock_guard<std::mutex> g(mu_);
  Dialect d = protocol_ == StoreProtocol::legacy ? Dialect::legacy : Dialect::current;
  std::string b = query(Op::erase, d);
  detail::put_str(b, kKeyPrefix + key);
  send(b, "erase");
  return receive_i64("erase") == 1;
}

int64_t TCPStore::num_keys() {
  std::lock_guard<std::mutex> g(mu_);
  Dialect d = protocol_ == StoreProtocol::legacy ? Dialect::legacy : Dialect::current;
  send(query(Op::num_keys, d), "num_keys");
  return receive_i64("num_keys");
}

PrefixStore::PrefixStore(std::string prefix, std::shared_ptr<Store> store)
    : prefix_(std::move(prefix)), store_(std::move(store)) {
  timeout_ = store_->timeout();
}
std::vector<std::string> PrefixStore::full(const std::vector<std::string>& keys) const {
  std::vector<std::string> r;
  for (auto& k : keys) r.push_back(prefix_ + "/" + k);
  return r;
}
void PrefixStore::set(const std::string& key, const std::string& value) { store_->set(prefix_ + "/" + key, value); }
std::string PrefixStore::get(const std::string& key) { return store_->get(prefix_ + "/" + key); }
int64_t PrefixStore::add(const std::string& key, int64_t delta) { return store_->add(prefix_ + "/" + key, delta); }
void PrefixStore::wait(const std::vector<std::string>& keys, std::optional<Milliseconds> timeout) {
  store_->wait(full(keys), timeout.value_or(timeout_));
}
std::vector<std::string> PrefixStore::missing(const std::vector<std::string>& keys) {
  auto m = store_->missing(full(keys));
  for (auto& k : m) k = k.substr(prefix_.size() + 1);
  return m;
}
bool PrefixStore::erase(const std::string& key) { return store_->erase(prefix_ + "/" + key); }

void store_barrier(Store& store, const std::string& name, int rank, int world_size,
                   std::optional<Milliseconds> timeout) {
  store.set(name + "/" + std::to_string(rank), "1");
  std::vector<std::string> keys;
  for (int r = 0; r < world_size; ++r) keys.push_back(name + "/" + std::to_string(r));
  Milliseconds t = timeout.value_or(store.timeout());
  try {
    store.wait(keys, t);
  } catch (const Error&) {
    auto miss = store.missing(keys);
    std::vector<int> ranks;
    for (auto& k : miss) ranks.push_back(std::stoi(k.substr(name.size() + 1)));
    fail("store barrier '", name, "' (rank ", rank, " of ", world_size, "): ranks ", ranks, " did not arrive within ",
         t.count(), " ms (missing keys ", fmt_keys(miss), ")");
  }
}

int find_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KILN_CHECK(fd >= 0, "find_free_port: socket() failed: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = 0;
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  if (rc == 0) rc = ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  KILN_CHECK(rc == 0, "find_free_port: could not bind a socket: ", std::strerror(errno));
  return ntohs(a.sin_port);
}

std::string make_store_token() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t r = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (r < 0 && errno == EINTR) continue;
    KILN_CHECK(r > 0, "make_store_token: getrandom failed: ", std::strerror(errno));
    got += size_t(r);
  }
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char b : bytes) {
    s.push_back(hex[b >> 4]);
    s.push_back(hex[b & 15]);
  }
  return s;
}

}  // namespace kiln::distributed
