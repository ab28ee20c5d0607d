// Writes the files that check_interop.py reads with the Python tools (safetensors, tensorboard,
// torch): usage: interop_writer OUT_DIR
#include <filesystem>
#include <iostream>

#include "examples/simple_cnn.h"
#include "fabric/fabric.h"
#include "kiln.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: interop_writer OUT_DIR\n";
    return 2;
  }
  namespace fs = std::filesystem;
  fs::path out = argv[1];
  fs::create_directories(out);
  try {
    using kiln::DType;
    auto ar = [](int64_t n, DType d) { return kiln::arange(double(n), {.dtype = DType::f64}).to(d); };
    // Values: arange(n) - 3 in each dtype (bool: arange % 2), in the shapes named below.
    std::map<std::string, kiln::Tensor> t{
        {"f32", (ar(6, DType::f64) - 3.0).to(DType::f32).view({2, 3})},
        {"f64", (ar(4, DType::f64) - 3.0).view({4})},
        {"f16", (ar(4, DType::f64) - 3.0).to(DType::f16).view({2, 2})},
        {"i32", (ar(4, DType::f64) - 3.0).to(DType::i32)},
        {"i64", (ar(4, DType::f64) - 3.0).to(DType::i64)},
        {"u8", ar(4, DType::u8)},
        {"bool", kiln::ne(ar(4, DType::i64) - 2 * (ar(4, DType::i64) / 2).to(DType::i64), 0.0)}};
    kiln::save_safetensors((out / "numpy.safetensors").string(), t, {{"origin", "kiln"}});
    kiln::save_safetensors((out / "bf16.safetensors").string(), {{"bf16", (ar(4, DType::f64) - 3.0).to(DType::bf16)}});

    auto tb = std::make_shared<kiln::TensorBoardLogger>(out.string(), "tb", 0);
    for (int step = 0; step < 5; ++step) tb->log_metrics({{"loss", 1.0 / (step + 1)}, {"acc", 0.1 * step}}, step);
    tb->finalize();

    kiln::manual_seed(3);
    auto model = std::make_shared<SimpleCNN>(1, 10);
    model->eval();
    auto x = kiln::randn({2, 1, 32, 32});
    kiln::Tensor y;
    {
      kiln::NoGradGuard g;
      y = model->forward(x);
    }
    auto opt = std::make_shared<kiln::optim::AdamW>(model->parameters(), 1e-3);
    kiln::save_checkpoint((out / "checkpoint.safetensors").string(),
                          {{"model", model}, {"optimizer", opt}, {"input", x}, {"output", y}, {"epoch", int64_t(4)}});
  } catch (const kiln::Error& e) {
    std::cerr << "interop_writer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
