// The fused loss of the head (launcher declared in engine/cuda/ops.h): per row of fp32 logits, the
// negative log-likelihood of one target token, so that only one float per row leaves the GPU.
//
// One block per row, two passes over the row in fp32: the max (warp shuffles, then one value per
// warp in shared memory), then the sum of exp(l - max) (same reduction). Subtracting the max keeps
// every exponent <= 0, so rows with large offsets (1e4) neither overflow nor lose the target's term
// to cancellation: nll = log(sum) + max - l[target], and log(sum) is in [0, log V].
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {
namespace {

constexpr int kLossThreads = 512;  // 16 warps per row
constexpr int kLossWarps = kLossThreads / kWarpSize;

// Reduces v over the block (max or sum); every thread gets the result. `scratch` holds one value
// per warp; the trailing __syncthreads lets the caller reuse it for the next reduction.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float *scratch) {
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    v = kMax ? warp_reduce_max(v) : warp_reduce_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < kLossWarps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
    r = kMax ? warp_reduce_max(r) : warp_reduce_sum(r);  // every warp reduces the per-warp values
    __syncthreads();
    return r;
}

__global__ void __launch_bounds__(kLossThreads)
    log_softmax_nll_kernel(float *__restrict__ nll, const float *__restrict__ logits,
                           const int32_t *__restrict__ targets, int V) {
    __shared__ float scratch[kLossWarps];
    const int row = blockIdx.x;
    const float *l = logits + (int64_t)row * V;

    float m = -INFINITY;
    for (int j = threadIdx.x; j < V; j += kLossThreads) m = fmaxf(m, l[j]);
    m = block_reduce<true>(m, scratch);

    float s = 0.0f;
    for (int j = threadIdx.x; j < V; j += kLossThreads) s += expf(l[j] - m);
    s = block_reduce<false>(s, scratch);

    if (threadIdx.x == 0) {
        const int32_t t = targets[row];
        // m - l[t] first: both near the max, so the difference is exact even at offsets like 1e4.
        nll[row] = (t >= 0 && t < V) ? logf(s) + (m - l[t]) : NAN;
    }
}

}  // namespace

void log_softmax_nll(float *nll, const float *logits, const int32_t *targets, int rows, int V, cudaStream_t stream) {
    check_arg(rows >= 0, "log_softmax_nll", "rows must be >= 0");
    if (rows == 0) return;
    check_arg(V > 0, "log_softmax_nll", "V must be > 0");
    check_arg(nll && logits && targets, "log_softmax_nll", "null pointer");
    log_softmax_nll_kernel<<<rows, kLossThreads, 0, stream>>>(nll, logits, targets, V);
    check_launch("log_softmax_nll");
}

}  // namespace seaopt::cuda
