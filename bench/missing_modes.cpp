// Modes whose source file is not part of this build report so, instead of failing to link.
#include "bench.h"
#include "core/error.h"

namespace kiln::bench {
#if !KILN_BENCH_HAVE_TRAIN
int run_train(const Args&) { fail("kiln_bench: the train mode is not built"); }
int run_infer(const Args&) { fail("kiln_bench: the infer mode is not built"); }
#endif
#if !KILN_BENCH_HAVE_LOADER
int run_loader(const Args&) { fail("kiln_bench: the loader mode is not built"); }
#endif
#if !KILN_BENCH_HAVE_KERNELS
int run_kernels(const Args&) { fail("kiln_bench: the kernels mode is not built"); }
#endif
#if !KILN_BENCH_HAVE_MODELS
int run_attention(const Args&) { fail("kiln_bench: the attention mode is not built"); }
int run_gpt(const Args&) { fail("kiln_bench: the gpt mode is not built"); }
int run_resnet(const Args&) { fail("kiln_bench: the resnet mode is not built"); }
#endif
}  // namespace kiln::bench
