// SEA incremental decode as ONE kernel per call (sm_90 thread-block clusters): the whole of sea.md §2.12 for a row,
// what the five kernels of the staged path (sea_decode_cuda.cu, sea_cnn_cuda.cu, sea_sparse_cuda.cu) do, with the
// stages handing over through distributed shared memory and cluster barriers instead of kernel boundaries. A SEA
// layer of a decode step was ~34 µs on top of dense attention with five launches (H100, OPT-1.3B); each launch,
// its weight staging and its memory round trip cost a few µs, far more than the row's arithmetic.
//
// One cluster of kBlocks (8) blocks per call row. Block b owns heads [b·hb, b·hb + hb) (hb = ⌈H/8⌉ ≤ 4) and
// output channels [b·cb, b·cb + cb) of both convs (cb = ⌈2H/8⌉). Stages (→ = cluster barrier):
//   before the PDL wait: the weights the block needs (W_enc, W_row, W_perf, its conv taps) into shared memory, the
//       sequence's Performer state of its heads prefetched into L2 (weights are immutable; the state is only
//       prefetched, never read, before the wait);
//   E  estimator of its heads (sea_decode_cuda.cu's steps, all heads of the block at once): φ(q), φ(k), the
//      Performer step on the state (written back), Σv += v, the encoder + LayerNorm + GELU + gates, the row decoder
//      and the image LayerNorm -> its image channels (also into the state's image ring); the K/V append;
//   →  C1 conv1 of its channels from image rows p-4, p-2 (the ring) and p (the cluster's blocks) -> ReLU -> also
//      into the conv1 ring;
//   →  C2 conv2 likewise from the conv1 rows;
//   →  O  the CNN output of its heads (cnn_output_row) -> Â;
//   →  S  every block gathers the row's H·K values of Â and runs the same grouped top-k (topk_select), then the
//      sparse attention of its heads (decode_sparse_keys, a group of warps per head, merged in warp order) and the
//      output mixing.
// Supported where the kernel's fixed shapes hold (K = 64, H ≤ 32, m ≤ 48, sm_90 clusters, the shared memory);
// sea_attention_decode_cuda uses the staged kernels otherwise, or with SEAOPT_SEA_FUSED_DECODE=0. The arithmetic is
// the staged path's in fp32; sums run in another order (warp butterflies), so results agree to rounding, not bits.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "attention/sea_cnn_row.cuh"
#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_sparse_row.cuh"
#include "attention/sea_topk_select.cuh"
#include "engine/cuda/bulk_copy.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

namespace cg = cooperative_groups;

constexpr int kBlocks = 8;                 // blocks per cluster (the portable maximum)
constexpr int kThreads = 544;              // 17 warps: a thread per (head, state column) for 4 heads × 129 columns
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kMaxHb = 4;                  // heads per block (H ≤ 32)
constexpr int kFusedK = 64;                // the compressed width the kernel is written for
constexpr int kW4 = kFusedK / 4;           // 16 image columns
constexpr int kKH = kFusedK / 2;           // 32 row decoder outputs
constexpr int kCinStride = kW4 + 4;        // a conv input channel row: 2 zero columns, 16 values, 2 zeros
constexpr int kPartStride = kHeadDim + 2;  // a sparse warp's partial row: Σ p·v, max, sum
constexpr int kFusedMaxFeatures = 48;      // m ≤ 48 (the paper's 33): the state step's registers at 17 warps

// Float offsets of the block's shared memory (host and device agree through fused_layout).
struct FusedLayout {
    int w_enc;   // [128][192]; dead after the encoder, then the union below
    int w_row;   // [32][128]
    int w_perf;  // [m][64]
    int taps1, taps2;  // [cb][C][9]: the live taps (kernel rows 0..2) times the mask
    int cin1, cin2;  // [3][C][kCinStride]: the convs' input rows p-4, p-2 (from the rings; zero before position 0)
                     // and p (pushed by the cluster's blocks), two zero columns each side
    int xqk;     // [2hb][64]: row 2i = feature-scaled q of the block's head i, row 2i+1 its k
    int phqk;    // [2hb][64]: φ(q), φ(k)
    int vc;      // [hb][132]: [E_pos row ; v ; 1]
    int X;       // [hb][192]: [C_perf ; v]
    int z;       // [hb][128]
    int R;       // [hb][32]
    int den;     // [hb]
    int gates;   // [hb][2]
    int qs;      // [hb][64]: q · q_scale (the sparse attention's query)
    int vs;      // [hb][64]: Σ_{j≤p} v_j (the state's new v_sum)
    int img_out, prob_out;  // the block's image channels [2hb][16] and Â rows [hb][64]
    int narrow;  // [warps][16]
    // The small parameters (SeaDeviceParams' vectors, staged before the PDL wait):
    int enc_b, enc_norm_w, enc_norm_b, scaler_w, scaler_b, dec_row_b, cnn_norm1_w, cnn_norm1_b;
    int conv1_b, conv2_b, conv4_w, conv4_mask, conv4_b, cnn_norm2_w, cnn_norm2_b;
    // The union in w_enc's place (dead in every block after the first cluster barrier):
    int cpart;   // [cb·⌈C/32⌉][16]
    int y2;      // [C][16]   the conv2 row, pushed by the cluster's blocks
    int keys;    // [H·64] uint32, Â's order keys, pushed by the cluster's blocks
    int mw;      // [H·2] uint32
    int offs;    // [hb][65] int
    int spart;   // [warps][66]
    int whist;   // [warps][256] uint32: the top-k's per-warp histograms
    int total;
    int union_end;
};

__host__ __device__ inline FusedLayout fused_layout(int H, int m) {
    const int hb = (H + kBlocks - 1) / kBlocks, C = 2 * H, cb = (C + kBlocks - 1) / kBlocks;
    FusedLayout L{};
    int at = 0;
    auto take = [&at](int n) {
        const int o = at;
        at += (n + 3) / 4 * 4;  // 16-byte aligned regions
        return o;
    };
    L.w_enc = take(kEncHidden * kEncIn);
    L.w_row = take(kKH * kEncHidden);
    L.w_perf = take(m * kHeadDim);
    L.taps1 = take(cb * C * 9);
    L.taps2 = take(cb * C * 9);
    L.cin1 = take(3 * C * kCinStride);
    L.cin2 = take(3 * C * kCinStride);
    L.xqk = take(2 * hb * kHeadDim);
    L.phqk = take(2 * hb * kHeadDim);
    L.vc = take(hb * 132);
    L.X = take(hb * kEncIn);
    L.z = take(hb * kEncHidden);
    L.R = take(hb * kKH);
    L.den = take(hb);
    L.gates = take(hb * 2);
    L.qs = take(hb * kHeadDim);
    L.vs = take(hb * kHeadDim);
    L.img_out = take(2 * hb * kW4);
    L.prob_out = take(hb * kFusedK);
    L.narrow = take(kWarps * kW4);
    L.enc_b = take(kEncHidden);
    L.enc_norm_w = take(kEncHidden);
    L.enc_norm_b = take(kEncHidden);
    L.scaler_w = take(2 * kEncHidden);
    L.scaler_b = take(2);
    L.dec_row_b = take(kKH);
    L.cnn_norm1_w = take(kW4);
    L.cnn_norm1_b = take(kW4);
    L.conv1_b = take(C);
    L.conv2_b = take(C);
    L.conv4_w = take(H * C);
    L.conv4_mask = take(H * C);
    L.conv4_b = take(H);
    L.cnn_norm2_w = take(kFusedK);
    L.cnn_norm2_b = take(kFusedK);
    L.total = at;
    at = L.w_enc;  // the union
    L.cpart = take(cb * ((C + 31) / 32) * kW4);
    L.y2 = take(C * kW4);
    L.keys = take(H * kFusedK);
    L.mw = take(H * 2);
    L.offs = take(hb * (kFusedK + 1));
    L.spart = take(kWarps * kPartStride);
    L.whist = take(kWarps * 256);
    L.union_end = at;
    return L;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

// out[r·out_stride + o] = Σ_i x[r·x_stride + i] · w[o·IN + i] (+ bias[o]; or ReLU(·) + 1e-3 for the Performer
// features) for rows r < n_rows ≤ RMAX and outputs o < n_out, x and w in shared memory. Warp w takes outputs
// 32/RMAX at a time, lanes over the inputs (x in registers), and one warp_reduce_scatter per group of outputs.
template <int IN, int RMAX, bool kFeatures>
__device__ __forceinline__ void rows_matvec(float *out, int out_stride, const float *x, int x_stride, const float *w,
                                            const float *__restrict__ bias, int n_out, int n_rows) {
    constexpr int kOpw = kWarpSize / RMAX, kU = IN / kWarpSize;
    static_assert(IN % kWarpSize == 0 && kWarpSize % RMAX == 0, "lanes over the inputs, 32 sums per warp");
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    float xv[RMAX][kU];
#pragma unroll
    for (int r = 0; r < RMAX; ++r) {
#pragma unroll
        for (int u = 0; u < kU; ++u) xv[r][u] = r < n_rows ? x[r * x_stride + lane + kWarpSize * u] : 0.0f;
    }
    for (int o0 = warp * kOpw; o0 < n_out; o0 += kWarps * kOpw) {  // uniform across the warp
        float v[kWarpSize];
#pragma unroll
        for (int ol = 0; ol < kOpw; ++ol) {
            const float *wo = w + min(o0 + ol, n_out - 1) * IN + lane;
            float wv[kU];
#pragma unroll
            for (int u = 0; u < kU; ++u) wv[u] = wo[kWarpSize * u];
#pragma unroll
            for (int r = 0; r < RMAX; ++r) {
                float s = 0.0f;
#pragma unroll
                for (int u = 0; u < kU; ++u) s = fmaf(xv[r][u], wv[u], s);
                v[ol * RMAX + r] = s;
            }
        }
        const float sum = warp_reduce_scatter<kWarpSize>(v);
        const int o = o0 + lane / RMAX, r = lane % RMAX;
        if (o < n_out && r < n_rows) {
            out[r * out_stride + o] = kFeatures ? fmaxf(sum, 0.0f) + kFeatureEps : sum + bias[o];
        }
    }
}

// One causal conv row (sea.md §2.6 steps 2-3) of the block's output channels [c0, c0 + nc): cin holds input rows
// p-4, p-2, p of all C channels ([3][C][kCinStride], columns padded by two zeros each side), taps [nc][C][9]. A warp
// item is (output channel, 32 input channels): lane = input channel, 16 column sums in registers, reduced over the
// lanes by warp_reduce_scatter; then the items of a channel are added in order, with the bias and the ReLU. Output
// (c, x) goes to dst[c·dst_stride + dst_col + x] in every block of the cluster (the same offset in each) and, unless
// null, to the ring row ring_row (the state's, channel-major [C][16]).
__device__ __forceinline__ void conv_row(float *dst, int dst_stride, int dst_col, float *ring_row, const float *cin,
                                         const float *taps, float *cpart, const float *__restrict__ bias, int C,
                                         int c0, int nc, cg::cluster_group &cluster) {
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize, tid = threadIdx.x;
    const int n_ch = (C + kWarpSize - 1) / kWarpSize, n_items = nc * n_ch;
    for (int item = warp; item < n_items; item += kWarps) {  // uniform across the warp
        const int co = item / n_ch, ci = (item % n_ch) * kWarpSize + lane;
        float acc[kW4];
#pragma unroll
        for (int x = 0; x < kW4; ++x) acc[x] = 0.0f;
        if (ci < C) {
            const float *tk = taps + (co * C + ci) * 9;
#pragma unroll
            for (int a = 0; a < 3; ++a) {
                const float4 *row = reinterpret_cast<const float4 *>(cin + (a * C + ci) * kCinStride);
                float in[kCinStride];
#pragma unroll
                for (int q = 0; q < kCinStride / 4; ++q) {
                    const float4 f = row[q];
                    in[4 * q] = f.x, in[4 * q + 1] = f.y, in[4 * q + 2] = f.z, in[4 * q + 3] = f.w;
                }
#pragma unroll
                for (int bb = 0; bb < 3; ++bb) {
                    const float wk = tk[a * 3 + bb];
#pragma unroll
                    for (int x = 0; x < kW4; ++x) acc[x] = fmaf(wk, in[x + 2 * bb], acc[x]);  // column x - 2 + 2·bb
                }
            }
        }
        const float sum = warp_reduce_scatter<kW4>(acc);
        if ((lane & 1) == 0) cpart[item * kW4 + (lane >> 1)] = sum;
    }
    __syncthreads();
    if (tid < nc * kW4) {
        const int co = tid / kW4, x = tid % kW4;
        float s = bias[c0 + co];
        for (int i = 0; i < n_ch; ++i) s += cpart[(co * n_ch + i) * kW4 + x];
        s = fmaxf(s, 0.0f);
        const int at = (c0 + co) * dst_stride + dst_col + x;
#pragma unroll
        for (int q = 0; q < kBlocks; ++q) cluster.map_shared_rank(dst, (unsigned)q)[at] = s;
        if (ring_row) ring_row[(c0 + co) * kW4 + x] = s;
    }
}

// Profiling (stamps non-null): block 0's clock64 at stage i into stamps[i] (stamps[0] at the start).
__device__ __forceinline__ void stamp(long long *stamps, int i) {
    if (stamps != nullptr && blockIdx.x == 0 && threadIdx.x == 0) stamps[i] = clock64();
}

__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }

#endif  // __CUDA_ARCH__ >= 900

__global__ void __launch_bounds__(kThreads, 1)
    decode_fused_kernel(__half *__restrict__ out, long long out_row, float *__restrict__ gates_out,
                        float *__restrict__ probs_out, uint32_t *__restrict__ mask_out, QkvView x, DecodeView v,
                        SeaDeviceParams p, Dims d, long long *stamps, int variant) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ float4 fused_smem4[];
    float *sm = reinterpret_cast<float *>(fused_smem4);
    __shared__ TopkShared<kThreads> topk_sh;
    cg::cluster_group cluster = cg::this_cluster();
    const int H = d.H, C = d.C, m = d.m;
    const FusedLayout L = fused_layout(H, m);
    const int hb = (H + kBlocks - 1) / kBlocks, cb = (C + kBlocks - 1) / kBlocks;
    const int b = (int)cluster.block_rank(), r = (int)blockIdx.x / kBlocks;
    const int h0 = b * hb, nh = max(0, min(hb, H - h0)), c0 = b * cb, nc = max(0, min(cb, C - c0));
    const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
    const size_t n_img = (size_t)C * kW4;
    stamp(stamps, 0);
    // Distributed shared memory may be written only once every block of the cluster runs: arrive now, wait before
    // the first push (after the estimator).
    cluster_arrive();

    // ---- before the PDL wait: immutable weights into shared memory ----
    // W_enc, W_row, W_perf (123 KB at m = 33; blocks with heads) and every small parameter vector on the copy engine,
    // completing on wbar (a piece not 16-byte aligned and sized goes through registers instead); the conv taps (9 of
    // each 15 stored, times the mask) through registers, every load of a thread issued before its stores. From here
    // on `ps` reads the parameters from shared memory.
    __shared__ alignas(8) uint64_t wbar;
    struct Piece {
        const float *src;
        int dst, n;
    };
    const Piece pieces[] = {
        {nh > 0 ? p.enc_w : nullptr, L.w_enc, kEncHidden * kEncIn},
        {nh > 0 ? p.dec_row_w : nullptr, L.w_row, kKH * kEncHidden},
        {nh > 0 ? p.performer_proj : nullptr, L.w_perf, m * kHeadDim},
        {p.enc_b, L.enc_b, kEncHidden},
        {p.enc_norm_w, L.enc_norm_w, kEncHidden},
        {p.enc_norm_b, L.enc_norm_b, kEncHidden},
        {p.scaler_w, L.scaler_w, 2 * kEncHidden},
        {p.scaler_b, L.scaler_b, 2},
        {p.dec_row_b, L.dec_row_b, kKH},
        {p.cnn_norm1_w, L.cnn_norm1_w, kW4},
        {p.cnn_norm1_b, L.cnn_norm1_b, kW4},
        {p.conv1_b, L.conv1_b, C},
        {p.conv2_b, L.conv2_b, C},
        {p.conv4_w, L.conv4_w, H * C},
        {p.conv4_mask, L.conv4_mask, H * C},
        {p.conv4_b, L.conv4_b, H},
        {p.cnn_norm2_w, L.cnn_norm2_w, kFusedK},
        {p.cnn_norm2_b, L.cnn_norm2_b, kFusedK},
    };
    constexpr int kPieces = sizeof(pieces) / sizeof(pieces[0]);
    auto bulk_ok = [](const Piece &q) {
        return q.src != nullptr && (reinterpret_cast<uintptr_t>(q.src) & 15u) == 0 && (q.n * 4) % 16 == 0;
    };
    if (tid == 0) {
        uint32_t bytes = 0;
#pragma unroll
        for (int i = 0; i < kPieces; ++i) bytes += bulk_ok(pieces[i]) ? (uint32_t)pieces[i].n * 4u : 0u;
        mbar_init(&wbar, 1);
        mbar_init_fence();
        mbar_arrive_expect_tx(&wbar, bytes);
#pragma unroll
        for (int i = 0; i < kPieces; ++i) {
            if (bulk_ok(pieces[i])) bulk_load(sm + pieces[i].dst, pieces[i].src, (uint32_t)pieces[i].n * 4u, &wbar);
        }
    }
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
        if (pieces[i].src != nullptr && !bulk_ok(pieces[i])) {
            for (int j = tid; j < pieces[i].n; j += kThreads) sm[pieces[i].dst + j] = pieces[i].src[j];
        }
    }
    SeaDeviceParams ps = p;
    ps.enc_b = sm + L.enc_b;
    ps.enc_norm_w = sm + L.enc_norm_w;
    ps.enc_norm_b = sm + L.enc_norm_b;
    ps.scaler_w = sm + L.scaler_w;
    ps.scaler_b = sm + L.scaler_b;
    ps.dec_row_b = sm + L.dec_row_b;
    ps.cnn_norm1_w = sm + L.cnn_norm1_w;
    ps.cnn_norm1_b = sm + L.cnn_norm1_b;
    ps.conv1_b = sm + L.conv1_b;
    ps.conv2_b = sm + L.conv2_b;
    ps.conv4_w = sm + L.conv4_w;
    ps.conv4_mask = p.conv4_mask ? sm + L.conv4_mask : nullptr;
    ps.conv4_b = sm + L.conv4_b;
    ps.cnn_norm2_w = sm + L.cnn_norm2_w;
    ps.cnn_norm2_b = sm + L.cnn_norm2_b;
    if (tid < nc * C) {  // (output channel, input channel) of this block: 9 taps of each conv
        const int co = tid / C, ci = tid % C;
        const size_t at = ((size_t)(c0 + co) * C + ci) * kConvStoredTaps;  // live rows 0..2: the first 9 of 15
        float w1[9], w2[9], m1[9], m2[9];
#pragma unroll
        for (int t = 0; t < 9; ++t) {
            w1[t] = p.conv1_w[at + t];
            w2[t] = p.conv2_w[at + t];
            m1[t] = p.conv1_mask ? p.conv1_mask[at + t] : 1.0f;
            m2[t] = p.conv2_mask ? p.conv2_mask[at + t] : 1.0f;
        }
#pragma unroll
        for (int t = 0; t < 9; ++t) {
            sm[L.taps1 + tid * 9 + t] = p.conv1_mask ? w1[t] * m1[t] : w1[t];
            sm[L.taps2 + tid * 9 + t] = p.conv2_mask ? w2[t] * m2[t] : w2[t];
        }
    }
    stamp(stamps, 1);
    pdl_wait();  // q, k, v, the rows, the states and the cache come from earlier kernels (engine/cuda/pdl.cuh)
    pdl_launch_dependents();
    stamp(stamps, 2);

    const int pos = v.pos[r], seq = v.seq[r], br = v.row[r];
    const bool fresh = pos == 0;
    float *state_perf = state_at(v, seq, v.state.perf);
    float *vsum = state_at(v, seq, v.state.v_sum);
    float *image_ring = state_at(v, seq, v.state.image_ring), *conv1_ring = state_at(v, seq, v.state.conv1_ring);
    {
        // The Performer state of the block's heads (nh·m·129 floats, read in the state step) on its way into L2
        // while q, k, v, the history rows and the features come.
        const char *perf = reinterpret_cast<const char *>(state_perf + (size_t)h0 * m * kStateCols);
        const int n_lines = fresh ? 0 : (int)(((size_t)nh * m * kStateCols * sizeof(float) + 127) / 128);
        for (int i = tid; i < n_lines; i += kThreads) prefetch_l2(perf + (size_t)i * 128);
    }

    // ---- E: the estimator of the block's heads ----
    for (int i = tid; i < nh * kHeadDim; i += kThreads) {
        const int hh = i / kHeadDim, dd = i % kHeadDim, h = h0 + hh;
        const __half qh = q_at(x, br, h)[dd], kh = k_at(x, br, h)[dd], vh = v_at(x, br, h)[dd];
        const float qv = __fmul_rn(__half2float(qh), x.q_scale);
        sm[L.qs + hh * kHeadDim + dd] = qv;
        sm[L.xqk + 2 * hh * kHeadDim + dd] = __fmul_rn(kFeatureNormalizer, qv);
        sm[L.xqk + (2 * hh + 1) * kHeadDim + dd] = __fmul_rn(kFeatureNormalizer, __half2float(kh));
        if (v.write_kv) {  // the row's own key and value into the cache (SeaKvCache::append)
            const long long at = (long long)seq * v.cache_seq_stride + (long long)h * v.cache_head_stride +
                                 (long long)pos * kHeadDim + dd;
            v.k_cache[at] = kh;
            v.v_cache[at] = vh;
        }
        const float vv = __half2float(vh);
        sm[L.vc + hh * 132 + kHeadDim + dd] = vv;
        sm[L.X + hh * kEncIn + kVcat + dd] = vv;
        sm[L.vc + hh * 132 + dd] = p.pos_table[(size_t)positional_row(pos, d) * kHeadDim + dd];
        float *vs = vsum + (size_t)h * kHeadDim + dd;
        const float vs_new = (fresh ? 0.0f : *vs) + vv;
        *vs = vs_new;
        sm[L.vs + hh * kHeadDim + dd] = vs_new;
    }
    if (tid < nh) sm[L.vc + tid * 132 + kVcat] = 1.0f;
    // The convs' input rows p-4 and p-2 from the rings (loaded now so that their latency overlaps the estimator),
    // and the zero columns of all three rows (row p's values are pushed by the cluster's blocks, C1 and C2).
    for (int i = tid; i < 4 * (int)n_img; i += kThreads) {
        const int a = i / (int)n_img, j = i % (int)n_img;
        const int row = pos - 4 + 2 * (a & 1);  // rows before position 0 are the causal zero padding
        const float *ring = a < 2 ? image_ring : conv1_ring;
        float *cin = sm + (a < 2 ? L.cin1 : L.cin2);
        cin[((a & 1) * C + j / kW4) * kCinStride + 2 + j % kW4] =
            row >= 0 ? ring[(size_t)(row % kHistoryRows) * n_img + j] : 0.0f;
    }
    for (int i = tid; i < 2 * 3 * C * 4; i += kThreads) {
        const int which = i / (3 * C * 4), rc = (i / 4) % (3 * C), col = i % 4;
        sm[(which ? L.cin2 : L.cin1) + rc * kCinStride + (col < 2 ? col : kCinStride - 4 + col)] = 0.0f;
    }
    __syncthreads();                 // (also orders thread 0's mbarrier init before the other threads' waits)
    mbar_wait(&wbar, 0);  // the staged weights have landed
    stamp(stamps, 3);
    // φ(q), φ(k) of every head: 2·nh rows of the feature matrix.
    rows_matvec<kHeadDim, 2 * kMaxHb, true>(sm + L.phqk, kHeadDim, sm + L.xqk, kHeadDim, sm + L.w_perf, nullptr, m,
                                            2 * nh);
    __syncthreads();
    stamp(stamps, 4);
    // The state's column e of head hh (S_kv[·][e], or S_k in column 128) += φ(k)·V_cat[e]; the numerator (denominator).
    if (tid < nh * kStateCols) {
        const int hh = tid / kStateCols, e = tid % kStateCols;
        float *perf = state_perf + (size_t)(h0 + hh) * m * kStateCols;
        const float4 *phq4 = reinterpret_cast<const float4 *>(sm + L.phqk + 2 * hh * kHeadDim);
        const float4 *phk4 = phq4 + kHeadDim / 4;
        float old[kFusedMaxFeatures];
#pragma unroll
        for (int j = 0; j < kFusedMaxFeatures; ++j) old[j] = (j < m && !fresh) ? perf[(size_t)j * kStateCols + e] : 0.0f;
        float acc = 0.0f;
        const float ve = sm[L.vc + hh * 132 + e];
#pragma unroll
        for (int j4 = 0; j4 < kFusedMaxFeatures / 4; ++j4) {
            if (4 * j4 < m) {
                const float4 q4 = phq4[j4], k4 = phk4[j4];  // φ(q), φ(k) four features at a time (broadcast)
                const float qj[4] = {q4.x, q4.y, q4.z, q4.w}, kj[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    const int j = 4 * j4 + t;
                    if (j < m) {
                        const float nv = fmaf(kj[t], ve, old[j]);
                        perf[(size_t)j * kStateCols + e] = nv;
                        acc = fmaf(qj[t], e == kVcat ? nv + kLinearAttnEps : nv, acc);
                    }
                }
            }
        }
        if (e == kVcat) {
            sm[L.den + hh] = acc;
        } else {
            sm[L.X + hh * kEncIn + e] = acc;
        }
    }
    __syncthreads();
    stamp(stamps, 5);
    for (int i = tid; i < nh * kVcat; i += kThreads) {
        const int hh = i / kVcat;
        sm[L.X + hh * kEncIn + i % kVcat] *= 1.0f / sm[L.den + hh];
    }
    __syncthreads();
    stamp(stamps, 6);
    rows_matvec<kEncIn, kMaxHb, false>(sm + L.z, kEncHidden, sm + L.X, kEncIn, sm + L.w_enc, ps.enc_b, kEncHidden, nh);
    __syncthreads();
    stamp(stamps, 7);
    if (warp < nh) {  // LayerNorm_128 + GELU and the gates, a warp per head
        const float2 gt = encoder_norm_gelu_gates(sm + L.z + warp * kEncHidden, ps);
        if (lane == 0) {
            sm[L.gates + 2 * warp] = gt.x;
            sm[L.gates + 2 * warp + 1] = gt.y;
            float *g = gates_out + ((size_t)r * H + h0 + warp) * 2;
            g[0] = gt.x;
            g[1] = gt.y;
        }
    }
    __syncthreads();
    stamp(stamps, 8);
    rows_matvec<kEncHidden, kMaxHb, false>(sm + L.R, kKH, sm + L.z, kEncHidden, sm + L.w_row, ps.dec_row_b, kKH, nh);
    __syncthreads();
    stamp(stamps, 9);
    if (tid < 2 * nh) {  // channels 2h, 2h+1: LayerNorm over K/4
        image_channel_layernorm(sm + L.img_out + tid * kW4, sm + L.R + (tid / 2) * kKH + (tid % 2) * kW4, kW4, ps);
    }
    cluster_wait();  // every block of the cluster has started: its shared memory may be written
    __syncthreads();
    // Row p of conv1's input: the block's channels into every block's cin1, and into the image ring.
    for (int i = tid; i < 2 * nh * kW4 * kBlocks; i += kThreads) {
        const int q = i / (2 * nh * kW4), j = i % (2 * nh * kW4), c = 2 * h0 + j / kW4, xx = j % kW4;
        const float val = sm[L.img_out + j];
        cluster.map_shared_rank(sm + L.cin1, (unsigned)q)[(2 * C + c) * kCinStride + 2 + xx] = val;
        if (q == 0) image_ring[(size_t)(pos % kHistoryRows) * n_img + (size_t)c * kW4 + xx] = val;
    }
    stamp(stamps, 10);
    cluster.sync();
    stamp(stamps, 11);

    // ---- C1, C2: the two causal convs of the block's channels ----
    stamp(stamps, 12);
    conv_row(sm + L.cin2 + 2 * C * kCinStride, kCinStride, 2, conv1_ring + (size_t)(pos % kHistoryRows) * n_img,
             sm + L.cin1, sm + L.taps1, sm + L.cpart, ps.conv1_b, C, c0, nc, cluster);
    stamp(stamps, 13);
    cluster.sync();
    stamp(stamps, 14);
    stamp(stamps, 15);
    conv_row(sm + L.y2, kW4, 0, nullptr, sm + L.cin2, sm + L.taps2, sm + L.cpart, ps.conv2_b, C, c0, nc, cluster);
    stamp(stamps, 16);
    cluster.sync();
    stamp(stamps, 17);

    // ---- O: the CNN output of the block's heads -> Â ----
    stamp(stamps, 18);
    uint32_t *keys = reinterpret_cast<uint32_t *>(sm + L.keys), *mw = reinterpret_cast<uint32_t *>(sm + L.mw);
    if (warp < nh) {  // Â of head h0 + warp; its order keys into every block's keys
        const int h = h0 + warp;
        float *logit = sm + L.prob_out + warp * kFusedK;
        cnn_output_row(logit, sm + L.narrow + warp * kW4, sm + L.y2, ps, d, h);
        float *dst = probs_out + ((size_t)r * H + h) * kFusedK;
        for (int c = lane; c < kFusedK; c += kWarpSize) {
            const float val = logit[c];
            dst[c] = val;
            const uint32_t key = topk_order_key(val);
#pragma unroll
            for (int q = 0; q < kBlocks; ++q) cluster.map_shared_rank(keys, (unsigned)q)[h * kFusedK + c] = key;
        }
    }
    for (int i = tid; i < H * 2; i += kThreads) mw[i] = 0u;
    stamp(stamps, 19);
    cluster.sync();  // the last access to another block's shared memory is before this barrier
    stamp(stamps, 20);

    // ---- S: the grouped top-k (every block, over the whole row), then the sparse attention of the block's heads ----
    const int n = H * kFusedK;
    stamp(stamps, 21);
    if (variant & 1) {
        topk_select<kThreads, true>(keys, mw, n, row_budget(pos, d), kFusedK, 2, topk_sh,
                                    reinterpret_cast<uint32_t *>(sm + L.whist));
    } else {
        topk_select<kThreads>(keys, mw, n, row_budget(pos, d), kFusedK, 2, topk_sh);
    }
    stamp(stamps, 22);
    for (int i = tid; i < nh * 2; i += kThreads) mask_out[((size_t)r * H + h0) * 2 + i] = mw[h0 * 2 + i];

    const int wph = nh > 0 ? kWarps / nh : 0;  // warps per head
    const int g = wph > 0 ? warp / wph : 0, gw = wph > 0 ? warp % wph : 0;
    const bool in_group = wph > 0 && g < nh;
    const int row_len = pos + 1;
    const float s = cell_scale(pos, d);
    int *offs = reinterpret_cast<int *>(sm + L.offs) + g * (kFusedK + 1);
    const float *qs = sm + L.qs + g * kHeadDim;
    if (in_group && gw == 0) cell_key_offsets(offs, mw + (h0 + g) * 2, s, row_len, d);
    __syncthreads();
    stamp(stamps, 23);
    if (in_group) {
        const int h = h0 + g, n_keys = offs[kFusedK];
        const long long cache_off = (long long)seq * v.cache_seq_stride + (long long)h * v.cache_head_stride;
        float m_run, l_run, acc0, acc1;
        decode_sparse_keys(m_run, l_run, acc0, acc1, (int)((long long)gw * n_keys / wph),
                           (int)((long long)(gw + 1) * n_keys / wph), offs, s, row_len, qs, v.k_cache + cache_off,
                           v.v_cache + cache_off, d);
        float *part = sm + L.spart + warp * kPartStride;
        part[2 * lane] = acc0;
        part[2 * lane + 1] = acc1;
        if (lane == 0) {
            part[kHeadDim] = m_run;
            part[kHeadDim + 1] = l_run;
        }
    }
    __syncthreads();
    stamp(stamps, 24);
    if (in_group && gw == 0) {
        const int h = h0 + g;
        float a0, a1;
        const float l_all = merge_sparse_partials(a0, a1, sm + L.spart + warp * kPartStride, wph);
        sparse_row_output(out + (long long)br * out_row + (long long)h * kHeadDim, pos, offs[kFusedK], l_all, a0, a1,
                          sm + L.gates + 2 * g, sm + L.vs + g * kHeadDim);
    }
    stamp(stamps, 25);
#endif
}

}  // namespace

namespace {
long long *g_stamps = nullptr;
}  // namespace

void set_decode_fused_stamps(long long *device_stamps) { g_stamps = device_stamps; }

size_t decode_fused_smem_bytes(const Dims &d) {
    const FusedLayout L = fused_layout(d.H, d.m);
    return (size_t)(L.total > L.union_end ? L.total : L.union_end) * sizeof(float);
}

bool decode_fused_supported(const Dims &d, std::string *why) {
    auto no = [why](const char *reason) {
        if (why) *why = reason;
        return false;
    };
    if (d.K != kFusedK) return no("K != 64");
    if (d.H < 1 || d.H > kBlocks * kMaxHb) return no("more than 32 heads");
    if (d.m < 1 || d.m > kFusedMaxFeatures) return no("more than 48 random features");
    const FusedLayout L = fused_layout(d.H, d.m);
    if (L.union_end - L.w_enc > kEncHidden * kEncIn) return no("the late buffers do not fit in W_enc's place");
    if (d.C * ((d.C + kBlocks - 1) / kBlocks) > kThreads) return no("too many conv channels");
    const char *env = std::getenv("SEAOPT_SEA_FUSED_DECODE");
    if (env && std::strcmp(env, "0") == 0) return no("SEAOPT_SEA_FUSED_DECODE=0");
    // Per device and shared-memory size: the kernel's sm_90 code, and a cluster of 8 such blocks that fits.
    static thread_local int cached_device = -1;
    static thread_local size_t cached_smem = 0;
    static thread_local bool cached_ok = false;
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) {
        cudaGetLastError();
        return no("no CUDA device");
    }
    const size_t smem = decode_fused_smem_bytes(d);
    if (device != cached_device || smem != cached_smem) {
        cached_device = device;
        cached_smem = smem;
        cached_ok = false;
        cudaFuncAttributes fa{};
        int major = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 9 &&
            cudaFuncGetAttributes(&fa, decode_fused_kernel) == cudaSuccess && fa.binaryVersion >= 90 &&
            cudaFuncSetAttribute(reinterpret_cast<const void *>(decode_fused_kernel),
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) == cudaSuccess) {
            cudaLaunchConfig_t config{};
            config.gridDim = dim3(kBlocks);
            config.blockDim = dim3(kThreads);
            config.dynamicSmemBytes = smem;
            cudaLaunchAttribute attribute{};
            attribute.id = cudaLaunchAttributeClusterDimension;
            attribute.val.clusterDim.x = kBlocks;
            attribute.val.clusterDim.y = 1;
            attribute.val.clusterDim.z = 1;
            config.attrs = &attribute;
            config.numAttrs = 1;
            int clusters = 0;
            cached_ok = cudaOccupancyMaxActiveClusters(&clusters, decode_fused_kernel, &config) == cudaSuccess &&
                        clusters > 0;
        }
        cudaGetLastError();  // a refusal above is an answer, not an error for later checks
    }
    return cached_ok ? true : no("no sm_90 cluster of 8 blocks with this shared memory on this device");
}

void launch_decode_fused(__half *out, long long out_row_stride, float *gates, float *probs, uint32_t *cell_mask,
                         const QkvView &x, const DecodeView &v, const SeaDeviceParams &p, const Dims &d,
                         cudaStream_t stream) {
    long long *stamps = g_stamps;
    const char *variant_env = std::getenv("SEAOPT_SEA_FUSED_VARIANT");  // experiment switch
    const int variant = variant_env ? std::atoi(variant_env) : 0;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3((unsigned)(d.T * kBlocks));
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = decode_fused_smem_bytes(d);
    config.stream = stream;
    cudaLaunchAttribute attributes[2]{};
    attributes[0].id = cudaLaunchAttributeClusterDimension;
    attributes[0].val.clusterDim.x = kBlocks;
    attributes[0].val.clusterDim.y = 1;
    attributes[0].val.clusterDim.z = 1;
    config.attrs = attributes;
    config.numAttrs = 1;
    if (programmatic_launch_enabled()) {
        attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attributes[1].val.programmaticStreamSerializationAllowed = 1;
        config.numAttrs = 2;
    }
    const cudaError_t err = cudaLaunchKernelEx(&config, decode_fused_kernel, out, out_row_stride, gates, probs,
                                               cell_mask, x, v, p, d, stamps, variant);
    if (err != cudaSuccess) cudaGetLastError();
    check_cuda(err, "sea decode_fused_kernel", __FILE__, __LINE__);
    check_launch("sea decode_fused_kernel");
}

}  // namespace seaopt::cuda::sea
