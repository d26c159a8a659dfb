// Builds without CUDA: the GPU engine is absent; asking for it is a clear error.
#include "engine/error.h"
#include "model/opt_cuda.h"

namespace seaopt {

struct OptCudaWeights {};
struct OptCudaState {};

bool cuda_engine_built() { return false; }
void destroy_cuda_weights(OptCudaWeights *w) { delete w; }
void destroy_cuda_state(OptCudaState *s) { delete s; }

std::unique_ptr<OptCudaWeights, OptCudaWeightsDeleter> upload_opt_weights_cuda(const OptHparams &, const gguf::File &,
                                                                               const uint8_t *, int, bool,
                                                                               const std::function<void(uint64_t)> &) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support (rebuild with nvcc installed)");
}
uint64_t cuda_weights_bytes(const OptCudaWeights &) { return 0; }
bool cuda_weights_q8(const OptCudaWeights &) { return false; }
int cuda_weights_device(const OptCudaWeights &) { return 0; }
std::unique_ptr<OptCudaState, OptCudaStateDeleter> create_cuda_state(const OptHparams &, const OptCudaWeights &,
                                                                     uint32_t, uint32_t, uint32_t, uint32_t,
                                                                     const SeaCpuState *, bool) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}
std::string cuda_memory_report(const OptCudaState &) { return ""; }
CudaMemoryNumbers cuda_memory_numbers(const OptCudaState &) { return {}; }
void opt_forward_cuda(const OptHparams &, const OptCudaWeights &, OptCudaState &, const std::vector<TokenSlot> &,
                      const std::vector<int32_t> &, float *, int32_t *, const float **) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}
bool opt_cuda_greedy_chain(const OptCudaState &) { return false; }
int32_t opt_generate_greedy_cuda(const OptHparams &, const OptCudaWeights &, OptCudaState &, int32_t, int32_t, int32_t,
                                 int32_t, int32_t, int32_t *, const float **) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}
void opt_forward_cuda(const OptHparams &, const OptCudaWeights &, OptCudaState &, const std::vector<TokenSlot> &,
                      const std::vector<int32_t> &, const std::vector<int32_t> &, float *) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}

void cuda_kv_download(const OptHparams &, const OptCudaState &, uint32_t, uint32_t, void *) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}
void cuda_kv_upload(const OptHparams &, OptCudaState &, uint32_t, uint32_t, const void *) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}
void cuda_seq_copy(const OptHparams &, OptCudaState &, uint32_t, uint32_t, uint32_t) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}
void cuda_sea_state_download(const OptCudaState &, uint32_t, uint32_t, uint32_t, cpu::SeaDecodeState &) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}
void cuda_sea_state_upload(OptCudaState &, uint32_t, uint32_t, uint32_t, const cpu::SeaDecodeState &) {
    throw Error(SEAOPT_ERR_UNSUPPORTED, "this build of seaopt has no CUDA support");
}

}  // namespace seaopt
