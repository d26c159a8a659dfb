// SEA estimator, back half: the causal CNN decoder (sea.md §2.6 steps 2-9 and the softmax over K; sea_cpu.cpp
// causal_dilated_conv_row and cnn_output_row). Images are token-major [T][2H][K/4], as on the CPU.
//
//   causal_conv_kernel  grid (⌈T/16⌉, ⌈H·K/4 / 256⌉), 256 threads: a thread owns two output channels at one column
//                       for 16 consecutive rows (each staged value feeds 6 FMAs per row it reaches); the block stages
//                       input rows t0-4 .. t0+15 of 8 input channels at a time in shared memory.
//                       y[co,t,x] = ReLU(b[co] + Σ_ci Σ_b Σ_a (w⊙mask)[co,ci,a,b] · in[ci, t-4+2a, x-2+2b]) (summed in
//                       that order), zero outside the image (rows < 0: the causal top padding; in a prefill that
//                       continues a sequence, rows -Dims::hist .. -1 hold the positions before it, from its state).
//   decode_conv_kernel  decode (one row per sequence): grid (R, 2H output channels), 128 threads, the same sum for
//                       the row at the sequence's position p, its input rows p, p-2, p-4 from a history ring of the
//                       sequence's state (slot r % 8), staged in shared memory with the channel's taps.
//   ring_store_kernel   after a prefill: image rows T-4..T-1 into a ring (slot (p0 + r) % 8), for the decode that
//                       follows; history_load_kernel before a continued prefill's convs: the rings' rows of positions
//                       p0-4 .. p0-1 to rows -4 .. -1 of the image and conv1 buffers.
//   cnn_output_kernel   one warp per (t, h), 8 heads of one t per block (t's conv2 row staged once in shared memory):
//                       1×1 conv 2H -> h at width K/4 (it commutes with the ×4 nearest
//                       upsample), the width padded by one bias column each side (K+2), "area" resize back to K
//                       (adaptive average pooling windows [⌊x(K+2)/K⌋, ⌈(x+1)(K+2)/K⌉)), LayerNorm_K, softmax -> Â;
//                       the top-k kernel (sea_topk_cuda.cu) then selects the cells.
//   cnn_output_topk_k64_kernel  K = 64 and H ≤ 32: the same per (t, h) on one thread, a warp per t, and the row's
//                       top-k by the warp -> the cell mask (Â is stored only for the debug copy).
//   decode_cnn_output_topk_kernel  decode: one block of 1024 threads per call row, cnn_output's rows of all heads into
//                       shared memory, then the row's grouped top-k there (sea_topk_select.cuh) -> the cell mask.
//                       (cnn_output_topk_k64_kernel's warp per row made a decode call slower: 31.4 against 25.2 µs.)
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_decode_device.cuh"
#include "attention/sea_topk_select.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kConvRows = 16;                   // output rows per block
constexpr int kConvTileRows = kConvRows + 4;    // input rows t0-4 .. t0+15
constexpr int kConvCi = 8;                      // input channels staged per step
constexpr int kConvCo = 2;                      // output channels per thread
constexpr int kConvThreads = 256;
constexpr int kMaxW4 = kMaxK / 4;
constexpr int kOutWarps = 8;

__global__ void __launch_bounds__(kConvThreads)
    causal_conv_kernel(float *__restrict__ y, const float *__restrict__ x, const float *__restrict__ w,
                       const float *__restrict__ wmask, const float *__restrict__ b, Dims d) {
    __shared__ float tile[kConvTileRows * kConvCi * kMaxW4];  // [row][ci][W4], 40 KB at W4 = 64
    const int C = d.C, W4 = d.W4, T = d.T;
    const int t0 = blockIdx.x * kConvRows;
    // This thread: output channels co, co+1 (C = 2H is even) at column xo, rows t0 .. t0+15.
    const int pair = blockIdx.y * kConvThreads + threadIdx.x;
    const bool active = pair < (C / kConvCo) * W4;
    const int co = active ? pair / W4 * kConvCo : 0, xo = active ? pair % W4 : 0;
    float acc[kConvCo][kConvRows];
#pragma unroll
    for (int o = 0; o < kConvCo; ++o) {
        const float bias = active ? b[co + o] : 0.0f;
#pragma unroll
        for (int rr = 0; rr < kConvRows; ++rr) acc[o][rr] = bias;
    }

    for (int ci0 = 0; ci0 < C; ci0 += kConvCi) {
        const int nci = min(kConvCi, C - ci0);
        __syncthreads();  // the previous slice is consumed
        const int slice = nci * W4;
        for (int i = threadIdx.x; i < kConvTileRows * slice; i += kConvThreads) {
            const int rr = i / slice, rem = i % slice, ci = rem / W4, xx = rem % W4;
            const int row = t0 - 4 + rr;
            tile[(rr * kConvCi + ci) * W4 + xx] =
                (row >= -d.hist && row < T) ? x[((long long)row * C + ci0 + ci) * W4 + xx] : 0.0f;
        }
        __syncthreads();
        if (active) {
            for (int ci = 0; ci < nci; ++ci) {
                // Live kernel rows 0..2 of the stored [5][3] kernel, times the weight mask when given.
                float wk[kConvCo][9];
#pragma unroll
                for (int o = 0; o < kConvCo; ++o) {
                    const size_t wbase = ((size_t)(co + o) * C + ci0 + ci) * kConvStoredTaps;
#pragma unroll
                    for (int i = 0; i < 9; ++i) wk[o][i] = wmask ? w[wbase + i] * wmask[wbase + i] : w[wbase + i];
                }
                // Column xo-2+2b of the 20 staged rows, once for both channels; output row rr reads tile rows rr,
                // rr+2, rr+4 (input rows t-4, t-2, t): 96 FMAs per 20 shared loads. Each output's sum runs over
                // (ci, b, a) in that order, as the CPU's.
#pragma unroll
                for (int bb = 0; bb < 3; ++bb) {
                    const int xx = xo - 2 + 2 * bb;
                    if (xx < 0 || xx >= W4) continue;
                    const float *col = tile + ci * W4 + xx;
                    float v[kConvTileRows];
#pragma unroll
                    for (int r = 0; r < kConvTileRows; ++r) v[r] = col[r * kConvCi * W4];
#pragma unroll
                    for (int o = 0; o < kConvCo; ++o) {
#pragma unroll
                        for (int a = 0; a < 3; ++a) {
#pragma unroll
                            for (int rr = 0; rr < kConvRows; ++rr) {
                                acc[o][rr] = fmaf(wk[o][a * 3 + bb], v[rr + 2 * a], acc[o][rr]);
                            }
                        }
                    }
                }
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int o = 0; o < kConvCo; ++o) {
#pragma unroll
        for (int rr = 0; rr < kConvRows; ++rr) {
            const int t = t0 + rr;
            if (t < T) y[((size_t)t * C + co + o) * W4 + xo] = fmaxf(acc[o][rr], 0.0f);
        }
    }
}


// Block (t, g): heads 8g .. 8g+7 of row t, one warp each; the conv2 row of t (2H·K/4 floats) is staged in
// shared memory once for the block's warps.
__global__ void __launch_bounds__(kOutWarps * kWarpSize)
    cnn_output_kernel(float *__restrict__ probs, const float *__restrict__ y, SeaDeviceParams p, Dims d) {
    extern __shared__ float s_row[];  // [2H][K/4], then the block's operands (stage_cnn_output_operands)
    __shared__ float s_narrow[kOutWarps][kMaxW4];
    __shared__ float s_logit[kOutWarps][kMaxK];
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    const int h0 = blockIdx.y * kOutWarps, nh = min(kOutWarps, d.H - h0);
    const int t = blockIdx.x, h = h0 + warp;
    const int n = d.C * d.W4;
    float *w4 = s_row + n;  // n = 2H·K/4 is even: 8-byte aligned
    int2 *win = reinterpret_cast<int2 *>(w4 + nh * d.C + (nh * d.C) % 2);
    stage_cnn_output_operands(w4, win, h0, nh, p, d);  // parameters: before the wait
    pdl_wait();  // launched with PDL: conv2 (the kernel before) may still be running
    pdl_launch_dependents();
    const float *yt = y + (size_t)t * n;
    if (n % 4 == 0) {  // rows 16-byte aligned: float4 loads (2H·K/4 = 1,024 floats: one per thread at OPT-1.3B)
        const float4 *src = reinterpret_cast<const float4 *>(yt);
        float4 *dst = reinterpret_cast<float4 *>(s_row);
        for (int i = threadIdx.x; i < n / 4; i += kOutWarps * kWarpSize) dst[i] = src[i];
    } else {
        for (int i = threadIdx.x; i < n; i += kOutWarps * kWarpSize) s_row[i] = yt[i];
    }
    __syncthreads();
    if (h >= d.H) return;  // uniform across the warp
    float *logit = s_logit[warp];
    cnn_output_row(logit, s_narrow[warp], s_row, p.conv4_b[h], p.cnn_norm2_w, p.cnn_norm2_b, d, w4 + warp * d.C, win);
    float *dst = probs + ((size_t)t * d.H + h) * d.K;
    for (int x = lane; x < d.K; x += kWarpSize) dst[x] = logit[x];
}

// The prefill's CNN output and top-k for K = 64 and H ≤ 32 (every OPT shape SEA runs): a warp per query row t,
// lane h computing head h's row of Â in registers, then the row's selection by the warp; 4 rows per block. The rows'
// conv2 rows are staged in shared memory (the lanes read the same row: broadcasts), the 1×1 conv's weights w ⊙ mask
// as [H][C + 1] (odd stride: the lanes meet in other banks). A warp per (t, h) spent ~640 instructions a row on its
// reductions and staging, and the separate top-k kernel read Â back (16.8 MB at OPT-1.3B, T = 2048); here Â stays
// in registers and is stored only for the debug copy.
// The operations and their order are those of cnn_output_row: even and odd channels summed apart and then added, each
// window's two columns, and every 64-value sum as the warp's butterfly adds them (lane l's v[l] + v[l+32], then halves
// 16, 8, 4, 2, 1), so Â is the same; the selection is topk_select's (larger value first, then smaller flat index h·K + c).
constexpr int kOut64Warps = 4;
constexpr int kOut64 = 64, kOut64W4 = kOut64 / 4;

__host__ __device__ inline int out64_row_stride(const Dims &d) { return d.C * kOut64W4 + 4; }

// s[0] = the sum of the 32 lane values s[l] as warp_reduce_sum's butterfly adds them: halves 16, 8, 4, 2, 1.
__device__ __forceinline__ void halve_lane_sums(float (&s)[kWarpSize]) {
#pragma unroll
    for (int step = 0; step < 5; ++step) {
        const int off = (kWarpSize / 2) >> step;
#pragma unroll
        for (int l = 0; l < kWarpSize / 2; ++l) {
            if (l < off) s[l] = s[l] + s[l + off];
        }
    }
}

// The sum of v[0..63] in the order warp_reduce_sum adds a warp's lane sums (0 + v[l]) + v[l + 32].
__device__ __forceinline__ float butterfly_sum64(const float (&v)[kOut64]) {
    float s[kWarpSize];
#pragma unroll
    for (int l = 0; l < kWarpSize; ++l) s[l] = (0.0f + v[l]) + v[l + kWarpSize];
    halve_lane_sums(s);
    return s[0];
}

// v = Â[t, h, ·] from t's conv2 row yt ([C][16], shared), head h's weights wh ([C], shared), its bias and the
// LayerNorm_K parameters norm_w, norm_b ([64] each, shared).
__device__ __forceinline__ void cnn_output_row_k64(float (&v)[kOut64], const float *yt, const float *wh, int C,
                                                   float bias, const float *norm_w, const float *norm_b) {
    // 1×1 conv at width 16: even and odd channels apart (cnn_output_row's two half-warps), then added.
    float narrow[kOut64W4];
    {
        float ae[kOut64W4], ao[kOut64W4];
#pragma unroll
        for (int x = 0; x < kOut64W4; ++x) ae[x] = ao[x] = 0.0f;
#pragma unroll 2
        for (int c = 0; c < C; c += 2) {
            const float we = wh[c], wo = wh[c + 1];
            const float4 *ye = reinterpret_cast<const float4 *>(yt + c * kOut64W4);
            const float4 *yo = reinterpret_cast<const float4 *>(yt + (c + 1) * kOut64W4);
#pragma unroll
            for (int j = 0; j < kOut64W4 / 4; ++j) {
                const float4 a = ye[j], b = yo[j];
                ae[4 * j + 0] = fmaf(we, a.x, ae[4 * j + 0]);
                ae[4 * j + 1] = fmaf(we, a.y, ae[4 * j + 1]);
                ae[4 * j + 2] = fmaf(we, a.z, ae[4 * j + 2]);
                ae[4 * j + 3] = fmaf(we, a.w, ae[4 * j + 3]);
                ao[4 * j + 0] = fmaf(wo, b.x, ao[4 * j + 0]);
                ao[4 * j + 1] = fmaf(wo, b.y, ao[4 * j + 1]);
                ao[4 * j + 2] = fmaf(wo, b.z, ao[4 * j + 2]);
                ao[4 * j + 3] = fmaf(wo, b.w, ao[4 * j + 3]);
            }
        }
#pragma unroll
        for (int x = 0; x < kOut64W4; ++x) narrow[x] = bias + (ae[x] + ao[x]);
    }
    // Windows of two padded columns (x, x+1 for x < 32, x+1, x+2 beyond; 0 and 65 are the bias), LayerNorm_K, softmax.
#pragma unroll
    for (int x = 0; x < kOut64; ++x) {
        const int i0 = x + x / kWarpSize, i1 = i0 + 1;
        float s = 0.0f;
        s += i0 == 0 ? bias : narrow[(i0 - 1) >> 2];
        s += i1 == kOut64 + 1 ? bias : narrow[(i1 - 1) >> 2];
        v[x] = s / 2.0f;
    }
    const float mean = butterfly_sum64(v) / (float)kOut64;
    // cnn_output_row's lane sum of squares is fmaf(d1, d1, d0·d0) for its columns l and l + 32: the same here.
    float sqs[kWarpSize];
#pragma unroll
    for (int l = 0; l < kWarpSize; ++l) {
        const float d0 = v[l] - mean, d1 = v[l + kWarpSize] - mean;
        sqs[l] = fmaf(d1, d1, d0 * d0);
    }
    halve_lane_sums(sqs);
    const float rstd = 1.0f / sqrtf(sqs[0] / (float)kOut64 + kLayerNormEps);
    float mx = -INFINITY;
#pragma unroll
    for (int x = 0; x < kOut64; ++x) {
        v[x] = (v[x] - mean) * rstd * norm_w[x] + norm_b[x];
        mx = fmaxf(mx, v[x]);
    }
#pragma unroll
    for (int x = 0; x < kOut64; ++x) v[x] = expf(v[x] - mx);
    const float inv = 1.0f / butterfly_sum64(v);
#pragma unroll
    for (int x = 0; x < kOut64; ++x) v[x] *= inv;
}

// The two mask words of lane h's cells among the `budget` largest of the warp's H·64 keys (lanes ≥ H hold keys 0,
// below every real key): τ, the budget-th largest key, bit by bit from the top (count the keys ≥ a candidate, keep the
// bit while at least `budget` are), then every key > τ and, of the keys == τ, the first ones in flat order h·64 + c.
__device__ __forceinline__ uint2 warp_topk_words_k64(const uint32_t (&key)[kOut64], int budget) {
    constexpr unsigned kFull = 0xffffffffu;
    uint32_t prefix = 0u;
    for (int b = 31; b >= 0; --b) {
        const uint32_t cand = prefix | (1u << b);
        uint32_t cnt = 0u;
#pragma unroll
        for (int x = 0; x < kOut64; ++x) cnt += key[x] >= cand ? 1u : 0u;
        if (__reduce_add_sync(kFull, cnt) >= (uint32_t)budget) prefix = cand;
    }
    const uint32_t tau = prefix;
    uint32_t above = 0u, eq = 0u;
#pragma unroll
    for (int x = 0; x < kOut64; ++x) {
        above += key[x] > tau ? 1u : 0u;
        eq += key[x] == tau ? 1u : 0u;
    }
    const uint32_t need = (uint32_t)budget - __reduce_add_sync(kFull, above);  // >= 1 keys == τ to keep
    uint32_t take = eq;
    if (__reduce_add_sync(kFull, eq) != need) {  // more ties than places: the smallest flat indices
        const uint32_t before = warp_inclusive_sum(eq, threadIdx.x % kWarpSize) - eq;
        take = before >= need ? 0u : min(eq, need - before);
    }
    uint32_t w[2] = {0u, 0u}, taken = 0u;
#pragma unroll
    for (int x = 0; x < kOut64; ++x) {
        bool keep = key[x] > tau;
        if (key[x] == tau) {
            keep = taken < take;
            ++taken;
        }
        if (keep) w[x / kWarpSize] |= 1u << (x % kWarpSize);
    }
    return make_uint2(w[0], w[1]);
}

__global__ void __launch_bounds__(kOut64Warps * kWarpSize)
    cnn_output_topk_k64_kernel(uint32_t *__restrict__ cell_mask, float *__restrict__ probs,
                               const float *__restrict__ y, SeaDeviceParams p, Dims d) {
    extern __shared__ float smem[];
    const int H = d.H, C = d.C, n = C * kOut64W4, rs = out64_row_stride(d), ws = C + 1;
    float *s_rows = smem;                    // [4][rs]
    float *s_w = s_rows + kOut64Warps * rs;  // [H][C + 1]
    float *s_par = s_w + H * ws;             // conv4_b [H], LayerNorm_K w [64], b [64]
    const int warp = threadIdx.x / kWarpSize, h = threadIdx.x % kWarpSize;
    const int t0 = blockIdx.x * kOut64Warps, n_t = min(kOut64Warps, d.T - t0);

    for (int i = threadIdx.x; i < H * C; i += kOut64Warps * kWarpSize) {  // parameters: before the wait
        const float w = p.conv4_mask ? p.conv4_w[i] * p.conv4_mask[i] : p.conv4_w[i];
        s_w[(i / C) * ws + i % C] = w;
    }
    for (int i = threadIdx.x; i < H; i += kOut64Warps * kWarpSize) s_par[i] = p.conv4_b[i];
    for (int i = threadIdx.x; i < kOut64; i += kOut64Warps * kWarpSize) {
        s_par[H + i] = p.cnn_norm2_w[i];
        s_par[H + kOut64 + i] = p.cnn_norm2_b[i];
    }
    pdl_wait();  // launched with PDL: conv2 (the kernel before) may still be running
    pdl_launch_dependents();
    {
        // Rows t0 .. t0 + n_t - 1 are contiguous in y: n / 4 float4s each (n = 16·C).
        const int q = n / 4, total = n_t * q;
        const float4 *src = reinterpret_cast<const float4 *>(y + (size_t)t0 * n);
        for (int i = threadIdx.x; i < total; i += kOut64Warps * kWarpSize) {
            reinterpret_cast<float4 *>(s_rows + (i / q) * rs)[i % q] = src[i];
        }
    }
    __syncthreads();
    if (warp >= n_t) return;  // whole warps
    const int t = t0 + warp;
    uint32_t key[kOut64];
    if (h < H) {
        float v[kOut64];
        cnn_output_row_k64(v, s_rows + warp * rs, s_w + h * ws, C, s_par[h], s_par + H, s_par + H + kOut64);
        if (probs) {  // the debug copy of Â
            float4 *dst = reinterpret_cast<float4 *>(probs + ((size_t)t * H + h) * kOut64);
#pragma unroll
            for (int j = 0; j < kOut64 / 4; ++j) dst[j] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
        }
#pragma unroll
        for (int x = 0; x < kOut64; ++x) key[x] = topk_order_key(v[x]);
    } else {
#pragma unroll
        for (int x = 0; x < kOut64; ++x) key[x] = 0u;
    }
    const int budget = row_budget(query_position(t, d), d);
    const uint2 words = budget >= H * kOut64 ? make_uint2(~0u, ~0u) : warp_topk_words_k64(key, budget);
    if (h < H) reinterpret_cast<uint2 *>(cell_mask)[(size_t)t * H + h] = words;  // KW = 2 words per (t, h)
}

constexpr int kDecodeTopkThreads = 1024;  // 32 warps: one per head (more heads loop)
constexpr int kDecodeTopkWarps = kDecodeTopkThreads / kWarpSize;

// Decode: the CNN output and the top-k of row r of the call in one block: warp w computes Â[r, h, ·] of heads
// h = w, w + 32, ... (cnn_output_row) into shared memory, where the values become the top-k's keys in place (and
// go to probs, the decode scratch, as cnn_output_kernel writes them); then the block selects the row's cells
// (topk_select) and writes its mask words. One launch and one round trip of Â fewer than the two kernels.
__global__ void __launch_bounds__(kDecodeTopkThreads, 1)
    decode_cnn_output_topk_kernel(uint32_t *__restrict__ cell_mask, float *__restrict__ probs,
                                  const float *__restrict__ y, SeaDeviceParams p, Dims d) {
    // keys [H·K] (Â as floats first), then the row's mask words [H·KW], then the CNN output's operands
    // (stage_cnn_output_operands), LayerNorm_K's weight and bias [2][K] and the row's conv2 output [C][K/4]
    // (decode_cnn_output_topk_smem_bytes)
    extern __shared__ uint32_t dtk[];
    __shared__ float s_narrow[kDecodeTopkWarps][kMaxW4];
    __shared__ TopkShared<kDecodeTopkThreads> sh;
    const int r = blockIdx.x, tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
    const int K = d.K, n = d.H * d.K, n_words = d.H * d.KW;
    uint32_t *keys = dtk, *mw = dtk + n;
    float *w4 = reinterpret_cast<float *>(dtk + n + n_words + (n + n_words) % 2);
    int2 *win = reinterpret_cast<int2 *>(w4 + d.H * d.C);  // H·C = 2H² is even
    float *norm2 = reinterpret_cast<float *>(win + K), *yt = norm2 + 2 * K;
    // Parameters only, before the wait: the 1×1 conv's operands, LayerNorm_K's weight and bias, the heads' biases.
    stage_cnn_output_operands(w4, win, 0, d.H, p, d);
    for (int x = tid; x < K; x += kDecodeTopkThreads) {
        norm2[x] = p.cnn_norm2_w[x];
        norm2[K + x] = p.cnn_norm2_b[x];
    }
    const float bias_first = warp < d.H ? p.conv4_b[warp] : 0.0f;  // the bias of this warp's first head
    pdl_wait();
    pdl_launch_dependents();
    // The row's conv2 output, from the kernel just before: a block-wide batch of loads (C·K/4 floats, at K = 64 one a
    // thread) before any store, where each warp's channel loop had made four round trips of its own.
    {
        const float *src = y + (size_t)r * d.C * d.W4;
        stage_batched<kDecodeTopkThreads, 4>(
            d.C * d.W4, [&](int i) { return src[i]; }, [&](int i, float v) { yt[i] = v; });
    }
    for (int i = tid; i < n_words; i += kDecodeTopkThreads) mw[i] = 0u;
    __syncthreads();
    for (int h = warp; h < d.H; h += kDecodeTopkWarps) {  // uniform across the warp
        float *logit = reinterpret_cast<float *>(keys + (size_t)h * K);
        cnn_output_row(logit, s_narrow[warp], yt, h == warp ? bias_first : p.conv4_b[h], norm2, norm2 + K, d,
                       w4 + h * d.C, win);
        float *dst = probs + ((size_t)r * d.H + h) * K;
        for (int x = lane; x < K; x += kWarpSize) {
            const float v = logit[x];
            dst[x] = v;
            keys[(size_t)h * K + x] = topk_order_key(v);
        }
    }
    __syncthreads();
    topk_select<kDecodeTopkThreads>(keys, mw, n, row_budget(query_position(r, d), d), K, d.KW, sh);
    uint32_t *out = cell_mask + (size_t)r * n_words;
    for (int i = tid; i < n_words; i += kDecodeTopkThreads) out[i] = mw[i];
}

// One block per (row, output channel): the three input rows (all channels) and the channel's live taps are staged in
// shared memory; thread (g, x) sums input channels g, g + G, ... (G = 128 / (K/4) groups) for column x, then the
// groups are added in a fixed order.
__global__ void __launch_bounds__(kDecodeConvThreads)
    decode_conv_kernel(DecodeView v, size_t in_offset, size_t out_offset, float *__restrict__ out,
                       const float *__restrict__ w, const float *__restrict__ wmask, const float *__restrict__ b,
                       Dims d) {
    extern __shared__ float dsm[];  // rows [3][C][W4], taps [C][9], partial sums [G][W4]
    const int C = d.C, W4 = d.W4, r = blockIdx.x, co = blockIdx.y, tid = threadIdx.x;
    const int G = kDecodeConvThreads / W4;
    float *rows = dsm, *taps = dsm + 3 * C * W4, *part = taps + 9 * C;
    // The taps are weights: staged before waiting for the kernel before (engine/cuda/pdl.cuh).
    for (int i = tid; i < 9 * C; i += kDecodeConvThreads) {
        taps[i] = decode_conv_tap(w, wmask, co, i, C);
    }
    // Rows pos-4 and pos-2 of the input ring were written by this layer's earlier calls, which have completed when
    // this kernel starts (see the decode estimator kernel, sea_decode_cuda.cu): staged before the wait too. Row pos
    // comes from the kernel just before.
    const int pos = v.pos[r], seq = v.seq[r];
    const float *ring = state_at(v, seq, in_offset);
    const int n_img = C * W4;
    auto stage_row = [&](int a) {
        const int row = pos - 4 + 2 * a;  // rows before position 0 are the causal zero padding
        const float *src = ring + (size_t)(row < 0 ? 0 : row % kHistoryRows) * n_img;
#pragma unroll 8
        for (int i = tid; i < n_img; i += kDecodeConvThreads) rows[a * n_img + i] = row >= 0 ? src[i] : 0.0f;
    };
    stage_row(0);
    stage_row(1);
    pdl_wait();
    pdl_launch_dependents();
    stage_row(2);
    __syncthreads();
    decode_conv_partial(part, rows, taps, tid, G, d);
    __syncthreads();
    if (tid < W4) {
        float *dst = out_offset == SIZE_MAX ? out + (size_t)r * C * W4
                                            : state_at(v, seq, out_offset) + (size_t)(pos % kHistoryRows) * C * W4;
        dst[(size_t)co * W4 + tid] = decode_conv_output(part, b[co], tid, G, W4);
    }
}

__global__ void ring_store_kernel(float *__restrict__ ring, const float *__restrict__ image, Dims d) {
    const int row = d.T - 1 - (int)blockIdx.x;  // blocks 0..3: rows T-1 .. T-4
    if (row < 0) return;  // a short continued prefill: the slots of the positions before it stay
    const int n = d.C * d.W4;
    float *dst = ring + (size_t)((d.p0 + row) % kHistoryRows) * n;
    const float *src = image + (size_t)row * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

// Block (b, which): row -1 - b (position p0 - 1 - b) of the image (which = 0) or conv1 (1) buffer, from its ring.
__global__ void history_load_kernel(float *__restrict__ image, float *__restrict__ conv1,
                                    const float *__restrict__ image_ring, const float *__restrict__ conv1_ring, Dims d) {
    const int row = -1 - (int)blockIdx.x;
    if (-row > d.hist) return;
    const int n = d.C * d.W4;
    const float *src = (blockIdx.y ? conv1_ring : image_ring) + (size_t)((d.p0 + row) % kHistoryRows) * n;
    float *dst = (blockIdx.y ? conv1 : image) + (long long)row * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void launch_decode_conv(const DecodeView &v, size_t in_offset, size_t out_offset, float *out, const float *w,
                        const float *mask, const float *b, const Dims &d, cudaStream_t stream) {
    const size_t smem = ((size_t)3 * d.C * d.W4 + 9 * (size_t)d.C + kDecodeConvThreads) * sizeof(float);
    if (smem > (size_t(48) << 10)) {
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(decode_conv_kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(decode_conv)", __FILE__, __LINE__);
    }
    launch_kernel("sea decode_conv_kernel", programmatic_launch_enabled(), decode_conv_kernel,
                  dim3((unsigned)d.T, (unsigned)d.C), dim3(kDecodeConvThreads), smem, stream, v, in_offset, out_offset,
                  out, w, mask, b, d);
}

size_t decode_cnn_output_topk_smem_bytes(const Dims &d) {
    return topk_smem_bytes(d) +
           (1 + (size_t)cnn_output_operand_floats(d, d.H) + 2 * (size_t)d.K + (size_t)d.C * d.W4) * sizeof(float);
}

bool cnn_output_topk_fused(const Dims &d) { return d.K == kOut64 && d.H <= kWarpSize; }

size_t cnn_output_smem_bytes(const Dims &d) {
    if (cnn_output_topk_fused(d)) {
        return ((size_t)kOut64Warps * out64_row_stride(d) + (size_t)d.H * (d.C + 1) + d.H + 2 * kOut64) *
               sizeof(float);
    }
    return ((size_t)d.C * d.W4 + 1 + (size_t)cnn_output_operand_floats(d, kOutWarps)) * sizeof(float);
}

void launch_decode_cnn_output_topk(uint32_t *cell_mask, float *probs, const float *conv2, const SeaDeviceParams &p,
                                   const Dims &d, cudaStream_t stream) {
    const size_t smem = decode_cnn_output_topk_smem_bytes(d);
    if (smem > (size_t(24) << 10)) {  // with the static arrays (~13 KB), past the 48 KB default
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(decode_cnn_output_topk_kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(decode_cnn_output_topk)", __FILE__, __LINE__);
    }
    launch_kernel("sea decode_cnn_output_topk_kernel", programmatic_launch_enabled(), decode_cnn_output_topk_kernel,
                  dim3((unsigned)d.T), dim3(kDecodeTopkThreads), smem, stream, cell_mask, probs, conv2, p, d);
}

void launch_ring_store(float *ring, const float *image, const Dims &d, cudaStream_t stream) {
    ring_store_kernel<<<4, 256, 0, stream>>>(ring, image, d);
    check_launch("sea ring_store_kernel");
}

void launch_history_load(float *image, float *conv1, const float *image_ring, const float *conv1_ring, const Dims &d,
                         cudaStream_t stream) {
    if (d.hist <= 0) return;
    history_load_kernel<<<dim3(4, 2), 256, 0, stream>>>(image, conv1, image_ring, conv1_ring, d);
    check_launch("sea history_load_kernel");
}

void launch_causal_conv(float *y, const float *x, const float *w, const float *mask, const float *b, const Dims &d,
                        cudaStream_t stream) {
    const dim3 grid((unsigned)ceil_div(d.T, kConvRows), (unsigned)ceil_div(d.C / kConvCo * d.W4, kConvThreads));
    causal_conv_kernel<<<grid, kConvThreads, 0, stream>>>(y, x, w, mask, b, d);
    check_launch("sea causal_conv_kernel");
}

void launch_cnn_output(float *probs, const float *conv2, const SeaDeviceParams &p, const Dims &d,
                       cudaStream_t stream) {
    const size_t smem = cnn_output_smem_bytes(d);  // t's conv2 row and the operands (the caller checked the device)
    if (smem > (size_t(24) << 10)) {  // with the static arrays (~10 KB), past the 48 KB default
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(cnn_output_kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(cnn_output)", __FILE__, __LINE__);
    }
    launch_kernel("sea cnn_output_kernel", programmatic_launch_enabled(), cnn_output_kernel,
                  dim3((unsigned)d.T, (unsigned)ceil_div(d.H, kOutWarps)), dim3(kOutWarps * kWarpSize), smem, stream,
                  probs, conv2, p, d);
}

void launch_cnn_output_topk(uint32_t *cell_mask, float *probs, const float *conv2, const SeaDeviceParams &p,
                            const Dims &d, cudaStream_t stream) {
    const size_t smem = cnn_output_smem_bytes(d);  // conv2 rows and the operands (the caller checked the device)
    if (smem > (size_t(48) << 10)) {
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(cnn_output_topk_k64_kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(cnn_output_topk_k64)", __FILE__, __LINE__);
    }
    launch_kernel("sea cnn_output_topk_k64_kernel", programmatic_launch_enabled(), cnn_output_topk_k64_kernel,
                  dim3((unsigned)ceil_div(d.T, kOut64Warps)), dim3(kOut64Warps * kWarpSize), smem, stream, cell_mask,
                  probs, conv2, p, d);
}

}  // namespace seaopt::cuda::sea
