// SEA grouped top-k of one query row in shared memory (sea_topk_cuda.cu describes the method): the device code
// shared by topk_kernel (one row per block, from Â in global memory) and the decode's fused CNN output + top-k
// (sea_cnn_cuda.cu), which computes the row's Â in shared memory first. Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::sea {

inline constexpr int kTopkBins = 256;  // 8 bits per radix pass

// Order-preserving uint32 key of a value (NaN ranks as -inf and -0 as +0, as the CPU's comparator sees them).
__device__ __forceinline__ uint32_t topk_order_key(float x) {
    if (isnan(x)) x = -INFINITY;
    uint32_t u = __float_as_uint(x);
    if (x == 0.0f) u = 0u;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ void topk_set_bit(uint32_t *mw, int i, int K, int KW) {
    const int h = (K & (K - 1)) == 0 ? i >> (__ffs(K) - 1) : i / K, c = i - h * K;  // a shift for K = 2^n
    atomicOr(&mw[h * KW + (c >> 5)], 1u << (c & 31));
}

// The block's shared scratch of topk_select.
template <int kThreads>
struct TopkShared {
    uint32_t hist[kTopkBins];
    uint32_t warp_count[kThreads / kWarpSize];
    uint32_t digit, above;
};

// Sets in mw (n_words = H·KW words, zeroed by the caller) the bits of the `budget` largest of the n keys (ties at
// the threshold: the smallest flat indices). Threads 0 .. kThreads-1 of the block (a multiple of 32, >= kTopkBins)
// call it after the keys and mw are written and a barrier of theirs; sync() is that barrier (__syncthreads for a
// block of kThreads; the persistent decode kernel's compute warps have their own). It ends with a barrier.
template <int kThreads, typename Sync>
__device__ void topk_select(const uint32_t *keys, uint32_t *mw, int n, int budget, int K, int KW,
                            TopkShared<kThreads> &sh, Sync sync) {
    static_assert(kThreads % kWarpSize == 0 && kThreads >= kTopkBins, "a histogram bin per thread at least");
    constexpr int kWarps = kThreads / kWarpSize;
    constexpr unsigned kFull = 0xffffffffu;
    const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
    if (budget >= n) {
        for (int i = tid; i < n; i += kThreads) topk_set_bit(mw, i, K, KW);
        sync();
        return;
    }
    uint32_t prefix = 0u, pmask = 0u, rem = (uint32_t)budget, n_eq = 0u;
    for (int shift = 24; shift >= 0; shift -= 8) {
        if (tid < kTopkBins) sh.hist[tid] = 0u;
        sync();
        // Lanes of a warp with the same digit add once (__match_any_sync): the digits of Â's keys crowd
        // into a few bins, and same-address shared atomics serialise.
        for (int i0 = 0; i0 < n; i0 += kThreads) {
            const int i = i0 + tid;
            const uint32_t k = i < n ? keys[i] : 0u;
            const bool counted = i < n && (k & pmask) == prefix;
            const uint32_t bin = (k >> shift) & 0xFFu;
            const unsigned peers = __match_any_sync(kFull, counted ? bin : 0x100u);
            if (counted && lane == __ffs(peers) - 1) atomicAdd(&sh.hist[bin], (uint32_t)__popc(peers));
        }
        sync();
        if (warp == 0) {
            // Lane L covers bins 255-8L down to 248-8L; counts accumulate from the largest digit down.
            const int top = kTopkBins - 1 - 8 * lane;
            uint32_t local = 0u;
#pragma unroll
            for (int b = 0; b < 8; ++b) local += sh.hist[top - b];
            const uint32_t incl = warp_inclusive_sum(local, lane);
            const uint32_t excl = incl - local;
            if (excl < rem && rem <= incl) {  // exactly one lane: the rem-th largest is in its bins
                uint32_t cum = excl;
                for (int b = 0; b < 8; ++b) {
                    const uint32_t c = sh.hist[top - b];
                    if (cum + c >= rem) {
                        sh.digit = (uint32_t)(top - b);
                        sh.above = cum;
                        break;
                    }
                    cum += c;
                }
            }
        }
        sync();
        const uint32_t digit = sh.digit;
        rem -= sh.above;  // keys with this prefix and a larger digit: all kept
        prefix |= digit << shift;
        pmask |= 0xFFu << shift;
        n_eq = sh.hist[digit];  // after the last pass: the number of keys equal to τ
        sync();        // hist, digit and above are read before the next pass resets them
    }
    const uint32_t tau = prefix;
    if (n_eq == rem) {
        for (int i = tid; i < n; i += kThreads) {
            if (keys[i] >= tau) topk_set_bit(mw, i, K, KW);
        }
    } else {
        // Ties at the threshold: keep the rem of them with the smallest flat index.
        uint32_t taken = 0u;  // keys == τ in earlier rounds (the same in every thread)
        for (int base = 0; base < n; base += kThreads) {
            const int i = base + tid;
            const uint32_t k = i < n ? keys[i] : 0u;
            const bool eq = i < n && k == tau;
            const uint32_t ballot = __ballot_sync(kFull, eq);
            if (lane == 0) sh.warp_count[warp] = (uint32_t)__popc(ballot);
            sync();
            uint32_t before = taken + (uint32_t)__popc(ballot & ((1u << lane) - 1u)), round = 0u;
            for (int w = 0; w < kWarps; ++w) {
                if (w < warp) before += sh.warp_count[w];
                round += sh.warp_count[w];
            }
            if (i < n && (k > tau || (eq && before < rem))) topk_set_bit(mw, i, K, KW);
            taken += round;
            sync();
        }
    }
    sync();
}

struct BlockSync {
    __device__ void operator()() const { __syncthreads(); }
};

template <int kThreads>
__device__ void topk_select(const uint32_t *keys, uint32_t *mw, int n, int budget, int K, int KW,
                            TopkShared<kThreads> &sh) {
    topk_select<kThreads>(keys, mw, n, budget, K, KW, sh, BlockSync{});
}

}  // namespace seaopt::cuda::sea
