// kiln's data layer in one include: datasets, transforms, samplers, the DataLoader, the CIFAR-10
// and IDX readers and the reference pipelines.
//   #include "data/data.h"
//   kiln::data::DataLoader loader(std::make_shared<kiln::data::FashionMNIST>(), {.batch_size = 64});
#pragma once

#include "data/archive.h"
#include "data/cifar.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/device_image_loader.h"
#include "data/idx.h"
#include "data/reference.h"
#include "data/sampler.h"
#include "data/transforms.h"
