// kiln-run: starts a training program's processes on this node, as torchrun does.
//   kiln-run --nproc_per_node 2 [--nnodes M --node_rank R --master_addr A --master_port P]
//            [--rdzv_id ID] [--standalone] [--timeout SECONDS] program args...
//   kiln-run --accelerator cpu --devices 2 --strategy ddp --precision bf16-mixed program args...
// The last form is Lightning's `fabric run`: the Fabric options go to the program's Fabric as
// LT_ACCELERATOR, LT_DEVICES, LT_STRATEGY, LT_PRECISION and LT_NUM_NODES, and a device count
// is also the number of processes per node.
// Each worker gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR,
// MASTER_PORT, the job token KILN_STORE_TOKEN and (unless set) OMP_NUM_THREADS. When one fails,
// the others are stopped and kiln-run exits with its status.
#include <cctype>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "core/parse.h"
#include "distributed/launch.h"

namespace {

const char* kUsage = "usage: kiln-run [--nproc_per_node N] [--nnodes M] [--node_rank R] [--master_addr A]\n"
                     "                [--master_port P] [--rdzv_id ID] [--standalone] [--timeout SECONDS]\n"
                     "                [--accelerator A] [--devices D] [--strategy S] [--precision P] [--num_nodes M]\n"
                     "                program [args...]\n"
                     "Runs N processes of `program` on this node with torchrun's environment variables.\n"
                     "--standalone: single node, a free local port (the default when --nnodes is 1).\n"
                     "--rdzv_id: the job's id; with several nodes it is the job token every node shares\n"
                     "(KILN_STORE_TOKEN, if set, takes precedence), which keeps other jobs' clients out.\n"
                     "--accelerator, --devices, --strategy, --precision, --num_nodes: as Lightning's `fabric run`,\n"
                     "passed to the program's Fabric as LT_* variables; a device count also sets --nproc_per_node.\n";

int to_int(const std::string& flag, const std::string& v, long lo, long hi) {
  return int(kiln::detail::parse_int(v, flag, lo, hi));  // "--flag expects an integer in [lo, hi], got 'v'"
}

}  // namespace

int main(int argc, char** argv) {
  kiln::distributed::WorkerSpec spec;
  std::string rdzv_id;
  bool nproc_given = false;
  std::vector<std::pair<std::string, std::string>> fabric_env;  // LT_* for the workers
  try {
    int i = 1;
    for (; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) break;
      if (a == "--help" || a == "-h") {
        std::cout << kUsage;
        return 0;
      }
      if (a == "--standalone") {
        spec.nnodes = 1;
        spec.master_addr = "127.0.0.1";
        spec.master_port = 0;
        continue;
      }
      std::string name = a.substr(2), value;
      for (auto& c : name)
        if (c == '-') c = '_';
      auto eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        value = std::string(a.substr(a.find('=') + 1));
      } else {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        value = argv[++i];
      }
      if (name == "nproc_per_node") {
        spec.nproc_per_node = to_int(a, value, 1, 4096);
        nproc_given = true;
      } else if (name == "nnodes")
        spec.nnodes = to_int(a, value, 1, 1 << 20);
      else if (name == "accelerator" || name == "strategy" || name == "precision") {
        if (value.empty()) throw std::invalid_argument(a + " needs a value");
        for (auto& c : name) c = char(std::toupper(static_cast<unsigned char>(c)));
        fabric_env.emplace_back("LT_" + name, value);
      } else if (name == "devices") {
        if (value.empty()) throw std::invalid_argument(a + " needs a value");
        fabric_env.emplace_back("LT_DEVICES", value);
        if (value.find_first_not_of("0123456789") == std::string::npos && !nproc_given)
          spec.nproc_per_node = to_int(a, value, 1, 4096);
      } else if (name == "num_nodes") {
        spec.nnodes = to_int(a, value, 1, 1 << 20);
        fabric_env.emplace_back("LT_NUM_NODES", value);
      } else if (name == "node_rank")
        spec.node_rank = to_int(a, value, 0, (1 << 20) - 1);
      else if (name == "master_addr")
        spec.master_addr = value;
      else if (name == "master_port")
        spec.master_port = to_int(a, value, 0, 65535);
      else if (name == "rdzv_id") {
        if (value.empty() || value.size() > 200)
          throw std::invalid_argument(a + " must have 1 to 200 characters, got " + std::to_string(value.size()));
        rdzv_id = value;
      } else if (name == "timeout")
        spec.timeout = std::chrono::seconds(to_int(a, value, 1, 366 * 24 * 3600));
      else
        throw std::invalid_argument("unknown option " + a);
    }
    if (i >= argc) throw std::invalid_argument("no program given");
    if (spec.node_rank >= spec.nnodes)
      throw std::invalid_argument("--node_rank " + std::to_string(spec.node_rank) + " is not below --nnodes " +
                                  std::to_string(spec.nnodes) + "; node ranks count from 0");
    // The workers inherit this environment.
    for (const auto& [k, v] : fabric_env) ::setenv(k.c_str(), v.c_str(), 1);
    for (; i < argc; ++i) spec.argv.push_back(argv[i]);
    const char* token = std::getenv(kiln::distributed::kStoreTokenVariable);
    if ((!token || !*token) && !rdzv_id.empty()) spec.store_token = "rdzv-" + rdzv_id;
    if ((!token || !*token) && rdzv_id.empty() && spec.nnodes > 1)
      std::cerr << "kiln-run: note: a job over " << spec.nnodes << " nodes has no job token, so its store "
                << "admits anyone who reaches MASTER_PORT; give every node the same --rdzv_id or "
                << kiln::distributed::kStoreTokenVariable << "\n";
    auto r = kiln::distributed::run_workers(spec);
    if (r.exit_code != 0) std::cerr << "kiln-run: " << r.message << "\n";
    return r.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "kiln-run: " << e.what() << "\n" << kUsage;
    return 2;
  }
}
