// The two short Fabric snippets that go with fabric_cifar10 (its Python original has them too):
// launching with a function, which every process runs, and resuming from the checkpoint that
// fabric_cifar10 writes after each epoch. Run it where checkpoint.ckpt is.
//   ./fabric_cifar10 && ./fabric_resume
//   kiln-run --nproc_per_node 2 ./fabric_resume       # every process loads the same checkpoint
#include "examples/simple_cnn.h"
#include "kiln.h"

void run(kiln::Fabric& fabric) {
  auto model = std::make_shared<SimpleCNN>();
  auto optimizer = std::make_shared<kiln::optim::AdamW>(model->parameters(),
                                                        kiln::optim::AdamWOptions{.lr = 3e-4, .weight_decay = 1e-2});
  std::tie(model, optimizer) = fabric.setup(model, optimizer);

  kiln::State state{{"model", model}, {"optimizer", optimizer}, {"epoch", int64_t(0)}};
  fabric.load("checkpoint.ckpt", state);
  fabric.print("Resuming after epoch ", std::get<int64_t>(state["epoch"]));
}

int main() try {
  kiln::Fabric fabric({.accelerator = "auto", .devices = "auto"});
  fabric.launch(run);
} catch (const kiln::Error& e) {
  std::cerr << "fabric_resume: " << e.what() << "\n";
  return 1;
}
