// TCPStore wire format: a frame is [u32 payload bytes][u8 command or status][u32 count] followed by
// `count` strings, each [u32 length][bytes]. One request is outstanding per connection; the server
// runs one thread per connection and blocks WAIT requests on a condition variable, so a rendezvous
// costs no polling.
#include "distributed/store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <thread>

#include "core/error.h"

namespace kiln::distributed {

namespace {

using Clock = std::chrono::steady_clock;
enum Cmd : uint8_t { kSet = 1, kGet, kAdd, kWait, kMissing, kErase };
enum Status : uint8_t { kOk = 0, kNotFound, kTimeout, kBadRequest };

std::string fmt_keys(const std::vector<std::string>& keys) {
  std::string s = "[";
  for (size_t i = 0; i < keys.size(); ++i) s += (i ? ", " : "") + keys[i];
  return s + "]";
}

void put_u32(std::string& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(p[i])) << (8 * i);
  return v;
}

std::string encode(uint8_t code, const std::vector<std::string>& args) {
  std::string body;
  body.push_back(char(code));
  put_u32(body, uint32_t(args.size()));
  for (auto& a : args) {
    put_u32(body, uint32_t(a.size()));
    body += a;
  }
  std::string frame;
  put_u32(frame, uint32_t(body.size()));
  return frame + body;
}

bool decode(const std::string& body, uint8_t& code, std::vector<std::string>& args) {
  if (body.size() < 5) return false;
  code = uint8_t(body[0]);
  uint32_t n = get_u32(body.data() + 1);
  size_t pos = 5;
  args.clear();
  for (uint32_t i = 0; i < n; ++i) {
    if (pos + 4 > body.size()) return false;
    uint32_t len = get_u32(body.data() + pos);
    pos += 4;
    if (pos + len > body.size()) return false;
    args.emplace_back(body.data() + pos, len);
    pos += len;
  }
  return pos == body.size();
}

// Reads or writes exactly n bytes before the deadline (none: block). Returns false when the peer
// closed the connection; throws on timeout.
bool io_all(int fd, char* buf, size_t n, bool write, std::optional<Clock::time_point> deadline,
            const char* what) {
  size_t done = 0;
  while (done < n) {
    if (deadline) {
      auto left = std::chrono::duration_cast<Milliseconds>(*deadline - Clock::now()).count();
      if (left <= 0) fail(what, ": timed out");
      pollfd p{fd, short(write ? POLLOUT : POLLIN), 0};
      int r = ::poll(&p, 1, int(std::min<long long>(left, 1 << 30)));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) fail(what, ": timed out");
    }
    ssize_t r = write ? ::send(fd, buf + done, n - done, MSG_NOSIGNAL) : ::recv(fd, buf + done, n - done, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return false;
    done += size_t(r);
  }
  return true;
}

bool read_frame(int fd, std::string& body, std::optional<Clock::time_point> deadline, const char* what) {
  char hdr[4];
  if (!io_all(fd, hdr, 4, false, deadline, what)) return false;
  body.resize(get_u32(hdr));
  return io_all(fd, body.data(), body.size(), false, deadline, what);
}

}  // namespace

namespace detail {

class StoreServer {
 public:
  StoreServer(const std::string& host, int port) {
    listen_fd_ = ::socket(AF_INET6, SOCK_STREAM, 0);
    bool v6 = listen_fd_ >= 0;
    if (!v6) listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    KILN_CHECK(listen_fd_ >= 0, "TCPStore: socket() failed: ", std::strerror(errno));
    int one = 1, zero = 0;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
      ::setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_any;
      a.sin6_port = htons(uint16_t(port));
      rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_ANY);
      a.sin_port = htons(uint16_t(port));
      rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc != 0 || ::listen(listen_fd_, 1024) != 0) {
      int err = errno;
      ::close(listen_fd_);
      fail("TCPStore: rank 0 could not serve the rendezvous store on port ", port, " (", host,
           "): ", std::strerror(err), "; choose another MASTER_PORT");
    }
    sockaddr_storage s{};
    socklen_t len = sizeof s;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&s), &len);
    port_ = ntohs(s.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&s)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&s)->sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  ~StoreServer() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
      for (int fd : conns_) ::shutdown(fd, SHUT_RDWR);
    }
    cv_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    for (auto& t : threads_) t.join();
    for (int fd : conns_) ::close(fd);
    ::close(listen_fd_);
  }

  int port() const { return port_; }

 private:
  void accept_loop() {
    for (;;) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      std::lock_guard<std::mutex> g(mu_);
      if (stopping_) {
        if (fd >= 0) ::close(fd);
        return;
      }
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      conns_.push_back(fd);
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }

  std::vector<std::string> missing_locked(const std::vector<std::string>& keys) {
    std::vector<std::string> m;
    for (auto& k : keys)
      if (!data_.count(k)) m.push_back(k);
    return m;
  }

  void serve(int fd) {
    std::string body;
    try {
      while (read_frame(fd, body, std::nullopt, "TCPStore server")) {
        uint8_t cmd;
        std::vector<std::string> args;
        std::string reply;
        if (!decode(body, cmd, args)) {
          reply = encode(kBadRequest, {"malformed request"});
        } else {
          reply = handle(cmd, args);
        }
        if (!io_all(fd, reply.data(), reply.size(), true, std::nullopt, "TCPStore server")) break;
      }
    } catch (const std::exception&) {
      // A broken client connection ends only that connection.
    }
  }

  std::string handle(uint8_t cmd, std::vector<std::string>& args) {
    std::unique_lock<std::mutex> lk(mu_);
    switch (cmd) {
      case kSet:
        if (args.size() != 2) break;
        data_[args[0]] = args[1];
        cv_.notify_all();
        return encode(kOk, {});
      case kGet: {
        if (args.size() != 1) break;
        auto it = data_.find(args[0]);
        if (it == data_.end()) return encode(kNotFound, {});
        return encode(kOk, {it->second});
      }
      case kAdd: {
        if (args.size() != 2) break;
        int64_t cur = 0;
        auto it = data_.find(args[0]);
        if (it != data_.end()) cur = std::stoll(it->second);
        cur += std::stoll(args[1]);
        data_[args[0]] = std::to_string(cur);
        cv_.notify_all();
        return encode(kOk, {std::to_string(cur)});
      }
      case kWait: {
        if (args.empty()) break;
        auto ms = std::stoll(args.back());
        args.pop_back();
        auto deadline = Clock::now() + Milliseconds(ms);
        bool ok = cv_.wait_until(lk, deadline,
                                 [&] { return stopping_ || missing_locked(args).empty(); });
        if (ok && !stopping_) return encode(kOk, {});
        return encode(kTimeout, missing_locked(args));
      }
      case kMissing:
        return encode(kOk, missing_locked(args));
      case kErase:
        if (args.size() != 1) break;
        return encode(data_.erase(args[0]) ? kOk : kNotFound, {});
      default:
        break;
    }
    return encode(kBadRequest, {"unknown command or wrong argument count"});
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::string> data_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
  std::thread accept_thread_;
};

}  // namespace detail

namespace {

int connect_once(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  KILN_CHECK(rc == 0, "TCPStore: cannot resolve MASTER_ADDR '", host, "': ", gai_strerror(rc));
  int fd = -1;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

}  // namespace

TCPStore::TCPStore(const std::string& host, int port, bool is_server, Milliseconds timeout)
    : host_(host), port_(port) {
  timeout_ = timeout;
  if (is_server) {
    server_ = std::make_unique<detail::StoreServer>(host, port);
    port_ = server_->port();
  }
  KILN_CHECK(port_ > 0, "TCPStore: a client needs the server's port (MASTER_PORT), got ", port_);
  // The server may not be up yet: retry with a short backoff until the timeout.
  auto deadline = Clock::now() + timeout;
  auto backoff = Milliseconds(5);
  for (;;) {
    fd_ = connect_once(server_ ? std::string("127.0.0.1") : host_, port_);
    if (fd_ >= 0) break;
    if (Clock::now() + backoff > deadline)
      fail("TCPStore: could not connect to the rendezvous store at ", host_, ":", port_, " within ",
           timeout.count(), " ms; rank 0 serves it: check that rank 0 is running and that "
           "MASTER_ADDR/MASTER_PORT are the same for every rank");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, Milliseconds(250));
  }
}

TCPStore::~TCPStore() {
  if (fd_ >= 0) ::close(fd_);
  server_.reset();
}

std::vector<std::string> TCPStore::request(uint8_t cmd, const std::vector<std::string>& args,
                                           Milliseconds timeout, uint8_t* status) {
  std::lock_guard<std::mutex> g(mu_);
  std::string what = "TCPStore request to " + host_ + ":" + std::to_string(port_);
  auto deadline = Clock::now() + timeout;
  std::string frame = encode(cmd, args), body;
  bool ok = io_all(fd_, frame.data(), frame.size(), true, deadline, what.c_str()) &&
            read_frame(fd_, body, deadline, what.c_str());
  KILN_CHECK(ok, "TCPStore: the rendezvous store at ", host_, ":", port_,
             " closed the connection; rank 0, which serves it, has probably exited or crashed");
  uint8_t code;
  std::vector<std::string> out;
  KILN_CHECK(decode(body, code, out), "TCPStore: malformed reply from ", host_, ":", port_);
  KILN_CHECK(code != kBadRequest, "TCPStore: the server rejected a request: ",
             out.empty() ? "" : out[0]);
  if (status) *status = code;
  return out;
}

void TCPStore::set(const std::string& key, const std::string& value) {
  request(kSet, {key, value}, timeout_);
}

std::string TCPStore::get(const std::string& key) {
  wait({key});
  uint8_t st;
  auto out = request(kGet, {key}, timeout_, &st);
  KILN_CHECK(st == kOk && out.size() == 1, "TCPStore::get: key '", key, "' vanished");
  return out[0];
}

int64_t TCPStore::add(const std::string& key, int64_t delta) {
  auto out = request(kAdd, {key, std::to_string(delta)}, timeout_);
  return std::stoll(out.at(0));
}

void TCPStore::wait(const std::vector<std::string>& keys, std::optional<Milliseconds> timeout) {
  Milliseconds t = timeout.value_or(timeout_);
  auto args = keys;
  args.push_back(std::to_string(t.count()));
  uint8_t st;
  // The server answers at its deadline; the client allows some slack on top of it.
  auto out = request(kWait, args, t + std::chrono::seconds(10), &st);
  if (st != kOk)
    fail("TCPStore::wait: timed out after ", t.count(), " ms waiting for keys ", fmt_keys(keys),
         "; still missing: ", fmt_keys(out));
}

std::vector<std::string> TCPStore::missing(const std::vector<std::string>& keys) {
  return request(kMissing, keys, timeout_);
}

bool TCPStore::erase(const std::string& key) {
  uint8_t st;
  request(kErase, {key}, timeout_, &st);
  return st == kOk;
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
void PrefixStore::set(const std::string& key, const std::string& value) {
  store_->set(prefix_ + "/" + key, value);
}
std::string PrefixStore::get(const std::string& key) { return store_->get(prefix_ + "/" + key); }
int64_t PrefixStore::add(const std::string& key, int64_t delta) {
  return store_->add(prefix_ + "/" + key, delta);
}
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
    fail("store barrier '", name, "' (rank ", rank, " of ", world_size, "): ranks ", ranks,
         " did not arrive within ", t.count(), " ms (missing keys ", fmt_keys(miss), ")");
  }
}

int find_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
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

}  // namespace kiln::distributed
