// kiln::optim: optimizers, learning-rate schedulers and gradient clipping.
//   auto opt = std::make_shared<kiln::optim::AdamW>(model->parameters(), /*lr=*/3e-4);
//   kiln::optim::CosineAnnealingLR sched(*opt, /*T_max=*/20);
#pragma once

#include "optim/adam.h"
#include "optim/clip_grad.h"
#include "optim/grad_scaler.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"
