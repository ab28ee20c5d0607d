// Stand-ins for the CUDA backend's entry points in builds without CUDA.
#include "kernels/backend.h"
#include "kernels/runtime.h"

namespace kiln::kernels {

Backend* cuda_backend() { return nullptr; }
int cuda_device_count() { return 0; }
DeviceRuntime* cuda_runtime() { return nullptr; }

}  // namespace kiln::kernels
