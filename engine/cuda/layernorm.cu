// LayerNorm over the fp32 residual stream (launcher declared in engine/cuda/ops.h).
//
// One warp per row, two passes in fp32 as the CPU reference does (mean first, then the mean of the
// squared deviations: no cancellation of E[x²] - E[x]², biased variance as torch), then a third
// pass writes y = (x - mean) * rstd * w + b as fp16 (and fp32). rstd uses IEEE sqrtf and division
// (not rsqrtf's approximation). rows == 0 is a no-op; bad sizes or null pointers throw
// SEAOPT_ERR_INVALID_ARGUMENT.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {
namespace {

constexpr int kLayerNormWarpsPerBlock = 8;  // 256 threads, 8 rows per block

// ------------------------------------------------------------------------------------------------
// CUDA kernels

// out32 may equal x (in place): in the last pass each lane reads x[c] and writes out32[c] for the
// same columns only, and both statistics are complete (warp shuffles synchronize the lanes) before
// any lane writes. So x and out32 are deliberately not __restrict__.
__global__ void layernorm_forward_kernel(__half *__restrict__ out16, float *out32, const float *x,
                                         const __half *__restrict__ w, const __half *__restrict__ b, int rows, int C,
                                         float eps) {
    const int warp = threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    const int row = blockIdx.x * kLayerNormWarpsPerBlock + warp;
    if (row >= rows) return;  // the whole warp leaves together, so the shuffles below stay full-warp

    const float *x_row = x + (int64_t)row * C;

    float sum = 0.0f;
    for (int c = lane; c < C; c += kWarpSize) sum += x_row[c];
    const float mean = warp_reduce_sum(sum) / (float)C;

    float sum_sq_dev = 0.0f;
    for (int c = lane; c < C; c += kWarpSize) {
        const float dev = x_row[c] - mean;
        sum_sq_dev += dev * dev;
    }
    const float var = warp_reduce_sum(sum_sq_dev) / (float)C;
    const float rstd = 1.0f / sqrtf(var + eps);

    __half *out16_row = out16 + (int64_t)row * C;
    float *out32_row = out32 != nullptr ? out32 + (int64_t)row * C : nullptr;
    for (int c = lane; c < C; c += kWarpSize) {
        const float y = (x_row[c] - mean) * rstd * __half2float(w[c]) + __half2float(b[c]);
        out16_row[c] = __float2half_rn(y);
        if (out32_row != nullptr) out32_row[c] = y;
    }
}

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
    const int blocks = ceil_div(rows, kLayerNormWarpsPerBlock);
    layernorm_forward_kernel<<<blocks, kLayerNormWarpsPerBlock * kWarpSize, 0, stream>>>(
        reinterpret_cast<__half *>(out16), out32, x, reinterpret_cast<const __half *>(w),
        reinterpret_cast<const __half *>(b), rows, C, eps);
    check_launch(name);
}

}  // namespace seaopt::cuda
