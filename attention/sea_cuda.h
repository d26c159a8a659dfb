// SEA attention on the GPU: prefill of one sequence (positions 0..T-1, or a continuation p0..p0+T-1 from its decode
// state), and the incremental decode, one layer. The fp32 CPU reference
// (attention/sea_cpu.{h,cpp}) is the ground truth; every stage here mirrors a named function of sea_cpu.cpp and
// ../shared/docs/sea.md §2 ("sea.md"). Plain C++ header (no CUDA headers), like engine/cuda/ops.h.
//
// Stages (kernels; files attention/sea_*_cuda.cu, launcher in sea_cuda.cu):
//   0 performer_state   sea_estimator_cuda.cu  per 64-row chunk: Σ φ(k_j) ⊗ [E_pos ; v]_j and Σ φ(k_j)
//   1 performer_scan    sea_estimator_cuda.cu  exclusive prefix of the chunk sums over the chunks
//   2 estimator_rows    sea_estimator_cuda.cu  per chunk: causal Performer output (prefix state + the chunk's own
//                                              triangle), encoder MLP + LayerNorm + GELU, gates, row decoder,
//                                              channel split and LayerNorm_{K/4} -> decoder image, gates
//                                              (sea_cpu: performer_features/performer_step, encoder_rows,
//                                              gate_rows, decoder_image_rows)
//   3 conv1, 4 conv2    sea_cnn_cuda.cu        causal dilated 3×3 conv + ReLU (causal_dilated_conv_row); on the
//                       sea_conv_tc_cuda.cu    tensor cores (3xTF32 implicit GEMM) where K = 64 and 2H is 24, 32
//                                              or 64 (sea_conv_on_tensor_cores), the weights split into fragments
//                                              once at upload (SeaDeviceParams::conv_frags)
//   5 cnn_output        sea_cnn_cuda.cu        1×1 conv, ×4 upsample, border pad, area resize, LayerNorm_K,
//                                              softmax over K -> Â (cnn_output_row)
//   6 topk              sea_topk_cuda.cu       grouped top-k per query over the H·K cells: radix select of the
//                                              n_t-th largest (sea_row_budget), ties to the smaller flat index
//                                              (select_top_cells) -> a bit mask per (query, head)
//                                              For K = 64 and H ≤ 32, stages 5 and 6 are one kernel
//                                              (cnn_output_topk_k64_kernel: a warp per query, the same Â and cells);
//                                              stage 6's time is then empty
//   7 v_prefix          sea_sparse_cuda.cu     Σ_{j≤t} v_j (chunk sums, then a running sum per chunk)
//   8 sparse            sea_sparse_flash_cuda.cu  per tile of 64 queries and head: the causal flash loop on the
//                                              tensor cores over the 64-key blocks some query of the tile
//                                              selected, scores outside each query's keys masked (cells -> key
//                                              intervals as sea_expand_cells_to_keys: the authors' fp32 reciprocal
//                                              arithmetic and per-cell cap k), softmax over the selected keys only,
//                                              ·σ(s_prob), mixed with the cumulative mean of v through σ(s_mix)
//                                              (sparse_attention_row)
// Nothing is O(T²): the estimator holds O(T·H·K) and O(T/64·H·m·128) floats, the selection T·H·⌈K/32⌉ mask words;
// the sparse attention works out each query's keys per key block from its mask row and a ⌈T/64/32⌉-word bitmap of
// the blocks a tile needs. The estimator is fp32 or fp32-equivalent (3xTF32 tensor-core products); the sparse
// attention's q·k and P·V are fp16 tensor-core products with fp32 accumulation and an fp32 softmax (the flash
// attention rule); the output is rounded to fp16.
//
// q convention: the CPU reference takes q already multiplied by head_dim^-1/2 (OPT scales q after q_proj; sea.md
// §1). The engine's fused qkv buffer holds q unscaled (engine/cuda/ops.h), so the launcher takes q_scale and uses
// q_eff = fp32(q_fp16) · q_scale: pass 0.125 (= 64^-1/2) for the engine's qkv, 1 for an already scaled q. The
// product by a power of two is exact, so the CPU reference on fp32(q_fp16)·0.125 sees the same q bits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "attention/sea_cpu.h"
#include "attention/sea_layout.h"
#include "engine/cuda/ops.h"

typedef struct CUevent_st *cudaEvent_t;

namespace seaopt::cuda {

// The learned tensors of one layer on the device: fp32, the shapes and layouts of cpu::SeaParams (PyTorch
// row-major). The three weight masks may be null (= the stored standard masks: kernel rows 0..2 live); the
// kernels use weight ⊙ mask as the module does. Rows 3..4 of the 5-row conv kernels are never read.
struct SeaDeviceParams {
    const float *pos_table = nullptr;       // [n_pos_table, 64]
    const float *performer_proj = nullptr;  // [m, 64]
    const float *enc_w = nullptr;           // [128, 192]
    const float *enc_b = nullptr;           // [128]
    const float *enc_norm_w = nullptr;      // [128]
    const float *enc_norm_b = nullptr;      // [128]
    const float *dec_row_w = nullptr;       // [K/2, 128]
    const float *dec_row_b = nullptr;       // [K/2]
    const float *cnn_norm1_w = nullptr;     // [K/4]
    const float *cnn_norm1_b = nullptr;     // [K/4]
    const float *conv1_w = nullptr;         // [2H, 2H, 5, 3]
    const float *conv1_mask = nullptr;      // [2H, 2H, 5, 3] or null
    const float *conv1_b = nullptr;         // [2H]
    const float *conv2_w = nullptr;         // [2H, 2H, 5, 3]
    const float *conv2_mask = nullptr;      // [2H, 2H, 5, 3] or null
    const float *conv2_b = nullptr;         // [2H]
    const float *conv4_w = nullptr;         // [H, 2H, 1, 1]
    const float *conv4_mask = nullptr;      // [H, 2H, 1, 1] or null
    const float *conv4_b = nullptr;         // [H]
    const float *cnn_norm2_w = nullptr;     // [K]
    const float *cnn_norm2_b = nullptr;     // [K]
    const float *scaler_w = nullptr;        // [2, 128]  (s_prob; s_mix)
    const float *scaler_b = nullptr;        // [2]
    // The same weights as the prefill kernels read them, split into tensor-core fragments once at upload
    // (attention/sea_layout.h: sea_pack_weight_fragments, sea_pack_conv_fragments), 16-byte aligned. The prefill
    // needs weight_frags, and conv_frags where sea_conv_on_tensor_cores(cfg); the decode reads neither.
    const void *weight_frags = nullptr;     // sea_weight_fragments(cfg).total bytes
    const void *conv_frags = nullptr;       // 2 · sea_conv_fragment_bytes(cfg) bytes: conv1's, then conv2's
};

// Where q, k and v of position t, head h are (fp16, 64 contiguous values each):
//   q + t·q_row_stride + h·q_head_stride, and the same for k and v (strides in elements).
// The engine's fused qkv buffer [T, 3C] is sea_qkv_fused(qkv, n_head): row stride 3C, head stride 64, k at column
// C, v at 2C. The KV cache layout [head][pos][64] of one sequence also fits (row stride 64, head stride n_ctx·64).
// Every pointer must be 16-byte aligned and every stride a multiple of 8.
struct SeaQkv {
    const half_t *q = nullptr, *k = nullptr, *v = nullptr;
    int64_t q_row_stride = 0, k_row_stride = 0, v_row_stride = 0;
    int64_t q_head_stride = 0, k_head_stride = 0, v_head_stride = 0;
};

inline SeaQkv sea_qkv_fused(const half_t *qkv, int n_head) {
    const int64_t C = (int64_t)n_head * 64;
    SeaQkv x;
    x.q = qkv;
    x.k = qkv + C;
    x.v = qkv + 2 * C;
    x.q_row_stride = x.k_row_stride = x.v_row_stride = 3 * C;
    x.q_head_stride = x.k_head_stride = x.v_head_stride = 64;
    return x;
}

// Where a prefill also writes its rows' keys and values, as the engine's kv_cache_append would: key t of head h
// (64 fp16) at k + h·head_stride + t·64, the value likewise from v (the KV cache of one sequence: head_stride
// n_ctx·64). 16-byte aligned; k null: nothing is written.
struct SeaKvOut {
    half_t *k = nullptr, *v = nullptr;
    int64_t head_stride = 0;
};

// Stages, in launch order (the list at the top of this file).
inline constexpr int kSeaPrefillStages = 9;
const char *sea_prefill_stage_name(int stage);

// Optional copies of intermediate results (device pointers, each may be null) and stage timing, for tests and
// profiling. Layouts are token-major (unlike cpu::SeaDebug's head-major probs and gates):
struct SeaPrefillDebug {
    float *gates = nullptr;          // [T, H, 2]      s_prob, s_mix logits (before σ)
    float *image = nullptr;          // [T, 2H, K/4]   decoder image after LayerNorm_{K/4} (channel 2h + s)
    float *conv1 = nullptr;          // [T, 2H, K/4]   ReLU(conv1)
    float *conv2 = nullptr;          // [T, 2H, K/4]   ReLU(conv2)
    float *probs = nullptr;          // [T, H, K]      Â
    uint32_t *cell_mask = nullptr;   // [T, H, ⌈K/32⌉] selected cells: bit c%32 of word c/32 of (t, h)
    int32_t *key_count = nullptr;    // [T, H]         keys of (t, h) after the expansion
    uint32_t *key_sum = nullptr;     // [T, H]         Σ of those key indices, mod 2^32
    // kSeaPrefillStages + 1 events (created by the caller): event i is recorded before stage i, the last one
    // after the last stage. Null: none recorded.
    cudaEvent_t *stage_events = nullptr;
};

// SEA prefill of positions 0..T-1 of one sequence (start_pos..start_pos+T-1, below): out[t·out_row_stride + h·64 +
// d] (fp16) for every t < T. scratch: device memory of at least sea_prefill_scratch_bytes(cfg, T) bytes, 256-byte
// aligned; its contents need not persist and nothing is allocated here. Everything is enqueued on `stream` (no
// synchronisation). Throws seaopt::Error: SEAOPT_ERR_INVALID_ARGUMENT for bad arguments (a config
// sea_validate_config rejects, start_pos + T > n_pos_ctx, null or misaligned pointers, a short scratch),
// SEAOPT_ERR_UNSUPPORTED for sizes these kernels do not handle (K > 256, m > 64, shared memory beyond the device's
// per-block limit, start_pos + T ≥ 2^24, k·(start_pos + T) ≥ 2^31), SEAOPT_ERR_DEVICE for launch failures.
// state_out (optional, device, sea_decode_state_bytes): filled to continue decoding at position T (sea.md §2.12):
// the Performer sums over all T rows, Σ v, and rows T-4..T-1 of the decoder image and of ReLU(conv1).
// params.weight_frags (and conv_frags where the convs run on the tensor cores) must be set.
// kv_out (optional): the rows' keys and values also go there (the first kernel copies them; the engine's KV append).
//
// start_pos > 0 continues a sequence of start_pos tokens with T more (a prompt in several chunks, a prompt after a
// cached one): row t is position start_pos + t, and the result is the one a prefill of all start_pos + T positions
// gives for those rows (the same maths; other summation orders, so to fp32 rounding, as the decode). Then state_out
// is required, holding the sequence's state at start_pos (left by a prefill or a decode), and is read and updated in
// place to continue at start_pos + T; kv_out is required, holds the keys and values of positions 0..start_pos-1
// (the rows' own go there at start_pos.., as above: its head stride must cover start_pos + T positions), and the
// sparse attention reads every key from it. start_pos + T <= n_pos_ctx. The scratch is sized for T rows, as for a
// start at 0.
void sea_attention_prefill_cuda(const cpu::SeaConfig &cfg, const SeaDeviceParams &params, const SeaQkv &qkv,
                                float q_scale, int T, half_t *out, int64_t out_row_stride, void *scratch,
                                size_t scratch_bytes, cudaStream_t stream, const SeaPrefillDebug *debug = nullptr,
                                void *state_out = nullptr, const SeaKvOut &kv_out = SeaKvOut{}, int start_pos = 0);

// ---- incremental decode (sea.md §2.12) ----
//
// One call runs R rows, each the next token of a DIFFERENT sequence (the caller splits a batch with several tokens
// of one sequence into calls). Row r: its q, k, v at batch row row[r] of `qkv`, its position pos[r] (= the length
// of its sequence before it), its sequence seq[r]. Kernels (sea_decode_cuda.cu and the shared stage files):
//   decode_estimator  (R, H)  Performer step on the state's sums, encoder, gates, row decoder -> image ring; Σv += v
//   decode_conv ×2    (R, ·)  conv1 row from the image ring -> conv1 ring; conv2 row -> scratch
//   decode_cnn_output_topk (R)  cnn_output_row for every head of the row, then the row's radix top-k (budget from
//                             pos[r]) in one 1,024-thread block
//   decode_sparse     (R·H warps)  the prefill's sparse attention body, keys from the sequence's KV cache
// The state of a sequence at position 0 is never read (a sequence starts from zero sums), so clearing a sequence
// needs no device work; a state is valid only for the position it was left at.

// Device arrays of R int32 each.
struct SeaDecodeRows {
    const int32_t *row = nullptr;
    const int32_t *pos = nullptr;
    const int32_t *seq = nullptr;
    int R = 0;
};

// The layer's KV cache, holding every row's earlier keys and values (and, unless `append`, its own): key j of
// head h of sequence s at k + s·seq_stride + h·head_stride + j·64 (elements; fp16), the same for v. Strides
// multiples of 8.
struct SeaKvCache {
    half_t *k = nullptr, *v = nullptr;
    int64_t seq_stride = 0, head_stride = 0;
    // false: every row's own key and value are already in the cache (the caller appended them). true: the first
    // kernel of the call writes them there (one launch fewer per layer and step in the engine's decode).
    bool append = false;
    // A row at position pos <= prefetch_max_pos has its sequence's keys and values 0..pos-1 of every head pulled into
    // L2 by the first kernel (cp.async.bulk.prefetch, sm_90; ignored before), for the sparse attention four kernels
    // later. Past it the selected keys are a small share of the prefetched bytes, whose traffic then slows the
    // latency-bound kernels between. A hint: no result changes. 0: none.
    int prefetch_max_pos = 0;
};

size_t sea_decode_state_bytes(const cpu::SeaConfig &cfg);
size_t sea_decode_scratch_bytes(const cpu::SeaConfig &cfg, int R);

// states: the states of sequence s at states + s·state_stride bytes (each sea_decode_state_bytes, 256-byte
// aligned); out[row[r]·out_row_stride + h·64 + d] (fp16). Throws as sea_attention_prefill_cuda.
void sea_attention_decode_cuda(const cpu::SeaConfig &cfg, const SeaDeviceParams &params, const SeaQkv &qkv,
                               float q_scale, const SeaDecodeRows &rows, const SeaKvCache &cache, void *states,
                               size_t state_stride, half_t *out, int64_t out_row_stride, void *scratch,
                               size_t scratch_bytes, cudaStream_t stream);

}  // namespace seaopt::cuda
