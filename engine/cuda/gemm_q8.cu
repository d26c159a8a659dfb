// Linear layers with int8 weights in ggml's Q8_0 grouping (interface: engine/cuda/gemm.h, "int8
// weights"). rows <= 16 (decode): our GEMV below reads q and d directly (in passes of up to 8 rows); rows > 16: the weight is
// dequantized to fp16 into the caller's scratch and gemm_f16 / gemm_f16_to_f32 (cuBLASLt) run on it.
//
// ---- The GEMV ------------------------------------------------------------------------------------
//
// Like gemm.cu's gemv_mma_kernel it multiplies on the tensor cores, mma.m16n8k16 (fp16 in, fp32
// accumulate): q (an integer in [-128, 127]) is exact in fp16 and a product of two fp16 values is
// exact in fp32, so the products are the exact q·x and only the fp32 sums round; the weight is
// never rounded. Each 32-block's partial sum is multiplied by its scale in fp32 (one FMA into the
// output's accumulator).
//
// The difficulty is that a block's scale differs per (output, block) while an mma sums over its k:
// every mma's k range must lie in one 32-block for each of its outputs. The k of an mma is split
// over the 4 lanes t of a group, 4 k each, so a lane gives 8 k of each block per row; but a 16-byte
// load of a weight row is 16 k of one block. The scales' blocks therefore go into the mma's N
// instead of its M: a block (CTA) owns 16 outputs o (the mma's M; lane (g, t) loads rows o0+g and
// o0+g+8, as the fp16 GEMV does), and a "chunk" is 64 k = two 32-blocks (parity p = 0, 1). Lane t
// loads the 16 k at 16t of the chunk (t < 2: block p = 0, t >= 2: p = 1). The mma's 8 columns
// are (x row r, block parity p) with n = 4p + r: B[k][n] = x[r][k] when k lies in block p, else 0.
// Lane (g, t) supplies column n = g at its 16 k, so it loads x row g % 4 (of the set, below) only
// when its block t / 2 is g / 4, and gives zeros otherwise (no per-element selects: a lane's B is
// all x or all zero for a chunk). Four mmas (mma-k 2t, 2t+1 <-> memory k 16t + 4j, +1 and mma-k
// 2t+8, 2t+9 <-> 16t + 4j + 2, +3 in mma j, the same for A and B) take the chunk, and each output
// (o, n) of the accumulator is the sum over one block: lane (g, t) holds (o0+g and o0+g+8) x
// (columns 2t, 2t+1: rows 2(t%2), +1 of parity t/2), multiplies them by their two scales and adds
// them to its running sums. At the end lanes t and t^2 (the two parities of the same outputs and
// rows) add theirs with one shuffle. Only 4 x rows fit the N of 8, so rows 5..8 take a second set
// of 4 mmas with x rows 4..7 on the same A registers (kSets = 2).
//
// int8 -> fp16: q8_to_half2x2 (engine/cuda/q8_device.cuh), exact.
//
// Bytes in flight: a warp issues the loads of kQ8Unroll chunks (2 rows x 16 bytes a lane each, 2 KB a
// warp) before it converts and multiplies; q goes through the non-coherent path without L1
// allocation (read once), x and d through the read-only cache (x is re-read by every CTA, d's 32-byte
// sectors serve 8 chunks). x's B fragments take 8 registers a chunk and set (16 x values for 16
// weights, twice the fp16 GEMV's per weight byte), and ptxas hoists their loads, so 4 chunks a step
// cost ~100 registers on sm_90a; measured on H200 it was no faster overall (fc1 faster, qkv and
// out-proj slower). The grid is ceil(n_out / 16) CTAs whose warps split n_in (deterministic
// warp-order reduction in shared memory, as in gemm.cu): as many warps per CTA as keep every CTA
// resident at once (one wave, by the kernel's occupancy; at most 16, at least 2 chunks a warp), so
// that every SM streams from the start. OPT-1.3B batch 1 on 132 SMs: out-proj and fc2 (-> 2048) 128
// CTAs of 16 warps; qkv (-> 6144) and fc1 (-> 8192) 384 and 512 CTAs, 3 and 4 an SM, of 7-10 warps
// (what the build's register counts allow).
//
// PDL (engine/cuda/pdl.cuh): before pdl_wait() a warp issues its first step's loads of q and d into
// registers (weights: written by no kernel of the stream); x, the bias and (beta != 0) y are read
// after it; pdl_launch_dependents() right after the wait. Measured on H200 (a CUDA graph of OPT-1.3B
// decode layers at batch 1, tests/test_gpu_q8.cpp's DecodeLayerTimeReport): 25.5 us a layer, 26.5
// with those loads after the wait, ~31.8 with gemm.cu's L2 prefetch of the first chunks before the
// wait instead (our reading: the prefetches held up the loads issued behind them).

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "engine/cuda/common.cuh"
#include "engine/cuda/gemm.h"
#include "engine/cuda/gemv_epilogue.cuh"
#include "engine/cuda/pdl.cuh"
#include "engine/cuda/q8_device.cuh"

namespace seaopt::cuda {

namespace {

constexpr int kQ8Block = 32;             // weights per scale (ggml's QK8_0)
constexpr int kQ8GemvMaxRows = 8;        // rows of one GEMV launch (as gemm.cu's kGemvMaxRows)
// Calls of up to this many rows run the GEMV in passes of kQ8GemvMaxRows: at OPT-1.3B's shapes two passes of the
// weights (~2 x 36 us a layer) cost less than dequantizing them and a cuBLASLt GEMM (~70 us + the GEMM); three would not.
constexpr int kQ8GemvPassRows = 16;
constexpr int kQ8TileOut = 16;           // outputs per CTA (the mma's M)
constexpr int kQ8ChunkK = 2 * kQ8Block;  // k per chunk: 4 lanes x 16 int8
constexpr int kQ8Unroll = 2;             // chunks whose loads a warp issues before it multiplies (see the top)
constexpr int kQ8MaxWarps = 16;          // warps splitting n_in within one CTA
constexpr int kQ8MinChunksPerWarp = 2;   // fewer would only add reduction work
constexpr int kDequantThreads = 256;
constexpr uintptr_t kQAlignment = 16, kBiasAlignment = 16, kScratchAlignment = 16, kDequantOutAlignment = 16;

// 16 bytes of q, read once: not kept in L1.
__device__ __forceinline__ uint4 q8_load_weights(const uint4 *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// This lane's 16 x values of one chunk (x row of the set, at its 16 k) as 8 words of fp16 pairs.
template <bool kXVec>
__device__ __forceinline__ void q8_load_x(uint32_t (&xw)[8], const __half *p) {
    if constexpr (kXVec) {
        const uint4 a = __ldg(reinterpret_cast<const uint4 *>(p));
        const uint4 b = __ldg(reinterpret_cast<const uint4 *>(p) + 1);
        xw[0] = a.x, xw[1] = a.y, xw[2] = a.z, xw[3] = a.w, xw[4] = b.x, xw[5] = b.y, xw[6] = b.z, xw[7] = b.w;
    } else {  // x only 2-byte aligned
        const unsigned short *s = reinterpret_cast<const unsigned short *>(p);
#pragma unroll
        for (int i = 0; i < 8; ++i) xw[i] = (uint32_t)__ldg(s + 2 * i) | ((uint32_t)__ldg(s + 2 * i + 1) << 16);
    }
}

// What one lane walks: its two weight rows and scale rows, and its x rows (one per set), all at
// chunk 0; chunk c is +4c uint4 of q, +2c scales, +64c halves of x.
template <int kSets>
struct Q8Lane {
    const uint4 *q_lo, *q_hi;   // rows o0+g, o0+g+8 (clamped), at this lane's 16 bytes
    const __half *d_lo, *d_hi;  // their scales at this lane's block parity
    const __half *x[kSets];     // x row 4s + g % 4 (clamped) at this lane's 16 k
    bool use_x;                 // this lane's block parity is its B column's (g / 4 == t / 2)
    int parity;                 // t / 2
};

// Chunk c's scales of this lane (0 where the lane's block lies past n_in: its sums are 0 too).
__device__ __forceinline__ float q8_scale(const __half *d, int c, bool in_range) {
    return in_range ? __half2float(__ldg(d + 2 * c)) : 0.0f;
}

// One chunk's arithmetic on loaded q (rows lo, hi) and scales: four mmas per set, then the two
// block sums of each output scaled into acc.
template <int kSets, bool kXVec>
__device__ __forceinline__ void q8_chunk_math(float (&acc)[kSets][4], const Q8Lane<kSets> &L, uint4 q_lo, uint4 q_hi,
                                              float d_lo, float d_hi, int c, bool in_range) {
    uint32_t a[4][4];  // mma j: {row g k lo, row g+8 k lo, row g k hi, row g+8 k hi}
    const uint32_t wl[4] = {q_lo.x, q_lo.y, q_lo.z, q_lo.w}, wh[4] = {q_hi.x, q_hi.y, q_hi.z, q_hi.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        q8_to_half2x2(wl[j], a[j][0], a[j][2]);
        q8_to_half2x2(wh[j], a[j][1], a[j][3]);
    }
#pragma unroll
    for (int s = 0; s < kSets; ++s) {
        uint32_t xw[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
        if (L.use_x && in_range) q8_load_x<kXVec>(xw, L.x[s] + (size_t)c * kQ8ChunkK);
        float blk[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_m16n8k16_f32(blk, a[j][0], a[j][1], a[j][2], a[j][3], xw[2 * j], xw[2 * j + 1]);
        acc[s][0] = fmaf(d_lo, blk[0], acc[s][0]);
        acc[s][1] = fmaf(d_lo, blk[1], acc[s][1]);
        acc[s][2] = fmaf(d_hi, blk[2], acc[s][2]);
        acc[s][3] = fmaf(d_hi, blk[3], acc[s][3]);
    }
}

// The loads of kU whole chunks (one step): q of both rows and their scales.
template <int kU>
struct Q8Step {
    uint4 ql[kU], qh[kU];
    float dl[kU], dh[kU];
};

template <int kU, int kSets>
__device__ __forceinline__ void q8_load_step(Q8Step<kU> &st, const Q8Lane<kSets> &L, int c) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
        st.ql[u] = q8_load_weights(L.q_lo + (size_t)(c + u) * 4);
        st.qh[u] = q8_load_weights(L.q_hi + (size_t)(c + u) * 4);
        st.dl[u] = q8_scale(L.d_lo, c + u, true);
        st.dh[u] = q8_scale(L.d_hi, c + u, true);
    }
}

template <int kU, int kSets, bool kXVec>
__device__ __forceinline__ void q8_math_step(float (&acc)[kSets][4], const Q8Lane<kSets> &L, const Q8Step<kU> &st,
                                             int c) {
#pragma unroll
    for (int u = 0; u < kU; ++u)
        q8_chunk_math<kSets, kXVec>(acc, L, st.ql[u], st.qh[u], st.dl[u], st.dh[u], c + u, true);
}

// Grid: ceil(n_out / 16) CTAs of 32·n_warps threads (n_warps <= 16), dynamic shared memory
// n_warps > 1 ? n_warps·kSets·32·16 bytes : 0. kSets = 1 for rows <= 4, 2 for 5..8. kXVec: x
// 16-byte aligned (else 2-byte loads).
template <bool kF16Out, int kSets, bool kXVec>
__global__ void __launch_bounds__(kQ8MaxWarps * kWarpSize)
    gemv_q8_kernel(const int8_t *__restrict__ q, const __half *__restrict__ d, const __half *__restrict__ x, int rows,
                   int n_in, int n_out, int n_chunks, GemvOutput out) {
    extern __shared__ float4 q8_partial[];  // [n_warps][kSets][32]
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize, n_warps = blockDim.x / kWarpSize;
    const int g = lane / 4, t = lane % 4;
    const int o0 = blockIdx.x * kQ8TileOut;
    const int nb = n_in / kQ8Block;
    // Rows past n_out (last CTA) and x rows past `rows` repeat the last real one: their sums land in
    // outputs that are not stored, and the loads stay in bounds.
    const int row_lo = min(o0 + g, n_out - 1), row_hi = min(o0 + g + 8, n_out - 1);
    Q8Lane<kSets> L;
    L.parity = t / 2;
    L.q_lo = reinterpret_cast<const uint4 *>(q + (size_t)row_lo * n_in) + t;
    L.q_hi = reinterpret_cast<const uint4 *>(q + (size_t)row_hi * n_in) + t;
    L.d_lo = d + (size_t)row_lo * nb + L.parity;
    L.d_hi = d + (size_t)row_hi * nb + L.parity;
#pragma unroll
    for (int s = 0; s < kSets; ++s) L.x[s] = x + (size_t)min(4 * s + g % 4, rows - 1) * n_in + 16 * t;
    L.use_x = g / 4 == L.parity;
    // This warp's chunks (uniform across the warp: the mma needs all 32 lanes).
    const int c_begin = (int)((long long)warp * n_chunks / n_warps);
    const int c_end = (int)((long long)(warp + 1) * n_chunks / n_warps);

    // The first step's weights are loaded before the PDL wait (no kernel of the stream writes them).
    constexpr int kU = kQ8Unroll;
    const int full_end = min(c_end, nb / 2);  // chunks wholly inside n_in
    int c = c_begin;
    Q8Step<kU> first;
    const bool first_early = c + kU <= full_end;
    if (first_early) q8_load_step<kU>(first, L, c);
    pdl_wait();
    pdl_launch_dependents();

    // After the parity shuffle lanes t and t^2 hold the same sums: t < 2 stores output o0+g,
    // t >= 2 output o0+g+8, each rows 4s + 2(t%2), +1. Warp 0 loads their epilogue operands now.
    const int o_store = o0 + g + (t >= 2 ? 8 : 0);
    const int r_base = 2 * (t % 2);
    GemvEpilogueIn pre[kSets][2];
    if (warp == 0 && o_store < n_out) {
#pragma unroll
        for (int s = 0; s < kSets; ++s) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int r = 4 * s + r_base + i;
                if (r < rows) pre[s][i] = gemv_epilogue_load<kF16Out>(out, r, o_store);
            }
        }
    }

    float acc[kSets][4];
#pragma unroll
    for (int s = 0; s < kSets; ++s) acc[s][0] = acc[s][1] = acc[s][2] = acc[s][3] = 0.0f;
    if (first_early) {
        q8_math_step<kU, kSets, kXVec>(acc, L, first, c);
        c += kU;
    }
    for (; c + kU <= full_end; c += kU) {
        Q8Step<kU> st;
        q8_load_step<kU>(st, L, c);
        q8_math_step<kU, kSets, kXVec>(acc, L, st, c);
    }
    for (; c < c_end; ++c) {  // the rest one at a time; n_in % 64 == 32: the last has no parity-1 block
        const bool in_range = 2 * c + L.parity < nb;
        const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
        const uint4 ql = in_range ? q8_load_weights(L.q_lo + (size_t)c * 4) : zero;
        const uint4 qh = in_range ? q8_load_weights(L.q_hi + (size_t)c * 4) : zero;
        q8_chunk_math<kSets, kXVec>(acc, L, ql, qh, q8_scale(L.d_lo, c, in_range), q8_scale(L.d_hi, c, in_range), c,
                                    in_range);
    }
    // The two block parities of the same (outputs, rows): lanes t and t^2 (a + b == b + a bitwise).
#pragma unroll
    for (int s = 0; s < kSets; ++s) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[s][i] += __shfl_xor_sync(0xffffffffu, acc[s][i], 2);
    }
    if (n_warps > 1) {  // uniform across the CTA; the warps' sums in warp order: deterministic
#pragma unroll
        for (int s = 0; s < kSets; ++s) {
            q8_partial[(warp * kSets + s) * kWarpSize + lane] = make_float4(acc[s][0], acc[s][1], acc[s][2], acc[s][3]);
        }
        __syncthreads();
        if (warp != 0) return;
        for (int w = 1; w < n_warps; ++w) {
#pragma unroll
            for (int s = 0; s < kSets; ++s) {
                const float4 p = q8_partial[(w * kSets + s) * kWarpSize + lane];
                acc[s][0] += p.x, acc[s][1] += p.y, acc[s][2] += p.z, acc[s][3] += p.w;
            }
        }
    }
    if (o_store >= n_out) return;
#pragma unroll
    for (int s = 0; s < kSets; ++s) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int r = 4 * s + r_base + i;
            if (r < rows) gemv_store<kF16Out>(out, r, o_store, t >= 2 ? acc[s][2 + i] : acc[s][i], pre[s][i]);
        }
    }
}

// out = fp16(q · d) for n16 groups of 16 weights (one scale each: 16 divides 32), grid-stride.
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_q8_kernel(uint4 *__restrict__ out, const uint4 *__restrict__ q, const __half *__restrict__ d,
                         size_t n16) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldg(q + i);
        const float s = __half2float(__ldg(d + i / 2));  // row-major [n_out][n_in / 32]: flat block i / 2
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
        uint32_t h[8];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
#pragma unroll
            for (int b = 0; b < 4; b += 2) {
                // q · d is exact in fp32 (8 x 11 significant bits): one rounding, to nearest even
                const float lo = (float)(int8_t)(w[e] >> (8 * b)) * s;
                const float hi = (float)(int8_t)(w[e] >> (8 * b + 8)) * s;
                const __half2 p = __halves2half2(__float2half_rn(lo), __float2half_rn(hi));
                h[2 * e + b / 2] = *reinterpret_cast<const uint32_t *>(&p);
            }
        }
        out[2 * i] = make_uint4(h[0], h[1], h[2], h[3]);
        out[2 * i + 1] = make_uint4(h[4], h[5], h[6], h[7]);
    }
}

// ---- host ----------------------------------------------------------------------------------------

bool aligned(const void *p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

void check_weight(const char *name, const WeightQ8 &w) {
    check_arg(w.q != nullptr && w.d != nullptr, name, "null weight (q or d)");
    check_arg(aligned(w.q, kQAlignment), name, "the weight's q must be 16-byte aligned");
    check_arg(aligned(w.d, alignof(half_t)), name, "the weight's d must be 2-byte aligned");
}

void launch_dequantize(const char *name, half_t *out, const WeightQ8 &w, int n_out, int n_in, cudaStream_t stream) {
    const size_t n16 = (size_t)n_out * (size_t)n_in / 16;
    const size_t blocks =
        std::min<size_t>(ceil_div<size_t>(n16, kDequantThreads), size_t(1) << 16);  // then grid-stride
    dequantize_q8_kernel<<<(unsigned)blocks, kDequantThreads, 0, stream>>>(reinterpret_cast<uint4 *>(out),
                                                                           reinterpret_cast<const uint4 *>(w.q),
                                                                           reinterpret_cast<const __half *>(w.d), n16);
    check_launch(name);
}

// The kernel of a call: output type, x rows (sets), x alignment.
using Q8Kernel = void (*)(const int8_t *, const __half *, const __half *, int, int, int, int, GemvOutput);
Q8Kernel q8_kernel(bool f16_out, int sets, bool x_vec) {
    if (f16_out) {
        if (sets == 1) return x_vec ? gemv_q8_kernel<true, 1, true> : gemv_q8_kernel<true, 1, false>;
        return x_vec ? gemv_q8_kernel<true, 2, true> : gemv_q8_kernel<true, 2, false>;
    }
    if (sets == 1) return x_vec ? gemv_q8_kernel<false, 1, true> : gemv_q8_kernel<false, 1, false>;
    return x_vec ? gemv_q8_kernel<false, 2, true> : gemv_q8_kernel<false, 2, false>;
}

size_t q8_shared_bytes(int n_warps, int sets) {
    return n_warps > 1 ? (size_t)n_warps * sets * kWarpSize * sizeof(float4) : 0;
}

// The most warps per CTA (at most kQ8MaxWarps, at least kQ8MinChunksPerWarp chunks each) with which
// all n_tiles CTAs are resident at once (one wave), by the kernel's occupancy at its register count
// (~64-100 registers, depending on the instantiation and the architecture: asked, not assumed); 1
// where even that takes more than one wave (tens of thousands of outputs fill the SMs anyway).
// Measured on H200 (OPT-1.3B decode shapes): using only part of the SM (room for the next kernel's
// CTAs under PDL) was slower.
int q8_warps_for(Q8Kernel kernel, int sets, int sm_count, int n_chunks, int n_tiles) {
    const int most = std::max(1, std::min(kQ8MaxWarps, n_chunks / kQ8MinChunksPerWarp));
    for (int n = most; n > 1; --n) {
        int per_sm = 0;
        SEAOPT_CUDA_CHECK(
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, n * kWarpSize, q8_shared_bytes(n, sets)));
        if ((long long)per_sm * sm_count >= n_tiles) return n;
    }
    return 1;
}

// Warps per CTA of a call, remembered per (device, kernel, shape): decode calls the same few shapes
// over and over (a map lookup instead of up to 15 occupancy queries).
int q8_warps(bool f16_out, int sets, bool x_vec, int n_chunks, int n_tiles) {
    int device = 0;
    SEAOPT_CUDA_CHECK(cudaGetDevice(&device));
    using Key = std::tuple<int, bool, int, bool, int, int>;
    static std::mutex mutex;
    static auto *cache = new std::map<Key, int>;  // never destroyed: calls may come during static destruction
    const Key key{device, f16_out, sets, x_vec, n_chunks, n_tiles};
    {
        std::lock_guard<std::mutex> lock(mutex);
        const auto it = cache->find(key);
        if (it != cache->end()) return it->second;
    }
    int sm_count = 0;
    SEAOPT_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
    const int n_warps = q8_warps_for(q8_kernel(f16_out, sets, x_vec), sets, std::max(sm_count, 1), n_chunks, n_tiles);
    std::lock_guard<std::mutex> lock(mutex);
    cache->emplace(key, n_warps);
    return n_warps;
}

void launch_gemv_q8(const char *name, bool f16_out, void *y, const half_t *x, const WeightQ8 &w, const void *bias,
                    bool relu, float beta, int rows, int n_in, int n_out, cudaStream_t stream) {
    const GemvOutput out{y, bias, beta, n_out, relu};
    const int n_chunks = (int)ceil_div<long long>(n_in, kQ8ChunkK);
    const int n_tiles = (int)ceil_div<long long>(n_out, kQ8TileOut);
    const int sets = rows > 4 ? 2 : 1;
    const bool x_vec = aligned(x, 16);
    const int n_warps = q8_warps(f16_out, sets, x_vec, n_chunks, n_tiles);
    launch_kernel(name, programmatic_launch_enabled(), q8_kernel(f16_out, sets, x_vec), dim3((unsigned)n_tiles),
                  dim3((unsigned)(n_warps * kWarpSize)), q8_shared_bytes(n_warps, sets), stream, w.q,
                  reinterpret_cast<const __half *>(w.d), reinterpret_cast<const __half *>(x), rows, n_in, n_out,
                  n_chunks, out);
}

// The checks of gemm_f16 (gemm.h) plus the weight's and the scratch's; false: rows == 0 (a no-op).
bool check_q8_call(const char *name, const GemmHandle *handle, const void *y, const half_t *x, const WeightQ8 &w,
                   const void *bias, Epilogue epilogue, int rows, int n_in, int n_out, const half_t *scratch) {
    check_arg(handle != nullptr, name, "null handle");
    check_arg(rows >= 0 && n_in > 0 && n_out > 0, name, "rows must be >= 0 and n_in, n_out > 0");
    check_arg(n_in % kQ8Block == 0, name, "n_in must be a multiple of 32 (the Q8_0 block)");
    check_arg(epilogue == Epilogue::None || epilogue == Epilogue::Bias || epilogue == Epilogue::BiasRelu, name,
              "unknown epilogue");
    if (rows == 0) return false;
    check_arg(y != nullptr && x != nullptr, name, "null pointer");
    check_weight(name, w);
    check_arg(epilogue == Epilogue::None || bias != nullptr, name, "the epilogue needs a bias");
    check_arg(epilogue == Epilogue::None || aligned(bias, kBiasAlignment), name, "the bias must be 16-byte aligned");
    if (rows > kQ8GemvPassRows) {
        check_arg(scratch != nullptr, name, "rows > 16 need the scratch (gemm_q8_scratch_bytes)");
        check_arg(aligned(scratch, kScratchAlignment), name, "the scratch must be 16-byte aligned");
    } else if (!gemm_has_gemv(handle)) {
        throw Error(SEAOPT_ERR_DEVICE, std::string(name) + ": the int8 GEMV needs compute capability 8.0");
    }
    return true;
}

}  // namespace

size_t gemm_q8_scratch_bytes(int rows, int n_in, int n_out) {
    if (rows <= kQ8GemvPassRows || n_in <= 0 || n_out <= 0) return 0;
    return (size_t)n_out * (size_t)n_in * sizeof(half_t);
}

void dequantize_q8_f16(half_t *out, WeightQ8 w, int n_out, int n_in, cudaStream_t stream) {
    const char *name = "dequantize_q8_f16";
    check_arg(n_out > 0 && n_in > 0, name, "n_out and n_in must be > 0");
    check_arg(n_in % kQ8Block == 0, name, "n_in must be a multiple of 32 (the Q8_0 block)");
    check_arg(out != nullptr, name, "null pointer");
    check_weight(name, w);
    check_arg(aligned(out, kDequantOutAlignment), name, "out must be 16-byte aligned");
    launch_dequantize(name, out, w, n_out, n_in, stream);
}

void gemm_q8_f16(GemmHandle *handle, half_t *y, const half_t *x, WeightQ8 w, const half_t *bias_f16, Epilogue epilogue,
                 int rows, int n_in, int n_out, half_t *scratch, cudaStream_t stream) {
    const char *name = "gemm_q8_f16";
    if (!check_q8_call(name, handle, y, x, w, bias_f16, epilogue, rows, n_in, n_out, scratch)) return;
    if (rows > kQ8GemvPassRows) {
        launch_dequantize(name, scratch, w, n_out, n_in, stream);
        gemm_f16(handle, y, x, scratch, bias_f16, epilogue, rows, n_in, n_out, stream);
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += kQ8GemvMaxRows) {  // each pass its own rows of x and y: no pass reads another's
        launch_gemv_q8(name, true, y + (size_t)r0 * n_out, x + (size_t)r0 * n_in, w,
                       epilogue == Epilogue::None ? nullptr : bias_f16, epilogue == Epilogue::BiasRelu, 0.0f,
                       std::min(kQ8GemvMaxRows, rows - r0), n_in, n_out, stream);
    }
}

void gemm_q8_to_f32(GemmHandle *handle, float *y, const half_t *x, WeightQ8 w, const float *bias_f32, float beta,
                    int rows, int n_in, int n_out, half_t *scratch, cudaStream_t stream) {
    const char *name = "gemm_q8_to_f32";
    const Epilogue epilogue = bias_f32 != nullptr ? Epilogue::Bias : Epilogue::None;
    if (!check_q8_call(name, handle, y, x, w, bias_f32, epilogue, rows, n_in, n_out, scratch)) return;
    if (rows > kQ8GemvPassRows) {
        launch_dequantize(name, scratch, w, n_out, n_in, stream);
        gemm_f16_to_f32(handle, y, x, scratch, bias_f32, beta, rows, n_in, n_out, stream);
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += kQ8GemvMaxRows) {
        launch_gemv_q8(name, false, y + (size_t)r0 * n_out, x + (size_t)r0 * n_in, w, bias_f32, false, beta,
                       std::min(kQ8GemvMaxRows, rows - r0), n_in, n_out, stream);
    }
}

}  // namespace seaopt::cuda
