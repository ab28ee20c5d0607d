// kiln's distributed layer in one include: environment, rendezvous store, launcher,
// communicators, DDP's Reducer, and the sharded strategies (ShardedDataParallel: ZeRO-2;
// ZeroRedundancyOptimizer: ZeRO-1).
//   auto env = kiln::distributed::launch(2);
//   auto comm = kiln::distributed::init_process_group(env);
//   kiln::distributed::Reducer reducer(comm, params);
#pragma once

#include "distributed/communicator.h"
#include "distributed/ddp.h"
#include "distributed/env.h"
#include "distributed/launch.h"
#include "distributed/reducer.h"
#include "distributed/sharded.h"
#include "distributed/store.h"
#include "distributed/zero.h"
