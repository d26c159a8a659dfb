// Dense causal attention on the GPU (contract: engine/cuda/ops.h, attention section).
//
// Two kernels, both with fp32 scores, an fp32 online softmax (running max and sum, in the log2
// domain, exp2f) and fp32 accumulators; only the final output is rounded to fp16. Neither
// materialises a rows x rows matrix anywhere.
//
//   attention_prefill_kernel   (dense_prefill_cuda.cu) FlashAttention-2 style on the tensor cores:
//       grid (tile, head), 4 warps x 16 query rows, key blocks of 64 copied with cp.async two
//       stages deep, S = Q K^T and O += P V with mma.sync m16n8k16 (fp16 in, fp32 accumulators),
//       P rounded to fp16 in registers as flash-attention does.
//   attention_decode_kernel    (dense_decode_cuda.cu) grid (tile, head, split), every tile one row:
//       CUDA-core dot products over 16-byte K/V loads, keys split over blocks ("flash-decoding")
//       so long contexts use the whole GPU, with the KV append fused in (append_kv).
//
// Files: dense_cuda.cu (this: tiles, argument checks, dispatch), dense_prefill_cuda.cu,
// dense_decode_cuda.cu, dense_cuda_kernels.cuh (shared constants and helpers).
// Both kernels are templates over head_dim, built for 64 (OPT-125m to OPT-1.3B), 80 (OPT-2.7B) and
// 128 (OPT-6.7B and larger); the launcher rejects any other.
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
        const bool continues = prev && prev->seq == seq && prev->pos0 + prev->n_rows == pos;  // the same run
        if (continues && prev->n_rows < kAttentionTileRows) {
            prev->n_rows++;
        } else {
            host_tiles[n++] = AttentionTile{r, 1, seq, pos, continues ? prev->run_pos0 : pos};
        }
    }
    *n_tiles = n;
}

bool attention_tiles_one_run_per_sequence(const AttentionTile *host_tiles, int n_tiles) {
    std::unordered_map<int32_t, int32_t> run_of;  // sequence -> its run's first position
    for (int i = 0; i < n_tiles; ++i) {
        const auto [it, fresh] = run_of.emplace(host_tiles[i].seq, host_tiles[i].run_pos0);
        if (!fresh && it->second != host_tiles[i].run_pos0) return false;
    }
    return true;
}

// max_pos is checked against n_ctx; the kernels bound their key loops by each tile's own positions,
// and the split-K decode sizes its grid from n_ctx, not max_pos (a captured CUDA graph replays it
// at later positions).
void attention_forward(half_t *out, const half_t *qkv, const half_t *k_cache, const half_t *v_cache,
                       const AttentionTile *tiles, int n_tiles, bool all_single_row, int max_pos, int n_head,
                       int head_dim, int n_ctx, cudaStream_t stream) {
    // No append: the caches are only read.
    attention_forward(out, qkv, const_cast<half_t *>(k_cache), const_cast<half_t *>(v_cache), tiles, n_tiles,
                      all_single_row, max_pos, n_head, head_dim, n_ctx, AttentionOptions{}, stream);
}

void attention_forward(half_t *out, const half_t *qkv, half_t *k_cache, half_t *v_cache, const AttentionTile *tiles,
                       int n_tiles, bool all_single_row, int max_pos, int n_head, int head_dim, int n_ctx,
                       const AttentionOptions &options, cudaStream_t stream) {
    if (!attention_head_dim_supported(head_dim)) {
        throw Error(SEAOPT_ERR_UNSUPPORTED, "attention_forward: head_dim " + std::to_string(head_dim) +
                                                " is not supported (the CUDA attention kernels are built for "
                                                "head_dim 64, 80 and 128, those of the OPT models)");
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
    __half *k = reinterpret_cast<__half *>(k_cache);
    __half *v = reinterpret_cast<__half *>(v_cache);
    if (all_single_row) {
        dense::launch_attention_decode(o, x, k, v, tiles, n_tiles, n_head, head_dim, n_ctx, q_scale, options, stream);
    } else if (head_dim == 64 && !options.prefill_mma_sync && dense::attention_prefill_wgmma_available()) {
        dense::launch_attention_prefill_wgmma(o, x, k, v, tiles, n_tiles, n_head, n_ctx, q_scale, options.append_kv,
                                              stream);
    } else {
        dense::launch_attention_prefill(o, x, k, v, tiles, n_tiles, n_head, head_dim, n_ctx, q_scale, options.append_kv,
                                        stream);
    }
}

}  // namespace seaopt::cuda
