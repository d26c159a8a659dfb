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
// head_dim is 64 (every OPT model); the launcher rejects anything else.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"
#include "engine/error.h"

namespace seaopt::cuda {
namespace {

constexpr int kHeadDim = 64;
constexpr float kLog2e = 1.4426950408889634f;

// Prefill: a tile of up to 64 query rows, 4 threads per row, 64 keys per step.
constexpr int kPrefillRows = kAttentionTileRows;  // 64
constexpr int kPrefillThreadsPerRow = 4;
constexpr int kPrefillThreads = kPrefillRows * kPrefillThreadsPerRow;  // 256
constexpr int kPrefillKeys = 64;              // keys per step
constexpr int kPrefillStride = kHeadDim + 4;  // 68 floats: K rows / P rows in shared memory (no bank conflicts)
constexpr int kPrefillKeysPerThread = kPrefillKeys / kPrefillThreadsPerRow;  // 16
constexpr int kPrefillDimsPerThread = kHeadDim / kPrefillThreadsPerRow;      // 16
static_assert(kPrefillRows == 64 && kPrefillKeys == 64 && kHeadDim == 64, "the index maths below assume 64");

// Decode: 8 warps; 8 lanes per key (8 dims each), 4 keys per group per step.
constexpr int kDecodeThreads = 256;
constexpr int kDecodeLanesPerKey = kHeadDim / 8;                   // 8
constexpr int kDecodeGroups = kDecodeThreads / kDecodeLanesPerKey;  // 32 key groups
constexpr int kDecodeUnroll = 4;                                    // keys per group per step
constexpr int kDecodeKeysPerStep = kDecodeGroups * kDecodeUnroll;   // 128

// ---- CUDA kernels ----

// fp16 pairs packed in 32-bit words <-> fp32 (bit operations, no type punning of registers).
__device__ __forceinline__ float lo_half(unsigned int w) {
    return __half2float(__ushort_as_half((unsigned short)(w & 0xFFFFu)));
}
__device__ __forceinline__ float hi_half(unsigned int w) {
    return __half2float(__ushort_as_half((unsigned short)(w >> 16)));
}
__device__ __forceinline__ unsigned int pack_half2(float lo, float hi) {
    return (unsigned int)__half_as_ushort(__float2half_rn(lo)) |
           ((unsigned int)__half_as_ushort(__float2half_rn(hi)) << 16);
}

// Eight fp16 values (one 16-byte load; src 16-byte aligned) to fp32.
__device__ __forceinline__ void load_half8(float *dst, const __half *src) {
    const uint4 u = *reinterpret_cast<const uint4 *>(src);
    dst[0] = lo_half(u.x);
    dst[1] = hi_half(u.x);
    dst[2] = lo_half(u.y);
    dst[3] = hi_half(u.y);
    dst[4] = lo_half(u.z);
    dst[5] = hi_half(u.z);
    dst[6] = lo_half(u.w);
    dst[7] = hi_half(u.w);
}

// A tile the kernels can run without touching memory out of bounds; anything else is skipped
// (make_attention_tiles never produces one).
__device__ __forceinline__ bool tile_ok(const AttentionTile &t, int n_ctx) {
    return t.n_rows >= 1 && t.n_rows <= kAttentionTileRows && t.pos0 >= 0 && t.row0 >= 0 && t.seq >= 0 &&
           (long long)t.pos0 + t.n_rows <= (long long)n_ctx;
}

__global__ void __launch_bounds__(kPrefillThreads, 2)
    attention_prefill_kernel(__half *__restrict__ out, const __half *__restrict__ qkv,
                             const __half *__restrict__ k_cache, const __half *__restrict__ v_cache,
                             const AttentionTile *__restrict__ tiles, int n_tiles, int n_head, int n_ctx,
                             float q_scale) {
    // ks: the K step [key][dim], then the probabilities P [row][key] of the same step.
    __shared__ __align__(16) float ks[kPrefillKeys * kPrefillStride];
    __shared__ __align__(16) float vs[kPrefillKeys * kHeadDim];  // the V step [key][dim]

    // Later tiles of a sequence have more keys: start them first.
    const AttentionTile tile = tiles[n_tiles - 1 - (int)blockIdx.x];
    if (!tile_ok(tile, n_ctx)) return;  // uniform over the block
    const int h = blockIdx.y;
    const int C = n_head * kHeadDim;
    const int tid = threadIdx.x;
    const int r = tid / kPrefillThreadsPerRow;  // query row in the tile
    const int t = tid % kPrefillThreadsPerRow;  // the row's 4 threads are adjacent lanes of one warp
    const bool active = r < tile.n_rows;
    const int last = tile.pos0 + tile.n_rows - 1;     // the tile's last position: keys 0..last
    const int my_pos = active ? tile.pos0 + r : last;  // inactive rows compute harmless values, never stored

    // q row r, scaled (fp32, in registers).
    float q[kHeadDim];
    if (active) {
        const __half *qrow = qkv + (size_t)(tile.row0 + r) * (size_t)(3 * C) + (size_t)h * kHeadDim;
#pragma unroll
        for (int d = 0; d < kHeadDim; d += 8) load_half8(q + d, qrow + d);
#pragma unroll
        for (int d = 0; d < kHeadDim; ++d) q[d] *= q_scale;
    } else {
#pragma unroll
        for (int d = 0; d < kHeadDim; ++d) q[d] = 0.0f;
    }

    const size_t kv_base = ((size_t)tile.seq * (size_t)n_head + (size_t)h) * (size_t)n_ctx * kHeadDim;
    const __half *kh = k_cache + kv_base;
    const __half *vh = v_cache + kv_base;

    float m = -INFINITY;  // running max of row r's scores (log2 domain); equal in the row's 4 threads
    float l = 0.0f;       // this thread's share of row r's running sum of exp2(score - m)
    float acc[kPrefillDimsPerThread];  // output dims 4t + 16j + e, unnormalised
#pragma unroll
    for (int i = 0; i < kPrefillDimsPerThread; ++i) acc[i] = 0.0f;

    const int n_steps = last / kPrefillKeys + 1;
    for (int step = 0; step < n_steps; ++step) {
        const int j0 = step * kPrefillKeys;

        // K and V of keys j0..j0+63 (zero past `last`: never read from the cache, always masked).
        for (int c = tid; c < kPrefillKeys * (kHeadDim / 8); c += kPrefillThreads) {
            const int key = c / (kHeadDim / 8);
            const int d0 = (c % (kHeadDim / 8)) * 8;
            float kf[8], vf[8];
            if (j0 + key <= last) {
                load_half8(kf, kh + (size_t)(j0 + key) * kHeadDim + d0);
                load_half8(vf, vh + (size_t)(j0 + key) * kHeadDim + d0);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) kf[e] = vf[e] = 0.0f;
            }
            float4 *kd = reinterpret_cast<float4 *>(ks + key * kPrefillStride + d0);
            float4 *vd = reinterpret_cast<float4 *>(vs + key * kHeadDim + d0);
            kd[0] = make_float4(kf[0], kf[1], kf[2], kf[3]);
            kd[1] = make_float4(kf[4], kf[5], kf[6], kf[7]);
            vd[0] = make_float4(vf[0], vf[1], vf[2], vf[3]);
            vd[1] = make_float4(vf[4], vf[5], vf[6], vf[7]);
        }
        __syncthreads();

        // Scores of row r against keys 4i + t, causal mask by position.
        float s[kPrefillKeysPerThread];
        float step_max = -INFINITY;
#pragma unroll
        for (int i = 0; i < kPrefillKeysPerThread; ++i) {
            const int key = i * kPrefillThreadsPerRow + t;
            const float4 *krow = reinterpret_cast<const float4 *>(ks + key * kPrefillStride);
            float dot = 0.0f;
#pragma unroll
            for (int d4 = 0; d4 < kHeadDim / 4; ++d4) {
                const float4 kv = krow[d4];
                dot += q[4 * d4] * kv.x + q[4 * d4 + 1] * kv.y + q[4 * d4 + 2] * kv.z + q[4 * d4 + 3] * kv.w;
            }
            s[i] = (j0 + key <= my_pos) ? dot : -INFINITY;
            step_max = fmaxf(step_max, s[i]);
        }
        step_max = fmaxf(step_max, __shfl_xor_sync(0xffffffffu, step_max, 1));
        step_max = fmaxf(step_max, __shfl_xor_sync(0xffffffffu, step_max, 2));
        const float m_new = fmaxf(m, step_max);
        // m_new is finite from the first step on (key 0 is never masked); the guard keeps
        // exp2f(-inf - -inf) = NaN out regardless.
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = exp2f(m - m_use);  // 0 on the first step
        m = m_new;
        l *= alpha;
#pragma unroll
        for (int i = 0; i < kPrefillDimsPerThread; ++i) acc[i] *= alpha;

        __syncthreads();  // every thread is done reading K: ks now takes P
        float *prow = ks + r * kPrefillStride;
#pragma unroll
        for (int i = 0; i < kPrefillKeysPerThread; ++i) {
            const float p = exp2f(s[i] - m_use);  // 0 where masked
            l += p;
            prow[i * kPrefillThreadsPerRow + t] = p;
        }
        __syncwarp();  // row r's probabilities come from its own 4 lanes

        // acc += P[r, :] V for dims 4t + 16j + e.
#pragma unroll
        for (int c4 = 0; c4 < kPrefillKeys / 4; ++c4) {
            const float4 p4 = reinterpret_cast<const float4 *>(prow)[c4];
            const float pk[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
            for (int cc = 0; cc < 4; ++cc) {
                const float4 *vrow = reinterpret_cast<const float4 *>(vs + (4 * c4 + cc) * kHeadDim);
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const float4 v = vrow[t + 4 * j];  // dims 4t + 16j .. +3
                    acc[4 * j] += pk[cc] * v.x;
                    acc[4 * j + 1] += pk[cc] * v.y;
                    acc[4 * j + 2] += pk[cc] * v.z;
                    acc[4 * j + 3] += pk[cc] * v.w;
                }
            }
        }
        __syncthreads();  // before the next step overwrites ks and vs
    }

    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (active) {
        const float inv = 1.0f / l;  // l >= 1: the row's maximum contributes exp2(0)
        __half *orow = out + (size_t)(tile.row0 + r) * (size_t)C + (size_t)h * kHeadDim;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint2 u = make_uint2(pack_half2(acc[4 * j] * inv, acc[4 * j + 1] * inv),
                                       pack_half2(acc[4 * j + 2] * inv, acc[4 * j + 3] * inv));
            *reinterpret_cast<uint2 *>(orow + 4 * t + 16 * j) = u;  // 8-byte aligned
        }
    }
}

__global__ void __launch_bounds__(kDecodeThreads)
    attention_decode_kernel(__half *__restrict__ out, const __half *__restrict__ qkv,
                            const __half *__restrict__ k_cache, const __half *__restrict__ v_cache,
                            const AttentionTile *__restrict__ tiles, int n_head, int n_ctx, float q_scale) {
    __shared__ float sm_m[kDecodeGroups];
    __shared__ float sm_l[kDecodeGroups];
    __shared__ __align__(16) float sm_acc[kDecodeGroups * kHeadDim];

    const AttentionTile tile = tiles[blockIdx.x];
    if (!tile_ok(tile, n_ctx) || tile.n_rows != 1) return;  // uniform over the block
    const int h = blockIdx.y;
    const int C = n_head * kHeadDim;
    const int tid = threadIdx.x;
    const int g = tid / kDecodeLanesPerKey;         // key group: 8 aligned lanes of one warp
    const int d0 = (tid % kDecodeLanesPerKey) * 8;  // this lane's 8 dims
    const int pos = tile.pos0;                      // keys 0..pos

    float q[8];
    load_half8(q, qkv + (size_t)tile.row0 * (size_t)(3 * C) + (size_t)h * kHeadDim + d0);
#pragma unroll
    for (int e = 0; e < 8; ++e) q[e] *= q_scale;

    const size_t kv_base = ((size_t)tile.seq * (size_t)n_head + (size_t)h) * (size_t)n_ctx * kHeadDim + d0;
    const __half *kh = k_cache + kv_base;
    const __half *vh = v_cache + kv_base;

    float m = -INFINITY;  // this group's running max (log2 domain), equal in its 8 lanes
    float l = 0.0f;       // this group's running sum, equal in its 8 lanes
    float acc[8];         // this group's unnormalised output, dims d0..d0+7
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.0f;

    // The loop bound is uniform over the block, so the shuffles below see whole warps; a group may
    // have no valid key in a step (or at all, when pos < 31).
    for (int j0 = 0; j0 <= pos; j0 += kDecodeKeysPerStep) {
        float s[kDecodeUnroll];
        float v[kDecodeUnroll][8];
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            const int j = j0 + u * kDecodeGroups + g;  // a warp's 4 groups read 4 adjacent keys
            float dot = 0.0f;
            if (j <= pos) {
                float k[8];
                load_half8(k, kh + (size_t)j * kHeadDim);
                load_half8(v[u], vh + (size_t)j * kHeadDim);
#pragma unroll
                for (int e = 0; e < 8; ++e) dot += q[e] * k[e];
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) v[u][e] = 0.0f;
            }
            s[u] = dot;
        }
        float step_max = -INFINITY;
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            s[u] += __shfl_xor_sync(0xffffffffu, s[u], 4);
            s[u] += __shfl_xor_sync(0xffffffffu, s[u], 2);
            s[u] += __shfl_xor_sync(0xffffffffu, s[u], 1);
            if (j0 + u * kDecodeGroups + g > pos) s[u] = -INFINITY;
            step_max = fmaxf(step_max, s[u]);
        }
        const float m_new = fmaxf(m, step_max);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a group with no key yet stays at 0
        const float alpha = exp2f(m - m_use);
        m = m_new;
        l *= alpha;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] *= alpha;
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            const float p = exp2f(s[u] - m_use);  // 0 for keys past pos
            l += p;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[e] += p * v[u][e];
        }
    }

    // Merge the groups' states: out = sum_g 2^(m_g - M) acc_g / sum_g 2^(m_g - M) l_g.
    if (tid % kDecodeLanesPerKey == 0) {
        sm_m[g] = m;
        sm_l[g] = l;
    }
    float4 *dst = reinterpret_cast<float4 *>(sm_acc + g * kHeadDim + d0);
    dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    __syncthreads();
    if (tid < kHeadDim) {
        float M = -INFINITY;
        for (int gg = 0; gg < kDecodeGroups; ++gg) M = fmaxf(M, sm_m[gg]);  // finite: group 0 has key 0
        float L = 0.0f, o = 0.0f;
        for (int gg = 0; gg < kDecodeGroups; ++gg) {
            const float w = sm_m[gg] == -INFINITY ? 0.0f : exp2f(sm_m[gg] - M);
            L += w * sm_l[gg];
            o += w * sm_acc[gg * kHeadDim + tid];
        }
        out[(size_t)tile.row0 * (size_t)C + (size_t)h * kHeadDim + tid] = __float2half_rn(o / L);
    }
}

// ---- kernel launchers ----

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
    if (head_dim != kHeadDim) {
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
    const float q_scale = (float)(1.0 / std::sqrt((double)head_dim)) * kLog2e;  // scores in the log2 domain
    const dim3 grid((unsigned)n_tiles, (unsigned)n_head);
    __half *o = reinterpret_cast<__half *>(out);
    const __half *x = reinterpret_cast<const __half *>(qkv);
    const __half *k = reinterpret_cast<const __half *>(k_cache);
    const __half *v = reinterpret_cast<const __half *>(v_cache);
    if (all_single_row) {
        attention_decode_kernel<<<grid, kDecodeThreads, 0, stream>>>(o, x, k, v, tiles, n_head, n_ctx, q_scale);
        check_launch("attention_decode_kernel");
    } else {
        attention_prefill_kernel<<<grid, kPrefillThreads, 0, stream>>>(o, x, k, v, tiles, n_tiles, n_head, n_ctx,
                                                                       q_scale);
        check_launch("attention_prefill_kernel");
    }
}

}  // namespace seaopt::cuda
