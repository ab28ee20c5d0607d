// The rendezvous key-value store: one process serves it over TCP, every rank (the serving one
// included) is a client. It speaks PyTorch's TCPStore wire protocol (c10d), so kiln's ranks join
// torchrun's agent store and PyTorch clients join kiln's. Gloo rendezvous through it (GlooStore),
// NCCL shares its unique id through it, and kiln's own join and debug checks use it. Every wait has
// a timeout (default 300 s) whose error names the keys still missing.
//   TCPStore store("127.0.0.1", port, /*is_server=*/rank == 0);
//   store.set("x", "1");  store.wait({"x"});  store.add("count", 1);
// The server is hardened for a shared network: it listens on one address (not every interface),
// bounds every length before allocating, closes connections that misbehave or leave, survives
// descriptor exhaustion, and with a job token admits only this job's ranks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace kiln::distributed {

using Milliseconds = std::chrono::milliseconds;
inline constexpr Milliseconds kDefaultTimeout = std::chrono::seconds(300);
// Timeouts are checked against (0, kStoreMaxTimeout]: a year is "forever" in practice and keeps
// every deadline computation far from overflowing.
inline constexpr Milliseconds kStoreMaxTimeout = std::chrono::hours(24 * 366);

// What one client may send, checked as each length arrives, before anything is allocated. A
// connection that exceeds one is closed.
inline constexpr uint64_t kStoreMaxKeyBytes = 8 * 1024;
inline constexpr uint64_t kStoreMaxValueBytes = 16ull << 20;
inline constexpr uint64_t kStoreMaxKeysPerQuery = 64 * 1024;
inline constexpr uint64_t kStoreMaxQueryBytes = 32ull << 20;
inline constexpr uint64_t kStoreMaxTokenBytes = 256;
// Server-wide bounds: bytes held in connection buffers, and keys plus values held in the store.
inline constexpr uint64_t kStoreMaxBufferedBytes = 256ull << 20;
inline constexpr uint64_t kStoreMaxStoredBytes = 1ull << 30;

// The environment variable that carries a job's store token from kiln's launchers to its ranks.
inline constexpr const char* kStoreTokenVariable = "KILN_STORE_TOKEN";

// Throws a kiln::Error naming `what` unless 0 < timeout <= kStoreMaxTimeout.
void check_timeout(const std::string& what, Milliseconds timeout);

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::string& value) = 0;
  // Waits (up to the timeout) for the key to exist, then returns its value.
  virtual std::string get(const std::string& key) = 0;
  // Adds delta to the integer stored at key (0 when absent) and returns the new value.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // Waits until every key exists; throws a kiln::Error naming the missing ones on timeout.
  virtual void wait(const std::vector<std::string>& keys, std::optional<Milliseconds> timeout = std::nullopt) = 0;
  // The keys of `keys` that do not exist yet (does not wait).
  virtual std::vector<std::string> missing(const std::vector<std::string>& keys) = 0;
  virtual bool erase(const std::string& key) = 0;

  Milliseconds timeout() const { return timeout_; }
  void set_timeout(Milliseconds timeout);

 protected:
  Milliseconds timeout_ = kDefaultTimeout;
};

namespace detail {
class StoreServer;
}

// What a serving TCPStore has seen, for tests and the benchmark.
struct StoreServerStats {
  uint64_t accepted = 0;             // connections accepted
  uint64_t open = 0;                 // connections open now
  uint64_t closed_misbehaving = 0;   // closed for a malformed or oversized message
  uint64_t closed_timeout = 0;       // closed for a stalled handshake or message
  uint64_t closed_evicted = 0;       // unproven connections closed to make room
  uint64_t refused_token = 0;        // clients that presented another job's token, or none
  uint64_t refused_descriptors = 0;  // connections refused while descriptors ran out
  uint64_t buffered_bytes = 0;       // bytes in connection buffers now
  uint64_t peak_buffered_bytes = 0;
};

// The client's wire dialect. PyTorch changed its TCPStore protocol in 2.2 (a VALIDATE handshake,
// query codes shifted by one); kiln's server speaks both, and a client joining a store of
// unknown version (torchrun's agent store) asks for `detect`.
enum class StoreProtocol { current, legacy, detect };

struct TCPStoreOptions {
  bool is_server = false;
  Milliseconds timeout = kDefaultTimeout;
  // This job's token (kStoreTokenVariable): the server admits only clients that present it, and a
  // client presents it. Empty: no token (torchrun's agent store, and PyTorch clients, have none).
  std::string token = {};
  // The server listens here: an address or host name, "*" for every interface. Empty: the
  // addresses `host` resolves to.
  std::string listen_address = {};
  StoreProtocol protocol = StoreProtocol::current;
  // Server: a connection must finish its handshake (token) within this, and a message it started
  // within message_timeout; otherwise it is closed.
  Milliseconds handshake_timeout = std::chrono::seconds(10);
  Milliseconds message_timeout = std::chrono::seconds(60);
  // Server: connections that have not yet proven themselves (handshake, or a first complete query
  // without a token) beyond this many make room by closing the oldest of them.
  int max_unproven_connections = 256;
};

class TCPStore : public Store {
 public:
  // The server listens on host:port (port 0: a free one, see port()); every instance connects to
  // it as a client, retrying until `timeout` while the server comes up.
  TCPStore(const std::string& host, int port, bool is_server, Milliseconds timeout = kDefaultTimeout);
  TCPStore(const std::string& host, int port, const TCPStoreOptions& options);
  ~TCPStore() override;
  TCPStore(const TCPStore&) = delete;
  TCPStore& operator=(const TCPStore&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  // The dialect this client speaks (after detection).
  StoreProtocol protocol() const { return protocol_; }
  // The server's counters; nullopt on a client-only instance.
  std::optional<StoreServerStats> server_stats() const;

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  void wait(const std::vector<std::string>& keys, std::optional<Milliseconds> timeout = std::nullopt) override;
  std::vector<std::string> missing(const std::vector<std::string>& keys) override;
  bool erase(const std::string& key) override;
  // The number of keys in the whole store (PyTorch's num_keys()).
  int64_t num_keys();

 private:
  void connect(Milliseconds timeout);
  bool handshake(std::chrono::steady_clock::time_point deadline, bool& refused);
  void disconnect();
  void send(const std::string& bytes, const char* op);
  void receive(char* out, size_t n, const char* op, std::chrono::steady_clock::time_point deadline);
  uint8_t receive_u8(const char* op);
  int64_t receive_i64(const char* op);
  std::string receive_bytes(const char* op);
  [[noreturn]] void lost(const char* op);

  std::string host_;
  int port_ = 0;
  TCPStoreOptions options_;
  StoreProtocol protocol_ = StoreProtocol::current;
  std::unique_ptr<detail::StoreServer> server_;
  int fd_ = -1;
  std::mutex mu_;
};

// Keys of `store` under "prefix/" (one store, several independent users).
class PrefixStore : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> store);
  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  void wait(const std::vector<std::string>& keys, std::optional<Milliseconds> timeout = std::nullopt) override;
  std::vector<std::string> missing(const std::vector<std::string>& keys) override;
  bool erase(const std::string& key) override;

 private:
  std::vector<std::string> full(const std::vector<std::string>& keys) const;
  std::string prefix_;
  std::shared_ptr<Store> store_;
};

// Every rank sets "<name>/<rank>" and waits for all of them: a barrier through the store whose
// timeout error names the ranks that did not arrive.
void store_barrier(Store& store, const std::string& name, int rank, int world_size,
                   std::optional<Milliseconds> timeout = std::nullopt);

// A TCP port that was free a moment ago on this host (for a launcher choosing MASTER_PORT).
int find_free_port();

// A fresh random job token (32 hex digits) for kStoreTokenVariable.
std::string make_store_token();

}  // namespace kiln::distributed
