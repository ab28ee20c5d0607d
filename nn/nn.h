// kiln::nn: modules, layers, initialisers and the functional forms. Include this for all of nn.
//   auto net = std::make_shared<kiln::nn::Linear>(784, 10);
//   auto loss = kiln::nn::functional::cross_entropy(net->forward(x), y);
#pragma once

#include "nn/activation.h"
#include "nn/containers.h"
#include "nn/conv1d.h"
#include "nn/embedding.h"
#include "nn/functional.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/normalization.h"
#include "nn/ordered_dict.h"
#include "nn/pooling.h"
#include "nn/sequential.h"
#include "nn/size.h"
