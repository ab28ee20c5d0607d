// kiln-run: starts a training program's processes on this node, as torchrun does.
//   kiln-run --nproc_per_node 2 [--nnodes M --node_rank R --master_addr A --master_port P]
//            [--standalone] [--timeout SECONDS] program args...
// Each worker gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR and
// MASTER_PORT. When one fails, the others are stopped and kiln-run exits with its status.
#include <cstdlib>
#include <iostream>
#include <string>

#include "distributed/launch.h"

namespace {

const char* kUsage =
    "usage: kiln-run [--nproc_per_node N] [--nnodes M] [--node_rank R] [--master_addr A]\n"
    "                [--master_port P] [--standalone] [--timeout SECONDS] program [args...]\n"
    "Runs N processes of `program` on this node with torchrun's environment variables.\n"
    "--standalone: single node, a free local port (the default when --nnodes is 1).\n";

int to_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end) throw std::invalid_argument(flag + " expects an integer, got '" + v + "'");
  return int(x);
}

}  // namespace

int main(int argc, char** argv) {
  kiln::distributed::WorkerSpec spec;
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
      if (name == "nproc_per_node") spec.nproc_per_node = to_int(a, value);
      else if (name == "nnodes") spec.nnodes = to_int(a, value);
      else if (name == "node_rank") spec.node_rank = to_int(a, value);
      else if (name == "master_addr") spec.master_addr = value;
      else if (name == "master_port") spec.master_port = to_int(a, value);
      else if (name == "timeout") spec.timeout = std::chrono::seconds(to_int(a, value));
      else throw std::invalid_argument("unknown option " + a);
    }
    if (i >= argc) throw std::invalid_argument("no program given");
    for (; i < argc; ++i) spec.argv.push_back(argv[i]);
    auto r = kiln::distributed::run_workers(spec);
    if (r.exit_code != 0) std::cerr << "kiln-run: " << r.message << "\n";
    return r.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "kiln-run: " << e.what() << "\n" << kUsage;
    return 2;
  }
}
