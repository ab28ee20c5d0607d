// kiln-consolidate: turns a sharded checkpoint (an index plus one file per rank, as Fabric's
// sharded strategies save) into one full checkpoint, the file a DDP or single-process run writes.
//   kiln-consolidate checkpoints/last.safetensors full.safetensors
#include <cstring>
#include <iostream>

#include "fabric/checkpoint.h"
#include "fabric/safetensors.h"

namespace {
const char* kUsage = "usage: kiln-consolidate INDEX OUTPUT\n"
                     "  INDEX   the path a sharded run saved to (the index; the rank files lie beside it)\n"
                     "  OUTPUT  the full checkpoint to write: optimizer state per parameter, as DDP saves it\n";
}

int main(int argc, char** argv) {
  if (argc == 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h"))) {
    std::cout << kUsage;
    return 0;
  }
  if (argc != 3) {
    std::cerr << kUsage;
    return 2;
  }
  try {
    if (!kiln::is_sharded_checkpoint(argv[1])) {
      std::cerr << "kiln-consolidate: " << argv[1] << " is not the index of a sharded checkpoint "
                << "(missing, or a full checkpoint already, which loads as it is)\n";
      return 1;
    }
    kiln::consolidate_checkpoint(argv[1], argv[2]);
    auto out = kiln::load_safetensors(argv[2]);
    std::cout << "kiln-consolidate: wrote " << argv[2] << " (" << out.tensors.size() << " tensors)\n";
  } catch (const kiln::Error& e) {
    std::cerr << "kiln-consolidate: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {  // not kiln's own: still a message and a status
    std::cerr << "kiln-consolidate: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
