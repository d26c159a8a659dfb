// Dense causal attention on the GPU (contract: engine/cuda/ops.h, attention section).
//
// Two kernels, both with fp32 scores, an fp32 online softmax (running max and sum, in the log2
// domain: q is pre-multiplied by head_dim^-0.5 * log2(e) and exp2f is used) and fp32 accumulators;
// only the final output is rounded to fp16. Neither materialises a rows x rows matrix anywhere.
//
//   attention_prefill_kernel   grid (tile, head), 256 threads = 64 query rows x 4 threads.
//       The block holds its tile's query rows in registers (thread (r, t) keeps all 64 dims of row
//       r) and walks the keys of the sequence in blocks of 64, up to the tile's last position.
//       Per key block: K and V are converted to fp32 in shared memory; thread (r, t) computes the
//       scores of row r against keys 4i + t (i < 16), masks keys past row r's position, updates
//       the row's running max (reduced over the row's 4 lanes with shuffles), writes its
//       probabilities into shared memory (over the K buffer, no longer needed), and accumulates
//       P V for its 16 output dims 4t + 16j + e (j, e < 4).
//   attention_decode_kernel    grid (tile, head), 256 threads; every tile has one row.
//       Groups of 8 lanes take keys (lane 8 dims of q, K and V: one 16-byte load each); the 32
//       groups of the block take interleaved keys, each with its own online softmax state, and the
//       block merges the 32 states in shared memory at the end (split-K inside one block).
//
// Files: dense_cuda.cu (this: tiles, argument checks, dispatch), dense_prefill_cuda.cu,
// dense_decode_cuda.cu, dense_cuda_kernels.cuh (shared constants and helpers).
// head_dim is 64 (every OPT model); the launcher rejects anything else.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "attention/dense_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"
#include "engine/error.h"

namespace seaopt::cuda {
namespace {

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

}  // namespace

// host_tiles must have room for `rows` tiles (the most there can be). A sequence's rows may come in
// several runs (the engine allows interleaved sequences); each run starts a new tile.
void make_attention_tiles(AttentionTile *host_tiles, int *n_tiles, const int32_t *host_seq_ids,
                          const int32_t *host_positions, int rows) {
    if (!n_tiles) throw_invalid_argument("make_attention_tiles: n_tiles is NULL");
    if (rows < 0) throw_invalid_argument("make_attention_tiles: rows = " + std::to_string(rows) + " is negative");
    if (rows > 0 && (!host_tiles || !host_seq_ids || !host_positions)) {
        throw_invalid_argument("make_attention_tiles: a NULL array for " + std::to_string(rows) + " rows");
    }
    // The position each sequence's next row must have.
    std::unordered_map<int32_t, int64_t> next_pos;
    int n = 0;
    for (int r = 0; r < rows; ++r) {
        const int32_t seq = host_seq_ids[r];
        const int32_t pos = host_positions[r];
        if (seq < 0) {
            throw_invalid_argument("make_attention_tiles: row " + std::to_string(r) + " has sequence id " +
                                   std::to_string(seq));
        }
        if (pos < 0) {
            throw_invalid_argument("make_attention_tiles: row " + std::to_string(r) + " has position " +
                                   std::to_string(pos));
        }
        auto it = next_pos.find(seq);
        if (it != next_pos.end() && it->second != pos) {
            throw_invalid_argument("make_attention_tiles: row " + std::to_string(r) + " of sequence " +
                                   std::to_string(seq) + " has position " + std::to_string(pos) +
                                   " but the sequence's previous row has position " +
                                   std::to_string(it->second - 1) + " (a sequence's positions must be consecutive)");
        }
        next_pos[seq] = (int64_t)pos + 1;
        AttentionTile *prev = n > 0 ? &host_tiles[n - 1] : nullptr;
        if (prev && prev->seq == seq && prev->pos0 + prev->n_rows == pos && prev->n_rows < kAttentionTileRows) {
            prev->n_rows++;
        } else {
            host_tiles[n++] = AttentionTile{r, 1, seq, pos};
        }
    }
    *n_tiles = n;
}

// max_pos is checked against n_ctx; the kernels bound their key loops by each tile's own positions
// (a split-K decode will size its grid with it).
void attention_forward(half_t *out, const half_t *qkv, const half_t *k_cache, const half_t *v_cache,
                       const AttentionTile *tiles, int n_tiles, bool all_single_row, int max_pos, int n_head,
                       int head_dim, int n_ctx, cudaStream_t stream) {
    if (head_dim != dense::kHeadDim) {
        throw Error(SEAOPT_ERR_UNSUPPORTED, "attention_forward: head_dim " + std::to_string(head_dim) +
                                                " is not supported (the CUDA attention kernels need head_dim 64, "
                                                "which every OPT model has)");
    }
    if (n_tiles < 0 || n_head <= 0 || n_head > 65535 || n_ctx <= 0) {
        throw_invalid_argument("attention_forward: n_tiles " + std::to_string(n_tiles) + ", n_head " +
                               std::to_string(n_head) + ", n_ctx " + std::to_string(n_ctx));
    }
    if (n_tiles == 0) return;
    if (max_pos < 0 || max_pos >= n_ctx) {
        throw_invalid_argument("attention_forward: max_pos " + std::to_string(max_pos) + " is outside [0, n_ctx = " +
                               std::to_string(n_ctx) + ")");
    }
    if (!out || !qkv || !k_cache || !v_cache || !tiles) throw_invalid_argument("attention_forward: a NULL pointer");
    if (!aligned16(out) || !aligned16(qkv) || !aligned16(k_cache) || !aligned16(v_cache)) {
        throw_invalid_argument("attention_forward: out, qkv, k_cache and v_cache must be 16-byte aligned");
    }
    const float q_scale = (float)(1.0 / std::sqrt((double)head_dim)) * dense::kLog2e;  // scores in the log2 domain
    __half *o = reinterpret_cast<__half *>(out);
    const __half *x = reinterpret_cast<const __half *>(qkv);
    const __half *k = reinterpret_cast<const __half *>(k_cache);
    const __half *v = reinterpret_cast<const __half *>(v_cache);
    if (all_single_row) {
        dense::launch_attention_decode(o, x, k, v, tiles, n_tiles, n_head, n_ctx, q_scale, stream);
    } else {
        dense::launch_attention_prefill(o, x, k, v, tiles, n_tiles, n_head, n_ctx, q_scale, stream);
    }
}

}  // namespace seaopt::cuda
