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

// ---- attention (attention/dense_cuda.cu) ------------------------------------------------------
// Causal attention of each query row over its sequence's cache positions [0, its position].
// q comes from the fused qkv buffer (row stride 3C, not yet scaled); the softmax scale is
// head_dim^-0.5 (OPT scales q after its bias: the same product up to rounding). out: fp16 [rows, C].
// The batch is described by tiles: runs of at most kAttentionTileRows consecutive rows of one
// sequence with consecutive positions (make_attention_tiles builds them on the host).
constexpr int kAttentionTileRows = 64;
struct AttentionTile {
    int32_t row0;    // first batch row of the tile
    int32_t n_rows;  // 1..kAttentionTileRows
    int32_t seq;     // sequence (KV cache slot)
    int32_t pos0;    // position of the first row; row i has position pos0 + i
};
// Host: splits a batch (given per-row sequence and position, rows of a sequence consecutive with
// consecutive positions) into tiles. Throws seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT) otherwise.
void make_attention_tiles(AttentionTile *host_tiles, int *n_tiles, const int32_t *host_seq_ids,
                          const int32_t *host_positions, int rows);
// tiles: device array of n_tiles. max_pos: the largest position in the batch (bounds the key loop).
// Dispatches to a flash-style prefill kernel (fp32 online softmax, no rows x rows buffer) or, when
// every tile has one row, to a decode kernel that splits the keys across blocks.
void attention_forward(half_t *out, const half_t *qkv, const half_t *k_cache, const half_t *v_cache,
                       const AttentionTile *tiles, int n_tiles, bool all_single_row, int max_pos, int n_head,
                       int head_dim, int n_ctx, cudaStream_t stream);

}  // namespace seaopt::cuda
