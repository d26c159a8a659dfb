// Dense attention, decode (every tile one row): see dense_cuda.cu for the overall design.
//
// attention_decode_kernel<D> (D = head_dim: 64, 80 or 128): grid (tile, head, split), 256 threads.
// Split s of a (tile, head) takes the keys [s * split_keys, min((s + 1) * split_keys, pos + 1)) of
// the tile's sequence (pos: the row's position); splits that start past pos exit at once. Within a
// block, groups of aligned lanes take keys (a lane: 8 dims of q, K and V, one 16-byte load each; 8
// lanes a group for D = 64, 16 for 80 and 128, the lanes past D / 8 idle); the 32 or 16 groups take
// interleaved keys, 4 per step each (128 or 64 keys per step, all loads of a step issued before the
// maths), each group with its own fp32 online softmax (log2 domain: q is pre-multiplied by
// head_dim^-0.5 * log2 e), and the block merges the groups' states in shared memory.
//   - One valid split (pos < split_keys, or no scratch: split_keys = n_ctx): the block writes the
//     normalised output directly.
//   - Several: each writes its state (m, l, unnormalised acc[D], fp32) to partials[tile][head]
//     [split], fences, and bumps the (tile, head)'s counter with atomicInc(counter, n_valid - 1);
//     the block that sees n_valid - 1 is the last one, merges the n_valid states in split order
//     (deterministic whichever block comes last) and writes the output; atomicInc's wrap leaves
//     the counter at zero for the next call. n_valid = pos / split_keys + 1 is computed on the
//     device from the tile, so the grid and arguments do not depend on positions (CUDA graphs).
// The row's own key and value (at pos) are read from the qkv row, not from the cache: the same
// bits, and with append_kv the split holding pos also writes them to the cache (the fused KV
// append), which no other block of the launch reads (one row per sequence, checked by the caller).
// With programmatic dependent launch (engine/cuda/pdl.cuh, on by default on sm_90) the kernel waits for the
// previous one before anything else, then lets the next one start.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "attention/dense_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"
#include "engine/error.h"

namespace seaopt::cuda::dense {
namespace {

// Decode: 8 warps; a key group is kLanes lanes (8 dims each), 4 keys per group per step.
constexpr int kDecodeThreads = 256;
constexpr int kDecodeUnroll = 4;  // keys per group per step
// 4 blocks of 256 threads per SM (64 registers each): 512 blocks of a split batch-1 decode step
// fit in one wave of a 132-SM H100.
constexpr int kDecodeMinBlocksPerSm = 4;
template <int D> struct DecodeShape {
    static constexpr int kDimLanes = D / 8;                       // lanes that hold dims: 8, 10, 16
    static constexpr int kLanes = kDimLanes <= 8 ? 8 : 16;        // a key group's lanes
    static constexpr int kGroups = kDecodeThreads / kLanes;       // 32 or 16 key groups
    static constexpr int kKeysPerStep = kGroups * kDecodeUnroll;  // 128 or 64
    static_assert(D % 16 == 0 && kDimLanes <= 16, "head_dim a multiple of 16, at most 128");
    static_assert(kAttentionDecodeMinSplitKeys % kKeysPerStep == 0, "a split is a whole number of steps");
};

// ---- CUDA kernel ----

// k_cache and v_cache are written only with append_kv (the position pos of the tile's sequence).
template <int D>
__global__ void __launch_bounds__(kDecodeThreads, kDecodeMinBlocksPerSm)
    attention_decode_kernel(__half *__restrict__ out, const __half *__restrict__ qkv, __half *__restrict__ k_cache,
                            __half *__restrict__ v_cache, const AttentionTile *__restrict__ tiles, int n_head,
                            int n_ctx, float q_scale, int split_keys, float *__restrict__ partials,
                            unsigned int *__restrict__ counters, bool append_kv) {
    using Shape = DecodeShape<D>;
    constexpr int kLanes = Shape::kLanes, kGroups = Shape::kGroups;
    __shared__ float sm_m[kGroups];
    __shared__ float sm_l[kGroups];
    __shared__ __align__(16) float sm_acc[kGroups * D];
    __shared__ int sm_last;

    pdl_wait();  // launched with PDL: everything below reads or writes what earlier kernels touch
    pdl_launch_dependents();
    const int tile_index = blockIdx.x;
    const AttentionTile tile = tiles[tile_index];
    if (!tile_ok(tile, n_ctx) || tile.n_rows != 1) return;  // uniform over the block
    const int h = blockIdx.y;
    const int split = blockIdx.z, n_splits = gridDim.z;
    const int pos = tile.pos0;                  // keys 0..pos
    const int n_valid = pos / split_keys + 1;   // splits holding at least one key (<= n_splits)
    if (split >= n_valid) return;               // uniform over the block
    const int j_begin = split * split_keys;
    const int j_end = min(j_begin + split_keys, pos + 1);  // this split's keys: [j_begin, j_end)

    const int C = n_head * D;
    const int tid = threadIdx.x;
    const int g = tid / kLanes;                          // key group: kLanes aligned lanes of one warp
    const int d0 = (tid % kLanes) * 8;                   // this lane's 8 dims ...
    const bool has_dims = Shape::kDimLanes == kLanes || tid % kLanes < Shape::kDimLanes;  // ... if the head has them

    const __half *q_row = qkv + (size_t)tile.row0 * (size_t)(3 * C) + (size_t)h * D;
    const __half *k_new = q_row + C;  // the row's own key and value (position pos)
    const __half *v_new = q_row + 2 * (size_t)C;
    const size_t head_base = ((size_t)tile.seq * (size_t)n_head + (size_t)h) * (size_t)n_ctx * D;

    // The fused KV append: the split holding pos writes the row's K and V (D / 8 lanes each, 16 bytes).
    if (append_kv && split == n_valid - 1 && tid < 2 * Shape::kDimLanes) {
        const bool is_v = tid >= Shape::kDimLanes;
        const int d = (tid % Shape::kDimLanes) * 8;
        const uint4 val = *reinterpret_cast<const uint4 *>((is_v ? v_new : k_new) + d);
        __half *dst = (is_v ? v_cache : k_cache) + head_base + (size_t)pos * D + d;
        *reinterpret_cast<uint4 *>(dst) = val;
    }

    float q[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};  // zeros on a lane without dims
    if (has_dims) load_half8(q, q_row + d0);
#pragma unroll
    for (int e = 0; e < 8; ++e) q[e] *= q_scale;

    const __half *kh = k_cache + head_base + d0;
    const __half *vh = v_cache + head_base + d0;

    float m = -INFINITY;  // this group's running max (log2 domain), equal in its 8 lanes
    float l = 0.0f;       // this group's running sum, equal in its 8 lanes
    float acc[8];         // this group's unnormalised output, dims d0..d0+7
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.0f;

    // The loop bounds are uniform over the block, so the shuffles below see whole warps; a group may
    // have no valid key in a step (or at all, when the split has fewer keys than there are groups).
    for (int j0 = j_begin; j0 < j_end; j0 += Shape::kKeysPerStep) {
        float s[kDecodeUnroll];
        uint4 v[kDecodeUnroll];  // V as loaded (8 halves), converted where used: fewer registers
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            const int j = j0 + u * kGroups + g;  // a warp's groups read adjacent keys
            float dot = 0.0f;
            v[u] = make_uint4(0u, 0u, 0u, 0u);  // 0.0 for keys past the split's end
            if (j < j_end && has_dims) {
                float k[8];
                const bool own = j == pos;
                load_half8(k, own ? k_new + d0 : kh + (size_t)j * D);
                v[u] = *reinterpret_cast<const uint4 *>(own ? v_new + d0 : vh + (size_t)j * D);
#pragma unroll
                for (int e = 0; e < 8; ++e) dot += q[e] * k[e];
            }
            s[u] = dot;
        }
        decode_online_softmax_step<kDecodeUnroll, kLanes>(s, v, j0, g, kGroups, j_end, m, l, acc);
    }

    // Merge the groups' states: M = max_g m_g, L = sum_g 2^(m_g - M) l_g, o = sum_g 2^(m_g - M) acc_g.
    if (tid % kLanes == 0) {
        sm_m[g] = m;
        sm_l[g] = l;
    }
    if (has_dims) {
        float4 *dst = reinterpret_cast<float4 *>(sm_acc + g * D + d0);
        dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
        dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    }
    __syncthreads();
    constexpr int kPartialFloats = D + 2;  // attention_decode_partial_floats(D)
    const size_t out_index = (size_t)tile.row0 * (size_t)C + (size_t)h * D + tid;
    const size_t pair = (size_t)tile_index * (size_t)n_head + (size_t)h;  // the counter's index
    if (tid < D) {
        float M = -INFINITY;
        for (int gg = 0; gg < kGroups; ++gg) M = fmaxf(M, sm_m[gg]);  // finite: group 0 has key j_begin
        float L = 0.0f, o = 0.0f;
        for (int gg = 0; gg < kGroups; ++gg) {
            const float w = sm_m[gg] == -INFINITY ? 0.0f : exp2f(sm_m[gg] - M);
            L += w * sm_l[gg];
            o += w * sm_acc[gg * D + tid];
        }
        if (n_valid == 1) {
            out[out_index] = __float2half_rn(o / L);
        } else {
            float *my_partial = partials + (pair * (size_t)n_splits + (size_t)split) * kPartialFloats;
            my_partial[tid] = o;
            if (tid == 0) {
                my_partial[D] = M;
                my_partial[D + 1] = L;
            }
        }
    }
    if (n_valid == 1) return;  // uniform over the block

    // Several splits: the last block of this (tile, head) to finish merges them.
    __threadfence();  // this block's partial is visible device-wide before the counter moves
    __syncthreads();
    if (tid == 0) {
        const unsigned int prev = atomicInc(counters + pair, (unsigned int)(n_valid - 1));
        sm_last = prev == (unsigned int)(n_valid - 1);
    }
    __syncthreads();
    if (!sm_last) return;  // uniform over the block
    __threadfence();
    if (tid < D) {
        const float *first = partials + pair * (size_t)n_splits * kPartialFloats;
        float M = -INFINITY;
        for (int s = 0; s < n_valid; ++s) M = fmaxf(M, __ldcg(first + (size_t)s * kPartialFloats + D));
        float L = 0.0f, o = 0.0f;
        for (int s = 0; s < n_valid; ++s) {
            const float *p = first + (size_t)s * kPartialFloats;
            const float w = exp2f(__ldcg(p + D) - M);  // every valid split's m is finite
            L += w * __ldcg(p + D + 1);
            o += w * __ldcg(p + tid);
        }
        out[out_index] = __float2half_rn(o / L);
    }
}

}  // namespace

// ---- launcher ----

void launch_attention_decode(__half *out, const __half *qkv, __half *k_cache, __half *v_cache,
                             const AttentionTile *tiles, int n_tiles, int n_head, int head_dim, int n_ctx,
                             float q_scale, const AttentionOptions &options, cudaStream_t stream) {
    // Split only with enough scratch; the split size is a whole number of kAttentionDecodeMinSplitKeys
    // (so of every variant's steps).
    int split_keys = n_ctx, n_splits = 1;
    const int splits = attention_decode_splits(n_tiles, n_head, n_ctx);
    if (splits > 1) {
        const int keys = ceil_div(ceil_div(n_ctx, splits), kAttentionDecodeMinSplitKeys) * kAttentionDecodeMinSplitKeys;
        const int z = ceil_div(n_ctx, keys);
        const size_t pairs = (size_t)n_tiles * (size_t)n_head;
        const size_t partial_bytes = (size_t)attention_decode_partial_floats(head_dim) * sizeof(float);
        const bool room = options.partials != nullptr && options.counters != nullptr &&
                          options.partials_bytes >= pairs * (size_t)z * partial_bytes &&
                          options.counters_bytes >= pairs * sizeof(uint32_t);
        if (z > 1 && room) {
            split_keys = keys;
            n_splits = z;
        }
    }
    const dim3 grid((unsigned)n_tiles, (unsigned)n_head, (unsigned)n_splits);
    auto launch = [&](auto kernel) {
        launch_kernel("attention_decode_kernel", programmatic_launch_enabled(), kernel, grid, dim3(kDecodeThreads), 0,
                      stream, out, qkv, k_cache, v_cache, tiles, n_head, n_ctx, q_scale, split_keys, options.partials,
                      options.counters, options.append_kv);
    };
    switch (head_dim) {
        case 64: launch(attention_decode_kernel<64>); break;
        case 80: launch(attention_decode_kernel<80>); break;
        case 128: launch(attention_decode_kernel<128>); break;
        default: throw_invalid_argument("launch_attention_decode: head_dim " + std::to_string(head_dim));
    }
}

}  // namespace seaopt::cuda::dense
