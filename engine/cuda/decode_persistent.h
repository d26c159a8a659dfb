// The batch-1 decode step of a pre-LN OPT as ONE persistent kernel (engine/cuda/decode_persistent.cu).
//
// Why: a decode step streams every weight once (2.6 GB for OPT-1.3B), so its floor is the HBM read.
// As ~100 kernels (a GEMV per matrix, attention, LayerNorms) it loses a launch gap and a pipeline
// drain and fill at every kernel boundary; measured on H100, a pure read of the decode's matrices
// takes 0.846 ms as one kernel and 1.139 ms as 97. Here one block per SM streams its share of every
// matrix of the step, layer after layer, into a ring of shared-memory slots (a producer warp with
// bulk asynchronous copies, sm_90), while the other warps compute; the data dependences between
// the matrices (qkv -> attention -> out-projection -> fc1 -> fc2 -> next layer) are grid-wide
// barriers that only the compute warps wait on. Weights do not depend on activations, so the
// producer keeps reading the next matrices while the grid waits: the read never stops.
//
// The step computes what the kernel-per-op path computes (model/opt_cuda.cpp), in another fp32
// summation order: fp32 residual, fp16 GEMV inputs and outputs, fp32 accumulation, the same
// attention arithmetic (log2-domain online softmax, fp32). The default for batch-1 decode where it
// fits (SEAOPT_PERSISTENT_DECODE=0 turns it off, model/opt_cuda.cpp): on H100 at the OPT-1.3B shape,
// tg128 ~856 t/s against the captured kernel-per-op step's ~706-723, and ~737 against ~639 at depth
// 1,920 (docs/development.md). Built for heads of 64, 80 and 128 and hidden sizes up to 4,096 (5,120
// with heads of 128): OPT-125m, 1.3B, 2.7B, 6.7B, 13B. Where the shape or the device does not fit
// (persistent_decode_plan says why: post-LN OPT-350m, pre-sm_90 GPUs), the engine keeps the kernel-per-op
// path. With SEA layers the engine runs the step in segments (PersistentDecodeArgs::layer_begin ...): the dense kernel
// up to a SEA layer's qkv, that layer's kernel-per-op SEA decode, the next segment from its out-projection, and so on
// ("the split step", ~5-8% faster than the kernel-per-op SEA step on the H200). SEA layers can also run inside the
// step (PersistentLayer::sea; heads of 64; a kernel instantiation of its own): correct, but slower than both, so the
// engine asks for it only with SEAOPT_PERSISTENT_SEA=1 (model/opt_cuda.cpp; docs/development.md has the
// measurements). Q8_0 matrices stream as
// their int8 rows and fp16 scales (PersistentDecodeShape::q8; dense layers; kernel instantiations of their own):
// OPT-1.3B tg128 ~1,100 t/s on H100 against ~1,000 for fp16, bound by the int8 -> fp16 conversion and the handovers.
#pragma once

#include <cstdint>
#include <string>

#include "attention/sea_cuda.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {

// A SEA layer's attention as the kernel runs it (sea.md §2.12, the decode of attention/sea_cuda.h inside the step):
// the estimator parameters and the layer's decode states, sequence s's at states + s·(the plan's sea_state_stride).
struct PersistentSeaLayer {
    SeaDeviceParams p;
    char *states = nullptr;
};

// One pre-LN OPT layer as the kernel reads it (device pointers; biases feeding the fp32 residual
// in fp32). k_cache / v_cache: this layer's [seq][head][n_ctx][head_dim] fp16 (head_dim 64, 80 or 128).
// sea: null for dense attention; else a device pointer to the layer's PersistentSeaLayer.
// The four matrices are fp16 (qkv_w, o_w, fc1_w, fc2_w), or where PersistentDecodeShape::q8 is set Q8_0
// (engine/cuda/gemm.h's WeightQ8: qkv_q8 ... fc2_q8; the fp16 pointers are then unused).
struct PersistentLayer {
    const half_t *ln1_w, *ln1_b, *qkv_w, *qkv_b, *o_w;
    const float *o_b;
    const half_t *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w;
    const float *fc2_b;
    half_t *k_cache, *v_cache;
    const PersistentSeaLayer *sea;
    WeightQ8 qkv_q8, o_q8, fc1_q8, fc2_q8;
};

// sea_image_floats: 2H·K/4 (a SEA image row) where some layer runs SEA attention, else 0.
// q8: the layers' four matrices are Q8_0 (PersistentLayer's *_q8): the stream carries their int8 values and scales,
// half the bytes of fp16 (the lm_head stays fp16).
struct PersistentDecodeShape {
    int n_layer = 0, C = 0, F = 0, V = 0, H = 0, head_dim = 0, n_ctx = 0, pos_offset = 0;
    float eps = 1e-5f;
    int sea_image_floats = 0;
    bool q8 = false;
};

// How the kernel runs on a device, or why it cannot (ok == false, why says it).
struct PersistentDecodePlan {
    bool ok = false;
    std::string why;
    int grid = 0;        // blocks: one per SM
    int slots = 0;       // shared-memory ring slots per block
    int slot_bytes = 0;  // bytes per slot (>= the longest weight row)
    int in_flight = 0;   // slots being copied at once, at most (SEAOPT_PERSISTENT_INFLIGHT; default 2)
    int splits = 0;      // key ranges per head in the attention phase
    int parts_bytes = 0;    // shared memory for the row parts of one matrix
    int head_rows = 0;      // lm_head rows a block takes per round (SEAOPT_PERSISTENT_HEAD_ROWS; default 128)
    bool compact = false;   // the vector, row parts and attention sums share shared memory (SEAOPT_PERSISTENT_COMPACT)
    int tags_per_step = 0;  // handover tags a step uses (its layers' and the greedy chain's pick)
    bool evict_first = true;  // the weight stream as L2 evict-first (SEAOPT_PERSISTENT_EVICT_FIRST)
    int mode = 0;           // 0; timing modes 1 (weight stream only), 2 (no handover waits), 3 (no weight stream):
                            // SEAOPT_PERSISTENT_MODE
    size_t shared_bytes = 0;
    // SEA layers (persistent_decode_plan's sea argument): their config (k, K, ... as the context runs them) and the
    // bytes between two sequences' decode states.
    bool sea = false;
    cpu::SeaConfig sea_cfg;
    size_t sea_state_stride = 0;
};
// sea: the SEA config where some layer runs SEA attention (then shape.sea_image_floats = 2H·K/4, and the states of a
// layer are sea_state_stride bytes apart), else null. Refused (ok false, why) where the kernel has no SEA phase for
// the shape: SEA needs heads of 64, H <= the grid, and its buffers in the shared memory.
PersistentDecodePlan persistent_decode_plan(const PersistentDecodeShape &shape, int device,
                                            const cpu::SeaConfig *sea = nullptr, size_t sea_state_stride = 0);

// Device scratch the step needs, zeroed once at allocation and kept between steps: per-head merge
// counters, attention partials, the flagged handover buffers of x, q/k/v, attention and ff, and for SEA
// those of the image, conv1 and conv2 rows.
uint64_t persistent_decode_scratch_bytes(const PersistentDecodePlan &plan, const PersistentDecodeShape &shape);

// SEAOPT_PERSISTENT_PROFILE: clock64 spans of thread 0 per block, summed over steps ([grid][spans]).
// The SEA spans split "attention" of SEA layers into its sub-phases (each with its wait), in the blocks that run them;
// of them, the estimator's wait for q, k, v, the select's wait for the conv2 row, and the select's CNN output + top-k.
constexpr int kPersistentProfileSpans = 20;
inline constexpr const char *kPersistentProfileNames[kPersistentProfileSpans] = {
    "total", "gemv", "full-wait", "ll-wait", "attention", "gemv-setup", "gemv-loop", "gemv-epilogue",
    "qkv", "out", "fc1", "fc2", "head", "sea-estimator", "sea-conv1", "sea-conv2", "sea-select",
    "sea-estimator-wait", "sea-select-wait", "sea-select-topk"};

struct PersistentDecodeArgs {
    const PersistentLayer *layers = nullptr;  // device array [n_layer]
    const half_t *tok_embd = nullptr, *pos_embd = nullptr, *out_norm_w = nullptr, *out_norm_b = nullptr;
    const half_t *lm_head = nullptr;
    float *logits = nullptr;   // [V]
    // [grid] or null: block b's greedy key of the logits it computed (engine/argmax_key.h); the max over the
    // blocks is the step's greedy pick. May be mapped host memory.
    uint64_t *argmax_parts = nullptr;
    void *scratch = nullptr;   // persistent_decode_scratch_bytes, zeroed at allocation
    long long *profile = nullptr;  // [grid][kPersistentProfileSpans] clock sums (SEAOPT_PERSISTENT_PROFILE), or null
    int token = 0, pos = 0, seq = 0;
    // A greedy chain: n_steps > 1 steps in one launch, step i decoding at pos + i the greedy pick of step i - 1 (the
    // sampler's argmax, engine/argmax_key.h) with no host round trip between steps; picks[i] (may be mapped host
    // memory) is step i's pick, or -1 where its logits hold a NaN or only -inf (the later steps then decode token 0:
    // discard them). The logits and argmax_parts are those of the last step. Dense layers and timing mode 0 only.
    int n_steps = 1;
    int32_t *picks = nullptr;
    // A chain stops after the first step whose pick is stop_token (>= 0; -1: never): the later steps are not run and
    // their picks not written, the logits are that step's.
    int32_t stop_token = -1;
    // SEA layers: a step at a position up to this pulls each head's cached keys and values into L2 for the sparse
    // attention (as cuda::SeaKvCache::prefetch_max_pos for the kernel-per-op step); 0: never.
    int sea_prefetch_max_pos = 0;
    // A segment of the step: the split step (persistent_decode_segments' caller, model/opt_cuda.cpp) runs SEA
    // layers' attention as the kernel-per-op SEA kernels between launches of the kernel, each launch running the
    // dense part between them. Layers [layer_begin, layer_end) (layer_end -1: n_layer); attn_in != null: layer_begin
    // starts at its out-projection, its attention output (fp16 [C]) read from attn_in (written before the launch),
    // the residual from the previous segment's handover of x (or the embedding where layer_begin is 0); qkv_out !=
    // null: the segment stops after layer_end - 1's qkv GEMV, which also writes q, k, v there (fp16 [3C]; K and V go
    // to the cache as always), and leaves out the head. A step's segments share its handover tags: *tag_base advances
    // after the segment that ends the step (qkv_out null). n_steps 1, timing mode 0, a plan without SEA (the dense
    // kernels).
    int layer_begin = 0, layer_end = -1;
    const half_t *attn_in = nullptr;
    half_t *qkv_out = nullptr;
};

// Enqueues one step (token at position pos of sequence seq: K and V go to the cache, the logits to
// args.logits), or args.n_steps of a greedy chain, or a segment of a step (PersistentDecodeArgs::layer_begin).
// *tag_base is the first handover tag of the step (start at 1 with a zeroed scratch); it advances by n_steps x
// plan.tags_per_step once the launch is accepted, for a segment only once the step's last one is. Throws
// seaopt::Error on a launch failure or a chain or segment the plan cannot run (SEA layers, a timing mode).
void persistent_decode(const PersistentDecodePlan &plan, const PersistentDecodeShape &shape,
                       const PersistentDecodeArgs &args, uint32_t *tag_base, cudaStream_t stream);

}  // namespace seaopt::cuda
