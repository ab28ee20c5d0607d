#include "distributed/distributed.h"
#include "helpers.h"

namespace kd = kiln::distributed;

TEST_CASE("distributed environment: none, torchrun, SLURM, Open MPI") {
  CHECK_FALSE(kd::detect_environment(kd::map_env({})).has_value());

  auto t = kd::detect_environment(kd::map_env({{"RANK", "3"},
                                               {"WORLD_SIZE", "4"},
                                               {"LOCAL_RANK", "1"},
                                               {"LOCAL_WORLD_SIZE", "2"},
                                               {"NODE_RANK", "1"},
                                               {"MASTER_ADDR", "node0"},
                                               {"MASTER_PORT", "29500"}}));
  REQUIRE(t.has_value());
  CHECK(t->source == "torchrun");
  CHECK(t->rank == 3);
  CHECK(t->world_size == 4);
  CHECK(t->local_rank == 1);
  CHECK(t->local_world_size == 2);
  CHECK(t->node_rank == 1);
  CHECK(t->master_addr == "node0");
  CHECK(t->master_port == 29500);

  auto s = kd::detect_environment(kd::map_env({{"SLURM_PROCID", "5"},
                                               {"SLURM_NTASKS", "8"},
                                               {"SLURM_LOCALID", "1"},
                                               {"SLURM_NODEID", "2"},
                                               {"SLURM_NTASKS_PER_NODE", "2"},
                                               {"SLURM_NODELIST", "gpu[07-10],cpu1"},
                                               {"SLURM_JOB_ID", "1234"}}));
  REQUIRE(s.has_value());
  CHECK(s->source == "slurm");
  CHECK(s->rank == 5);
  CHECK(s->world_size == 8);
  CHECK(s->local_rank == 1);
  CHECK(s->node_rank == 2);
  CHECK(s->master_addr == "gpu07");
  CHECK(s->master_port == 21234);

  auto m = kd::detect_environment(kd::map_env({{"OMPI_COMM_WORLD_RANK", "1"},
                                               {"OMPI_COMM_WORLD_SIZE", "2"},
                                               {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                               {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                               {"MASTER_PORT", "31000"}}));
  REQUIRE(m.has_value());
  CHECK(m->source == "openmpi");
  CHECK(m->rank == 1);
  CHECK(m->master_port == 31000);
  CHECK(m->master_addr == "127.0.0.1");
}

TEST_CASE("distributed environment: malformed or inconsistent variables are errors") {
  auto err = [](std::map<std::string, std::string> vars) {
    try {
      kd::detect_environment(kd::map_env(std::move(vars)));
    } catch (const kiln::Error& e) { return std::string(e.what()); }
    return std::string("no error");
  };
  std::map<std::string, std::string> ok = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1234"}};
  auto with = [&](std::string k, std::string v) {
    auto m = ok;
    m[k] = v;
    return m;
  };
  auto without = [&](std::string k) {
    auto m = ok;
    m.erase(k);
    return m;
  };
  CHECK(err(ok) == "no error");
  CHECK(err(with("RANK", "two")).find("RANK='two' is not an integer") != std::string::npos);
  CHECK(err(with("RANK", "2")).find("RANK=2 is not below WORLD_SIZE=2") != std::string::npos);
  CHECK(err(with("WORLD_SIZE", "0")).find("WORLD_SIZE='0'") != std::string::npos);
  CHECK(err(with("MASTER_PORT", "70000")).find("MASTER_PORT=70000") != std::string::npos);
  CHECK(err(with("LOCAL_RANK", "-1")).find("LOCAL_RANK") != std::string::npos);
  CHECK(err(without("MASTER_PORT")).find("MASTER_PORT is not set") != std::string::npos);
  CHECK(err(without("WORLD_SIZE")).find("WORLD_SIZE is not set") != std::string::npos);
  auto m = with("LOCAL_WORLD_SIZE", "1");
  m.insert_or_assign("LOCAL_RANK", std::string("1"));
  CHECK(err(m).find("LOCAL_RANK=1 is not below LOCAL_WORLD_SIZE=1") != std::string::npos);
}

TEST_CASE("environment_variables round-trips through detect_environment") {
  kd::Environment e;
  e.rank = 2;
  e.world_size = 3;
  e.local_rank = 2;
  e.local_world_size = 3;
  e.master_port = 4321;
  auto back = kd::detect_environment(kd::map_env(kd::environment_variables(e)));
  REQUIRE(back.has_value());
  CHECK(back->rank == 2);
  CHECK(back->world_size == 3);
  CHECK(back->master_port == 4321);
}

TEST_CASE("distributed environment: torchrun's agent store, single node, job token") {
  std::map<std::string, std::string> t = {{"RANK", "1"},
                                          {"WORLD_SIZE", "2"},
                                          {"LOCAL_RANK", "1"},
                                          {"LOCAL_WORLD_SIZE", "2"},
                                          {"MASTER_ADDR", "node0"},
                                          {"MASTER_PORT", "29500"}};
  auto plain = kd::detect_environment(kd::map_env(t));
  REQUIRE(plain.has_value());
  CHECK_FALSE(plain->agent_store);
  CHECK(plain->single_node);  // every rank on this node, even with a non-loopback MASTER_ADDR
  CHECK(plain->store_token.empty());
  t.insert_or_assign("TORCHELASTIC_USE_AGENT_STORE", std::string("True"));
  t.insert_or_assign("TORCHELASTIC_RESTART_COUNT", std::string("2"));
  t.insert_or_assign("KILN_STORE_TOKEN", std::string("abc"));
  auto agent = kd::detect_environment(kd::map_env(t));
  REQUIRE(agent.has_value());
  CHECK(agent->agent_store);
  CHECK(agent->restart_count == 2);
  CHECK(agent->store_token == "abc");
  CHECK(kd::environment_variables(*agent).at("KILN_STORE_TOKEN") == "abc");
  // Two nodes of two processes.
  t.insert_or_assign("WORLD_SIZE", std::string("4"));
  t.insert_or_assign("RANK", std::string("3"));
  CHECK_FALSE(kd::detect_environment(kd::map_env(t))->single_node);
  t.insert_or_assign("MASTER_ADDR", std::string("127.0.0.1"));
  CHECK(kd::detect_environment(kd::map_env(t))->single_node);

  // SLURM: tasks per node from SLURM_TASKS_PER_NODE, nodes from SLURM_NNODES.
  std::map<std::string, std::string> s = {{"SLURM_PROCID", "8"},
                                          {"SLURM_NTASKS", "11"},
                                          {"SLURM_NODEID", "2"},
                                          {"SLURM_LOCALID", "0"},
                                          {"SLURM_TASKS_PER_NODE", "4(x2),3"},
                                          {"SLURM_NNODES", "3"},
                                          {"SLURM_NODELIST", "n[1-3]"}};
  auto sl = kd::detect_environment(kd::map_env(s));
  REQUIRE(sl.has_value());
  CHECK(sl->local_world_size == 3);
  CHECK_FALSE(sl->single_node);
  s = {{"SLURM_PROCID", "1"},
       {"SLURM_NTASKS", "2"},
       {"SLURM_LOCALID", "1"},
       {"SLURM_NNODES", "1"},
       {"SLURM_TASKS_PER_NODE", "2"}};
  sl = kd::detect_environment(kd::map_env(s));
  CHECK(sl->local_world_size == 2);
  CHECK(sl->single_node);

  auto m = kd::detect_environment(kd::map_env({{"OMPI_COMM_WORLD_RANK", "0"},
                                               {"OMPI_COMM_WORLD_SIZE", "2"},
                                               {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                               {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}));
  REQUIRE(m.has_value());
  CHECK(m->single_node);
  CHECK_THROWS_WITH_AS(kd::detect_environment(kd::map_env({{"RANK", "0"},
                                                           {"WORLD_SIZE", "1"},
                                                           {"MASTER_ADDR", "h"},
                                                           {"MASTER_PORT", "1"},
                                                           {"KILN_STORE_TOKEN", std::string(300, 'x')}})),
                       doctest::Contains("KILN_STORE_TOKEN has 300 characters"), kiln::Error);
}
