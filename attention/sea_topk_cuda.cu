// SEA grouped top-k, "causal-per-batch" (sea.md §2.7; sea_cpu.cpp sea_row_budget and select_top_cells): for each
// query t, keep the n_t largest of the H·K values Â[t, h, c] (flat index h·K + c), n_t = row_budget(t).
//
// topk_kernel: one block of 256 threads per query row. The row's values become order-preserving uint32 keys in
// shared memory (NaN ranks as -inf and -0 as +0, as the CPU's comparator sees them). A 4-pass radix select (8 bits
// per pass, a 256-bin shared histogram with warp-aggregated atomics, the bin crossing found by one warp's scan)
// gives the exact key τ of the n_t-th largest value and how many of the keys equal to τ are still needed, r. Kept:
// every key > τ, and of the keys == τ the r with the smallest flat index (the CPU's order: larger value first, then
// smaller flat index). Usually exactly r keys equal τ and all are kept; otherwise an ordered block scan (256
// indices per round) ranks them. No sort; O(H·K) per row. Output: the bit mask [T][H][⌈K/32⌉] (bit c%32 of word
// c/32 of (t, h)).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kTopkThreads = 256;
constexpr int kTopkWarps = kTopkThreads / kWarpSize;
constexpr int kBins = 256;
static_assert(kBins == kTopkThreads, "one histogram bin per thread");
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ uint32_t order_key(float x) {
    if (isnan(x)) x = -INFINITY;
    uint32_t u = __float_as_uint(x);
    if (x == 0.0f) u = 0u;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ void set_bit(uint32_t *mw, int i, int K, int KW) {
    const int h = i / K, c = i - h * K;
    atomicOr(&mw[h * KW + (c >> 5)], 1u << (c & 31));
}

__global__ void __launch_bounds__(kTopkThreads)
    topk_kernel(uint32_t *__restrict__ cell_mask, const float *__restrict__ probs, Dims d) {
    extern __shared__ uint32_t sm[];  // keys [H·K], then the row's mask words [H·KW]
    __shared__ uint32_t hist[kBins];
    __shared__ uint32_t s_warp[kTopkWarps];
    __shared__ uint32_t s_digit, s_above;
    const int t = blockIdx.x, tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
    pdl_wait();  // a no-op unless launched with PDL (the decode)
    pdl_launch_dependents();
    const int K = d.K, KW = d.KW, n = d.H * d.K, n_words = d.H * d.KW;
    uint32_t *keys = sm, *mw = sm + n;
    const float *row = probs + (size_t)t * n;
    for (int i = tid; i < n; i += kTopkThreads) keys[i] = order_key(row[i]);
    for (int i = tid; i < n_words; i += kTopkThreads) mw[i] = 0u;
    const int budget = row_budget(query_position(t, d), d);
    __syncthreads();

    if (budget >= n) {
        for (int i = tid; i < n; i += kTopkThreads) set_bit(mw, i, K, KW);
    } else {
        uint32_t prefix = 0u, pmask = 0u, rem = (uint32_t)budget, n_eq = 0u;
        for (int shift = 24; shift >= 0; shift -= 8) {
            hist[tid] = 0u;
            __syncthreads();
            // Lanes of a warp with the same digit add once (__match_any_sync): the digits of Â's keys crowd
            // into a few bins, and same-address shared atomics serialise.
            for (int i0 = 0; i0 < n; i0 += kTopkThreads) {
                const int i = i0 + tid;
                const uint32_t k = i < n ? keys[i] : 0u;
                const bool counted = i < n && (k & pmask) == prefix;
                const uint32_t bin = (k >> shift) & 0xFFu;
                const unsigned peers = __match_any_sync(kFull, counted ? bin : 0x100u);
                if (counted && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (uint32_t)__popc(peers));
            }
            __syncthreads();
            if (warp == 0) {
                // Lane L covers bins 255-8L down to 248-8L; counts accumulate from the largest digit down.
                const int top = kBins - 1 - 8 * lane;
                uint32_t local = 0u;
#pragma unroll
                for (int b = 0; b < 8; ++b) local += hist[top - b];
                uint32_t incl = local;
#pragma unroll
                for (int off = 1; off < kWarpSize; off <<= 1) {
                    const uint32_t v = __shfl_up_sync(kFull, incl, off);
                    if (lane >= off) incl += v;
                }
                const uint32_t excl = incl - local;
                if (excl < rem && rem <= incl) {  // exactly one lane: the rem-th largest is in its bins
                    uint32_t cum = excl;
                    for (int b = 0; b < 8; ++b) {
                        const uint32_t c = hist[top - b];
                        if (cum + c >= rem) {
                            s_digit = (uint32_t)(top - b);
                            s_above = cum;
                            break;
                        }
                        cum += c;
                    }
                }
            }
            __syncthreads();
            const uint32_t digit = s_digit;
            rem -= s_above;  // keys with this prefix and a larger digit: all kept
            prefix |= digit << shift;
            pmask |= 0xFFu << shift;
            n_eq = hist[digit];  // after the last pass: the number of keys equal to τ
            __syncthreads();     // hist, s_digit and s_above are read before the next pass resets them
        }
        const uint32_t tau = prefix;
        if (n_eq == rem) {
            for (int i = tid; i < n; i += kTopkThreads) {
                if (keys[i] >= tau) set_bit(mw, i, K, KW);
            }
        } else {
            // Ties at the threshold: keep the rem of them with the smallest flat index.
            uint32_t taken = 0u;  // keys == τ in earlier rounds (the same in every thread)
            for (int base = 0; base < n; base += kTopkThreads) {
                const int i = base + tid;
                const uint32_t k = i < n ? keys[i] : 0u;
                const bool eq = i < n && k == tau;
                const uint32_t ballot = __ballot_sync(kFull, eq);
                if (lane == 0) s_warp[warp] = (uint32_t)__popc(ballot);
                __syncthreads();
                uint32_t before = taken + (uint32_t)__popc(ballot & ((1u << lane) - 1u)), round = 0u;
                for (int w = 0; w < kTopkWarps; ++w) {
                    if (w < warp) before += s_warp[w];
                    round += s_warp[w];
                }
                if (i < n && (k > tau || (eq && before < rem))) set_bit(mw, i, K, KW);
                taken += round;
                __syncthreads();
            }
        }
    }
    __syncthreads();
    uint32_t *dst = cell_mask + (size_t)t * n_words;
    for (int i = tid; i < n_words; i += kTopkThreads) dst[i] = mw[i];
}

}  // namespace

size_t topk_smem_bytes(const Dims &d) { return ((size_t)d.H * d.K + (size_t)d.H * d.KW) * sizeof(uint32_t); }

void launch_topk(uint32_t *cell_mask, const float *probs, const Dims &d, cudaStream_t stream) {
    const size_t smem = topk_smem_bytes(d);
    if (smem > (size_t(40) << 10)) {  // with the static arrays, past the 48 KB default
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(topk_kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(topk)", __FILE__, __LINE__);
    }
    launch_kernel("sea topk_kernel", d.row_pos != nullptr && programmatic_launch_enabled(), topk_kernel,
                  dim3((unsigned)d.T), dim3(kTopkThreads), smem, stream, cell_mask, probs, d);
}

}  // namespace seaopt::cuda::sea
