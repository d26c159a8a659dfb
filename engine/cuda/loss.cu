// The fused loss of the head (launcher declared in engine/cuda/ops.h): per row of fp32 logits, the
// negative log-likelihood of one target token, so that only one float per row leaves the GPU.
//
// One block per row, one pass over the row in fp32 (an online softmax, as flash attention's): each thread
// keeps the max m of the values it has seen and the sum of exp(l - m), rescaling the sum when m grows; the
// (m, sum) pairs are then merged over the warp (shuffles) and the block (one pair per warp in shared memory).
// The row is read once (the two-pass kernel read the lm_head's 103 MB of logits per 512 rows twice, from
// HBM: 0.29 ms of each WikiText-2 window). Subtracting the max keeps every exponent <= 0, so rows with large
// offsets (1e4) neither overflow nor lose the target's term to cancellation: nll = log(sum) + max - l[target],
// and log(sum) is in [0, log V].
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {
namespace {

constexpr int kLossThreads = 512;  // 16 warps per row
constexpr int kLossWarps = kLossThreads / kWarpSize;

// (m, s) := the merge of two partial softmax sums (s = Σ exp(l - m) over a part). s = 0: an empty part, or one of
// -inf values only (its m is -inf and must not meet exp(-inf - -inf)); a NaN s (a NaN logit) stays NaN.
__device__ __forceinline__ void merge_softmax(float &m, float &s, float m2, float s2) {
    const float M = fmaxf(m, m2);
    s = (s == 0.0f ? 0.0f : s * expf(m - M)) + (s2 == 0.0f ? 0.0f : s2 * expf(m2 - M));
    m = M;
}

__global__ void __launch_bounds__(kLossThreads)
    log_softmax_nll_kernel(float *__restrict__ nll, const float *__restrict__ logits,
                           const int32_t *__restrict__ targets, int V) {
    __shared__ float scratch_m[kLossWarps], scratch_s[kLossWarps];
    const int row = blockIdx.x;
    const float *l = logits + (int64_t)row * V;

    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x; j < V; j += kLossThreads) {
        const float x = l[j];
        if (x > m) {  // a new max: the sum so far rescaled (0 while it is empty: exp(-inf) = 0)
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else if (s != 0.0f || x != x) {  // -inf into an empty sum adds nothing; a NaN makes it NaN (as before)
            s += expf(x - m);
        }
    }
#pragma unroll
    for (int o = kWarpSize / 2; o > 0; o /= 2) {
        merge_softmax(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    }
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    if (lane == 0) {
        scratch_m[warp] = m;
        scratch_s[warp] = s;
    }
    __syncthreads();

    if (threadIdx.x == 0) {
        m = scratch_m[0];
        s = scratch_s[0];
        for (int w = 1; w < kLossWarps; ++w) merge_softmax(m, s, scratch_m[w], scratch_s[w]);  // in warp order
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
