// Dense causal attention, prefill (any tiles of up to 64 rows): see dense_cuda.cu for the design.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/dense_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::dense {
namespace {

// Prefill: a tile of up to 64 query rows, 4 threads per row, 64 keys per step.
constexpr int kPrefillRows = kAttentionTileRows;  // 64
constexpr int kPrefillThreadsPerRow = 4;
constexpr int kPrefillThreads = kPrefillRows * kPrefillThreadsPerRow;  // 256
constexpr int kPrefillKeys = 64;              // keys per step
constexpr int kPrefillStride = kHeadDim + 4;  // 68 floats: K rows / P rows in shared memory (no bank conflicts)
constexpr int kPrefillKeysPerThread = kPrefillKeys / kPrefillThreadsPerRow;  // 16
constexpr int kPrefillDimsPerThread = kHeadDim / kPrefillThreadsPerRow;      // 16
static_assert(kPrefillRows == 64 && kPrefillKeys == 64 && kHeadDim == 64, "the index maths below assume 64");

// ---- CUDA kernel ----

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

}  // namespace

// ---- launcher ----

void launch_attention_prefill(__half *out, const __half *qkv, const __half *k_cache, const __half *v_cache,
                              const AttentionTile *tiles, int n_tiles, int n_head, int n_ctx, float q_scale,
                              cudaStream_t stream) {
    const dim3 grid((unsigned)n_tiles, (unsigned)n_head);
    attention_prefill_kernel<<<grid, kPrefillThreads, 0, stream>>>(out, qkv, k_cache, v_cache, tiles, n_tiles, n_head,
                                                                   n_ctx, q_scale);
    check_launch("attention_prefill_kernel");
}

}  // namespace seaopt::cuda::dense
