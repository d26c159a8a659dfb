// SEA's CNN output row (sea.md §2.6 steps 6-9 and the softmax over K; sea_cpu.cpp cnn_output_row) on one warp, the
// device code shared by the prefill and decode kernels of sea_cnn_cuda.cu and the fused decode
// (sea_decode_fused_cuda.cu). Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::sea {

// One (t, h) row of the CNN output on one warp: yt the conv2 row of t ([2H][K/4], channel c at yt + c·W4); narrow (K/4 floats) and
// logit (K floats) warp-private scratch; leaves Â[t, h, ·] in logit.
__device__ __forceinline__ void cnn_output_row(float *logit, float *narrow, const float *__restrict__ yt, const SeaDeviceParams &p,
                               const Dims &d, int h) {
    const int lane = threadIdx.x % kWarpSize;
    const int C = d.C, W4 = d.W4, K = d.K;
    const float bias = p.conv4_b[h];
    if (W4 <= kWarpSize / 2) {
        // Half-warps take the even and the odd channels of column x = lane % 16, then add.
        const int x = lane % (kWarpSize / 2), half = lane / (kWarpSize / 2);
        float acc = 0.0f;
        if (x < W4) {
#pragma unroll 8
            for (int c = half; c < C; c += 2) {
                float wc = p.conv4_w[h * C + c];
                if (p.conv4_mask) wc *= p.conv4_mask[h * C + c];
                acc = fmaf(wc, yt[(size_t)c * W4 + x], acc);
            }
        }
        acc += __shfl_xor_sync(0xffffffffu, acc, kWarpSize / 2);
        if (half == 0 && x < W4) narrow[x] = bias + acc;
    } else {
        for (int x = lane; x < W4; x += kWarpSize) {
            float acc = bias;
#pragma unroll 8
            for (int c = 0; c < C; ++c) {
                float wc = p.conv4_w[h * C + c];
                if (p.conv4_mask) wc *= p.conv4_mask[h * C + c];
                acc = fmaf(wc, yt[(size_t)c * W4 + x], acc);
            }
            narrow[x] = acc;
        }
    }
    __syncwarp();
    // Padded column i (0..K+1): the bias at i = 0 and K+1, else narrow[(i-1)/4]; window mean; LayerNorm_K.
    float sum = 0.0f;
    for (int x = lane; x < K; x += kWarpSize) {
        const int start = x * (K + 2) / K, end = ((x + 1) * (K + 2) + K - 1) / K;
        float s = 0.0f;
        for (int i = start; i < end; ++i) s += (i == 0 || i == K + 1) ? bias : narrow[(i - 1) / 4];
        const float v = s / (float)(end - start);
        logit[x] = v;
        sum += v;
    }
    const float mean = warp_reduce_sum(sum) / (float)K;
    float sq = 0.0f;
    for (int x = lane; x < K; x += kWarpSize) sq += (logit[x] - mean) * (logit[x] - mean);
    const float rstd = 1.0f / sqrtf(warp_reduce_sum(sq) / (float)K + kLayerNormEps);
    float mx = -INFINITY;
    for (int x = lane; x < K; x += kWarpSize) {
        const float v = (logit[x] - mean) * rstd * p.cnn_norm2_w[x] + p.cnn_norm2_b[x];
        logit[x] = v;
        mx = fmaxf(mx, v);
    }
    mx = warp_reduce_max(mx);
    float es = 0.0f;
    for (int x = lane; x < K; x += kWarpSize) {
        const float e = expf(logit[x] - mx);
        logit[x] = e;
        es += e;
    }
    const float inv = 1.0f / warp_reduce_sum(es);
    for (int x = lane; x < K; x += kWarpSize) logit[x] *= inv;
    __syncwarp();
}

}  // namespace seaopt::cuda::sea
