// Internal to attention/: what the dense attention kernels share (constants, fp16 helpers, the
// tile check, the decode's online-softmax step, which the persistent decode of
// engine/cuda/decode_persistent.cu uses too) and the launchers that attention_forward
// (dense_cuda.cu) dispatches to. Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "engine/cuda/ops.h"

namespace seaopt::cuda::dense {

inline constexpr float kLog2e = 1.4426950408889634f;

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

// The prefill kernels' share of the KV append (append_kv): the tile's rows of K and V of head h, from
// the qkv rows (qk_head, qv_head: the head's k and v columns, qkv_stride a row) into the cache rows
// (k_head, v_head: [pos][D]), 16 bytes a copy by kThreads threads, a round's loads before its stores.
template <int D, int kThreads>
__device__ __forceinline__ void append_tile_kv(__half *k_head, __half *v_head, const __half *qk_head,
                                               const __half *qv_head, size_t qkv_stride, const AttentionTile &tile) {
    constexpr int kChunksPerRow = D / 8;  // 16-byte pieces of a row
    constexpr int kRound = 4;  // copies (of K and of V) in flight per thread
    const int n = tile.n_rows * kChunksPerRow;
    for (int c0 = (int)threadIdx.x; c0 < n; c0 += kRound * kThreads) {
        uint4 kx[kRound], vx[kRound];
#pragma unroll
        for (int u = 0; u < kRound; ++u) {
            const int c = c0 + u * kThreads;
            if (c < n) {
                const size_t at = (size_t)(tile.row0 + c / kChunksPerRow) * qkv_stride + (c % kChunksPerRow) * 8;
                kx[u] = *reinterpret_cast<const uint4 *>(qk_head + at);
                vx[u] = *reinterpret_cast<const uint4 *>(qv_head + at);
            }
        }
#pragma unroll
        for (int u = 0; u < kRound; ++u) {
            const int c = c0 + u * kThreads;
            if (c < n) {
                const size_t at = (size_t)(tile.pos0 + c / kChunksPerRow) * D + (c % kChunksPerRow) * 8;
                *reinterpret_cast<uint4 *>(k_head + at) = kx[u];
                *reinterpret_cast<uint4 *>(v_head + at) = vx[u];
            }
        }
    }
}

// A tile the kernels can run without touching memory out of bounds; anything else is skipped
// (make_attention_tiles never produces one).
__device__ __forceinline__ bool tile_ok(const AttentionTile &t, int n_ctx) {
    return t.n_rows >= 1 && t.n_rows <= kAttentionTileRows && t.pos0 >= 0 && t.row0 >= 0 && t.seq >= 0 &&
           (long long)t.pos0 + t.n_rows <= (long long)n_ctx;
}

// One step of a decode key group's online softmax (log2 domain; groups of kLanes aligned lanes, 8
// dims a lane; lanes past the head's dims hold zeros): s[u] holds this lane's part of the score of
// key j0 + u·n_groups + group (summed here over the group's lanes; keys at or past j_end are masked
// out), v[u] the lane's 8 halves of that key's V row (zeros past j_end). Folds them into the group's
// running max m, sum l and unnormalised output acc. Every lane of the warp must call it (shuffles);
// a group with no key yet stays at 0.
template <int kUnroll, int kLanes = 8>
__device__ __forceinline__ void decode_online_softmax_step(float (&s)[kUnroll], const uint4 (&v)[kUnroll], int j0,
                                                           int group, int n_groups, int j_end, float &m, float &l,
                                                           float (&acc)[8]) {
    static_assert(kLanes == 8 || kLanes == 16, "a key group is 8 or 16 aligned lanes");
    float step_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
        if (kLanes == 16) s[u] += __shfl_xor_sync(0xffffffffu, s[u], 8);
        s[u] += __shfl_xor_sync(0xffffffffu, s[u], 4);
        s[u] += __shfl_xor_sync(0xffffffffu, s[u], 2);
        s[u] += __shfl_xor_sync(0xffffffffu, s[u], 1);
        if (j0 + u * n_groups + group >= j_end) s[u] = -INFINITY;
        step_max = fmaxf(step_max, s[u]);
    }
    const float m_new = fmaxf(m, step_max);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m - m_use);
    m = m_new;
    l *= alpha;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= alpha;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
        const float p = exp2f(s[u] - m_use);  // 0 for keys past j_end
        l += p;
        const unsigned int vw[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            acc[2 * e] += p * lo_half(vw[e]);
            acc[2 * e + 1] += p * hi_half(vw[e]);
        }
    }
}

// The launchers (arguments already checked by attention_forward: head_dim is one of
// attention_head_dim_supported's; q_scale = head_dim^-0.5 * log2 e).
// Prefill: any tiles (up to kAttentionTileRows rows each). Decode: every tile has one row.
// append_kv: AttentionOptions::append_kv (the caches are written only then).
void launch_attention_prefill(__half *out, const __half *qkv, __half *k_cache, __half *v_cache,
                              const AttentionTile *tiles, int n_tiles, int n_head, int head_dim, int n_ctx,
                              float q_scale, bool append_kv, cudaStream_t stream);
// The same for heads of 64 on the warpgroup tensor-core instructions (dense_prefill_wgmma_cuda.cu),
// where attention_prefill_wgmma_available(): this build has sm_90a code (CMake architecture 90a),
// the device is compute capability 9.0, and SEAOPT_FLASH_WGMMA is not "0".
bool attention_prefill_wgmma_available();
void launch_attention_prefill_wgmma(__half *out, const __half *qkv, __half *k_cache, __half *v_cache,
                                    const AttentionTile *tiles, int n_tiles, int n_head, int n_ctx, float q_scale,
                                    bool append_kv, cudaStream_t stream);
// Decode: k_cache and v_cache are written only with options.append_kv; options.partials and
// options.counters enable the split over keys (dense_decode_cuda.cu).
void launch_attention_decode(__half *out, const __half *qkv, __half *k_cache, __half *v_cache,
                             const AttentionTile *tiles, int n_tiles, int n_head, int head_dim, int n_ctx,
                             float q_scale, const AttentionOptions &options, cudaStream_t stream);

}  // namespace seaopt::cuda::dense
