// The greedy pick of one row of logits on the device (launcher declared in engine/cuda/ops.h): the row
// reduced to n_parts keys (engine/argmax_key.h), one per block, so that the host takes the max of a few
// keys instead of scanning the 50k logits of each generated token (~20-40 us of host time a token
// against a ~1.2 ms step, where the kernel costs a few us inside the captured step). The CPU reference is
// the sampler's argmax (engine/sampler.cpp); tests/test_gpu_engine.cpp checks the pick against it.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/argmax_key.h"
#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {
namespace {

constexpr int kArgmaxThreads = 256;

// Block b: the max key of elements b·256 + i + k·(n_parts·256) (coalesced), into parts[b].
__global__ void __launch_bounds__(kArgmaxThreads) argmax_parts_kernel(unsigned long long *parts, const float *x, int n) {
    __shared__ unsigned long long warp_best[kArgmaxThreads / kWarpSize];
    unsigned long long best = kArgmaxKeyNone;
    const int stride = (int)gridDim.x * kArgmaxThreads;
    for (int i = (int)blockIdx.x * kArgmaxThreads + (int)threadIdx.x; i < n; i += stride) {
        const unsigned long long k = argmax_key(__ldg(x + i), (uint32_t)i);
        best = k > best ? k : best;
    }
    best = warp_max_u64(best);
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    if (lane == 0) warp_best[warp] = best;
    __syncthreads();
    if (warp == 0) {
        best = lane < kArgmaxThreads / kWarpSize ? warp_best[lane] : kArgmaxKeyNone;
        best = warp_max_u64(best);
        if (lane == 0) parts[blockIdx.x] = best;
    }
}

}  // namespace

void argmax_parts(uint64_t *parts, const float *x, int n, int n_parts, cudaStream_t stream) {
    check_arg(n > 0 && n_parts > 0, "argmax_parts", "n and n_parts must be > 0");
    check_arg(parts && x, "argmax_parts", "null pointer");
    argmax_parts_kernel<<<n_parts, kArgmaxThreads, 0, stream>>>(reinterpret_cast<unsigned long long *>(parts), x, n);
    check_launch("argmax_parts");
}

}  // namespace seaopt::cuda
