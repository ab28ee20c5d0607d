// CompiledStep: eager warm-up per input signature, then capture into a graph whose inputs are
// buffers allocated before the capture, then copy-and-replay.
#include "fabric/compiled_step.h"

#include "core/error.h"
#include "core/ops.h"

namespace kiln {
namespace {

std::string signature(const std::vector<Tensor>& inputs) {
  std::string key;
  for (const Tensor& t : inputs) {
    KILN_CHECK(t.defined(), "compile_step: an input tensor is undefined");
    key += std::string(dtype_name(t.dtype())) + "@" + t.device().str() + shape_str(t.sizes()) + ";";
  }
  return key;
}

}  // namespace

CompiledStep::CompiledStep(Fn fn, bool cuda_graphs, Version version, int warmup)
    : fn_(std::move(fn)), graphs_(cuda_graphs), version_(std::move(version)), warmup_(warmup) {
  KILN_CHECK(fn_, "compile_step: the step function is empty");
  KILN_CHECK(warmup_ >= 1, "compile_step: at least one eager warm-up call is needed before a capture, got ", warmup_);
}

std::vector<Tensor> CompiledStep::operator()(const std::vector<Tensor>& inputs) {
  if (!graphs_) return fn_(inputs);
  for (const Tensor& t : inputs)
    if (!t.defined() || !t.is_cuda()) return fn_(inputs);  // graphs hold device work only
  Entry& e = entries_[signature(inputs)];
  if (e.calls < warmup_) {
    ++e.calls;
    return fn_(inputs);
  }
  std::vector<double> version = version_ ? version_() : std::vector<double>{};
  if (!e.graph.is_captured() || version != e.version) {
    e.graph.reset();  // waits for the old graph's replays, then frees its memory for reuse
    e.inputs.clear();
    for (const Tensor& t : inputs) e.inputs.push_back(empty_like(t));
    for (size_t i = 0; i < inputs.size(); ++i) e.inputs[i].copy_(inputs[i]);
    e.graph.capture([&] { e.outputs = fn_(e.inputs); });
    e.version = std::move(version);
    ++captures_;
  } else {
    for (size_t i = 0; i < inputs.size(); ++i) e.inputs[i].copy_(inputs[i]);
  }
  e.graph.replay();
  ++replays_;
  return e.outputs;
}

}  // namespace kiln
