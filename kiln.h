// kiln: a C++ tensor, autograd and training framework. Include this one header.
//   #include <kiln/kiln.h>
//   auto x = kiln::randn({8, 4});
#pragma once

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/cuda.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/gradcheck.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "data/data.h"
#include "fabric/fabric.h"
#include "nn/nn.h"
#include "optim/optim.h"

// The distributed layer is built where Gloo is found (-Ddistributed=auto).
#if __has_include("distributed/distributed.h")
#include "distributed/distributed.h"
#endif
