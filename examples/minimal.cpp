// The five-line change: a plain kiln training loop handed to Fabric (marked "// fabric").
//   ./minimal      prints the loss every 50 steps and where the checkpoint went
#include <iostream>

#include "data/data.h"
#include "fabric/fabric.h"
#include "kiln.h"
#include "nn/nn.h"
#include "optim/optim.h"

int main() {
  kiln::Fabric fabric({.accelerator = "auto", .precision = "32-true"});  // fabric
  fabric.launch();                                                       // fabric
  kiln::Fabric::seed_everything(0);
  // y = class of the largest of 4 inputs: a toy task that a small MLP learns in seconds.
  auto x = kiln::randn({512, 4});
  auto dataset = std::make_shared<kiln::data::TensorDataset>(x, x.argmax(1));
  auto model = std::make_shared<kiln::nn::Sequential>(std::initializer_list<std::shared_ptr<kiln::nn::Module>>{
      std::make_shared<kiln::nn::Linear>(4, 32), std::make_shared<kiln::nn::ReLU>(),
      std::make_shared<kiln::nn::Linear>(32, 4)});
  auto optimizer = std::make_shared<kiln::optim::AdamW>(model->parameters(), 1e-2);
  std::tie(model, optimizer) = fabric.setup(model, optimizer);                      // fabric
  auto loader = fabric.setup_dataloaders(std::make_shared<kiln::data::DataLoader>(  // fabric
      dataset, kiln::data::DataLoaderOptions{.batch_size = 32, .shuffle = true}));
  int64_t step = 0;
  for (int epoch = 0; epoch < 5; ++epoch) {
    for (auto& [inputs, targets] : *loader) {
      optimizer->zero_grad();
      auto loss = kiln::cross_entropy(model->forward(inputs), targets);
      fabric.backward(loss);  // fabric
      optimizer->step();
      if (++step % 50 == 0) fabric.print("step ", step, " loss ", loss.item<double>());
    }
  }
  fabric.save("minimal.safetensors", {{"model", model}, {"optimizer", optimizer}, {"step", step}});
  fabric.print("saved minimal.safetensors");
}
