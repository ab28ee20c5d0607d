// Builds without NCCL (no CUDA backend, or NCCL not found): the NCCL backend is a clear error.
#include "core/error.h"
#include "distributed/communicator.h"

namespace kiln::distributed {

bool nccl_is_built() { return false; }

std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Store>, int, int, const ProcessGroupOptions&,
                                                     int) {
  fail("init_process_group: backend \"nccl\" is not available: this kiln was built without its CUDA "
       "backend or without NCCL (meson -Dcuda=enabled with NCCL installed); use \"gloo\" for CPU tensors");
}

}  // namespace kiln::distributed
