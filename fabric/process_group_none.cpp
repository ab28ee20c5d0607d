// Builds without distributed/ (no Gloo): the multi-process strategies are unavailable.
#include "fabric/process_group.h"

namespace kiln::detail {

std::shared_ptr<FabricProcessGroup> start_process_group(int processes_per_node, bool match_launcher, bool sharded,
                                                        std::chrono::milliseconds) {
  fail("Fabric::launch: ", sharded ? "the sharded strategy needs" : "several processes need",
       " kiln's distributed layer, which ",
       "this build lacks (Gloo, Debian's libgloo-dev, was not found when kiln was configured); ",
       "install it and reconfigure, or use devices \"1\" and strategy \"auto\"");
}

// Without the distributed layer a launcher's variables cannot be read; each process runs alone.
std::optional<LauncherInfo> detect_launcher() { return std::nullopt; }

}  // namespace kiln::detail
