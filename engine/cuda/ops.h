// The CUDA ops of the OPT forward (host-side launchers). Each has a CPU reference beside it
// (engine/cpu_ops.h, attention/dense_cpu.h) and a GPU test against it (tests/test_gpu_*.cpp).
//
// Conventions:
//   - activations: the residual stream x is fp32 [rows, C]; GEMM inputs are fp16; all math in fp32.
//   - weights: fp16, Linear weights as PyTorch's [out, in] row-major.
//   - KV cache: fp16, layout [seq][head][pos][head_dim] per layer (each head's keys contiguous), with
//     n_ctx positions per (seq, head).
//   - every launcher takes a cudaStream_t, checks the launch, and throws seaopt::Error(SEAOPT_ERR_DEVICE)
//     on failure. Pointers are device pointers unless named host_*.
// This header is plain C++ (no CUDA headers) so that host code compiles without nvcc.
#pragma once

#include <cstddef>
#include <cstdint>

typedef struct CUstream_st *cudaStream_t;

namespace seaopt::cuda {

using half_t = uint16_t;  // storage of an fp16 value on the device (__half)

// ---- programmatic dependent launch (engine/cuda/pdl.cuh; defined in gemm.cu) -------------------
// On sm_90+, the decode-path kernels (the GEMV of gemm.h, LayerNorm's register kernel, the decode
// attention) can be launched with programmatic stream serialization: each may start while the
// kernel before it finishes, prefetching its weights, and waits on the device before touching
// activations. Results are bitwise the same either way. On unless SEAOPT_PDL=0 is in the
// environment (read at the first launch) or set_programmatic_launch(false) was called; the setting
// is process-wide and takes effect at the next launch (a captured CUDA graph keeps what it had).
void set_programmatic_launch(bool on);
// Whether launches on the current device use it now: requested, compute capability >= 9.0, and
// the library's kernels built for sm_90 (not JIT-compiled from older PTX, which cannot wait).
bool programmatic_launch_enabled();

// ---- embedding.cu ----------------------------------------------------------------------------
// x[r, :] = (tok ? tok[ids[r], :] : x[r, :]) + pos[positions[r] + pos_offset, :], C columns, fp32 out.
// With tok == nullptr only the positions are added (OPT-350m: tokens go through project_in first).
void embedding_forward(float *x, const half_t *tok, const half_t *pos, const int32_t *ids, const int32_t *positions,
                       int rows, int C, int pos_offset, cudaStream_t stream);
// out[r, :] = table[ids[r], :] (fp16 rows of `cols` columns).
void gather_rows_f16(half_t *out, const half_t *table, const int32_t *ids, int rows, int cols, cudaStream_t stream);
// out[r, :] = in[rows_idx[r], :] for fp32 rows (picks the rows whose logits are wanted).
void gather_rows_f32(float *out, const float *in, const int32_t *row_idx, int rows, int cols, cudaStream_t stream);

// ---- convert.cu ------------------------------------------------------------------------------
// out[i] = fp16(in[i]) (round to nearest even) for n elements.
void convert_f32_to_f16(half_t *out, const float *in, size_t n, cudaStream_t stream);

// ---- layernorm.cu ----------------------------------------------------------------------------
// y = LayerNorm(x) * w + b per row (biased variance, fp32 statistics), written as fp16 to out16
// and, when out32 != nullptr, as fp32 to out32 (out32 may equal x: in place, for post-LN models).
void layernorm_forward(half_t *out16, float *out32, const float *x, const half_t *w, const half_t *b, int rows, int C,
                       float eps, cudaStream_t stream);

// ---- kv_cache.cu -----------------------------------------------------------------------------
// Copies K and V of each row from the fused qkv buffer ([rows, 3C]: q | k | v, head h at columns
// h*head_dim) into the cache at (seq_ids[r], head, positions[r]).
void kv_cache_append(half_t *k_cache, half_t *v_cache, const half_t *qkv, const int32_t *seq_ids,
                     const int32_t *positions, int rows, int n_head, int head_dim, int n_ctx, cudaStream_t stream);

// ---- loss.cu ---------------------------------------------------------------------------------
// nll[r] = -log softmax(logits[r, :])[targets[r]] = log(sum_j exp(l_j - max)) + max - l[target], for
// rows of V fp32 logits; fp32 max and sum-of-exp reductions, one block per row. targets[r] must be in
// [0, V) (the caller validates them; an out-of-range target gives NaN). rows == 0 is a no-op.
void log_softmax_nll(float *nll, const float *logits, const int32_t *targets, int rows, int V, cudaStream_t stream);

// ---- argmax.cu -------------------------------------------------------------------------------
// The greedy pick of x[0, n) as n_parts keys (engine/argmax_key.h): parts[b] is the max key of the elements
// b·256 + i + k·n_parts·256, so argmax_key_token(max of the parts) is the sampler's greedy pick (-1: a NaN or
// all -inf). parts may be mapped host memory (the host reads it after the stream).
void argmax_parts(uint64_t *parts, const float *x, int n, int n_parts, cudaStream_t stream);

// ---- attention (attention/dense_cuda.cu) ------------------------------------------------------
// Causal attention of each query row over its sequence's cache positions [0, its position].
// q comes from the fused qkv buffer (row stride 3C, not yet scaled); the softmax scale is
// head_dim^-0.5 (OPT scales q after its bias: the same product up to rounding). out: fp16 [rows, C].
// The batch is described by tiles: runs of at most kAttentionTileRows consecutive rows of one
// sequence with consecutive positions (make_attention_tiles builds them on the host).
constexpr int kAttentionTileRows = 64;
// The head sizes the kernels are built for: OPT-125m to OPT-1.3B have 64, OPT-2.7B 80, OPT-6.7B and
// the larger ones 128 (attention_forward throws SEAOPT_ERR_UNSUPPORTED for any other).
inline bool attention_head_dim_supported(int head_dim) { return head_dim == 64 || head_dim == 80 || head_dim == 128; }
struct AttentionTile {
    int32_t row0;      // first batch row of the tile
    int32_t n_rows;    // 1..kAttentionTileRows
    int32_t seq;       // sequence (KV cache slot)
    int32_t pos0;      // position of the first row; row i has position pos0 + i
    int32_t run_pos0;  // first position of the tile's run: the sequence's consecutive rows with consecutive
                       // positions that the tile belongs to (position p >= run_pos0 is batch row
                       // row0 + p - pos0); only AttentionOptions::append_kv reads it
};
// Host: splits a batch (given per-row sequence and position, rows of a sequence consecutive with
// consecutive positions) into tiles. Throws seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT) otherwise.
void make_attention_tiles(AttentionTile *host_tiles, int *n_tiles, const int32_t *host_seq_ids,
                          const int32_t *host_positions, int rows);
// Host: whether every sequence's rows in the batch form one run (the tiles of a sequence share one
// run_pos0): the condition for AttentionOptions::append_kv.
bool attention_tiles_one_run_per_sequence(const AttentionTile *host_tiles, int n_tiles);
// tiles: device array of n_tiles. max_pos: the largest position in the batch (checked against n_ctx).
// Dispatches to a flash-style prefill kernel (fp32 online softmax, no rows x rows buffer) or, when
// every tile has one row, to a decode kernel. The cache must hold every key the rows attend to;
// the decode kernel reads each row's own key and value (at its position) from the qkv row instead
// (the same bits, which kv_cache_append or append_kv put in the cache).
void attention_forward(half_t *out, const half_t *qkv, const half_t *k_cache, const half_t *v_cache,
                       const AttentionTile *tiles, int n_tiles, bool all_single_row, int max_pos, int n_head,
                       int head_dim, int n_ctx, cudaStream_t stream);

// Decode ("flash-decoding"): with few tiles the decode kernel splits each (tile, head)'s keys into
// contiguous ranges of split_keys (a multiple of kAttentionDecodeMinSplitKeys), one block each; the
// splits write partial softmax states (m, l, acc[head_dim], fp32) to a scratch buffer and the last
// split of a (tile, head) to finish (an atomic counter per (tile, head)) merges them. The grid
// depends only on (n_tiles, n_head, n_ctx), never on positions, so a CUDA graph captured at one
// position is valid at every other: splits past a row's position exit at once, and the merge takes
// the number of valid splits from the tile's position on the device.
inline constexpr int kAttentionDecodeTargetBlocks = 512;  // split until n_tiles x n_head x splits reaches this
inline constexpr int kAttentionDecodeMaxSplits = 16;
inline constexpr int kAttentionDecodeMinSplitKeys = 128;  // the decode kernel's keys per step
inline constexpr int kAttentionDecodeCounters = kAttentionDecodeTargetBlocks;  // (tile, head) pairs that split

// Splits per (tile, head) of a decode batch: 1 (no scratch needed) once n_tiles x n_head reaches the
// target, else enough to reach it, at most kAttentionDecodeMaxSplits and one per
// kAttentionDecodeMinSplitKeys keys of the context.
inline int attention_decode_splits(int n_tiles, int n_head, int n_ctx) {
    const long long base = (long long)n_tiles * n_head;
    if (n_tiles <= 0 || n_head <= 0 || n_ctx <= 0 || base >= kAttentionDecodeTargetBlocks) return 1;
    long long s = (kAttentionDecodeTargetBlocks + base - 1) / base;
    if (s > kAttentionDecodeMaxSplits) s = kAttentionDecodeMaxSplits;
    const long long by_ctx = ((long long)n_ctx + kAttentionDecodeMinSplitKeys - 1) / kAttentionDecodeMinSplitKeys;
    if (s > by_ctx) s = by_ctx;
    return s < 1 ? 1 : (int)s;
}

// A split's partial state: acc[head_dim], m, l (fp32).
inline int attention_decode_partial_floats(int head_dim) { return head_dim + 2; }

// Scratch bytes the decode kernel's partials need for any batch of at most max_tiles one-row tiles
// and any n_ctx (0 when no such batch splits): the memory planner's "attn_partials".
inline uint64_t attention_decode_partials_bytes(int max_tiles, int n_head, int head_dim) {
    uint64_t most = 0;
    for (int t = 1; t <= max_tiles && (long long)t * n_head < kAttentionDecodeTargetBlocks; ++t) {
        const uint64_t s = (uint64_t)attention_decode_splits(t, n_head, 1 << 30);
        if (s > 1) {
            const uint64_t bytes =
                (uint64_t)t * (uint64_t)n_head * s * (uint64_t)attention_decode_partial_floats(head_dim) * sizeof(float);
            if (bytes > most) most = bytes;
        }
    }
    return most;
}

// Extras of the decode path (every tile one row); ignored by the prefill path except append_kv.
struct AttentionOptions {
    // The kernels also write each row's K and V (from qkv) into the cache at its position, as
    // kv_cache_append would (so the caller skips it): the decode kernel per row; the prefill kernel's
    // (tile, head) blocks their tile's rows, while every block reads the keys of its run from qkv, not
    // the cache. Requires attention_tiles_one_run_per_sequence (no block may read from the cache a key
    // that another block of the same launch appends): the caller checks it on the host.
    bool append_kv = false;
    // Prefill: the mma.sync kernel even where the wgmma one runs (heads of 64 on sm_90a; tests compare both).
    bool prefill_mma_sync = false;
    // Split-K scratch: partials of at least attention_decode_partials_bytes(n_tiles, n_head) bytes
    // (contents need not persist between calls), and kAttentionDecodeCounters uint32 counters that
    // are zero before the first call and are left zero by every call that completes (they must
    // persist, one set per stream at a time). Either missing or too small: no split (one block per
    // (tile, head) walks all its keys, as fast at short contexts, slow at long ones).
    float *partials = nullptr;
    size_t partials_bytes = 0;
    uint32_t *counters = nullptr;
    size_t counters_bytes = 0;
};
// As above, with the options; k_cache and v_cache are written only with append_kv.
void attention_forward(half_t *out, const half_t *qkv, half_t *k_cache, half_t *v_cache, const AttentionTile *tiles,
                       int n_tiles, bool all_single_row, int max_pos, int n_head, int head_dim, int n_ctx,
                       const AttentionOptions &options, cudaStream_t stream);

}  // namespace seaopt::cuda
