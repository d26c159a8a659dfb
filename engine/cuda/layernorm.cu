// LayerNorm over the fp32 residual stream (launcher declared in engine/cuda/ops.h).
//
// One block per row. The fast kernel (C % 4 == 0, x and out32 16-byte aligned, out16, w and b
// 8-byte aligned: every OPT model) holds the row in registers: thread t takes the float4 columns
// t, t + T, t + 2T, ... (T threads, at most kVec float4 each, kVec a compile-time 1, 2, 4 or 8), so
// x is read from memory once, in coalesced 16-byte loads, together with w and b (8-byte loads of
// four halves). The statistics are the two passes of the CPU reference, in fp32, from the
// registers: the mean first, then the mean of the squared deviations (no cancellation of
// E[x²] - E[x]², biased variance as torch). Each pass is reduced over the block by warp shuffles
// and a small shared array; every thread sums the per-warp values in the same order, so the
// result is deterministic. rstd uses IEEE sqrtf and division (not rsqrtf's approximation); then
// y = (x - mean) * rstd * w + b is written as fp16 (and fp32). Rows of 1 (decode) are latency bound:
// one load round trip and two block reductions; 2048-row prefills stream at memory speed. The block
// shape and the arithmetic live in engine/cuda/layernorm_math.cuh, written with IEEE intrinsics in
// a fixed order: the GEMV that fuses a LayerNorm into its prologue (gemm.h, gemm_f16_layernorm)
// follows the same order and gets the same fp16 bits.
//
// Anything else (odd C, unaligned pointers, C > 16384) takes a generic kernel: one block per row,
// three strided passes over global memory, the same arithmetic.
//
// The register kernel takes part in programmatic dependent launch (engine/cuda/pdl.cuh, on by default on sm_90):
// it loads w and b, then waits for the previous kernel before it reads x.
//
// rows == 0 is a no-op; bad sizes or null pointers throw SEAOPT_ERR_INVALID_ARGUMENT.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/layernorm_math.cuh"
#include "engine/cuda/ops.h"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda {
namespace {

constexpr int kLnGenericThreads = 256;  // (the register kernel's block: layernorm_math.cuh)

// ------------------------------------------------------------------------------------------------
// CUDA kernels

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `sm` holds one float per warp and must not be reused before the next __syncthreads.
__device__ __forceinline__ float block_reduce_sum(float v, float *sm) {
    v = warp_reduce_sum(v);
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    if (lane == 0) sm[warp] = v;
    __syncthreads();
    return ln_sum_warps(sm, blockDim.x / kWarpSize);  // the same order in every thread
}

// out32 may equal x (in place): every thread reads its x values into registers before the first
// block reduction, whose __syncthreads orders all reads of the row before any write. So x and
// out32 are deliberately not __restrict__.
template <int kVec>
__global__ void __launch_bounds__(kLnMaxThreads)
    layernorm_vec_kernel(__half *__restrict__ out16, float *out32, const float *x, const __half *__restrict__ w,
                         const __half *__restrict__ b, int C, float eps) {
    __shared__ float sm_sum[kLnMaxThreads / kWarpSize];
    __shared__ float sm_sq[kLnMaxThreads / kWarpSize];
    const int row = blockIdx.x, tid = threadIdx.x, T = blockDim.x;
    const int n4 = C / 4;
    const float4 *x4 = reinterpret_cast<const float4 *>(x + (size_t)row * C);
    const uint2 *w4 = reinterpret_cast<const uint2 *>(w);
    const uint2 *b4 = reinterpret_cast<const uint2 *>(b);

    // w and b are parameters (immutable): loaded before the PDL wait; x after it.
    uint2 wv[kVec], bv[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int i = tid + j * T;
        wv[j] = i < n4 ? __ldg(w4 + i) : make_uint2(0u, 0u);
        bv[j] = i < n4 ? __ldg(b4 + i) : make_uint2(0u, 0u);
    }
    pdl_wait();
    pdl_launch_dependents();

    float4 v[kVec];
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int i = tid + j * T;
        v[j] = i < n4 ? x4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        sum = __fadd_rn(sum, ln_sum4(v[j]));
    }
    const float mean = ln_mean(block_reduce_sum(sum, sm_sum), C);

    float sq = 0.0f;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        if (tid + j * T < n4) sq = __fadd_rn(sq, ln_sq4(v[j], mean));
    }
    const float rstd = ln_rstd(block_reduce_sum(sq, sm_sq), C, eps);

    uint2 *o16 = reinterpret_cast<uint2 *>(out16 + (size_t)row * C);
    float4 *o32 = out32 != nullptr ? reinterpret_cast<float4 *>(out32 + (size_t)row * C) : nullptr;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int i = tid + j * T;
        if (i < n4) {
            const float4 y = ln_apply4(v[j], mean, rstd, wv[j], bv[j]);
            o16[i] = float4_to_half4(y);
            if (o32 != nullptr) o32[i] = y;
        }
    }
}

// Any C and alignment: three strided passes over the row in global memory. In place is safe for
// the same reason (both reductions end in __syncthreads before the last pass, and each thread
// writes only the columns it reads).
__global__ void __launch_bounds__(kLnGenericThreads)
    layernorm_generic_kernel(__half *__restrict__ out16, float *out32, const float *x, const __half *__restrict__ w,
                             const __half *__restrict__ b, int C, float eps) {
    __shared__ float sm_sum[kLnGenericThreads / kWarpSize];
    __shared__ float sm_sq[kLnGenericThreads / kWarpSize];
    const int row = blockIdx.x, tid = threadIdx.x;
    const float *x_row = x + (size_t)row * C;

    float sum = 0.0f;
    for (int c = tid; c < C; c += kLnGenericThreads) sum += x_row[c];
    const float mean = block_reduce_sum(sum, sm_sum) / (float)C;

    float sq = 0.0f;
    for (int c = tid; c < C; c += kLnGenericThreads) {
        const float d = x_row[c] - mean;
        sq += d * d;
    }
    const float var = block_reduce_sum(sq, sm_sq) / (float)C;
    const float rstd = 1.0f / sqrtf(var + eps);

    __half *out16_row = out16 + (size_t)row * C;
    float *out32_row = out32 != nullptr ? out32 + (size_t)row * C : nullptr;
    for (int c = tid; c < C; c += kLnGenericThreads) {
        const float y = (x_row[c] - mean) * rstd * __half2float(w[c]) + __half2float(b[c]);
        out16_row[c] = __float2half_rn(y);
        if (out32_row != nullptr) out32_row[c] = y;
    }
}

bool aligned(const void *p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

// ------------------------------------------------------------------------------------------------
// kernel launchers

void layernorm_forward(half_t *out16, float *out32, const float *x, const half_t *w, const half_t *b, int rows, int C,
                       float eps, cudaStream_t stream) {
    const char *name = "layernorm_forward";
    check_arg(rows >= 0 && C > 0, name, "rows must be >= 0 and C > 0");
    check_arg(eps >= 0.0f, name, "eps must be >= 0");
    if (rows == 0) return;
    check_arg(out16 != nullptr && x != nullptr && w != nullptr && b != nullptr, name, "null pointer");
    auto *o16 = reinterpret_cast<__half *>(out16);
    const auto *wh = reinterpret_cast<const __half *>(w);
    const auto *bh = reinterpret_cast<const __half *>(b);

    const bool vectorizable = C % 4 == 0 && aligned(x, 16) && (out32 == nullptr || aligned(out32, 16)) &&
                              aligned(out16, 8) && aligned(w, 8) && aligned(b, 8);
    const LnVecConfig config = layernorm_vec_config(C);
    if (vectorizable && config.fits) {
        auto kernel = config.vec == 1   ? layernorm_vec_kernel<1>
                      : config.vec == 2 ? layernorm_vec_kernel<2>
                      : config.vec == 4 ? layernorm_vec_kernel<4>
                                        : layernorm_vec_kernel<8>;
        launch_kernel(name, programmatic_launch_enabled(), kernel, dim3((unsigned)rows), dim3((unsigned)config.threads),
                      0, stream, o16, out32, x, wh, bh, C, eps);
        return;
    }
    layernorm_generic_kernel<<<rows, kLnGenericThreads, 0, stream>>>(o16, out32, x, wh, bh, C, eps);
    check_launch(name);
}

}  // namespace seaopt::cuda
