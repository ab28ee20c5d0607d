// Hostile clients of a rendezvous store, for the store's tests and kiln_bench_store: connections
// that stay silent, send garbage, announce 4 GiB, stop half-way through a message, or open and
// close as fast as they can. Header-only, not installed.
//   HostileClients h("127.0.0.1", port);
//   h.start({.silent = 300, .garbage = 200, .huge = 100, .stalled = 20, .churn = 1000});
//   ... run the rendezvous ...
//   h.stop();   // closes what is still open
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace kiln::distributed::tools {

struct HostileMix {
  int silent = 0;   // connect and say nothing, held until stop()
  int garbage = 0;  // connect, send 256 random bytes, close
  int huge = 0;     // connect, announce a 4 GiB length (both protocols), close
  int stalled = 0;  // connect, start a message, stop half-way, held until stop()
  int churn = 0;    // connect and close at once
};

class HostileClients {
 public:
  HostileClients(std::string host, int port) : host_(std::move(host)), port_(port) {}
  ~HostileClients() { stop(); }

  // Runs the mix on four threads (one per kind that sends, plus the churn); returns at once.
  void start(const HostileMix& mix) {
    threads_.emplace_back([this, mix] {
      for (int i = 0; i < mix.silent && !stopping_; ++i) hold(connect_retrying());
    });
    threads_.emplace_back([this, mix] {
      std::mt19937 rng(12345);
      for (int i = 0; i < mix.garbage && !stopping_; ++i) {
        std::string junk(256, '\0');
        for (auto& c : junk) c = char(rng());
        send_and_close(junk);
      }
    });
    threads_.emplace_back([this, mix] {
      for (int i = 0; i < mix.huge && !stopping_; ++i) {
        // PyTorch <= 2.1's SET with a 4 GiB key, then 2.2's VALIDATE + SET with a 4 GiB value,
        // then four 0xff bytes.
        std::string legacy = std::string(1, '\0') + u64(4ull << 30);
        std::string current =
            std::string(1, '\0') + u32(0x3C85F7CE) + std::string(1, '\1') + u64(2) + "/k" + u64(4ull << 30);
        std::string ff(4, char(0xff));
        send_and_close(i % 3 == 0 ? legacy : i % 3 == 1 ? current : ff);
      }
      for (int i = 0; i < mix.stalled && !stopping_; ++i) {
        int fd = connect_retrying();
        std::string half = std::string(1, '\0') + u32(0x3C85F7CE) + std::string(1, '\1') + u64(100) + "half";
        if (fd >= 0) (void)!::send(fd, half.data(), half.size(), MSG_NOSIGNAL);
        hold(fd);
      }
    });
    threads_.emplace_back([this, mix] {
      for (int i = 0; i < mix.churn && !stopping_; ++i) {
        int fd = connect_retrying();
        if (fd >= 0) ::close(fd);
        ++churned_;
      }
    });
  }

  // Waits for the threads, then closes the connections still held.
  void stop() {
    stopping_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
    std::lock_guard<std::mutex> g(mu_);
    for (int fd : held_) ::close(fd);
    held_.clear();
  }
  // Waits for the threads to finish their mix (connections stay held).
  void finish() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  int churned() const { return churned_; }
  int connect_failures() const { return failures_; }

 private:
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

  // The store may not be up yet (or may refuse while its descriptors run out): retry briefly.
  int connect_retrying() {
    for (int attempt = 0; attempt < 200 && !stopping_; ++attempt) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) break;
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(uint16_t(port_));
      ::inet_pton(AF_INET, host_.c_str(), &a.sin_addr);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
      ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ++failures_;
    return -1;
  }
  void send_and_close(const std::string& bytes) {
    int fd = connect_retrying();
    if (fd < 0) return;
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    ::close(fd);
  }
  void hold(int fd) {
    if (fd < 0) return;
    std::lock_guard<std::mutex> g(mu_);
    held_.push_back(fd);
  }

  std::string host_;
  int port_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> churned_{0}, failures_{0};
  std::mutex mu_;
  std::vector<int> held_;
  std::vector<std::thread> threads_;
};

}  // namespace kiln::distributed::tools
