// The store's server: one thread, one epoll loop over the listening sockets and every connection,
// StoreCore for the protocol. Not installed; TCPStore owns one on the serving rank.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distributed/store.h"

namespace kiln::distributed::detail {

class StoreServer {
 public:
  // Listens on port (0: a free one) of every address `address` resolves to ("*": all interfaces).
  StoreServer(const std::string& address, int port, const TCPStoreOptions& options);
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const;
  // A numeric address this server listens on, for its own rank's client to connect to.
  std::string connect_address() const;
  std::vector<std::string> listen_addresses() const;
  StoreServerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::distributed::detail
