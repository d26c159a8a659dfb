// SEA estimator, front half (sea.md §2.2-§2.5; sea_cpu.cpp performer_features, performer_step, encoder_rows,
// gate_rows, decoder_image_rows): the causal Performer as chunked prefix sums, then the per-token MLPs.
//
// The CPU reference runs S_k(t) = Σ_{j≤t} φ(k_j) and S_kv(t) = Σ_{j≤t} φ(k_j) ⊗ Vcat_j as one running sum per
// head. Here T is cut into chunks of 64 rows:
//   performer_state_kernel  grid (chunk, head): the chunk's own sums ΔS_kv [m][128] and ΔS_k [m] (column 128), and
//                           its Σ v [64] for the output mixing's running sums (sea_sparse_cuda.cu v_prefix_kernel).
//   performer_scan_kernel   one thread per (head, feature, column): exclusive prefix of the chunk sums over the
//                           chunks (a loop over ⌈T/64⌉ chunks, coalesced), in place -> the state at each chunk start;
//                           a call that continues a sequence (row 0 at position p0 > 0) starts from its decode
//                           state's sums. The chunks are counted from row 0, wherever p0 falls.
//   estimator_rows_kernel   grid (chunk, head): for the chunk's rows r,
//       C_perf_r = (φq_r · S_kv(start) + Σ_{s≤r in chunk} (φq_r·φk_s) Vcat_s) / (φq_r · (S_k(start) + 1e-6)
//                  + Σ_{s≤r in chunk} φq_r·φk_s)
//     (the same sums as the CPU's, in another order), then X = [C_perf ; v] -> Z = GELU(LN_128(X W_encᵀ + b)),
//     the gates [s_prob, s_mix] = Z W_sᵀ + b_s, R = Z W_rowᵀ + b_row (K/2), split into channels 2h and 2h+1
//     and LayerNorm over K/4 -> the decoder image [T][2H][K/4]. C_perf and Z live in shared memory only.
// Every product of matrices here (the features φ = ReLU(x Wᵀ) + 1e-3, the chunk sums, A = φq φkᵀ, C_perf, the encoder,
// the row decoder) runs on tensor cores in fp32-equivalent precision: mma.sync m16n8k8 TF32 with each operand split
// as x = tf32(x) + (x − tf32(x)) and three products ("3xTF32", error ~2^-21 of each product, fp32 accumulation;
// sea_mma.cuh);
// the rest is fp32 on CUDA cores. The top-k downstream needs fp32-level estimates (sea.md §2.7: ties at ~1e-6), which
// a single TF32 or fp16 pass would not give. Memory: the chunk states, ⌈T/64⌉·H·m·129 floats (17.4 MB at H 32, m 33,
// T 2048).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/mma_f16.cuh"
#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_mma.cuh"
#include "engine/cuda/bulk_copy.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kThreads = 256;  // the mappings below assume exactly 256 threads
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kXStride = kHeadDim + 1;       // estimator rows: staged q/k rows and projection rows [..][65]
constexpr int kZStride = kEncHidden + 4;     // Z rows [64][132] (conflict-free A fragments: 4·g + t4)
// performer_state's strides, chosen for its mma fragment reads (lane = 4g + t4 reads bank 4g + t4 or 8t4 + g): staged
// k rows and projection rows [..][68] (A rows g / B columns g: 4g + t4), φ [64][≥ m, ≡ 8 mod 32] read transposed
// (A(j, r) = φ[r][j]: 8t4 + g), [E_pos ; v ; 1] [64][136] (B(r, e): 8t4 + g). With odd strides (65, 33, 129) lanes
// (g, t4) met in bank g + t4, up to 4 at once (Nsight Compute: 71% of its shared wavefronts were excess).
constexpr int kStateXStride = kHeadDim + 4;
constexpr int kStateVcStride = kVcat + 8;
// estimator rows: the staged chunk-start state S [m][132] (B(j, e) = S[j][e] in C_perf: 4t4 + g, 2-way, against the
// 4-way of 129; 136, conflict-free, would push the block past the 75 KB that lets three share an SM)
constexpr int kSStride = kStateCols + 3;
constexpr int kRowStride = kVcat + 4;        // vc and C_perf rows [64][132] (conflict-free A fragments: 4·g + t4)
static_assert(kThreads == 2 * kVcat && kChunk == 64, "the register tiles below assume 256 threads and 64 rows");
static_assert(kWarps == 8, "the mma work splits below assume 8 warps: 4 row tiles of 16 × 2 column groups");

__host__ __device__ inline int odd_stride(int m) { return m | 1; }  // feature rows: conflict-free columns
__host__ __device__ inline int stride_8_mod_32(int m) { return m + ((8 - m % 32) + 32) % 32; }  // >= m, ≡ 8 mod 32

// Shared memory of performer_state_kernel (float offsets).
struct StateSmem {
    int x, phi, vc, total;
    __host__ __device__ explicit StateSmem(int m) {
        x = 0;                                    // [64][68]   k rows · 64^-1/4
        phi = x + kChunk * kStateXStride;         // [64][mp]   φ(k), mp = stride_8_mod_32(m)
        vc = phi + kChunk * stride_8_mod_32(m);   // [64][136]  [E_pos ; v ; 1]
        total = vc + kChunk * kStateVcStride;
    }
};

// Shared memory of estimator_rows_kernel (float offsets): 75 KB at m 33, K 64, so that three blocks fit an SM (228 KB
// with 1 KB reserved per block; at 107 KB two did, 16 warps, and the kernel was latency-bound).
//   phase 1 (Performer output): phq; A (the staged q, then k rows, then φq·φkᵀ); phk, dead once A is computed: the
//     chunk-start state S is staged from there then; vc.
//   phase 2 (encoder, row decoder): C_perf from offset 0 (written after a barrier that ends phase 1), vc (v is the
//     encoder's input too); Z from offset 0 once every warp has read C_perf; the row decoder's R in vc, dead by then.
//   The linear weights are not staged: their mma fragments, split once at upload (SeaDeviceParams::weight_frags,
//   sea_layout.h sea_pack_weight_fragments), come from L2.
struct RowsSmem {
    int phq, a, phk, S, cp, z, vc, R, inv_den, total;
    __host__ __device__ RowsSmem(int m, int KH) {
        const int mp = odd_stride(m);
        phq = 0;                        // [64][mp]
        a = phq + kChunk * mp;          // [64][65]
        phk = a + kChunk * kXStride;    // [64][mp]
        S = phk;                        // [m][132]   from A on
        const int phase1_end = max(phk + kChunk * mp, S + m * kSStride);
        cp = 0;                         // [64][132]  C_perf
        z = 0;                          // [64][132]  Z (the size of C_perf)
        vc = max(phase1_end, cp + kChunk * kRowStride);  // [64][132] [E_pos ; v]
        R = vc;                         // [64][KH+1] the row decoder's output (KH <= 128)
        inv_den = vc + max(kChunk * kRowStride, kChunk * (KH + 1));  // [64]
        total = inv_den + kChunk;
    }
};

// One lane's B fragments of a linear weight (sea_pack_weight_fragments): tile nt of k-step k8, n_tiles per step.
__device__ __forceinline__ uint4 weight_fragment(const uint4 *frag, int k8, int nt, int n_tiles) {
    return __ldg(frag + ((size_t)k8 * n_tiles + nt) * kWarpSize + threadIdx.x % kWarpSize);
}

// The A fragment of rows m0 .. m0+15 and columns k0 .. k0+7 of a row-major matrix (stride floats a row), split.
__device__ __forceinline__ void load_split_a(uint32_t (&ah)[4], uint32_t (&al)[4], const float *a, int stride, int m0,
                                             int k0) {
    const int lane = threadIdx.x % kWarpSize, g = lane >> 2, t4 = lane & 3;
    split_tf32(a[(m0 + g) * stride + k0 + t4], ah[0], al[0]);
    split_tf32(a[(m0 + g + 8) * stride + k0 + t4], ah[1], al[1]);
    split_tf32(a[(m0 + g) * stride + k0 + t4 + 4], ah[2], al[2]);
    split_tf32(a[(m0 + g + 8) * stride + k0 + t4 + 4], ah[3], al[3]);
}

// φ[r][j] = ReLU(xs_r · W_j) + 1e-3 for r < n_rows, 0 beyond, on tensor cores (3xTF32): warp w computes rows
// 16·(w % 4) .. +16 and the 8-feature tiles w / 4, w / 4 + 2, ... (m ≤ 64: at most 4), W from its fragments (proj).
// xs [64][xstride], phi [64][mp].
__device__ void features_tc(float *phi, int mp, const float *xs, int xstride, const uint4 *proj, int m, int n_rows) {
    constexpr int kMaxTiles = (kMaxFeatures / 8 + 1) / 2;
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize, g = lane >> 2, t4 = lane & 3;
    const int n_tiles = (m + 7) / 8, m0 = (warp % 4) * 16, nt0 = warp / 4;
    float acc[kMaxTiles][4];
#pragma unroll
    for (int j = 0; j < kMaxTiles; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    for (int k8 = 0; k8 < kHeadDim / 8; ++k8) {
        uint32_t ah[4], al[4];
        load_split_a(ah, al, xs, xstride, m0, 8 * k8);
#pragma unroll
        for (int j = 0; j < kMaxTiles; ++j) {
            const int nt = nt0 + 2 * j;
            if (nt < n_tiles) mma_3xtf32(acc[j], ah, al, weight_fragment(proj, k8, nt, n_tiles));
        }
    }
#pragma unroll
    for (int j = 0; j < kMaxTiles; ++j) {
        const int nt = nt0 + 2 * j;
        if (nt >= n_tiles) continue;
#pragma unroll
        for (int q2 = 0; q2 < 4; ++q2) {
            const int r = m0 + g + (q2 >> 1) * 8, jj = 8 * nt + 2 * t4 + (q2 & 1);
            if (jj < m) phi[r * mp + jj] = r < n_rows ? fmaxf(acc[j][q2], 0.0f) + kFeatureEps : 0.0f;
        }
    }
}

// ---- shared building blocks (every thread of the block calls them) ----

constexpr int kRowPieces = kChunk * kHeadDim / 8;  // 16-byte pieces of a chunk's 64 fp16 rows of 64
static_assert(kRowPieces % kThreads == 0, "whole pieces per thread");

// This thread's 16-byte pieces of a chunk's fp16 rows (row r at base + (t0 + r)·row_stride, zero from n_rows on; the
// views are 16-byte aligned with strides that are multiples of 8): piece u is row i / 8, halves 8·(i % 8) .. +8 for
// i = threadIdx.x + u·kThreads. All are loaded before any is used.
struct RowPieces {
    uint4 w[kRowPieces / kThreads];

    __device__ __forceinline__ void load(const __half *__restrict__ base, long long row_stride, int t0, int n_rows) {
#pragma unroll
        for (int u = 0; u < kRowPieces / kThreads; ++u) {
            const int i = threadIdx.x + u * kThreads, r = i / 8, c = i % 8;
            w[u] = r < n_rows ? *reinterpret_cast<const uint4 *>(base + (long long)(t0 + r) * row_stride + 8 * c)
                              : make_uint4(0u, 0u, 0u, 0u);
        }
    }
    // The pieces of rows r < n_rows as they are, to row t0 + r of a [pos][64] fp16 array (the KV append of kv_out).
    __device__ __forceinline__ void store(half_t *dst, int t0, int n_rows) const {
#pragma unroll
        for (int u = 0; u < kRowPieces / kThreads; ++u) {
            const int i = threadIdx.x + u * kThreads, r = i / 8, c = i % 8;
            if (r < n_rows) *reinterpret_cast<uint4 *>(dst + (long long)(t0 + r) * kHeadDim + 8 * c) = w[u];
        }
    }
    // f(r, d0, v): v[j] is row r's value d0 + j as a float.
    template <typename F>
    __device__ __forceinline__ void for_each(F f) const {
#pragma unroll
        for (int u = 0; u < kRowPieces / kThreads; ++u) {
            const int i = threadIdx.x + u * kThreads;
            float v[8];
            unpack8(v, w[u]);
            f(i / 8, 8 * (i % 8), v);
        }
    }
};

// xs[r][d] = 64^-1/4 · (fp32(x[t0+r][d]) · scale) for r < n_rows, 0 beyond: performer_features' xs, with q's
// OPT scale applied first (q_eff = q·q_scale is what the CPU reference is given).
// copy_to (may be null): the rows as they are also go there (RowPieces::store).
__device__ void stage_rows(float *xs, int stride, const __half *__restrict__ base, long long row_stride, int t0,
                           int n_rows, float scale, half_t *copy_to = nullptr) {
    RowPieces rows;
    rows.load(base, row_stride, t0, n_rows);
    if (copy_to) rows.store(copy_to, t0, n_rows);
    rows.for_each([&](int r, int d0, const float(&v)[8]) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            xs[r * stride + d0 + j] = r < n_rows ? __fmul_rn(kFeatureNormalizer, __fmul_rn(v[j], scale)) : 0.0f;
        }
    });
}

// vc[r][0..63] = E_pos[row(p0+t0+r)], vc[r][64..127] = v[t0+r, h] (sea.md §2.2) for r < n_rows, 0 beyond; with
// ones_col also vc[r][128] = 1 (0 beyond): Σ_r φ[r][j]·vc[r][128] is the chunk's S_k, Σ_s A[r][s]·vc[s][128] a row's
// in-chunk denominator term. E_pos rows as float4 (where the table is 16-byte aligned) and v rows as 16-byte pieces,
// all loads of a thread before its stores.
// copy_to (may be null): the v rows as they are also go there (RowPieces::store).
__device__ void stage_vcat(float *vc, int stride, const float *__restrict__ pos_table, const __half *__restrict__ vbase,
                           long long v_row, int t0, int n_rows, const Dims &d, bool ones_col, half_t *copy_to = nullptr) {
    constexpr int kPosPieces = kChunk * kHeadDim / 4;  // float4s of the chunk's E_pos rows
    static_assert(kPosPieces % kThreads == 0, "whole pieces per thread");
    if ((reinterpret_cast<uintptr_t>(pos_table) & 15u) == 0) {
        float4 e[kPosPieces / kThreads];
#pragma unroll
        for (int u = 0; u < kPosPieces / kThreads; ++u) {
            const int i = threadIdx.x + u * kThreads, r = i / 16, c = i % 16;
            e[u] = r < n_rows ? reinterpret_cast<const float4 *>(
                                    pos_table + (size_t)positional_row(d.p0 + t0 + r, d) * kHeadDim)[c]
                              : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        RowPieces v;
        v.load(vbase, v_row, t0, n_rows);
        if (copy_to) v.store(copy_to, t0, n_rows);
#pragma unroll
        for (int u = 0; u < kPosPieces / kThreads; ++u) {
            const int i = threadIdx.x + u * kThreads, r = i / 16, c = i % 16;
            float *dst = vc + r * stride + 4 * c;
            dst[0] = e[u].x;
            dst[1] = e[u].y;
            dst[2] = e[u].z;
            dst[3] = e[u].w;
        }
        v.for_each([&](int r, int d0, const float(&f)[8]) {
#pragma unroll
            for (int j = 0; j < 8; ++j) vc[r * stride + kHeadDim + d0 + j] = f[j];
        });
    } else {
        stage_batched<kThreads, 8>(
            kChunk * kVcat,
            [&](int i) {
                const int r = i / kVcat, e = i % kVcat;
                if (r >= n_rows) return 0.0f;
                const int t = t0 + r;
                return e < kHeadDim ? pos_table[(size_t)positional_row(d.p0 + t, d) * kHeadDim + e]
                                    : __half2float(vbase[(long long)t * v_row + (e - kHeadDim)]);
            },
            [&](int i, float v) { vc[(i / kVcat) * stride + i % kVcat] = v; });
        if (copy_to) {  // (an E_pos table that is not 16-byte aligned: never the engine's)
            RowPieces v;
            v.load(vbase, v_row, t0, n_rows);
            v.store(copy_to, t0, n_rows);
        }
    }
    if (ones_col) {
        for (int r = threadIdx.x; r < kChunk; r += kThreads) vc[r * stride + kVcat] = r < n_rows ? 1.0f : 0.0f;
    }
}

// ---- kernels ----

// prefetch: the layer's weight fragments (SeaDeviceParams::weight_frags, conv_frags), pulled into L2 by block (0, 0)'s
// first warp before its wait: they live in HBM between calls (0.8 MiB a layer), and the estimator and conv kernels'
// lockstep blocks would otherwise each wait on the same cold lines at every k-step (measured: SEA pp512 2% slower
// than with the fragments rebuilt in the scratch by a kernel just before).
struct FragmentPrefetch {
    const char *ptr[2];
    uint32_t bytes[2];
};

__global__ void __launch_bounds__(kThreads)
    performer_state_kernel(float *__restrict__ states, float *__restrict__ v_chunk, QkvView x,
                           const uint4 *__restrict__ proj, const float *__restrict__ pos_table, SeaKvOut kv,
                           FragmentPrefetch prefetch, Dims d) {
    extern __shared__ float smem[];
    const StateSmem L(d.m);
    const int c = blockIdx.x, h = blockIdx.y, t0 = c * kChunk;
    const int n_rows = min(kChunk, d.T - t0);
    const int mp = stride_8_mod_32(d.m);
    float *xs = smem + L.x, *phi = smem + L.phi, *vc = smem + L.vc;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x < kWarpSize) {  // 32 KB pieces, one a lane and round
        constexpr uint32_t kPiece = 32u << 10;
        for (int r = 0; r < 2; ++r) {
            for (uint32_t at = threadIdx.x * kPiece; at < prefetch.bytes[r]; at += kWarpSize * kPiece) {
                bulk_prefetch_l2(prefetch.ptr[r] + at, min(kPiece, prefetch.bytes[r] - at));
            }
        }
    }
#endif
    // q, k and v may come from the kernel just before (the engine's qkv GEMM): read after the wait. With kv_out the
    // staged k and v rows also go to the caller's cache as they are (the KV append, stores only).
    pdl_wait();
    pdl_launch_dependents();
    const long long kv_at = (long long)h * kv.head_stride + (long long)d.p0 * kHeadDim;  // row 0 is position p0
    stage_rows(xs, kStateXStride, k_at(x, 0, h), x.k_row, t0, n_rows, 1.0f, kv.k ? kv.k + kv_at : nullptr);
    stage_vcat(vc, kStateVcStride, pos_table, v_at(x, 0, h), x.v_row, t0, n_rows, d, true, kv.k ? kv.v + kv_at : nullptr);
    __syncthreads();
    features_tc(phi, mp, xs, kStateXStride, proj, d.m, n_rows);
    __syncthreads();

    // out[j][e] = Σ_r φ[r][j]·vc[r][e] (e = 128: S_k, vc = 1). The full 16-feature tiles × columns 0..127 on the tensor
    // cores (3xTF32): A(j, r) = φ[r][j], B(r, e) = vc[r][e]; warp w owns the 8-column tiles w and w + 8 of every
    // feature tile, each k-step's B split once for all of them. The rest, the features past the last full tile (m =
    // 33: one) and column 128, and the chunk's Σ v (sea_sparse_cuda.cu's running sums start from it; v_j in order, as
    // the CPU adds them), one dot product of the chunk's rows per thread on CUDA cores. (The 17th column tile on the
    // tensor cores had given warp 0 three tiles against the others' two.)
    float *out = states + ((size_t)c * d.H + h) * (size_t)d.m * kStateCols;
    const int m_full = d.m / 16;  // full feature tiles
    {
        constexpr int kMaxMt = kMaxFeatures / 16;
        const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize, g = lane >> 2, t4 = lane & 3;
        float acc[kMaxMt][2][4];
#pragma unroll
        for (int mt = 0; mt < kMaxMt; ++mt)
#pragma unroll
            for (int jn = 0; jn < 2; ++jn) acc[mt][jn][0] = acc[mt][jn][1] = acc[mt][jn][2] = acc[mt][jn][3] = 0.0f;
        for (int k8 = 0; k8 < kChunk / 8; ++k8) {
            const int ka = 8 * k8 + t4, kb = ka + 4;
            uint4 bs[2];
#pragma unroll
            for (int jn = 0; jn < 2; ++jn) {
                const int e = 8 * (warp + kWarps * jn) + g;
                split_tf32(vc[ka * kStateVcStride + e], bs[jn].x, bs[jn].z);
                split_tf32(vc[kb * kStateVcStride + e], bs[jn].y, bs[jn].w);
            }
#pragma unroll
            for (int mt = 0; mt < kMaxMt; ++mt) {
                if (mt >= m_full) break;
                const int j0 = 16 * mt;
                uint32_t ah[4], al[4];
                split_tf32(phi[ka * mp + j0 + g], ah[0], al[0]);
                split_tf32(phi[ka * mp + j0 + g + 8], ah[1], al[1]);
                split_tf32(phi[kb * mp + j0 + g], ah[2], al[2]);
                split_tf32(phi[kb * mp + j0 + g + 8], ah[3], al[3]);
                mma_3xtf32(acc[mt][0], ah, al, bs[0]);
                mma_3xtf32(acc[mt][1], ah, al, bs[1]);
            }
        }
#pragma unroll
        for (int mt = 0; mt < kMaxMt; ++mt) {
            if (mt >= m_full) break;
#pragma unroll
            for (int jn = 0; jn < 2; ++jn)
#pragma unroll
                for (int q2 = 0; q2 < 4; ++q2) {
                    const int j = 16 * mt + g + (q2 >> 1) * 8, e = 8 * (warp + kWarps * jn) + 2 * t4 + (q2 & 1);
                    out[j * kStateCols + e] = acc[mt][jn][q2];
                }
        }
    }
    {
        const int j_rest = 16 * m_full;
        const int n_rest = (d.m - j_rest) * kStateCols, n_sk = j_rest;  // rows j_rest.. × all columns; column 128
        for (int task = threadIdx.x; task < n_rest + n_sk + kHeadDim; task += kThreads) {
            if (task < n_rest + n_sk) {
                const int j = task < n_rest ? j_rest + task / kStateCols : task - n_rest;
                const int e = task < n_rest ? task % kStateCols : kVcat;
                float sum = 0.0f;
                for (int r = 0; r < kChunk; ++r) sum = fmaf(phi[r * mp + j], vc[r * kStateVcStride + e], sum);
                out[j * kStateCols + e] = sum;
            } else {
                const int dd = task - n_rest - n_sk;
                float sum = 0.0f;
                for (int r = 0; r < n_rows; ++r) sum += vc[r * kStateVcStride + kHeadDim + dd];
                v_chunk[((size_t)c * d.H + h) * kHeadDim + dd] = sum;
            }
        }
    }
}

// init and total may be the same array (a continued prefill's decode state): not __restrict__.
__global__ void performer_scan_kernel(float *__restrict__ states, Dims d, const float *init, float *total) {
    pdl_wait();  // prefill kernels launch with PDL: the kernel before may still be running
    pdl_launch_dependents();
    const long long cols = (long long)d.H * d.m * kStateCols;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= cols) return;
    // Eight chunks' loads are issued before any store: a store to the array would otherwise order the next load
    // after it, one memory round trip per chunk (91 µs at T = 2048 under Nsight Compute).
    constexpr int kBatch = 8;
    float run = init ? init[i] : 0.0f;
    for (int c0 = 0; c0 < d.n_chunks; c0 += kBatch) {
        float v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) v[u] = c0 + u < d.n_chunks ? states[(long long)(c0 + u) * cols + i] : 0.0f;
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            if (c0 + u < d.n_chunks) {
                states[(long long)(c0 + u) * cols + i] = run;
                run += v[u];
            }
        }
    }
    if (total) total[i] = run;  // the sums over every row: a decode state's (sea_layout.h)
}

__global__ void __launch_bounds__(kThreads, 3)  // three blocks per SM (RowsSmem): at most 80 registers
    estimator_rows_kernel(float *__restrict__ image, float *__restrict__ gates, const float *__restrict__ states,
                          WeightFrags frags, QkvView x, SeaDeviceParams p, Dims d) {
    extern __shared__ float smem[];
    const RowsSmem L(d.m, d.KH);
    const int c = blockIdx.x, h = blockIdx.y, t0 = c * kChunk;
    const int n_rows = min(kChunk, d.T - t0);
    const int m = d.m, mp = odd_stride(m);
    const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
    float *S = smem + L.S, *phq = smem + L.phq, *phk = smem + L.phk, *A = smem + L.a;
    float *z = smem + L.z, *vc = smem + L.vc, *cp = smem + L.cp, *inv_den = smem + L.inv_den;

    // ---- phase 1: the causal Performer output of the chunk's rows (sea.md §2.3) ----
    stage_vcat(vc, kRowStride, p.pos_table, v_at(x, 0, h), x.v_row, t0, n_rows, d, true);
    stage_rows(A, kXStride, q_at(x, 0, h), x.q_row, t0, n_rows, x.q_scale);
    __syncthreads();
    features_tc(phq, mp, A, kXStride, frags.proj, m, n_rows);
    __syncthreads();
    stage_rows(A, kXStride, k_at(x, 0, h), x.k_row, t0, n_rows, 1.0f);
    __syncthreads();
    features_tc(phk, mp, A, kXStride, frags.proj, m, n_rows);
    __syncthreads();
    // A[r][s] = φq_r · φk_s inside the chunk, lower triangle (s ≤ r), 0 above; tensor cores (3xTF32): warp w owns
    // rows 16·(w % 4) .. +16 and columns 32·(w / 4) .. +32.
    {
        const int g = lane >> 2, t4 = lane & 3, m0 = (warp % 4) * 16, n0 = (warp / 4) * 32;
        float acc[4][4];
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int q2 = 0; q2 < 4; ++q2) acc[nt][q2] = 0.0f;
        if (n0 <= m0 + 15) warp_mma_3xtf32<4>(acc, phq, mp, 1, phk, 1, mp, m0, n0, kChunk, m, kChunk);
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int q2 = 0; q2 < 4; ++q2) {
                const int r = m0 + g + (q2 >> 1) * 8, s2 = n0 + 8 * nt + 2 * t4 + (q2 & 1);
                A[r * kXStride + s2] = s2 <= r ? acc[nt][q2] : 0.0f;
            }
    }
    __syncthreads();
    // Up to here only q, k, v and weights, from kernels that have completed; the states come from the kernel just
    // before (performer_scan).
    pdl_wait();
    pdl_launch_dependents();
    // The state at the chunk start, where φk was (RowsSmem), by asynchronous copies that land while the products
    // with A (which do not need it) run; then 1e-6 is added to S_k (column 128) for the denominator.
    const float *st = states + ((size_t)c * d.H + h) * (size_t)m * kStateCols;
    for (int i = tid; i < m * kStateCols; i += kThreads) {
        cp_async4((uint32_t)__cvta_generic_to_shared(S + (i / kStateCols) * kSStride + i % kStateCols), st + i);
    }
    cp_async_commit();
    // C_perf[r][e] = (Σ_{s≤r} A[r][s] vc[s][e] + Σ_j φq[r][j] S[j][e]) / den_r, tensor cores (3xTF32): warp w owns
    // rows 16·(w % 4) .. +16 and columns 64·(w / 4) .. +64; A is 0 above the diagonal, so k stops at the tile's last row.
    // The denominator Σ_{s≤r} φq_r·φk_s + φq_r · (S_k(start) + 1e-6) is column 128 of the same two products (vc's
    // column 128 holds the ones of stage_vcat, S's S_k + 1e-6): warps 4..7 compute that tile after their own.
    {
        const int g = lane >> 2, t4 = lane & 3, m0 = (warp % 4) * 16, n0 = (warp / 4) * 64;
        float acc[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int q2 = 0; q2 < 4; ++q2) acc[nt][q2] = 0.0f;
        warp_mma_3xtf32<8>(acc, A, kXStride, 1, vc, kRowStride, 1, m0, n0, kChunk, m0 + 16, kVcat);
        cp_async_wait<0>();
        __syncthreads();  // S has landed
        if (tid < m) S[tid * kSStride + kVcat] += kLinearAttnEps;
        __syncthreads();
        warp_mma_3xtf32<8>(acc, phq, mp, 1, S, kSStride, 1, m0, n0, kChunk, m, kVcat);
        if (warp >= 4) {
            float den[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
            warp_mma_3xtf32<1>(den, A, kXStride, 1, vc, kRowStride, 1, m0, kVcat, kChunk, m0 + 16, kStateCols);
            warp_mma_3xtf32<1>(den, phq, mp, 1, S, kSStride, 1, m0, kVcat, kChunk, m, kStateCols);
            if (t4 == 0) {  // column 128 of the tile: accumulators 0 (row g) and 2 (row g + 8)
                inv_den[m0 + g] = m0 + g < n_rows ? 1.0f / den[0][0] : 0.0f;
                inv_den[m0 + g + 8] = m0 + g + 8 < n_rows ? 1.0f / den[0][2] : 0.0f;
            }
        }
        __syncthreads();  // phq, A and S, under cp, are read until here; inv_den is written
        // Accumulators 2i and 2i + 1 are columns e, e + 1 of one row: one 8-byte store (e even, rows 8-byte aligned).
        const float inv_a = inv_den[m0 + g], inv_b = inv_den[m0 + g + 8];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            const int e = n0 + 8 * nt + 2 * t4;
            *reinterpret_cast<float2 *>(cp + (m0 + g) * kRowStride + e) =
                make_float2(acc[nt][0] * inv_a, acc[nt][1] * inv_a);
            *reinterpret_cast<float2 *>(cp + (m0 + g + 8) * kRowStride + e) =
                make_float2(acc[nt][2] * inv_b, acc[nt][3] * inv_b);
        }
    }
    __syncthreads();

    // ---- phase 2: encoder X = [C_perf ; v] (192) -> 128 (sea.md §2.4) ----
    // Tensor cores in fp32-equivalent precision ("3xTF32", sea_mma.cuh): x = x_hi + x_lo with x_hi = tf32(x),
    // x_lo = x - x_hi, and x·w ≈ x_hi·w_hi + x_hi·w_lo + x_lo·w_hi (the dropped x_lo·w_lo is ~2^-22 of the product),
    // accumulated in fp32 by mma.sync m16n8k8. Warp w: outputs 32·(w / 2) .. +32 (4 tiles of 8) of rows 32·(w % 2) ..
    // +32 (2 tiles of 16), so that each split of X serves four products (all 64 rows per warp had every warp split all
    // of X for two). W_enc comes already split, as each lane's fragments (SeaDeviceParams::weight_frags), straight from L2
    // (each fragment read by two warps, 384 KB per block): no staging in shared memory and no barriers in the loop.
    {
        const int g = lane >> 2, t4 = lane & 3, mh = warp % 2;
        const uint4 *fb = frags.enc + (size_t)(4 * (warp / 2)) * kWarpSize + lane;
        constexpr int kTilesN = kEncHidden / 8, kSteps = kEncIn / 8;
        float acc[2][4][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                for (int q2 = 0; q2 < 4; ++q2) acc[mt][nt][q2] = 0.0f;
        for (int k8 = 0; k8 < kSteps; ++k8) {
            uint4 b[4];
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) b[nt] = __ldg(fb + (size_t)k8 * kTilesN * kWarpSize + nt * kWarpSize);
            // Columns 0..127 of X are C_perf, 128..191 are v (= vc columns 64..127).
            const int i0 = 8 * k8;
            const float *xsrc = i0 < kVcat ? cp + i0 : vc + kHeadDim + (i0 - kVcat);
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const int m0 = 32 * mh + 16 * mt;
                uint32_t ah[4], al[4];
                split_tf32(xsrc[(m0 + g) * kRowStride + t4], ah[0], al[0]);
                split_tf32(xsrc[(m0 + g + 8) * kRowStride + t4], ah[1], al[1]);
                split_tf32(xsrc[(m0 + g) * kRowStride + t4 + 4], ah[2], al[2]);
                split_tf32(xsrc[(m0 + g + 8) * kRowStride + t4 + 4], ah[3], al[3]);
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) mma_3xtf32(acc[mt][nt], ah, al, b[nt]);
            }
        }
        __syncthreads();  // every warp has read C_perf, which Z overwrites
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
            const int o = 32 * (warp / 2) + nt * 8 + 2 * t4;  // columns o, o + 1: 8-byte stores
            const float b0 = p.enc_b[o], b1 = p.enc_b[o + 1];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const int r = 32 * mh + 16 * mt + g;
                *reinterpret_cast<float2 *>(z + r * kZStride + o) =
                    make_float2(acc[mt][nt][0] + b0, acc[mt][nt][1] + b1);
                *reinterpret_cast<float2 *>(z + (r + 8) * kZStride + o) =
                    make_float2(acc[mt][nt][2] + b0, acc[mt][nt][3] + b1);
            }
        }
    }
    __syncthreads();
    // LayerNorm_128 + exact GELU, and the gates (sea.md §2.9; sea_cuda_kernels.cuh encoder_norm_gelu_gates, there one
    // warp a row): here 8 lanes a row, four rows a warp at once, so each sum takes 3 shuffle steps instead of 5 and a
    // warp makes 2 passes instead of 8. Lane 8q + j holds columns 32u + 4j .. +4 (u < 4) of row 4·warp + 32·pass + q:
    // float4 reads and writes, the 8 lanes of a quarter-warp on all 32 banks.
    static_assert(kChunk % (4 * kWarps) == 0 && kEncHidden == 128, "whole passes of 4 rows a warp, 16 values a lane");
    {
        const int q = lane / 8, j = lane % 8;
        for (int pass = 0; pass < kChunk / (4 * kWarps); ++pass) {
            const int r = pass * 4 * kWarps + 4 * warp + q;
            float *zr = z + r * kZStride;
            float v[16], sum = 0.0f;
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const float4 f = *reinterpret_cast<const float4 *>(zr + 32 * u + 4 * j);
                v[4 * u] = f.x;
                v[4 * u + 1] = f.y;
                v[4 * u + 2] = f.z;
                v[4 * u + 3] = f.w;
                sum += (f.x + f.y) + (f.z + f.w);
            }
#pragma unroll
            for (int off = 4; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            const float mean = sum / (float)kEncHidden;
            float sq = 0.0f;
#pragma unroll
            for (int i = 0; i < 16; ++i) sq += (v[i] - mean) * (v[i] - mean);
#pragma unroll
            for (int off = 4; off > 0; off >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, off);
            const float rstd = 1.0f / sqrtf(sq / (float)kEncHidden + kLayerNormEps);
            float g0 = 0.0f, g1 = 0.0f;
#pragma unroll
            for (int i = 0; i < 16; ++i) {
                const int o = 32 * (i / 4) + 4 * j + i % 4;
                float y = (v[i] - mean) * rstd * p.enc_norm_w[o] + p.enc_norm_b[o];
                y = 0.5f * y * (1.0f + erff(y * 0.70710678118654752f));
                v[i] = y;
                g0 = fmaf(y, p.scaler_w[o], g0);
                g1 = fmaf(y, p.scaler_w[kEncHidden + o], g1);
            }
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                *reinterpret_cast<float4 *>(zr + 32 * u + 4 * j) =
                    make_float4(v[4 * u], v[4 * u + 1], v[4 * u + 2], v[4 * u + 3]);
            }
#pragma unroll
            for (int off = 4; off > 0; off >>= 1) {
                g0 += __shfl_xor_sync(0xffffffffu, g0, off);
                g1 += __shfl_xor_sync(0xffffffffu, g1, off);
            }
            if (j == 0 && r < n_rows) {
                float *g = gates + ((size_t)(t0 + r) * d.H + h) * 2;
                g[0] = g0 + p.scaler_b[0];
                g[1] = g1 + p.scaler_b[1];
            }
        }
    }
    __syncthreads();

    // ---- phase 3: row decoder (sea.md §2.5) into R, then the channel split and LayerNorm_{K/4} (§2.6 step 1) ----
    const int KH = d.KH, W4 = d.W4, r_stride = KH + 1;
    float *R = smem + L.R;
    // R = Z W_rowᵀ + b on tensor cores (3xTF32): warp w computes rows 16·(w % 4) .. +16 and the 8-output tiles w / 4,
    // w / 4 + 2, ..., two at a time (KH = 32: one pass), W_row from its fragments.
    {
        const int g = lane >> 2, t4 = lane & 3, m0 = (warp % 4) * 16, n_tiles = (KH + 7) / 8;
        for (int nt0 = warp / 4; nt0 < n_tiles; nt0 += 4) {  // tiles nt0 and nt0 + 2
            float acc[2][4];
#pragma unroll
            for (int j = 0; j < 2; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
            const bool second = nt0 + 2 < n_tiles;
            for (int k8 = 0; k8 < kEncHidden / 8; ++k8) {
                uint32_t ah[4], al[4];
                load_split_a(ah, al, z, kZStride, m0, 8 * k8);
                mma_3xtf32(acc[0], ah, al, weight_fragment(frags.row, k8, nt0, n_tiles));
                if (second) mma_3xtf32(acc[1], ah, al, weight_fragment(frags.row, k8, nt0 + 2, n_tiles));
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int nt = nt0 + 2 * j;
                if (nt >= n_tiles) continue;
#pragma unroll
                for (int q2 = 0; q2 < 4; ++q2) {
                    const int r = m0 + g + (q2 >> 1) * 8, o = 8 * nt + 2 * t4 + (q2 & 1);
                    if (o < KH) R[r * r_stride + o] = acc[j][q2] + p.dec_row_b[o];
                }
            }
        }
    }
    __syncthreads();
    // LayerNorm_{K/4} of each (row, channel): two threads each, lanes 2i and 2i + 1 taking the first ⌈W4/2⌉ values and
    // the rest (image_channel_layernorm, the decode's, runs one thread over all W4; this halves the serial chains).
    static_assert(kThreads == 2 * 2 * kChunk, "two threads per (row, channel 2h or 2h + 1)");
    {
        const int r = tid / 4, half = (tid / 2) % 2, part = tid % 2, split = (W4 + 1) / 2;
        const int i0 = part ? split : 0, i1 = part ? W4 : split;
        const float *in = R + r * r_stride + half * W4;
        float sum = 0.0f;
        for (int i = i0; i < i1; ++i) sum += in[i];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        const float mean = sum / (float)W4;
        float sq = 0.0f;
        for (int i = i0; i < i1; ++i) sq += (in[i] - mean) * (in[i] - mean);
        sq += __shfl_xor_sync(0xffffffffu, sq, 1);
        const float rstd = 1.0f / sqrtf(sq / (float)W4 + kLayerNormEps);
        if (r < n_rows) {
            float *dst = image + ((size_t)(t0 + r) * d.C + 2 * h + half) * W4;
            for (int i = i0; i < i1; ++i) dst[i] = (in[i] - mean) * rstd * p.cnn_norm1_w[i] + p.cnn_norm1_b[i];
        }
    }
}

void set_smem(const void *kernel, size_t bytes, const char *name) {
    // Shared memory above the 48 KB default needs an opt-in; sizes were checked against the device's limit.
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    check_cuda(err, name, __FILE__, __LINE__);
    // The largest shared-memory carveout: three estimator-rows blocks (75 KB each) per SM.
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    (int)cudaSharedmemCarveoutMaxShared),
               name, __FILE__, __LINE__);
}

}  // namespace

size_t performer_state_smem_bytes(const Dims &d) { return (size_t)StateSmem(d.m).total * sizeof(float); }
size_t estimator_rows_smem_bytes(const Dims &d) { return (size_t)RowsSmem(d.m, d.KH).total * sizeof(float); }

void launch_performer_state(float *states, float *v_chunk, const QkvView &x, const SeaDeviceParams &p,
                            const uint4 *proj_frag, const SeaKvOut &kv, const Dims &d, cudaStream_t stream,
                            uint32_t weight_frag_bytes, uint32_t conv_frag_bytes) {
    const FragmentPrefetch prefetch{{static_cast<const char *>(p.weight_frags), static_cast<const char *>(p.conv_frags)},
                                    {p.weight_frags ? weight_frag_bytes : 0u, p.conv_frags ? conv_frag_bytes : 0u}};
    const size_t smem = performer_state_smem_bytes(d);
    set_smem(reinterpret_cast<const void *>(performer_state_kernel), smem, "cudaFuncSetAttribute(performer_state)");
    launch_kernel("sea performer_state_kernel", programmatic_launch_enabled(), performer_state_kernel,
                  dim3((unsigned)d.n_chunks, (unsigned)d.H), dim3(kThreads), smem, stream, states, v_chunk, x,
                  proj_frag, p.pos_table, kv, prefetch, d);
}

void launch_performer_scan(float *states, const Dims &d, const float *init, float *total, cudaStream_t stream) {
    const long long cols = (long long)d.H * d.m * kStateCols;
    const int threads = 256;
    launch_kernel("sea performer_scan_kernel", programmatic_launch_enabled(), performer_scan_kernel,
                  dim3((unsigned)((cols + threads - 1) / threads)), dim3(threads), 0, stream, states, d, init, total);
}

void launch_estimator_rows(float *image, float *gates, const float *states, const WeightFrags &frags, const QkvView &x,
                           const SeaDeviceParams &p, const Dims &d, cudaStream_t stream) {
    const size_t smem = estimator_rows_smem_bytes(d);
    set_smem(reinterpret_cast<const void *>(estimator_rows_kernel), smem, "cudaFuncSetAttribute(estimator_rows)");
    launch_kernel("sea estimator_rows_kernel", programmatic_launch_enabled(), estimator_rows_kernel,
                  dim3((unsigned)d.n_chunks, (unsigned)d.H), dim3(kThreads), smem, stream, image, gates, states, frags,
                  x, p, d);
}

}  // namespace seaopt::cuda::sea
