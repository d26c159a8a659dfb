// Dense attention, decode (every tile one row): see dense_cuda.cu for the design.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/dense_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::dense {
namespace {

// Decode: 8 warps; 8 lanes per key (8 dims each), 4 keys per group per step.
constexpr int kDecodeThreads = 256;
constexpr int kDecodeLanesPerKey = kHeadDim / 8;                   // 8
constexpr int kDecodeGroups = kDecodeThreads / kDecodeLanesPerKey;  // 32 key groups
constexpr int kDecodeUnroll = 4;                                    // keys per group per step
constexpr int kDecodeKeysPerStep = kDecodeGroups * kDecodeUnroll;   // 128

// ---- CUDA kernel ----

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

}  // namespace

// ---- launcher ----

void launch_attention_decode(__half *out, const __half *qkv, const __half *k_cache, const __half *v_cache,
                             const AttentionTile *tiles, int n_tiles, int n_head, int n_ctx, float q_scale,
                             cudaStream_t stream) {
    const dim3 grid((unsigned)n_tiles, (unsigned)n_head);
    attention_decode_kernel<<<grid, kDecodeThreads, 0, stream>>>(out, qkv, k_cache, v_cache, tiles, n_head, n_ctx,
                                                                 q_scale);
    check_launch("attention_decode_kernel");
}

}  // namespace seaopt::cuda::dense
