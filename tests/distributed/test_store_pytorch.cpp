// kiln's store and PyTorch's torch.distributed.TCPStore talk to each other: a PyTorch client on
// kiln's server, and kiln's client (detecting the protocol, as it does for torchrun's agent store)
// on a PyTorch server. Skipped, with the reason, where no Python has torch (scripts/setup.sh
// installs Debian's python3-torch); nothing here needs the network.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "distributed/distributed.h"
#include "helpers.h"

namespace kd = kiln::distributed;
using namespace std::chrono_literals;

namespace {

// A Python that imports torch.distributed (Debian's first: the pyenv one on PATH may lack it).
std::string torch_python() {
  for (const char* py : {"/usr/bin/python3", "python3"}) {
    std::string cmd = std::string(py) + " -c 'import torch.distributed as d; assert d.is_available()' 2>/dev/null";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

std::string peer_script() {
  const char* root = std::getenv("KILN_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/tests/distributed/pytorch_store_peer.py";
}

std::string read_all(FILE* p) {
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  return out;
}

}  // namespace

TEST_CASE("a PyTorch TCPStore client uses kiln's store") {
  std::string py = torch_python();
  if (py.empty()) {
    MESSAGE("skipped: no Python with torch.distributed (scripts/setup.sh installs python3-torch)");
    return;
  }
  kd::TCPStore store("127.0.0.1", 0, true, 60s);
  store.set("from_kiln", "kiln says hi");
  store.add("counter", 7);
  store.set("to_delete", "x");
  std::thread kiln_side([&] {
    store.wait({"from_torch"});
    store.set("late", "1");
  });
  FILE* p = ::popen((py + " " + peer_script() + " client " + std::to_string(store.port()) + " 2>&1").c_str(), "r");
  REQUIRE(p);
  std::string out = read_all(p);
  int status = ::pclose(p);
  kiln_side.join();
  MESSAGE(out);
  CHECK(status == 0);
  CHECK(out.find("torch client: OK") != std::string::npos);
  CHECK(store.get("from_torch") == "torch says hi");
  CHECK(store.get("cas") == "first");
  CHECK(store.server_stats()->closed_misbehaving == 0);
}

TEST_CASE("kiln's client detects and uses a PyTorch TCPStore server's protocol") {
  std::string py = torch_python();
  if (py.empty()) {
    MESSAGE("skipped: no Python with torch.distributed (scripts/setup.sh installs python3-torch)");
    return;
  }
  FILE* p = ::popen((py + " " + peer_script() + " server 2>&1").c_str(), "r");
  REQUIRE(p);
  char line[256] = {};
  REQUIRE(std::fgets(line, sizeof line, p));
  int port = std::atoi(line);
  MESSAGE("PyTorch server: " << line);
  REQUIRE(port > 0);
  {
    kd::TCPStore store("127.0.0.1", port, kd::TCPStoreOptions{.timeout = 60s, .protocol = kd::StoreProtocol::detect});
    std::string version = line;
    // PyTorch up to 2.1 (Debian 12 ships 1.13) speaks the legacy protocol, 2.2 on the current one.
    bool old = version.find(" 1.") != std::string::npos || version.find(" 2.0") != std::string::npos ||
               version.find(" 2.1.") != std::string::npos;
    CHECK(store.protocol() == (old ? kd::StoreProtocol::legacy : kd::StoreProtocol::current));
    store.set("from_kiln", "kiln says hi");
    CHECK(store.get("from_torch") == "torch says hi");
    CHECK(store.add("counter", 7) == 7);
    CHECK(store.add("counter", 5) == 12);
    CHECK(store.missing({"from_kiln", "nobody"}) == std::vector<std::string>{"nobody"});
    store.set("gone", "1");
    CHECK(store.erase("gone"));
    CHECK_FALSE(store.erase("gone"));
    // A wait that times out names the key, and the client goes on (reconnecting if it must).
    std::string msg;
    try {
      store.wait({"nobody"}, 300ms);
    } catch (const kiln::Error& e) { msg = e.what(); }
    CHECK(msg.find("still missing: [nobody]") != std::string::npos);
    store.set("done", "1");
  }
  std::string rest = read_all(p);
  int status = ::pclose(p);
  MESSAGE(rest);
  CHECK(status == 0);
  CHECK(rest.find("torch server: OK") != std::string::npos);
}
