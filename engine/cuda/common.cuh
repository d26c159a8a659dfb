// Shared helpers of the CUDA sources (included by .cu files only): error checks that turn CUDA
// failures into seaopt::Error(SEAOPT_ERR_DEVICE) — the library never exits or aborts — argument
// checks for the launchers, and small device helpers (warp reductions, ceil_div).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "engine/error.h"

namespace seaopt::cuda {

constexpr int kWarpSize = 32;

// ---- host: errors ------------------------------------------------------------------------------

// "file.cu:123" without the build machine's directories (messages reach seaopt_last_error()).
inline std::string source_location(const char *file, int line) {
    const char *slash = std::strrchr(file, '/');
    return std::string(slash ? slash + 1 : file) + ":" + std::to_string(line);
}

inline void check_cuda(cudaError_t err, const char *what, const char *file, int line) {
    if (err != cudaSuccess) {
        throw Error(SEAOPT_ERR_DEVICE, std::string(what) + " failed: " + cudaGetErrorName(err) + " (" +
                                           cudaGetErrorString(err) + ") at " + source_location(file, line));
    }
}

// Checks a CUDA runtime call: SEAOPT_CUDA_CHECK(cudaMalloc(&p, n));
#define SEAOPT_CUDA_CHECK(expr) ::seaopt::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)

// Call right after a kernel launch: reports a bad launch configuration (or an earlier asynchronous
// error) as seaopt::Error. It does not synchronize, so errors inside the kernel surface at the next
// synchronizing call.
inline void check_launch(const char *what) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        throw Error(SEAOPT_ERR_DEVICE, std::string(what) + ": kernel launch failed: " + cudaGetErrorName(err) + " (" +
                                           cudaGetErrorString(err) + ")");
    }
}

// ---- host: argument checks of the launchers ----------------------------------------------------

// Bad sizes or null pointers are the caller's bug: SEAOPT_ERR_INVALID_ARGUMENT naming the launcher.
inline void check_arg(bool ok, const char *launcher, const char *what) {
    if (!ok) throw Error(SEAOPT_ERR_INVALID_ARGUMENT, std::string(launcher) + ": " + what);
}

// ---- host and device: integer helpers -----------------------------------------------------------

template <typename T>
__host__ __device__ constexpr T ceil_div(T a, T b) {
    return (a + b - 1) / b;
}

// ---- device: warp reductions ------------------------------------------------------------------------

// Sum over the 32 lanes of a warp; every lane gets the result. All lanes must call it.
__device__ __forceinline__ float warp_reduce_sum(float v) {
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_reduce_max(float v) {
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// The max of 64-bit keys (engine/argmax_key.h) over the warp, in every lane.
__device__ __forceinline__ unsigned long long warp_max_u64(unsigned long long v) {
#pragma unroll
    for (int o = kWarpSize / 2; o > 0; o /= 2) {
        const unsigned long long w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

// Inclusive prefix sum over the warp's lanes (lane l = this lane gets the sum of v of lanes 0..l), Hillis-Steele
// with __shfl_up_sync.
__device__ __forceinline__ uint32_t warp_inclusive_sum(uint32_t v, int lane) {
#pragma unroll
    for (int off = 1; off < kWarpSize; off <<= 1) {
        const uint32_t u = __shfl_up_sync(0xffffffffu, v, off);
        if (lane >= off) v += u;
    }
    return v;
}

// ---- device: fp16 words ------------------------------------------------------------------------------

// The two fp16 values of a 32-bit word (low half first) as floats (exact).
__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t u) {
    return __half22float2(*reinterpret_cast<const __half2 *>(&u));
}

// The eight fp16 values of a 16-byte word as floats, in memory order.
__device__ __forceinline__ void unpack8(float (&f)[8], uint4 u) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float2 p = half2_bits_to_float2(w[e]);
        f[2 * e] = p.x;
        f[2 * e + 1] = p.y;
    }
}

// ---- device: tensor cores, prefetch ---------------------------------------------------------------

// d += A·B, m16n8k16, fp16 inputs, fp32 accumulator (row-major A, column-major B). Before sm_80 it
// traps: its callers are never launched there (gemm_create enables the mma GEMV only for PTX >=
// sm_80; the persistent decode needs sm_90).
__device__ __forceinline__ void mma_m16n8k16_f32(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                 uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
    __trap();
#endif
}

// Pulls the 128-byte line holding p into L2, or into L1 and L2 (no register result, no wait).
__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
__device__ __forceinline__ void prefetch_l1(const void *p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

// store(i, load(i)) for i < n by threads 0 .. kThreads-1 of the block (threadIdx.x), kBatch loads per thread issued
// before their stores: a store to shared memory orders the next load behind it, so element by element each value
// would cost a memory round trip; batched, a batch costs one.
template <int kThreads, int kBatch, typename Load, typename Store>
__device__ __forceinline__ void stage_batched(int n, const Load &load, const Store &store) {
    for (int i0 = (int)threadIdx.x; i0 < n; i0 += kBatch * kThreads) {
        float v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int i = i0 + u * kThreads;
            v[u] = i < n ? load(i) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int i = i0 + u * kThreads;
            if (i < n) store(i, v[u]);
        }
    }
}

}  // namespace seaopt::cuda
