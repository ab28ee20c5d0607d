#include <thread>

#include "distributed/distributed.h"
#include "helpers.h"

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
  } catch (const kiln::Error& e) {
    msg = e.what();
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(msg.find("timed out after 200 ms") != std::string::npos);
  CHECK(msg.find("still missing: [rank1, rank2]") != std::string::npos);

  // The store barrier names ranks.
  msg.clear();
  try {
    kd::store_barrier(store, "join", 0, 3, 200ms);
  } catch (const kiln::Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("ranks [1, 2] did not arrive") != std::string::npos);
}

TEST_CASE("TCPStore: a client without a server fails within its timeout") {
  int port = kd::find_free_port();
  std::string msg;
  try {
    kd::TCPStore c("127.0.0.1", port, false, 300ms);
  } catch (const kiln::Error& e) {
    msg = e.what();
  }
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
  } catch (const kiln::Error& e) {
    msg = e.what();
  }
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
  CHECK_THROWS_WITH_AS(kd::parse_reduce_op("prod"), doctest::Contains("unknown reduce op 'prod'"),
                       kiln::Error);
}
