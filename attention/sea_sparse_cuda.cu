// SEA sparse attention on the selected keys (sea.md §2.8-§2.10; sea_cpu.cpp sea_expand_cells_to_keys and
// sparse_attention_row), and the running sums of v the output mixing needs.
//
//   v_prefix_kernel     grid (chunk of 64 rows, head), 64 threads (one per dim): the chunks' Σ v before this one
//                       (from performer_state_kernel, sea_estimator_cuda.cu) plus a running sum over the chunk's rows
//                       -> Σ_{j≤t} v_j [T][H][64] fp32.
//   decode_sparse_attention_kernel  one block of 8 warps per (query, head) of a decode call: the mask row says which
//       cells are kept; each kept cell's key interval [v0, v1) by the authors' fp32 arithmetic (s = fl((t+1)·fl(1/K)),
//       v = min(roundf(fl(c·s)), t+1)) and its key count n = min(v1-v0, k), an exclusive prefix of the counts over
//       the cells (shared memory, K+1 ints); key i is then in the cell found by a binary search of the prefix, at
//       v1 - 1 - ⌊j·len/n⌋ (j = i - prefix; the capped cells' even spacing, descending inside a cell as the FlatCSR
//       order). Keys go 32 per step, one per lane: q·k over 64 dims (eight 16-byte loads of the fp16 K row), an fp32
//       online softmax, Σ p·v with lanes on dims. Then, as sparse_attention_row: C = (Σ p·v / Σ p) · σ(s_prob) (0 for
//       a head without keys), out = σ(s_mix)·C + (1-σ(s_mix))·(Σ_{j≤t} v_j)/(t+1), rounded to fp16. (The prefill's
//       sparse attention is the tensor-core kernel of sea_sparse_flash_cuda.cu.) The row's keys are split over the
//       warps (a decode call has too few rows to fill the GPU one warp each), merged in warp order.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kDecodeSparseWarps = 8;  // warps splitting one decode (query, head) row's keys
constexpr unsigned kFull = 0xffffffffu;

__global__ void __launch_bounds__(kHeadDim)
    v_prefix_kernel(float *__restrict__ v_prefix, const float *__restrict__ v_chunk, QkvView x, Dims d) {
    pdl_wait();  // prefill kernels launch with PDL: the kernel before (top-k) may still read Â, where this writes
    pdl_launch_dependents();
    const int c = blockIdx.x, h = blockIdx.y, dd = threadIdx.x;
    const int t0 = c * kChunk, n_rows = min(kChunk, d.T - t0);
    float run = 0.0f;
    for (int cc = 0; cc < c; ++cc) run += v_chunk[((size_t)cc * d.H + h) * kHeadDim + dd];
    const __half *vb = v_at(x, 0, h) + dd;
    // 16 rows' loads issued before their stores: a store to v_prefix would otherwise order the next load behind it,
    // one memory round trip per row (Nsight Compute: 74% of the kernel's stall samples on that load, IPC 0.25).
    constexpr int kBatch = 16;
    for (int r0 = 0; r0 < n_rows; r0 += kBatch) {
        float v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            v[u] = r0 + u < n_rows ? __half2float(vb[(long long)(t0 + r0 + u) * x.v_row]) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            if (r0 + u < n_rows) {
                run += v[u];
                v_prefix[((size_t)(t0 + r0 + u) * d.H + h) * kHeadDim + dd] = run;
            }
        }
    }
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
            const int v = __shfl_up_sync(kFull, incl, off);
            if (lane >= off) incl += v;
        }
        if (c < K) offs[c] = carry + incl - n;
        carry += __shfl_sync(kFull, incl, kWarpSize - 1);
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

// The operands of sparse_row_output that do not depend on the keys: the row's gates [s_prob, s_mix] and this lane's
// two dims of Σ_{j≤t} v_j (vsum: the head's 64 floats).
struct SparseRowMix {
    float2 gate, vsum;
};

__device__ __forceinline__ SparseRowMix load_row_mix(const float *__restrict__ g, const float *__restrict__ vsum) {
    const int lane = threadIdx.x % kWarpSize;
    return {make_float2(g[0], g[1]), make_float2(vsum[2 * lane], vsum[2 * lane + 1])};
}

// As sparse_attention_row's end: C = (Σ p·v / Σ p) · σ(s_prob) (0 without keys), out = σ(s_mix)·C + (1-σ(s_mix))·
// (Σ_{j≤t} v_j)/(t+1), this lane's two dims rounded to fp16.
__device__ __forceinline__ void sparse_row_output(__half *__restrict__ dst, int t, int n_keys, float l, float acc0,
                                                  float acc1, const SparseRowMix &mx) {
    const int lane = threadIdx.x % kWarpSize;
    float c0 = 0.0f, c1 = 0.0f;
    if (n_keys > 0) {
        const float scale = (1.0f / l) * sigmoid(mx.gate.x);
        c0 = acc0 * scale;
        c1 = acc1 * scale;
    }
    const float mix = sigmoid(mx.gate.y);
    const float inv_count = __fdiv_rn(1.0f, (float)(t + 1));
    const float o0 = mix * c0 + (1.0f - mix) * (mx.vsum.x * inv_count);
    const float o1 = mix * c1 + (1.0f - mix) * (mx.vsum.y * inv_count);
    reinterpret_cast<__half2 *>(dst)[lane] = __floats2half2_rn(o0, o1);
}

// Decode: block (r, h), the query at position pos[r], its keys in the cache of sequence seq[r], Σv (this row's v
// included, by the estimator kernel) in that sequence's state. A decode call has only R·H (query, head) rows, so
// each row's selected keys are split over kDecodeSparseWarps warps (as flash-decoding splits a context): warp w
// takes keys [w·n/W, (w+1)·n/W) of the row's n in steps of 32, one per lane, loading the step's K rows and V rows
// together (one memory round trip), with an fp32 online softmax; warp 0 then merges the warps' (max, sum, Σ p·v) in
// warp order (deterministic) and writes the output (sparse_row_output).
__global__ void __launch_bounds__(kDecodeSparseWarps * kWarpSize, 1)
    decode_sparse_attention_kernel(__half *__restrict__ out, long long out_row, QkvView x, DecodeView v,
                                   const float *__restrict__ gates, const uint32_t *__restrict__ cell_mask, Dims d) {
    __shared__ int s_offs[kMaxK + 1];
    __shared__ float s_q[kHeadDim];
    __shared__ float s_part[kDecodeSparseWarps][kHeadDim + 2];  // Σ p·v (64 dims), then the max and the sum of p
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    const int rh = (int)blockIdx.x;  // (r, h), r-major
    const int r = rh / d.H, h = rh % d.H;
    // Before the wait: q (from the qkv GEMM), the gates and Σv (from this call's estimator kernel) were written four
    // or more kernels back, complete by the time this kernel starts (see the decode estimator kernel,
    // sea_decode_cuda.cu). Only the mask comes from the kernel just before.
    const int t = v.pos[r], seq = v.seq[r], br = v.row[r];
    const long long cache_off = (long long)seq * v.cache_seq_stride + (long long)h * v.cache_head_stride;
    const __half *kb = v.k_cache + cache_off, *vb = v.v_cache + cache_off;
    const int row_len = t + 1;
    const float s = cell_scale(t, d);
    SparseRowMix mx{};
    if (warp == 0) {
        stage_q(s_q, q_at(x, br, h), x.q_scale);
        mx = load_row_mix(gates + (size_t)rh * 2, state_at(v, seq, v.state.v_sum) + (size_t)h * kHeadDim);
    }
    pdl_wait();
    pdl_launch_dependents();
    if (warp == 0) cell_key_offsets(s_offs, cell_mask + (size_t)rh * d.KW, s, row_len, d);
    __syncthreads();
    const int n_keys = s_offs[d.K];
    const int i_end = (int)((long long)(warp + 1) * n_keys / kDecodeSparseWarps);

    float m_run = -INFINITY, l_run = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
    for (int base = (int)((long long)warp * n_keys / kDecodeSparseWarps); base < i_end; base += kWarpSize) {
        const int i = base + lane;
        const bool valid = i < i_end;
        const int key = valid ? selected_key(i, s_offs, s, row_len, d) : 0;
        const int n_here = min(kWarpSize, i_end - base);
        uint32_t vw[kWarpSize];  // this lane's two dims of the step's V rows, issued with the K loads
#pragma unroll
        for (int u = 0; u < kWarpSize; ++u) {
            const int kk = __shfl_sync(kFull, key, u);
            vw[u] = u < n_here ? reinterpret_cast<const uint32_t *>(vb + (long long)kk * kHeadDim)[lane] : 0u;
        }
        const float score = valid ? dot_q_key(s_q, kb + (long long)key * kHeadDim) : -INFINITY;
        const float pj = online_softmax_step(m_run, l_run, acc0, acc1, score, valid);
#pragma unroll
        for (int u = 0; u < kWarpSize; ++u) {
            const float pu = __shfl_sync(kFull, pj, u);
            const float2 vv = half2_bits_to_float2(vw[u]);
            acc0 = fmaf(pu, vv.x, acc0);
            acc1 = fmaf(pu, vv.y, acc1);
        }
    }
    s_part[warp][2 * lane] = acc0;
    s_part[warp][2 * lane + 1] = acc1;
    if (lane == 0) {
        s_part[warp][kHeadDim] = m_run;
        s_part[warp][kHeadDim + 1] = l_run;
    }
    __syncthreads();
    if (warp != 0) return;
    float m_all = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeSparseWarps; ++w) m_all = fmaxf(m_all, s_part[w][kHeadDim]);
    float l_all = 0.0f, a0 = 0.0f, a1 = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeSparseWarps; ++w) {
        const float m_w = s_part[w][kHeadDim];
        if (m_w == -INFINITY) continue;  // a warp without keys (uniform over the warp)
        const float f = expf(m_w - m_all);
        l_all = fmaf(s_part[w][kHeadDim + 1], f, l_all);
        a0 = fmaf(s_part[w][2 * lane], f, a0);
        a1 = fmaf(s_part[w][2 * lane + 1], f, a1);
    }
    sparse_row_output(out + (long long)br * out_row + (long long)h * kHeadDim, t, n_keys, l_all, a0, a1, mx);
}

}  // namespace

void launch_v_prefix(float *v_prefix, const float *v_chunk, const QkvView &x, const Dims &d, cudaStream_t stream) {
    const dim3 grid((unsigned)d.n_chunks, (unsigned)d.H);
    launch_kernel("sea v_prefix_kernel", programmatic_launch_enabled(), v_prefix_kernel, grid, dim3(kHeadDim), 0,
                  stream, v_prefix, v_chunk, x, d);
}

void launch_decode_sparse_attention(__half *out, long long out_row_stride, const QkvView &x, const DecodeView &v,
                                    const float *gates, const uint32_t *cell_mask, const Dims &d,
                                    cudaStream_t stream) {
    launch_kernel("sea decode_sparse_attention_kernel", programmatic_launch_enabled(), decode_sparse_attention_kernel,
                  dim3((unsigned)(d.T * d.H)), dim3(kDecodeSparseWarps * kWarpSize), 0, stream, out, out_row_stride, x, v,
                  gates, cell_mask, d);
}

}  // namespace seaopt::cuda::sea
