// The OPT model on one NVIDIA GPU: fp16 weights uploaded once, an fp16 KV cache, one activation
// arena laid out by the memory planner, and the forward written as a sequence of the ops in
// engine/cuda/ops.h and engine/cuda/gemm.h. Plain C++ header: host code includes it without nvcc.
// Only built when SEAOPT_HAVE_CUDA; elsewhere the stubs in opt_cuda_none.cpp throw.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/opt_format.h"

namespace seaopt {

namespace gguf {
struct File;
}
struct TokenSlot;
struct SeaCpuState;
namespace cpu {
struct SeaDecodeState;
}

// Whether this build contains the GPU engine.
bool cuda_engine_built();

struct OptCudaWeights;  // device weights of one model
struct OptCudaState;    // per context: KV cache, arena, stream, cuBLASLt handle
void destroy_cuda_weights(OptCudaWeights *w);
void destroy_cuda_state(OptCudaState *s);
struct OptCudaWeightsDeleter {
    void operator()(OptCudaWeights *w) const { destroy_cuda_weights(w); }
};
struct OptCudaStateDeleter {
    void operator()(OptCudaState *s) const { destroy_cuda_state(s); }
};

// Uploads the model's tensors (any of f32/f16/bf16 in the file) as fp16 to GPU `device`; Q8_0 matrices stay 8-bit
// (their values and scales apart: engine/cuda/gemm.h's WeightQ8).
// `progress(bytes_done)` is called after each tensor; it throws to cancel.
std::unique_ptr<OptCudaWeights, OptCudaWeightsDeleter> upload_opt_weights_cuda(
    const OptHparams &hp, const gguf::File &file, const uint8_t *file_data, int device, bool untied_output,
    const std::function<void(uint64_t)> &progress);

uint64_t cuda_weights_bytes(const OptCudaWeights &w);
// Whether the blocks' matrices are Q8_0 on the device (int8 values + fp16 scales; the rest fp16).
bool cuda_weights_q8(const OptCudaWeights &w);
// The CUDA device ordinal the weights live on.
int cuda_weights_device(const OptCudaWeights &w);

// Allocates the KV cache (fp16) and the activation arena for batches of up to n_batch tokens; the
// output head computes its logits in chunks of n_head_batch rows (0 = 128; capped at n_batch).
// sea (optional; its layers `on` run SEA attention with its cfg and params): also uploads those layers' estimator
// parameters (fp32) and allocates a decode state per (sequence, SEA layer) beside the KV cache, and the arena
// gets the SEA kernels' scratch (memory_plan.h).
// Refuses clearly, before allocating, if it does not fit the free device memory. plan_only: returns the state as
// planned -- its sizes, for cuda_memory_numbers -- with nothing allocated and no fit check.
std::unique_ptr<OptCudaState, OptCudaStateDeleter> create_cuda_state(const OptHparams &hp, const OptCudaWeights &w,
                                                                     uint32_t n_ctx, uint32_t n_seq, uint32_t n_batch,
                                                                     uint32_t n_head_batch = 0,
                                                                     const SeaCpuState *sea = nullptr,
                                                                     bool plan_only = false);

// The memory report of a state: weights, KV cache, arena, and the arena's largest buffers.
std::string cuda_memory_report(const OptCudaState &s);
struct CudaMemoryNumbers {
    uint64_t weights = 0, kv_cache = 0, arena = 0, workspace = 0, device_used = 0, device_free = 0;
    uint64_t sea = 0;  // SEA decode states and estimator parameters (a part of `workspace`)
};
CudaMemoryNumbers cuda_memory_numbers(const OptCudaState &s);

// Runs a validated batch (as the CPU engine's opt_forward_cpu) and writes the logits of
// output_tokens to host_logits ([n_outputs, n_vocab] fp32). greedy_token (may be null): with one output row,
// the greedy pick of its logits made on the device (the sampler's argmax: the lowest id of the largest
// logit, engine/argmax_key.h), so that a greedy sampler need not scan them; -1 where none was made (several
// rows, a NaN or only -inf among the logits, or no mapped host memory). logits_view (may be null): the forward
// may then leave the logits in the engine's pinned memory instead of copying them to host_logits (the persistent
// decode step does): *logits_view points at them, valid until the second forward after this one, and
// host_logits is not written; null where they went to host_logits.
// SEA layers: a sequence whose tokens in the batch number at least 2 and sit in consecutive batch rows runs the SEA
// prefill (from position 0, or continuing from its decode state; it also updates the state); every other token
// runs the SEA decode, one token per sequence per call, in batch order. The states of the batch's
// sequences change in place: if this throws they are invalid, and the caller rebuilds them (engine/context.cpp).
void opt_forward_cuda(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s,
                      const std::vector<TokenSlot> &tokens, const std::vector<int32_t> &output_tokens,
                      float *host_logits, int32_t *greedy_token = nullptr, const float **logits_view = nullptr);

// Greedy generation on the device (the persistent decode kernel's chain): decodes `token` at position pos of
// sequence seq, then n_steps - 1 more tokens, each the greedy pick of the step before (the sampler's argmax:
// the lowest id of the largest logit), in one launch with no host round trip between the steps. picks[i]: step
// i's pick, or -1 where its logits hold a NaN or only -inf (the steps after it decoded garbage: the caller
// discards them). stop_token >= 0: the chain stops after the first step whose pick it is (the later steps are not
// run); -1: never. Returns the number of steps run (picks written), n_steps without a stop. *logits_view (may be
// null): the last step's logits in the engine's pinned memory, as opt_forward_cuda's. The caller validates the
// sequence, the positions and the tokens. Available where opt_cuda_greedy_chain says so: the persistent kernel with
// dense layers (else decode step by step).
bool opt_cuda_greedy_chain(const OptCudaState &s);
int32_t opt_generate_greedy_cuda(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s, int32_t seq,
                                 int32_t pos, int32_t token, int32_t n_steps, int32_t stop_token, int32_t *picks,
                                 const float **logits_view);

// The fused loss: runs the batch as above but, instead of the logits, writes
// host_nll[r] = -log softmax(logits of output_tokens[r])[output_targets[r]] (natural log, fp32 on the
// GPU: log_softmax_nll after each chunk's lm_head GEMM), so only n_outputs floats leave the device.
// output_targets (one per output row) must be valid token ids: the caller validates them.
void opt_forward_cuda(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s,
                      const std::vector<TokenSlot> &tokens, const std::vector<int32_t> &output_tokens,
                      const std::vector<int32_t> &output_targets, float *host_nll);

// Sequence state (engine/state.h). The keys and values of sequence seq at positions [0, n) of every layer, to or from
// the host as [layer][K, V][head][n][head_dim] fp16 (the cache's own order).
void cuda_kv_download(const OptHparams &hp, const OptCudaState &s, uint32_t seq, uint32_t n, void *host);
void cuda_kv_upload(const OptHparams &hp, OptCudaState &s, uint32_t seq, uint32_t n, const void *host);
// seaopt_kv_seq_cp: sequence dst's keys and values at positions [0, n) and its SEA decode states (valid for position
// n) become sequence src's, on the device.
void cuda_seq_copy(const OptHparams &hp, OptCudaState &s, uint32_t src, uint32_t dst, uint32_t n);
// The SEA decode state of sequence seq in SEA layer `layer`, valid for its next position n, as the CPU engine's
// cpu::SeaDecodeState (the rows n-4..n-1 of the GPU's history rings of 8 go to the CPU's rings of 4, slot r % 4).
void cuda_sea_state_download(const OptCudaState &s, uint32_t seq, uint32_t layer, uint32_t n,
                             cpu::SeaDecodeState &out);
void cuda_sea_state_upload(OptCudaState &s, uint32_t seq, uint32_t layer, uint32_t n, const cpu::SeaDecodeState &in);

}  // namespace seaopt
