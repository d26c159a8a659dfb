// The arithmetic of LayerNorm's register kernel (engine/cuda/layernorm.cu), shared with the GEMV
// that fuses the LayerNorm into its prologue (engine/cuda/gemm.cu, gemv_ln_mma_kernel), so that the
// two give the same bits (included by .cu files only).
//
// What fixes the bits of a LayerNorm row: the block shape (layernorm_vec_config: kVec float4 per
// thread, `threads` threads), the order of the sums (each thread adds its float4s in j order, each
// as ((x + y) + z) + w; the warp's butterfly of common.cuh; then the per-warp sums in warp order
// from 0.0f), and the rounding of every step. The steps are written with the IEEE intrinsics
// (__fadd_rn, __fmul_rn, __fmaf_rn, __fdiv_rn, __fsqrt_rn), which neither nvcc nor ptxas contract
// or reorder, so the same source gives the same bits in any kernel that follows the same order.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/cuda/common.cuh"

namespace seaopt::cuda {

constexpr int kLnMaxThreads = 512;     // the register kernel's largest block
constexpr int kLnPreferThreads = 256;  // the fewest float4 per thread that keep a block within this
constexpr int kLnMaxVec = 8;           // float4 per thread at most: C <= 4 * 8 * 512 = 16384

// The register kernel's block for rows of C columns: the fewest float4 per thread (vec: 1, 2, 4 or
// 8) that keep the block within kLnPreferThreads (more threads would only lengthen the
// reductions), and the threads, a multiple of 32. fits is false where C % 4 != 0 or the block
// would exceed kLnMaxThreads (C > 16384): the generic kernel's case.
struct LnVecConfig {
    int vec = 1, threads = 0;
    bool fits = false;
};
inline LnVecConfig layernorm_vec_config(int C) {
    LnVecConfig c;
    if (C <= 0 || C % 4 != 0) return c;
    const int n4 = C / 4;
    while (c.vec < kLnMaxVec && ceil_div(n4, c.vec) > kLnPreferThreads) c.vec *= 2;
    c.threads = ceil_div(ceil_div(n4, c.vec), kWarpSize) * kWarpSize;
    c.fits = c.threads <= kLnMaxThreads;
    return c;
}

// ((x + y) + z) + w: one float4's share of a thread's sum.
__device__ __forceinline__ float ln_sum4(float4 v) { return __fadd_rn(__fadd_rn(__fadd_rn(v.x, v.y), v.z), v.w); }

// Σ (v - mean)² over a float4: dx² + dy² + dz² + dw² as a chain of fmas.
__device__ __forceinline__ float ln_sq4(float4 v, float mean) {
    const float dx = __fsub_rn(v.x, mean), dy = __fsub_rn(v.y, mean), dz = __fsub_rn(v.z, mean),
                dw = __fsub_rn(v.w, mean);
    return __fmaf_rn(dw, dw, __fmaf_rn(dz, dz, __fmaf_rn(dy, dy, __fmul_rn(dx, dx))));
}

// The per-warp partial sums of a row, in warp order (the block's total).
__device__ __forceinline__ float ln_sum_warps(const float *partials, int n_warps) {
    float total = 0.0f;
    for (int i = 0; i < n_warps; ++i) total = __fadd_rn(total, partials[i]);
    return total;
}

__device__ __forceinline__ float ln_mean(float sum, int C) { return __fdiv_rn(sum, (float)C); }

// 1 / sqrt(var + eps) with var the mean of the squared deviations (biased, as torch): IEEE sqrt
// and division, not rsqrtf's approximation.
__device__ __forceinline__ float ln_rstd(float sq_sum, int C, float eps) {
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(sq_sum, (float)C), eps)));
}

// y = (v - mean) · rstd · w + b.
__device__ __forceinline__ float ln_apply(float v, float mean, float rstd, float w, float b) {
    return __fmaf_rn(__fmul_rn(__fsub_rn(v, mean), rstd), w, b);
}

__device__ __forceinline__ float4 half4_to_float4(uint2 u) {
    const __half2 lo = *reinterpret_cast<const __half2 *>(&u.x);
    const __half2 hi = *reinterpret_cast<const __half2 *>(&u.y);
    const float2 a = __half22float2(lo), b = __half22float2(hi);
    return make_float4(a.x, a.y, b.x, b.y);
}

// One float4 of a row normalised: fp32 y, and its fp16 rounding packed as four halves.
__device__ __forceinline__ float4 ln_apply4(float4 v, float mean, float rstd, uint2 w, uint2 b) {
    const float4 wf = half4_to_float4(w), bf = half4_to_float4(b);
    return make_float4(ln_apply(v.x, mean, rstd, wf.x, bf.x), ln_apply(v.y, mean, rstd, wf.y, bf.y),
                       ln_apply(v.z, mean, rstd, wf.z, bf.z), ln_apply(v.w, mean, rstd, wf.w, bf.w));
}

__device__ __forceinline__ uint2 float4_to_half4(float4 y) {
    const __half2 lo = __floats2half2_rn(y.x, y.y), hi = __floats2half2_rn(y.z, y.w);
    uint2 packed;
    packed.x = *reinterpret_cast<const unsigned int *>(&lo);
    packed.y = *reinterpret_cast<const unsigned int *>(&hi);
    return packed;
}

}  // namespace seaopt::cuda
