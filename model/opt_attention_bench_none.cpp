// Builds without CUDA: the attention-layer benchmark times CUDA kernels, so it is refused clearly (after the
// parameter checks of opt_attention_bench.cpp, which every build runs).
#include "engine/error.h"
#include "model/opt_attention_bench.h"

namespace seaopt {

void bench_attention_layer_cuda(const OptCudaWeights &, const AttentionBenchJob &, seaopt_attention_layer_bench_result &) {
    throw_unsupported("attention-layer benchmark: this build of seaopt has no CUDA support (rebuild with nvcc installed)");
}

}  // namespace seaopt
