// SEA incremental decode: the device code of one row's stages that both the decode kernels (sea_decode_cuda.cu,
// sea_cnn_cuda.cu, sea_sparse_cuda.cu) and the persistent decode kernel (engine/cuda/decode_persistent.cu, where a
// SEA layer's attention runs inside the step) run, so that the two compute the same sums in the same order.
// Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::sea {

// ---- estimator (sea_decode_cuda.cu) ----

// out[o] = Σ_i x[i]·w[o·IN + i] + b[o] for o < n_out (x in shared memory, w in shared or global memory), by kWarps
// warps (threads 0 .. 32·kWarps-1): a warp per output, lanes over the IN
// inputs, kOutsPerRound outputs per warp and round so that their loads are in flight together.
template <int IN, int kWarps, int kOutsPerRound>
__device__ __forceinline__ void warp_gemv(float *out, const float *x, const float *w, const float *__restrict__ b,
                                          int n_out) {
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    float xv[IN / kWarpSize];
#pragma unroll
    for (int u = 0; u < IN / kWarpSize; ++u) xv[u] = x[lane + kWarpSize * u];
    for (int o0 = warp * kOutsPerRound; o0 < n_out; o0 += kWarps * kOutsPerRound) {
        float acc[kOutsPerRound];
#pragma unroll
        for (int q2 = 0; q2 < kOutsPerRound; ++q2) {
            float a = 0.0f;
            if (o0 + q2 < n_out) {
                const float *wo = w + (o0 + q2) * IN + lane;
#pragma unroll
                for (int u = 0; u < IN / kWarpSize; ++u) a = fmaf(xv[u], wo[kWarpSize * u], a);
            }
            acc[q2] = a;
        }
#pragma unroll
        for (int q2 = 0; q2 < kOutsPerRound; ++q2) {
            const float a = warp_reduce_sum(acc[q2]);
            if (lane == 0 && o0 + q2 < n_out) out[o0 + q2] = a + b[o0 + q2];
        }
    }
}

// Performer features of a decode row (sea.md §2.3) by threads 0..m-1 (φ(q)) and 64..64+m-1 (φ(k)): xq, xk the
// normalised q and k, w_perf the projection staged [m][65].
__device__ __forceinline__ void decode_features(float *phq, float *phk, const float *xq, const float *xk,
                                                const float *w_perf, int m, int tid) {
    if (tid < 2 * kHeadDim) {
        const int j = tid % kHeadDim;
        const float *xs = tid < kHeadDim ? xq : xk;
        if (j < m) {
            const float *wj = w_perf + j * (kHeadDim + 1);
            float acc = 0.0f;
#pragma unroll 16
            for (int dd = 0; dd < kHeadDim; ++dd) acc = fmaf(xs[dd], wj[dd], acc);
            (tid < kHeadDim ? phq : phk)[j] = fmaxf(acc, 0.0f) + kFeatureEps;
        }
    }
}

// The Performer step on state column e (S_kv[·][e], or S_k in column 128): perf[j][e] = old(j) + φ(k)_j · ve for
// j < m (written back), and the column's φ(q)-weighted sum (+1e-6 in S_k's), returned.
template <typename Old>
__device__ __forceinline__ float performer_state_column(float *perf, const float *phq, const float *phk, float ve,
                                                        int e, int m, const Old &old) {
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < kMaxFeatures; ++j) {
        if (j < m) {
            const float nv = fmaf(phk[j], ve, old(j));
            perf[(size_t)j * kStateCols + e] = nv;
            acc = fmaf(phq[j], e == kVcat ? nv + kLinearAttnEps : nv, acc);
        }
    }
    return acc;
}

// ---- causal convs (sea_cnn_cuda.cu) ----

inline constexpr int kDecodeConvThreads = 128;  // threads that sum one decode conv output channel

// Tap i of output channel co as the decode convs stage them ([C][9]: input channel i / 9, live kernel rows 0..2 of
// the stored [5][3]), w ⊙ mask (wmask may be null).
__device__ __forceinline__ float decode_conv_tap(const float *w, const float *wmask, int co, int i, int C) {
    const size_t at = ((size_t)co * C + i / 9) * kConvStoredTaps + i % 9;
    return wmask ? w[at] * wmask[at] : w[at];
}

// One conv output channel of a decode row, as causal_conv_kernel sums it: rows [3][C][W4] (input rows p-4, p-2, p;
// zeros before position 0) and taps [C][9] (w ⊙ mask, live kernel rows 0..2) in shared memory. Thread tid < G·W4,
// (g, x) = (tid / W4, tid % W4), sums input channels g, g + G, ... at column x into part[g][x]; after a barrier,
// decode_conv_output(part, bias, x) adds the G partial sums in order: ReLU(bias + Σ).
__device__ __forceinline__ void decode_conv_partial(float *part, const float *rows, const float *taps, int tid, int G,
                                                    const Dims &d) {
    const int C = d.C, W4 = d.W4;
    const int x = tid % W4, g = tid / W4;
    if (g < G) {
        float acc = 0.0f;
        for (int ci = g; ci < C; ci += G) {
            const float *tk = taps + ci * 9;
#pragma unroll
            for (int a = 0; a < 3; ++a) {
                const float *in = rows + (a * C + ci) * W4;
#pragma unroll
                for (int bb = 0; bb < 3; ++bb) {
                    const int xx = x - 2 + 2 * bb;
                    if (xx >= 0 && xx < W4) acc = fmaf(tk[a * 3 + bb], in[xx], acc);
                }
            }
        }
        part[g * W4 + x] = acc;
    }
}

__device__ __forceinline__ float decode_conv_output(const float *part, float bias, int x, int G, int W4) {
    float acc = bias;
    for (int gg = 0; gg < G; ++gg) acc += part[gg * W4 + x];
    return fmaxf(acc, 0.0f);
}

// ---- CNN output (sea_cnn_cuda.cu) ----

// The operands of cnn_output_row that depend on the parameters only, staged once per block by all its threads: the
// 1×1 conv's weights w ⊙ mask of heads h0 .. h0+nh-1 ([nh][C]) and each output column's "area" window [start, end)
// of padded columns ([K]); the rows then read shared memory instead of two global loads per weight and two integer
// divisions per column. Their bytes: cnn_output_operand_floats(d, nh) floats, 8-byte aligned.
__host__ __device__ inline int cnn_output_operand_floats(const Dims &d, int nh) { return nh * d.C + 2 * d.K; }

// The 1×1 conv's weight (w ⊙ mask) at flat index at = head·C + channel, and output column x's "area" window
// [start, end) of padded columns: the two operands stage_cnn_output_operands stages (the persistent decode kernel
// stages them too, its loads batched).
__device__ __forceinline__ float cnn_output_weight(const SeaDeviceParams &p, int at) {
    return p.conv4_mask ? p.conv4_w[at] * p.conv4_mask[at] : p.conv4_w[at];
}
__device__ __forceinline__ int2 cnn_output_window(int x, int K) {
    return make_int2(x * (K + 2) / K, ((x + 1) * (K + 2) + K - 1) / K);
}

static __device__ void stage_cnn_output_operands(float *w4, int2 *win, int h0, int nh, const SeaDeviceParams &p,
                                                 const Dims &d) {
    for (int i = threadIdx.x; i < nh * d.C; i += blockDim.x) {
        w4[i] = cnn_output_weight(p, h0 * d.C + i);  // head h0 + i / C, channel i % C
    }
    for (int x = threadIdx.x; x < d.K; x += blockDim.x) win[x] = cnn_output_window(x, d.K);
}

// One (t, h) row on one warp (the decode's kernel): yt the conv2 row of t ([2H][K/4]); bias the 1×1 conv's bias of
// head h, norm_w / norm_b LayerNorm_K's (cnn_norm2); w4h head h's C staged weights and win the staged windows
// (stage_cnn_output_operands); narrow (K/4 floats) and logit (K floats) warp-private
// scratch; leaves Â[t, h, ·] in logit. The prefill's K = 64 runs a thread per row instead (cnn_output_row_k64).
static __device__ void cnn_output_row(float *logit, float *narrow, const float *__restrict__ yt, float bias,
                                      const float *norm_w, const float *norm_b, const Dims &d, const float *w4h,
                                      const int2 *win) {
    const int lane = threadIdx.x % kWarpSize;
    const int C = d.C, W4 = d.W4, K = d.K;
    if (W4 <= kWarpSize / 2) {
        // Half-warps take the even and the odd channels of column x = lane % 16, then add.
        const int x = lane % (kWarpSize / 2), half = lane / (kWarpSize / 2);
        float acc = 0.0f;
        if (x < W4) {
#pragma unroll 8
            for (int c = half; c < C; c += 2) acc = fmaf(w4h[c], yt[(size_t)c * W4 + x], acc);
        }
        acc += __shfl_xor_sync(0xffffffffu, acc, kWarpSize / 2);
        if (half == 0 && x < W4) narrow[x] = bias + acc;
    } else {
        for (int x = lane; x < W4; x += kWarpSize) {
            float acc = bias;
#pragma unroll 8
            for (int c = 0; c < C; ++c) acc = fmaf(w4h[c], yt[(size_t)c * W4 + x], acc);
            narrow[x] = acc;
        }
    }
    __syncwarp();
    // Padded column i (0..K+1): the bias at i = 0 and K+1, else narrow[(i-1)/4]; window mean; LayerNorm_K.
    float sum = 0.0f;
    for (int x = lane; x < K; x += kWarpSize) {
        const int start = win[x].x, end = win[x].y;
        float s = 0.0f;
        for (int i = start; i < end; ++i) s += (i == 0 || i == K + 1) ? bias : narrow[(i - 1) >> 2];  // i >= 1 there
        const float v = s / (float)(end - start);
        logit[x] = v;
        sum += v;
    }
    const float mean = warp_reduce_sum(sum) / (float)K;
    float sq = 0.0f;
    for (int x = lane; x < K; x += kWarpSize) sq += (logit[x] - mean) * (logit[x] - mean);
    const float rstd = 1.0f / sqrtf(warp_reduce_sum(sq) / (float)K + kLayerNormEps);
    float mx = -INFINITY;
    for (int x = lane; x < K; x += kWarpSize) {
        const float v = (logit[x] - mean) * rstd * norm_w[x] + norm_b[x];
        logit[x] = v;
        mx = fmaxf(mx, v);
    }
    mx = warp_reduce_max(mx);
    float es = 0.0f;
    for (int x = lane; x < K; x += kWarpSize) {
        const float e = expf(logit[x] - mx);
        logit[x] = e;
        es += e;
    }
    const float inv = 1.0f / warp_reduce_sum(es);
    for (int x = lane; x < K; x += kWarpSize) logit[x] *= inv;
    __syncwarp();
}

// ---- sparse attention (sea_sparse_cuda.cu) ----

inline constexpr unsigned kFull = 0xffffffffu;

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

// Warp `warp` of kW's share of a (query, head) row's selected keys (offs: cell_key_offsets; q: the scaled query in
// shared memory): keys [w·n/kW, (w+1)·n/kW) of the row's n in steps of 32, one per lane, the step's K rows and V rows
// loaded together (one memory round trip), an fp32 online softmax. Key j of the head at kb / vb + j·64, except key
// `own` (the step's own row; only with kOwnRow), whose K and V rows are k_own / v_own. Leaves the warp's running max
// and sum of p (every lane) and this lane's two dims of Σ p·v.
template <int kW, bool kOwnRow>
__device__ __forceinline__ void sparse_row_warp_part(float &m_run, float &l_run, float &acc0, float &acc1,
                                                     const int *offs, const float *q, const __half *kb,
                                                     const __half *vb, int own, const __half *k_own,
                                                     const __half *v_own, float s, int row_len, const Dims &d,
                                                     int warp) {
    const int lane = threadIdx.x % kWarpSize;
    const int n_keys = offs[d.K];
    const int i_end = (int)((long long)(warp + 1) * n_keys / kW);
    m_run = -INFINITY;
    l_run = acc0 = acc1 = 0.0f;
    for (int base = (int)((long long)warp * n_keys / kW); base < i_end; base += kWarpSize) {
        const int i = base + lane;
        const bool valid = i < i_end;
        const int key = valid ? selected_key(i, offs, s, row_len, d) : 0;
        const int n_here = min(kWarpSize, i_end - base);
        uint32_t vw[kWarpSize];  // this lane's two dims of the step's V rows, issued with the K loads
#pragma unroll
        for (int u = 0; u < kWarpSize; ++u) {
            const int kk = __shfl_sync(kFull, key, u);
            const __half *vrow = kOwnRow && kk == own ? v_own : vb + (long long)kk * kHeadDim;
            vw[u] = u < n_here ? reinterpret_cast<const uint32_t *>(vrow)[lane] : 0u;
        }
        const float score =
            valid ? dot_q_key(q, kOwnRow && key == own ? k_own : kb + (long long)key * kHeadDim) : -INFINITY;
        const float pj = online_softmax_step(m_run, l_run, acc0, acc1, score, valid);
#pragma unroll
        for (int u = 0; u < kWarpSize; ++u) {
            const float pu = __shfl_sync(kFull, pj, u);
            const float2 vv = half2_bits_to_float2(vw[u]);
            acc0 = fmaf(pu, vv.x, acc0);
            acc1 = fmaf(pu, vv.y, acc1);
        }
    }
}

// A warp's part into part[0..65] (Σ p·v over 64 dims, then the max and the sum of p), for sparse_parts_merge.
__device__ __forceinline__ void sparse_part_store(float *part, float m_run, float l_run, float acc0, float acc1) {
    const int lane = threadIdx.x % kWarpSize;
    part[2 * lane] = acc0;
    part[2 * lane + 1] = acc1;
    if (lane == 0) {
        part[kHeadDim] = m_run;
        part[kHeadDim + 1] = l_run;
    }
}

// The kW parts (parts[w·66 ...], after a barrier) merged in warp order by one warp: the sum of p and this lane's two
// dims of Σ p·v, for sparse_row_values.
template <int kW>
__device__ __forceinline__ void sparse_parts_merge(float &l_all, float &a0, float &a1, const float *parts) {
    const int lane = threadIdx.x % kWarpSize;
    constexpr int kStride = kHeadDim + 2;
    float m_all = -INFINITY;
#pragma unroll
    for (int w = 0; w < kW; ++w) m_all = fmaxf(m_all, parts[w * kStride + kHeadDim]);
    l_all = a0 = a1 = 0.0f;
#pragma unroll
    for (int w = 0; w < kW; ++w) {
        const float m_w = parts[w * kStride + kHeadDim];
        if (m_w == -INFINITY) continue;  // a warp without keys (uniform over the warp)
        const float f = expf(m_w - m_all);
        l_all = fmaf(parts[w * kStride + kHeadDim + 1], f, l_all);
        a0 = fmaf(parts[w * kStride + 2 * lane], f, a0);
        a1 = fmaf(parts[w * kStride + 2 * lane + 1], f, a1);
    }
}

// As sparse_attention_row's end (sparse_row_values: this lane's two output dims; sparse_row_output: stored as
// fp16): C = (Σ p·v / Σ p) · σ(s_prob) (0 without keys), out = σ(s_mix)·C + (1-σ(s_mix))·
// (Σ_{j≤t} v_j)/(t+1), this lane's two dims rounded to fp16.
__device__ __forceinline__ float2 sparse_row_values(int t, int n_keys, float l, float acc0, float acc1,
                                                   const SparseRowMix &mx) {
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
    return make_float2(o0, o1);
}

__device__ __forceinline__ void sparse_row_output(__half *__restrict__ dst, int t, int n_keys, float l, float acc0,
                                                  float acc1, const SparseRowMix &mx) {
    const float2 o = sparse_row_values(t, n_keys, l, acc0, acc1, mx);
    reinterpret_cast<__half2 *>(dst)[threadIdx.x % kWarpSize] = __floats2half2_rn(o.x, o.y);
}


}  // namespace seaopt::cuda::sea
