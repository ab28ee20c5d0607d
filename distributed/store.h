// The rendezvous key-value store: rank 0 serves it over TCP, every rank (rank 0 included) is a
// client. Gloo rendezvous through it (GlooStore), NCCL shares its unique id through it, and kiln's
// own join and debug checks use it. Every wait has a timeout (default 300 s) whose error names the
// keys still missing.
//   TCPStore store("127.0.0.1", port, /*is_server=*/rank == 0);
//   store.set("x", "1");  store.wait({"x"});  store.add("count", 1);
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

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::string& value) = 0;
  // Waits (up to the timeout) for the key to exist, then returns its value.
  virtual std::string get(const std::string& key) = 0;
  // Adds delta to the integer stored at key (0 when absent) and returns the new value.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // Waits until every key exists; throws a kiln::Error naming the missing ones on timeout.
  virtual void wait(const std::vector<std::string>& keys,
                    std::optional<Milliseconds> timeout = std::nullopt) = 0;
  // The keys of `keys` that do not exist yet (does not wait).
  virtual std::vector<std::string> missing(const std::vector<std::string>& keys) = 0;
  virtual bool erase(const std::string& key) = 0;

  Milliseconds timeout() const { return timeout_; }
  void set_timeout(Milliseconds timeout) { timeout_ = timeout; }

 protected:
  Milliseconds timeout_ = kDefaultTimeout;
};

namespace detail {
class StoreServer;
}

class TCPStore : public Store {
 public:
  // The server (rank 0) listens on host:port (port 0: a free one, see port()); every instance
  // connects to it as a client, retrying until `timeout` while the server comes up.
  TCPStore(const std::string& host, int port, bool is_server, Milliseconds timeout = kDefaultTimeout);
  ~TCPStore() override;
  TCPStore(const TCPStore&) = delete;
  TCPStore& operator=(const TCPStore&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return host_; }

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  void wait(const std::vector<std::string>& keys,
            std::optional<Milliseconds> timeout = std::nullopt) override;
  std::vector<std::string> missing(const std::vector<std::string>& keys) override;
  bool erase(const std::string& key) override;

 private:
  std::vector<std::string> request(uint8_t cmd, const std::vector<std::string>& args,
                                   Milliseconds timeout, uint8_t* status = nullptr);
  std::string host_;
  int port_ = 0;
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
  void wait(const std::vector<std::string>& keys,
            std::optional<Milliseconds> timeout = std::nullopt) override;
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

}  // namespace kiln::distributed
