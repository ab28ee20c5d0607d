// A bare TCP client for the store tests: sends exactly the bytes a test writes (well-formed PyTorch
// queries, garbage, oversized lengths) and reads what comes back, so the tests see the wire.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace kiln::test {

class RawStoreClient {
 public:
  explicit RawStoreClient(int port, const char* host = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    ::inet_pton(AF_INET, host, &a.sin_addr);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawStoreClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawStoreClient(const RawStoreClient&) = delete;
  RawStoreClient& operator=(const RawStoreClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  bool send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t r = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (r <= 0) return false;
      done += size_t(r);
    }
    return true;
  }
  // Up to n bytes within the timeout (fewer when the peer closes or time runs out).
  std::string recv(size_t n, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, int(left.count())) <= 0) break;
      char buf[4096];
      ssize_t r = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, size_t(r));
    }
    return out;
  }
  // True when the server closed the connection within the timeout.
  bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_ && std::chrono::steady_clock::now() < deadline) recv(1 << 16, timeout);
    return closed_;
  }

  // Query builders (little-endian fields, as PyTorch writes them).
  static std::string u8(uint8_t v) { return std::string(1, char(v)); }
  static std::string u32(uint32_t v) {
    std::string s;
    for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
    return s;
  }
  static std::string u64(uint64_t v) {
    std::string s;
    for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
    return s;
  }
  static std::string str(const std::string& v) { return u64(v.size()) + v; }
  static uint64_t as_u64(const std::string& s, size_t at = 0) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(s.at(at + size_t(i)))) << (8 * i);
    return v;
  }

 private:
  int fd_ = -1;
  bool closed_ = false;
};

}  // namespace kiln::test
