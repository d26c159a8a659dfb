// The activation memory planner: data, not code scattered in kernels.
//
// Each activation buffer of a forward is declared as (name, bytes, first step, last step), where a
// step is one op of the forward and the range is inclusive: the buffer is live from the op that
// first writes it to the op that last reads it. plan_memory packs the buffers into ONE arena with a
// greedy-by-size offset assignment, so that buffers whose lifetimes do not intersect share bytes.
// Two buffers used by the same op (one read, one written) have intersecting lifetimes and never
// alias. The plan is deterministic, printable (format_memory_plan) and checkable (verify_memory_plan).
//
// The KV cache, SEA decode state and weights are not activations: they sit outside the arena.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/opt_format.h"

namespace seaopt {

// Fixed layouts (no lifetimes): regions one after another, each at a multiple of 256 bytes from the start (the
// device copy of a model's weights, the SEA parameters and scratch regions, the SEA decode state).
struct SequentialPlacer {
    uint64_t total = 0;  // bytes placed so far (a multiple of 256)
    uint64_t place(uint64_t bytes) {
        const uint64_t at = total;
        total += (bytes + 255) / 256 * 256;
        return at;
    }
};

struct BufferRequest {
    std::string name;
    uint64_t bytes = 0;
    int first_step = 0;  // inclusive
    int last_step = 0;   // inclusive
};

struct PlannedBuffer {
    BufferRequest req;
    uint64_t offset = 0;  // from the start of the arena; a multiple of the plan's alignment
};

struct MemoryPlan {
    std::vector<PlannedBuffer> buffers;  // in placement order: largest first (see plan_memory)
    uint64_t arena_bytes = 0;            // max over buffers of offset + bytes (0 for no bytes at all)
    uint64_t alignment = 256;
};

// Deterministic. Greedy by size: buffers are placed largest first (ties: lower first_step, then
// name, then last_step); each takes the lowest multiple of `alignment` at which it overlaps no
// already-placed buffer whose lifetime intersects its own. A zero-size buffer takes offset 0 and
// no space. The result does not depend on the order of `requests`, except between requests equal
// in all four fields (which are interchangeable).
// Throws seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT) for first_step > last_step, alignment 0, or
// sizes whose placement would overflow 64 bits.
MemoryPlan plan_memory(std::vector<BufferRequest> requests, uint64_t alignment = 256);

// Checks a plan: nonzero alignment, every offset aligned, every buffer inside the arena, every
// lifetime well formed, and every pair of buffers with intersecting lifetimes disjoint in bytes.
// Throws seaopt::Error(SEAOPT_ERR_INTERNAL) naming the offending buffer (or pair).
void verify_memory_plan(const MemoryPlan &plan);

// The largest total of bytes live at any one step: a lower bound for any arena holding `requests`
// (ignoring alignment). The planner is optimal for a request set when arena_bytes equals it.
uint64_t peak_live_bytes(const std::vector<BufferRequest> &requests);

// The sum of all bytes requested: what one allocation per buffer would take.
uint64_t total_requested_bytes(const std::vector<BufferRequest> &requests);

// A human-readable report: a line with the arena MiB (with the peak live bytes and the naive sum for
// comparison), then the largest buffers (name, MiB, offset, steps), at most `max_rows` of them.
std::string format_memory_plan(const MemoryPlan &plan, size_t max_rows = 10);

// ---- the OPT forward ---------------------------------------------------------------------------
//
// The activation buffers of one CUDA forward of an OPT model for a batch of n_tokens tokens (T), of
// which n_outputs (N) want logits — or, when the engine runs the head in chunks, N = the chunk size
// (output_rows still holds all T indices). C = n_embd, D = n_embd_proj, F = n_ff, V = n_vocab; fp16 = 2 bytes.
//
// The layer loop is planned as ONE period that stands for every layer (steps kOptStepLayer0 ..
// kOptStepLayer0 + kOptStepsPerLayer - 1): every layer runs the same ops on the same buffers at the
// same offsets, and at a layer boundary only x (and, in post-LN models, h16) holds data the next
// layer reads, and those two are live through the whole period. So the plan of one period is valid
// for all layers, while ops of one layer can still share bytes (ff with qkv and attn). Unrolling the
// loop with one [first, last] interval per buffer would instead make every per-layer buffer live
// from layer 0 to the last layer and forbid that sharing; tests/test_memory_plan.cpp checks the
// period plan against the unrolled per-layer timeline.
//
// Steps (ops) and buffers:
//   0  upload batch metadata      ids i32[T] (read at 1), positions i32[T], seq_ids i32[T] and
//                                 tiles 16 B x T (attention tiles) read through the layers,
//                                 output_rows i32[T] (read at the head gather),
//                                 targets i32[T] (the fused loss's target per output row; read
//                                 at the last step)
//   1  embed                      x f32[T,C] (to the head gather); projection models (D != C) also
//                                 embd_proj_in f16[T,D]: gather, then a GEMM into x (dies at 1)
//   2  attn LN                    pre-LN: LN(x) -> h16 f16[T,C] (read at 3 only; steps 2-3 are one
//                                 call, cuda::gemm_f16_layernorm, which for decode batches fuses the
//                                 LayerNorm into the GEMV and leaves h16 unused); post-LN: none
//                                 (layer 0: the fp16 cast of x after the embedding; later layers:
//                                 the previous LN2)
//   3  QKV GEMM + KV append       h16 -> qkv f16[T,3C]
//   4  attention                  qkv -> attn f16[T,C] (a decode batch: the KV append happens here,
//                                 and attn_partials, the split-K scratch of the decode kernel —
//                                 cuda::attention_decode_partials_bytes(T, n_head, head_dim) — lives here only)
//   5  out-proj GEMM              attn -> += x
//   6  ffn LN                     pre-LN: LN(x) -> h16_ffn f16[T,C]; post-LN: the attention block's
//                                 LN, x = LN(x) in place, and -> h16
//   7  FC1 (bias + ReLU)          h16_ffn (post-LN: h16) -> ff f16[T,F]
//   8  FC2                        ff -> += x (post-LN: then x = LN(x) in place, writing h16 for the
//                                 next layer's QKV: so h16 is live through the whole period)
//   9  head gather                x[output_rows] -> head_x f32[N,C]
//   10 final LN / cast            head_x -> head16 f16[N,C] (pre-LN: the final LayerNorm;
//                                 post-LN models have none: an fp16 cast). The LayerNorm is part of
//                                 the next GEMM's call (cuda::gemm_*_layernorm: fused into it for
//                                 decode batches, head16 its scratch), so head_x lives to that GEMM
//   11 project_out GEMM           (projection models only) head16 -> head_proj16 f16[N,D]
//   11|12 lm_head GEMM            -> logits f32[N,V]
//   12|13 copy out / loss         logits are read by the caller's copy (they live to the end) or,
//                                 with the fused loss (seaopt_decode_nll), by log_softmax_nll:
//                                 logits + targets -> nll f32[N], which is copied out instead
//
// SEA attention (sea_scratch_bytes > 0, the context's SEA layers): the attention step of a SEA layer also uses
//   sea_scratch  the SEA kernels' scratch (attention/sea_layout.h: the larger of one prefill's — Performer chunk
//                states, then Â [T,H,K], then Σv [T,H,64]; the decoder image and conv1 rows [T,2H,K/4]; gates; the
//                selected-cell masks [T,H,K/32] — and one decode call's), step 4 only;
//   sea_rows     i32[3T]: row, position and sequence of each token run through the SEA decode (step 0 to the
//                layers' end).
// The sparse attention enumerates each query's keys from its mask row and materialises nothing per key, so no
// O(T·H·k) buffer exists. The SEA decode states (per sequence and SEA layer) sit beside the KV cache.
// Q8_0 weights (dequant_scratch_bytes > 0: cuda::gemm_q8_scratch_bytes for the largest matrix at T rows):
//   dequant_w16  the fp16 copy of one matrix, made before each GEMM of more than 16 rows (gemm.h: gemm_q8_*),
//                steps 3 to 8 (the four GEMMs of a layer).
// Throws seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT) for n_tokens == 0 or n_outputs > n_tokens.
inline constexpr int kOptStepLayer0 = 2;
inline constexpr int kOptStepsPerLayer = 7;
std::vector<BufferRequest> opt_forward_buffers(const OptHparams &hp, uint32_t n_tokens, uint32_t n_outputs,
                                               uint64_t sea_scratch_bytes = 0, uint64_t dequant_scratch_bytes = 0);

}  // namespace seaopt
