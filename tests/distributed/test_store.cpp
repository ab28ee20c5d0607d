#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <thread>

#include "distributed/distributed.h"
#include "helpers.h"
#include "raw_store_client.h"

namespace kd = kiln::distributed;
using namespace std::chrono_literals;

TEST_CASE("TCPStore: set, get, add, wait, missing across clients") {
  kd::TCPStore server("127.0.0.1", 0, true, 5s);
  REQUIRE(server.port() > 0);
  kd::TCPStore client("127.0.0.1", server.port(), false, 5s);
  server.set("a", std::string("x\0y", 3));
  CHECK(client.get("a") == std::string("x\0y", 3));
  CHECK(client.add("n", 2) == 2);
  CHECK(server.add("n", 5) == 7);
  CHECK(client.missing({"a", "b", "c"}) == std::vector<std::string>{"b", "c"});
  // A wait that another client satisfies later.
  std::thread t([&] { server.set("late", "1"); });
  client.wait({"a", "late"});
  t.join();
  CHECK(client.get("late") == "1");
  CHECK(client.erase("late"));
  CHECK_FALSE(client.erase("late"));
  kd::PrefixStore p("job", std::make_shared<kd::TCPStore>("127.0.0.1", server.port(), false, 5s));
  p.set("k", "v");
  CHECK(server.get("job/k") == "v");
  CHECK(p.missing({"k", "z"}) == std::vector<std::string>{"z"});
}

TEST_CASE("TCPStore: a wait that times out names the missing keys") {
  kd::TCPStore store("127.0.0.1", 0, true, 5s);
  store.set("rank0", "1");
  std::string msg;
  auto t0 = std::chrono::steady_clock::now();
  try {
    store.wait({"rank0", "rank1", "rank2"}, 200ms);
  } catch (const kiln::Error& e) { msg = e.what(); }
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  CHECK(msg.find("timed out after 200 ms") != std::string::npos);
  CHECK(msg.find("still missing: [rank1, rank2]") != std::string::npos);

  // The store barrier names ranks.
  msg.clear();
  try {
    kd::store_barrier(store, "join", 0, 3, 200ms);
  } catch (const kiln::Error& e) { msg = e.what(); }
  CHECK(msg.find("ranks [1, 2] did not arrive") != std::string::npos);
}

TEST_CASE("TCPStore: a client without a server fails within its timeout") {
  int port = kd::find_free_port();
  std::string msg;
  try {
    kd::TCPStore c("127.0.0.1", port, false, 300ms);
  } catch (const kiln::Error& e) { msg = e.what(); }
  CHECK(msg.find("could not connect to the rendezvous store") != std::string::npos);
}

TEST_CASE("TCPStore: a client sees the server go away") {
  auto server = std::make_unique<kd::TCPStore>("127.0.0.1", 0, true, 5s);
  kd::TCPStore client("127.0.0.1", server->port(), false, 5s);
  client.set("x", "1");
  server.reset();
  std::string msg;
  try {
    client.get("x");
  } catch (const kiln::Error& e) { msg = e.what(); }
  CHECK(msg.find("closed the connection") != std::string::npos);
}

TEST_CASE("a world of one: collectives are identities") {
  auto store = std::make_shared<kd::TCPStore>("127.0.0.1", 0, true, 5s);
  auto comm = kd::make_gloo_communicator(store, 0, 1);
  auto t = kiln::tensor(std::vector<float>{1, 2, 3});
  comm->all_reduce(t, kd::ReduceOp::avg);
  kiln::test::check_values(t, {1, 2, 3});
  kiln::test::check_values(comm->all_gather(t), {1, 2, 3});
  comm->barrier();
  CHECK_THROWS_WITH_AS(comm->broadcast(t, 1), doctest::Contains("src rank 1"), kiln::Error);
}

TEST_CASE("reduce op names") {
  CHECK(kd::parse_reduce_op("mean") == kd::ReduceOp::avg);
  CHECK(kd::parse_reduce_op("sum") == kd::ReduceOp::sum);
  CHECK(kd::parse_reduce_op("max") == kd::ReduceOp::max);
  CHECK_THROWS_WITH_AS(kd::parse_reduce_op("prod"), doctest::Contains("unknown reduce op 'prod'"), kiln::Error);
}

// --- The wire: PyTorch's TCPStore protocol, limits, tokens, timeouts --------------------------

namespace {
using Raw = kiln::test::RawStoreClient;
const std::string kValidate = Raw::u8(0) + Raw::u32(0x3C85F7CE);

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const kiln::Error& e) { return e.what(); }
  return "no error";
}
}  // namespace

TEST_CASE("TCPStore speaks PyTorch's protocol: current (VALIDATE first) and legacy (2.1 and older)") {
  kd::TCPStore server("127.0.0.1", 0, true, 5s);
  // PyTorch >= 2.2: VALIDATE, SET "/a" = "1", GET "/a", ADD "/n" 5, CHECK, GETNUMKEYS, PING.
  Raw cur(server.port());
  REQUIRE(cur.connected());
  REQUIRE(cur.send(kValidate + Raw::u8(1) + Raw::str("/a") + Raw::str("1") + Raw::u8(3) + Raw::str("/a")));
  CHECK(cur.recv(9) == Raw::str("1"));
  REQUIRE(cur.send(Raw::u8(4) + Raw::str("/n") + Raw::u64(5)));
  CHECK(Raw::as_u64(cur.recv(8)) == 5);
  REQUIRE(cur.send(Raw::u8(5) + Raw::u64(2) + Raw::str("/a") + Raw::str("/zz")));
  CHECK(cur.recv(1) == Raw::u8(1));  // NOT_READY: /zz is missing
  REQUIRE(cur.send(Raw::u8(13) + Raw::u32(0xabcdef)));
  CHECK(cur.recv(4) == Raw::u32(0xabcdef));
  // kiln's client sees the same keys ("/" + key on the wire, as PyTorch's TCPStore sends them).
  CHECK(server.get("a") == "1");
  CHECK(server.add("n", 1) == 6);
  // A WAIT answered later, and one cancelled.
  REQUIRE(cur.send(Raw::u8(6) + Raw::u64(1) + Raw::str("/later")));
  CHECK(cur.recv(1, 200ms).empty());
  server.set("later", "x");
  CHECK(cur.recv(1) == Raw::u8(0));  // STOP_WAITING
  REQUIRE(cur.send(Raw::u8(6) + Raw::u64(1) + Raw::str("/never") + Raw::u8(12)));
  CHECK(cur.recv(1) == Raw::u8(1));  // WAIT_CANCELED
  // PyTorch <= 2.1: no handshake, SET = 0, GET = 2, ADD = 3, DELETE_KEY = 8.
  Raw old(server.port());
  REQUIRE(old.send(Raw::u8(3) + Raw::str("init/") + Raw::u64(1) + Raw::u8(0) + Raw::str("/b") + Raw::str("2") +
                   Raw::u8(2) + Raw::str("/a")));
  CHECK(Raw::as_u64(old.recv(8)) == 1);
  CHECK(old.recv(9) == Raw::str("1"));
  CHECK(server.get("b") == "2");
  REQUIRE(old.send(Raw::u8(8) + Raw::str("/b")));
  CHECK(Raw::as_u64(old.recv(8)) == 1);
  CHECK(server.missing({"b"}) == std::vector<std::string>{"b"});
  CHECK(server.num_keys() == 4);  // /a /n /later init/
  auto stats = server.server_stats();
  REQUIRE(stats);
  CHECK(stats->closed_misbehaving == 0);
}

TEST_CASE("TCPStore server: every length is bounded before anything is allocated") {
  kd::TCPStore server("127.0.0.1", 0, true, 5s);
  struct Case {
    const char* what;
    std::string bytes;
  };
  const uint64_t huge = 0xffffffffffffffffull, four_gib = 4ull << 30;
  std::vector<Case> cases = {
      {"ff ff ff ff", std::string(4, char(0xff))},
      {"a key of 2^64-1 bytes", kValidate + Raw::u8(1) + Raw::u64(huge)},
      {"a 4 GiB value", kValidate + Raw::u8(1) + Raw::str("/k") + Raw::u64(four_gib)},
      {"a key just over the limit", kValidate + Raw::u8(3) + Raw::u64(kd::kStoreMaxKeyBytes + 1)},
      {"a WAIT for 2^32 keys", kValidate + Raw::u8(6) + Raw::u64(1ull << 32)},
      {"a legacy SET with a 4 GiB key", Raw::u8(0) + Raw::u64(four_gib)},
      {"VALIDATE twice", kValidate + kValidate},
      {"an unknown command", kValidate + Raw::u8(200)},
      {"a near-miss magic (a legacy SET with a ~1 GB key)",
       Raw::u8(0) + Raw::u32(0x3C85F7CE - 1) + std::string(4, '\0')},
  };
  auto before = server.server_stats()->closed_misbehaving;
  for (auto& c : cases) {
    CAPTURE(c.what);
    Raw raw(server.port());
    REQUIRE(raw.send(c.bytes));
    CHECK(raw.closed_by_peer(3000ms));
  }
  auto stats = *server.server_stats();
  CHECK(stats.closed_misbehaving - before == cases.size());
  CHECK(stats.peak_buffered_bytes < (1 << 20));
  // The store still serves its clients.
  server.set("still", "here");
  CHECK(server.get("still") == "here");
}

TEST_CASE("TCPStore server: a job token admits this job's ranks and refuses the others") {
  kd::TCPStoreOptions o{.is_server = true, .timeout = 5s, .token = "job-a"};
  kd::TCPStore server("127.0.0.1", 0, o);
  kd::TCPStore rank1("127.0.0.1", server.port(), kd::TCPStoreOptions{.timeout = 5s, .token = "job-a"});
  rank1.set("x", "1");
  CHECK(server.get("x") == "1");
  auto msg = error_of(
      [&] { kd::TCPStore other("127.0.0.1", server.port(), kd::TCPStoreOptions{.timeout = 2s, .token = "job-b"}); });
  CHECK(msg.find("refused this rank's job token (KILN_STORE_TOKEN)") != std::string::npos);
  // Without a token: a PyTorch client (current or legacy protocol) is closed at its first query.
  Raw cur(server.port());
  REQUIRE(cur.send(kValidate + Raw::u8(7)));
  CHECK(cur.closed_by_peer());
  Raw old(server.port());
  REQUIRE(old.send(Raw::u8(3) + Raw::str("init/") + Raw::u64(1)));
  CHECK(old.closed_by_peer());
  CHECK(server.server_stats()->refused_token == 3);
  CHECK(rank1.get("x") == "1");  // the job's own clients are undisturbed
}

TEST_CASE("TCPStore server: a silent or stalled connection is closed after its timeout") {
  kd::TCPStoreOptions o{
      .is_server = true, .timeout = 5s, .token = "t", .handshake_timeout = 300ms, .message_timeout = 300ms};
  kd::TCPStore server("127.0.0.1", 0, o);
  Raw silent(server.port());
  auto t0 = std::chrono::steady_clock::now();
  CHECK(silent.closed_by_peer(15000ms));
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);  // 300 ms, with room for a loaded machine
  // A ranked client that starts a SET and stops half-way.
  Raw stalled(server.port());
  REQUIRE(stalled.send(kValidate + Raw::u8(0x4B) + Raw::str("t")));
  CHECK(stalled.recv(1) == Raw::u8(0));  // AUTH accepted
  REQUIRE(stalled.send(Raw::u8(1) + Raw::str("/k") + Raw::u64(100) + "only some"));
  CHECK(stalled.closed_by_peer(15000ms));
  auto stats = *server.server_stats();
  CHECK(stats.closed_timeout == 2);
  // Without a token, silent connections may stay (PyTorch clients keep idle ones open).
  kd::TCPStore open_server("127.0.0.1", 0,
                           kd::TCPStoreOptions{.is_server = true, .timeout = 5s, .handshake_timeout = 300ms});
  Raw idle(open_server.port());
  CHECK_FALSE(idle.closed_by_peer(800ms));
}

TEST_CASE("TCPStore: every timeout is range-checked") {
  kd::TCPStore store("127.0.0.1", 0, true, 5s);
  const auto forever = kd::Milliseconds(std::numeric_limits<int64_t>::max());
  CHECK(error_of([&] { store.wait({"k"}, forever); }).find("out of range") != std::string::npos);
  CHECK(error_of([&] { store.wait({"k"}, 0ms); }).find("timeout 0 ms is out of range") != std::string::npos);
  CHECK(error_of([&] { store.set_timeout(-5ms); }).find("out of range") != std::string::npos);
  CHECK(error_of([&] { kd::TCPStore s("127.0.0.1", 0, true, forever); }).find("out of range") != std::string::npos);
  // The largest accepted timeout works without overflow: a key that exists returns at once.
  store.set("k", "v");
  store.wait({"k"}, kd::kStoreMaxTimeout);
  CHECK(store.timeout() == 5s);
}

TEST_CASE("TCPStore server listens where it is asked, not on every interface") {
  kd::TCPStore loop("127.0.0.1", 0, true, 5s);
  // The listening sockets of that port, from the kernel's table.
  std::string listeners;
  char port_hex[8];
  std::snprintf(port_hex, sizeof port_hex, ":%04X", loop.port());
  {
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    while (std::getline(tcp, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      if (state == "0A" && local.size() > 5 && local.substr(local.size() - 5) == port_hex) listeners += local + " ";
    }
  }
  CHECK(listeners == "0100007F" + std::string(port_hex) + " ");  // 127.0.0.1 only, not 0.0.0.0
  // "*" asks for every interface.
  kd::TCPStore all("127.0.0.1", 0, kd::TCPStoreOptions{.is_server = true, .timeout = 5s, .listen_address = "*"});
  all.set("k", "v");
  CHECK(all.get("k") == "v");
  // An address that is not this host's is a clear error.
  auto msg = error_of([] { kd::TCPStore s("192.0.2.1", 0, kd::TCPStoreOptions{.is_server = true, .timeout = 1s}); });
  CHECK(msg.find("is not an address of this host") != std::string::npos);
}
