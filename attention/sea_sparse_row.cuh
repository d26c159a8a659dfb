// SEA sparse attention of one (query, head) row, the device code shared by the prefill and decode kernels of
// sea_sparse_cuda.cu and the fused decode (sea_decode_fused_cuda.cu): the cell -> key interval map, the gathered
// dot products, the fp32 online softmax and the output mixing (sea.md §2.8-§2.10). Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::sea {

inline constexpr unsigned kSparseFullMask = 0xffffffffu;

__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t w) {
    return make_float2(__half2float(__ushort_as_half((unsigned short)(w & 0xFFFFu))),
                       __half2float(__ushort_as_half((unsigned short)(w >> 16))));
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Keys per kept cell of a mask row (sea.md §2.8, the cap k per cell) and their exclusive prefix over the cells into
// offs[0..K] (offs[K] = the row's key count, returned). One warp; the same in every lane.
__device__ __forceinline__ int cell_key_offsets(int *offs, const uint32_t *__restrict__ mrow, float s, int row_len,
                                                const Dims &d) {
    const int lane = threadIdx.x % kWarpSize, K = d.K;
    int carry = 0;
    for (int base = 0; base < K; base += kWarpSize) {
        const int c = base + lane;
        int n = 0;
        if (c < K && ((mrow[c >> 5] >> (c & 31)) & 1u)) {
            const int len = cell_edge(c + 1, s, row_len) - cell_edge(c, s, row_len);
            n = len > 0 ? min(len, d.k) : 0;
        }
        int incl = n;
#pragma unroll
        for (int off = 1; off < kWarpSize; off <<= 1) {
            const int v = __shfl_up_sync(kSparseFullMask, incl, off);
            if (lane >= off) incl += v;
        }
        if (c < K) offs[c] = carry + incl - n;
        carry += __shfl_sync(kSparseFullMask, incl, kWarpSize - 1);
    }
    if (lane == 0) offs[K] = carry;
    return carry;
}

// Key i (0 <= i < offs[K]) of the row: in the cell found by a binary search of offs, at v1 - 1 - ⌊j·len/n⌋.
__device__ __forceinline__ int selected_key(int i, const int *offs, float s, int row_len, const Dims &d) {
    int lo = 0, hi = d.K;  // offs[lo] <= i < offs[hi]
    while (hi - lo > 1) {
        const int mid = (lo + hi) >> 1;
        if (offs[mid] <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    const int v0 = cell_edge(lo, s, row_len), v1 = cell_edge(lo + 1, s, row_len);
    const unsigned len = (unsigned)(v1 - v0);
    const unsigned n = min(len, (unsigned)d.k);
    const unsigned j = (unsigned)(i - offs[lo]);
    return v1 - 1 - (int)((j * len) / n);
}

// q · k over the 64 dims, q scaled fp32 in shared memory, k one fp16 row (eight 16-byte loads), in dim order.
__device__ __forceinline__ float dot_q_key(const float *q, const __half *k_row) {
    const uint4 *kr = reinterpret_cast<const uint4 *>(k_row);
    float dot = 0.0f;
#pragma unroll
    for (int u = 0; u < kHeadDim / 8; ++u) {
        const uint4 w = kr[u];
        const float2 a = half2_bits_to_float2(w.x), b = half2_bits_to_float2(w.y);
        const float2 c2 = half2_bits_to_float2(w.z), e = half2_bits_to_float2(w.w);
        const float *qu = q + 8 * u;
        dot = fmaf(qu[0], a.x, dot);
        dot = fmaf(qu[1], a.y, dot);
        dot = fmaf(qu[2], b.x, dot);
        dot = fmaf(qu[3], b.y, dot);
        dot = fmaf(qu[4], c2.x, dot);
        dot = fmaf(qu[5], c2.y, dot);
        dot = fmaf(qu[6], e.x, dot);
        dot = fmaf(qu[7], e.y, dot);
    }
    return dot;
}

// This lane's two dims of q (fp16 row q_row) scaled by q_scale into q (64 floats, shared).
__device__ __forceinline__ void stage_q(float *q, const __half *__restrict__ q_row, float q_scale) {
    const int lane = threadIdx.x % kWarpSize;
    const uint32_t qw = reinterpret_cast<const uint32_t *>(q_row)[lane];
    const float2 qq = half2_bits_to_float2(qw);
    q[2 * lane] = __fmul_rn(qq.x, q_scale);
    q[2 * lane + 1] = __fmul_rn(qq.y, q_scale);
}

// One step of the fp32 online softmax over a warp's keys (a score per lane, -inf where invalid): updates the running
// max m_run and sum l_run, rescales this lane's Σ p·v (acc0, acc1), and returns this lane's p (0 where invalid).
__device__ __forceinline__ float online_softmax_step(float &m_run, float &l_run, float &acc0, float &acc1, float score,
                                                     bool valid) {
    const float m_new = fmaxf(m_run, warp_reduce_max(score));
    const float corr = expf(m_run - m_new);  // 0 at the first step (m_run = -inf)
    const float pj = valid ? expf(score - m_new) : 0.0f;
    l_run = l_run * corr + warp_reduce_sum(pj);
    acc0 *= corr;
    acc1 *= corr;
    m_run = m_new;
    return pj;
}

// As sparse_attention_row's end: C = (Σ p·v / Σ p) · σ(s_prob) (0 without keys), out = σ(s_mix)·C + (1-σ(s_mix))·
// (Σ_{j≤t} v_j)/(t+1), this lane's two dims rounded to fp16.
__device__ __forceinline__ void sparse_row_output(__half *__restrict__ dst, int t, int n_keys, float l, float acc0,
                                                  float acc1, const float *__restrict__ g,
                                                  const float *__restrict__ vsum) {
    const int lane = threadIdx.x % kWarpSize;
    float c0 = 0.0f, c1 = 0.0f;
    if (n_keys > 0) {
        const float scale = (1.0f / l) * sigmoid(g[0]);
        c0 = acc0 * scale;
        c1 = acc1 * scale;
    }
    const float mix = sigmoid(g[1]);
    const float inv_count = __fdiv_rn(1.0f, (float)(t + 1));
    const float *vp = vsum + 2 * lane;
    const float o0 = mix * c0 + (1.0f - mix) * (vp[0] * inv_count);
    const float o1 = mix * c1 + (1.0f - mix) * (vp[1] * inv_count);
    reinterpret_cast<__half2 *>(dst)[lane] = __floats2half2_rn(o0, o1);
}

// A decode row's keys [i_begin, i_end) of n (offs: cell_key_offsets' prefix) on one warp, 32 per step, one per lane:
// the step's K and V rows are loaded together (one memory round trip), each row by the whole warp (lane = dims
// 2·lane, 2·lane+1: one coalesced 128-byte read per row, where a row per lane would touch 32 lines per load); the
// 32 dot products are the lanes' partial products reduced by one warp_reduce_scatter, lane u ending with key u's.
// fp32 online softmax over the steps. q: the scaled query (64 floats, shared); kb/vb the head's key/value rows (key j
// at kb + j·64). Leaves the warp's running max, sum and this lane's Σ p·v (dims 2·lane, 2·lane+1) in m_run, l_run,
// acc0, acc1.
__device__ __forceinline__ void decode_sparse_keys(float &m_run, float &l_run, float &acc0, float &acc1, int i_begin,
                                                   int i_end, const int *offs, float s, int row_len, const float *q,
                                                   const __half *__restrict__ kb, const __half *__restrict__ vb,
                                                   const Dims &d) {
    const int lane = threadIdx.x % kWarpSize;
    const float q0 = q[2 * lane], q1 = q[2 * lane + 1];
    m_run = -INFINITY, l_run = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
    for (int base = i_begin; base < i_end; base += kWarpSize) {
        const int i = base + lane;
        const bool valid = i < i_end;
        const int key = valid ? selected_key(i, offs, s, row_len, d) : 0;
        const int n_here = min(kWarpSize, i_end - base);
        uint32_t kw[kWarpSize], vw[kWarpSize];  // this lane's two dims of the step's K and V rows
#pragma unroll
        for (int u = 0; u < kWarpSize; ++u) {
            const int kk = __shfl_sync(kSparseFullMask, key, u);
            kw[u] = u < n_here ? reinterpret_cast<const uint32_t *>(kb + (long long)kk * kHeadDim)[lane] : 0u;
            vw[u] = u < n_here ? reinterpret_cast<const uint32_t *>(vb + (long long)kk * kHeadDim)[lane] : 0u;
        }
        float part[kWarpSize];
#pragma unroll
        for (int u = 0; u < kWarpSize; ++u) {
            const float2 kf = half2_bits_to_float2(kw[u]);
            part[u] = fmaf(q1, kf.y, q0 * kf.x);
        }
        const float dot = warp_reduce_scatter<kWarpSize>(part);  // q · k of this lane's key
        const float score = valid ? dot : -INFINITY;
        const float pj = online_softmax_step(m_run, l_run, acc0, acc1, score, valid);
#pragma unroll
        for (int u = 0; u < kWarpSize; ++u) {
            const float pu = __shfl_sync(kSparseFullMask, pj, u);
            const float2 vv = half2_bits_to_float2(vw[u]);
            acc0 = fmaf(pu, vv.x, acc0);
            acc1 = fmaf(pu, vv.y, acc1);
        }
    }
}

// The merge of n_warps warps' (Σ p·v [64], max, sum of p) rows of part (stride kHeadDim + 2 floats) in warp order
// (deterministic), by one warp: this lane's merged dims 2·lane, 2·lane+1 in a0, a1, the merged sum returned.
__device__ __forceinline__ float merge_sparse_partials(float &a0, float &a1, const float *part, int n_warps) {
    const int lane = threadIdx.x % kWarpSize;
    constexpr int kStride = kHeadDim + 2;
    float m_all = -INFINITY;
    for (int w = 0; w < n_warps; ++w) m_all = fmaxf(m_all, part[w * kStride + kHeadDim]);
    float l_all = 0.0f;
    a0 = 0.0f, a1 = 0.0f;
    for (int w = 0; w < n_warps; ++w) {
        const float m_w = part[w * kStride + kHeadDim];
        if (m_w == -INFINITY) continue;  // a warp without keys (uniform over the warp)
        const float f = expf(m_w - m_all);
        l_all = fmaf(part[w * kStride + kHeadDim + 1], f, l_all);
        a0 = fmaf(part[w * kStride + 2 * lane], f, a0);
        a1 = fmaf(part[w * kStride + 2 * lane + 1], f, a1);
    }
    return l_all;
}

}  // namespace seaopt::cuda::sea
