// One thread serves every connection through epoll, so a thousand idle or hostile connections cost
// a thousand small buffers, not a thousand threads. Each connection's input is bounded by the
// query limits (StoreCore checks every length as it arrives), its pending replies by
// kMaxReplyBacklog, and all buffers together by kStoreMaxBufferedBytes. When descriptors run out,
// the oldest connections that have not yet identified themselves make room; if there are none,
// the pending connection is accepted on a spare descriptor and closed at once.
#include "distributed/store_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "distributed/store_core.h"

namespace kiln::distributed::detail {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxReplyBacklog = 64ull << 20;  // replies a client has not read yet
constexpr uint64_t kStopTag = 0;
constexpr uint64_t kFirstConnTag = 1 << 20;  // below: listening sockets (index + 1)
constexpr auto kSweepEvery = std::chrono::milliseconds(200);
constexpr auto kEvictionGrace = std::chrono::seconds(1);  // unproven connections younger are kept

std::string describe(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (sa->sa_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    std::string s = "[";  // built piecewise: GCC 12 warns falsely on "[" + std::string
    s += host;
    s += "]:";
    s += std::to_string(port);
    return s;
  }
  return "?";
}

std::string numeric_host(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, host, sizeof host);
  if (sa->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, host, sizeof host);
  return host;
}

void set_port(sockaddr* sa, int port) {
  if (sa->sa_family == AF_INET) reinterpret_cast<sockaddr_in*>(sa)->sin_port = htons(uint16_t(port));
  if (sa->sa_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(sa)->sin6_port = htons(uint16_t(port));
}

}  // namespace

struct StoreServer::Impl {
  struct Conn {
    int fd = -1;
    std::string peer;
    Clock::time_point opened;
    std::optional<Clock::time_point> partial_since;
    std::string out;
    size_t out_pos = 0;
    bool polling_out = false;
    size_t accounted = 0;  // this connection's share of buffered_
    bool doomed = false;
  };
  enum class Why { left, misbehaving, refused, timeout, evicted };

  TCPStoreOptions opts;
  int port = 0;
  std::vector<int> listeners;
  std::vector<std::string> addresses;
  int epfd = -1, stopfd = -1, spare = -1;
  bool listeners_paused = false;
  Clock::time_point resume_listeners;
  std::unordered_map<ConnId, Conn> conns;
  std::map<ConnId, int> unproven;  // ids grow with time: begin() is the oldest
  std::vector<std::pair<ConnId, std::pair<Why, std::string>>> doomed;
  StoreCore core;
  ConnId next_id = kFirstConnTag;
  size_t buffered = 0;
  unsigned logged = 0;
  mutable std::mutex stats_mu;
  StoreServerStats stats;
  std::thread thread;

  explicit Impl(const TCPStoreOptions& o)
      : opts(o), core(o.token, [this](ConnId id, const std::string& bytes) { send(id, bytes); }) {}

  void log_once(Why why, const std::string& what) {
    unsigned bit = 1u << unsigned(why);
    if (why == Why::left || (logged & bit)) return;
    logged |= bit;
    std::fprintf(stderr, "kiln store (port %d): %s; further such events are counted, not logged\n", port, what.c_str());
  }
  void log_descriptors() {
    constexpr unsigned bit = 1u << 8;
    if (logged & bit) return;
    logged |= bit;
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    std::fprintf(stderr,
                 "kiln store (port %d): out of file descriptors (limit %llu): closing the oldest "
                 "connections that have not identified themselves and refusing new ones until some "
                 "close; raise the limit with `ulimit -n` if this is the job's own load\n",
                 port, (unsigned long long)rl.rlim_cur);
  }

  void bump(uint64_t StoreServerStats::*field, int64_t delta = 1) {
    std::lock_guard<std::mutex> g(stats_mu);
    stats.*field += uint64_t(delta);
  }

  void account(ConnId id, Conn& c) {
    size_t now = core.buffered(id) + (c.out.size() - c.out_pos);
    buffered = buffered - c.accounted + now;
    c.accounted = now;
    std::lock_guard<std::mutex> g(stats_mu);
    stats.buffered_bytes = buffered;
    stats.peak_buffered_bytes = std::max<uint64_t>(stats.peak_buffered_bytes, buffered);
  }

  void doom(ConnId id, Why why, std::string what) {
    auto it = conns.find(id);
    if (it == conns.end() || it->second.doomed) return;
    it->second.doomed = true;
    doomed.push_back({id, {why, std::move(what)}});
  }

  void watch_out(Conn& c, ConnId id, bool on) {
    if (c.polling_out == on) return;
    epoll_event ev{};
    ev.events = uint32_t(EPOLLIN | EPOLLRDHUP) | (on ? uint32_t(EPOLLOUT) : 0u);
    ev.data.u64 = id;
    ::epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
    c.polling_out = on;
  }

  void flush(ConnId id, Conn& c) {
    while (c.out_pos < c.out.size()) {
      ssize_t r = ::send(c.fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r > 0) {
        c.out_pos += size_t(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch_out(c, id, true);
        account(id, c);
        return;
      }
      doom(id, Why::left, "");
      break;
    }
    c.out.clear();
    c.out_pos = 0;
    watch_out(c, id, false);
    account(id, c);
  }

  void send(ConnId id, const std::string& bytes) {
    auto it = conns.find(id);
    if (it == conns.end() || it->second.doomed) return;
    Conn& c = it->second;
    c.out += bytes;
    flush(id, c);
    if (c.out.size() - c.out_pos > kMaxReplyBacklog)
      doom(id, Why::misbehaving,
           "closed a connection from " + c.peer + ": it left more than " + std::to_string(kMaxReplyBacklog) +
               " bytes of replies unread");
  }

  void close_conn(ConnId id, Why why, const std::string& what) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = it->second;
    if (c.out_pos < c.out.size())  // a refusal's reply, say: one try, never blocking
      (void)!::send(c.fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL | MSG_DONTWAIT);
    core.close(id);
    buffered -= c.accounted;
    unproven.erase(id);
    log_once(why, what);
    {
      // Counted before the peer can see the close.
      std::lock_guard<std::mutex> g(stats_mu);
      --stats.open;
      stats.buffered_bytes = buffered;
      if (why == Why::misbehaving) ++stats.closed_misbehaving;
      if (why == Why::refused) ++stats.refused_token;
      if (why == Why::timeout) ++stats.closed_timeout;
      if (why == Why::evicted) ++stats.closed_evicted;
    }
    ::epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    conns.erase(it);
  }

  void close_doomed() {
    while (!doomed.empty()) {
      auto list = std::move(doomed);
      doomed.clear();
      for (auto& [id, reason] : list) close_conn(id, reason.first, reason.second);
    }
  }

  // Closes the oldest connection that has not identified itself; with `min_age`, only one at least
  // that old (a rank's connection is in its handshake for a moment: churn must not take it).
  bool evict_oldest_unproven(Clock::duration min_age = Clock::duration::zero()) {
    if (unproven.empty()) return false;
    ConnId id = unproven.begin()->first;
    auto it = conns.find(id);
    if (min_age > Clock::duration::zero() && it != conns.end() && Clock::now() - it->second.opened < min_age)
      return false;
    std::string peer = it != conns.end() ? it->second.peer : "?";
    close_conn(id, Why::evicted,
               "closed the connection from " + peer + ", which had not identified itself, to make room for new ones");
    return true;
  }

  void pause_listeners(bool pause) {
    if (listeners_paused == pause) return;
    for (size_t i = 0; i < listeners.size(); ++i) {
      epoll_event ev{};
      ev.events = pause ? 0u : uint32_t(EPOLLIN);
      ev.data.u64 = i + 1;
      ::epoll_ctl(epfd, EPOLL_CTL_MOD, listeners[i], &ev);
    }
    listeners_paused = pause;
    resume_listeners = Clock::now() + std::chrono::milliseconds(100);
  }

  void add_conn(int fd, const sockaddr* sa) {
    if (int(unproven.size()) >= opts.max_unproven_connections && !evict_oldest_unproven(kEvictionGrace)) {
      ::close(fd);  // every unproven connection is fresh: refuse this one, it may try again
      bump(&StoreServerStats::closed_evicted);
      log_once(Why::evicted, "refused a connection: " + std::to_string(unproven.size()) +
                                 " others have not identified themselves yet");
      return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ConnId id = next_id++;
    Conn c;
    c.fd = fd;
    c.peer = describe(sa);
    c.opened = Clock::now();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = id;
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ::close(fd);
      return;
    }
    conns.emplace(id, std::move(c));
    core.open(id);
    unproven.emplace(id, fd);
    {
      std::lock_guard<std::mutex> g(stats_mu);
      ++stats.accepted;
      ++stats.open;
    }
    read_some(id);  // what came with the connection: a handshake, garbage, or its close
  }

  void accept_some(size_t li) {
    for (int k = 0; k < 256; ++k) {
      sockaddr_storage sa{};
      socklen_t len = sizeof sa;
      int fd = ::accept4(listeners[li], reinterpret_cast<sockaddr*>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        add_conn(fd, reinterpret_cast<sockaddr*>(&sa));
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        log_descriptors();
        if (evict_oldest_unproven()) continue;
        // Nothing to evict: take the pending connection on the spare descriptor and close it.
        if (spare >= 0) {
          ::close(spare);
          spare = -1;
          int f = ::accept4(listeners[li], nullptr, nullptr, SOCK_CLOEXEC);
          if (f >= 0) {
            ::close(f);
            bump(&StoreServerStats::refused_descriptors);
          }
          spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          if (f >= 0 && spare >= 0) continue;
        }
        pause_listeners(true);  // no descriptor to spare: listen again in a moment
        return;
      }
      log_once(Why::misbehaving, std::string("accept() failed: ") + std::strerror(errno));
      pause_listeners(true);
      return;
    }
  }

  void read_some(ConnId id) {
    char buf[65536];
    for (int k = 0; k < 16; ++k) {
      auto it = conns.find(id);
      if (it == conns.end() || it->second.doomed) return;
      Conn& c = it->second;
      ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
      if (r == 0) {
        doom(id, Why::left, "");
        return;
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) doom(id, Why::left, "");
        return;
      }
      Verdict v = core.feed(id, buf, size_t(r));
      it = conns.find(id);  // feed's replies may have doomed, never erased, it
      Conn& cc = it->second;
      account(id, cc);
      if (v.kind != Verdict::ok) {
        if (v.kind == Verdict::refused)
          doom(id, Why::refused, "refused " + v.why + " from " + cc.peer);
        else
          doom(id, Why::misbehaving, "closed a connection from " + cc.peer + ": " + v.why);
        return;
      }
      if (buffered > kStoreMaxBufferedBytes) {
        doom(id, Why::misbehaving,
             "closed a connection from " + cc.peer + ": the store's buffers hold more than " +
                 std::to_string(kStoreMaxBufferedBytes) + " bytes (kStoreMaxBufferedBytes)");
        return;
      }
      if (core.mid_message(id)) {
        if (!cc.partial_since) cc.partial_since = Clock::now();
      } else {
        cc.partial_since.reset();
      }
      if (core.proven(id)) unproven.erase(id);
      if (size_t(r) < sizeof buf) return;
    }
  }

  void sweep() {
    auto now = Clock::now();
    for (auto& [id, c] : conns) {
      if (c.doomed) continue;
      if (core.has_token() && !core.proven(id) && now - c.opened > opts.handshake_timeout)
        doom(id, Why::timeout,
             "closed the connection from " + c.peer + ": no job token within " +
                 std::to_string(opts.handshake_timeout.count()) + " ms");
      else if (c.partial_since && now - *c.partial_since > opts.message_timeout)
        doom(id, Why::timeout,
             "closed the connection from " + c.peer + ": a message left unfinished for " +
                 std::to_string(opts.message_timeout.count()) + " ms");
    }
    close_doomed();
    if (listeners_paused && now >= resume_listeners) pause_listeners(false);
  }

  void run() {
    epoll_event evs[64];
    auto next_sweep = Clock::now() + kSweepEvery;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_sweep - Clock::now()).count();
      int n = ::epoll_wait(epfd, evs, 64, int(std::max<long long>(0, left)));
      if (n < 0 && errno != EINTR) {
        log_once(Why::misbehaving, std::string("epoll_wait failed: ") + std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      for (int i = 0; i < n; ++i) {
        uint64_t tag = evs[i].data.u64;
        if (tag == kStopTag) {
          std::vector<ConnId> ids;
          for (auto& [id, c] : conns) ids.push_back(id);
          for (ConnId id : ids) close_conn(id, Why::left, "");
          return;
        }
        if (tag <= listeners.size()) {
          accept_some(size_t(tag - 1));
          continue;
        }
        auto it = conns.find(tag);
        if (it == conns.end()) continue;
        if (evs[i].events & EPOLLOUT) flush(tag, it->second);
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) read_some(tag);
      }
      close_doomed();
      if (Clock::now() >= next_sweep) {
        sweep();
        next_sweep = Clock::now() + kSweepEvery;
      }
    }
  }

  // Binds every address `address` resolves to on one port; throws when none can be bound.
  void listen_on(const std::string& address, int want_port) {
    std::vector<sockaddr_storage> targets;
    if (address == "*") {
      sockaddr_storage s{};
      auto* a6 = reinterpret_cast<sockaddr_in6*>(&s);
      a6->sin6_family = AF_INET6;
      a6->sin6_addr = in6addr_any;
      targets.push_back(s);
      sockaddr_storage s4{};
      auto* a4 = reinterpret_cast<sockaddr_in*>(&s4);
      a4->sin_family = AF_INET;
      a4->sin_addr.s_addr = htonl(INADDR_ANY);
      targets.push_back(s4);
    } else {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      int rc = ::getaddrinfo(address.c_str(), nullptr, &hints, &res);
      KILN_CHECK(rc == 0, "TCPStore: cannot resolve the address to serve the rendezvous store on, '", address,
                 "': ", gai_strerror(rc), "; check MASTER_ADDR, or set KILN_STORE_LISTEN to an address of this host");
      for (addrinfo* a = res; a; a = a->ai_next) {
        sockaddr_storage s{};
        std::memcpy(&s, a->ai_addr, a->ai_addrlen);
        bool seen = false;
        for (auto& t : targets) seen = seen || std::memcmp(&t, &s, sizeof s) == 0;
        if (!seen) targets.push_back(s);
      }
      ::freeaddrinfo(res);
    }
    int first_error = 0;
    port = want_port;
    for (auto& t : targets) {
      auto* sa = reinterpret_cast<sockaddr*>(&t);
      int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        first_error = first_error ? first_error : errno;
        continue;
      }
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      // "*" binds IPv6 and IPv4 separately, so the IPv6 socket must not also claim IPv4.
      if (sa->sa_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      set_port(sa, port);
      socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
      if (::bind(fd, sa, len) != 0 || ::listen(fd, SOMAXCONN) != 0) {
        first_error = first_error ? first_error : errno;
        ::close(fd);
        continue;
      }
      if (port == 0) {
        sockaddr_storage got{};
        socklen_t gl = sizeof got;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&got), &gl);
        port = got.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&got)->sin6_port)
                                         : ntohs(reinterpret_cast<sockaddr_in*>(&got)->sin_port);
      }
      listeners.push_back(fd);
      addresses.push_back(numeric_host(sa));
    }
    if (!listeners.empty()) return;
    std::string hint = first_error == EADDRINUSE
                           ? "choose another MASTER_PORT; under torchrun the ranks join torchrun's own store instead "
                             "(TORCHELASTIC_USE_AGENT_STORE=True)"
                       : first_error == EADDRNOTAVAIL
                           ? "'" + address +
                                 "' is not an address of this host: set MASTER_ADDR to this host's address, or "
                                 "KILN_STORE_LISTEN to the address to serve on ('*' for every interface)"
                           : "check MASTER_ADDR, MASTER_PORT and KILN_STORE_LISTEN";
    fail("TCPStore: could not serve the rendezvous store on ", address, " port ", want_port, ": ",
         std::strerror(first_error ? first_error : EADDRNOTAVAIL), "; ", hint);
  }
};

StoreServer::StoreServer(const std::string& address, int port, const TCPStoreOptions& options)
    : impl_(std::make_unique<Impl>(options)) {
  Impl& m = *impl_;
  KILN_CHECK(port >= 0 && port <= 65535, "TCPStore: port ", port, " is not a TCP port (0-65535)");
  KILN_CHECK(options.max_unproven_connections >= 1, "TCPStore: max_unproven_connections must be at least 1, got ",
             options.max_unproven_connections);
  m.listen_on(address, port);
  m.epfd = ::epoll_create1(EPOLL_CLOEXEC);
  m.stopfd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  m.spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (m.epfd < 0 || m.stopfd < 0) {
    int err = errno;
    for (int fd : m.listeners) ::close(fd);
    for (int fd : {m.epfd, m.stopfd, m.spare})
      if (fd >= 0) ::close(fd);
    fail("TCPStore: could not set up the store's event loop: ", std::strerror(err));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kStopTag;
  ::epoll_ctl(m.epfd, EPOLL_CTL_ADD, m.stopfd, &ev);
  for (size_t i = 0; i < m.listeners.size(); ++i) {
    ev.data.u64 = i + 1;
    ::epoll_ctl(m.epfd, EPOLL_CTL_ADD, m.listeners[i], &ev);
  }
  m.thread = std::thread([&m] { m.run(); });
}

StoreServer::~StoreServer() {
  Impl& m = *impl_;
  uint64_t one = 1;
  (void)!::write(m.stopfd, &one, sizeof one);
  m.thread.join();
  for (int fd : m.listeners) ::close(fd);
  for (int fd : {m.epfd, m.stopfd, m.spare})
    if (fd >= 0) ::close(fd);
}

int StoreServer::port() const { return impl_->port; }

std::string StoreServer::connect_address() const {
  const std::string& a = impl_->addresses.front();
  if (a == "0.0.0.0") return "127.0.0.1";
  if (a == "::") return "::1";
  return a;
}

std::vector<std::string> StoreServer::listen_addresses() const { return impl_->addresses; }

StoreServerStats StoreServer::stats() const {
  std::lock_guard<std::mutex> g(impl_->stats_mu);
  return impl_->stats;
}

}  // namespace kiln::distributed::detail
