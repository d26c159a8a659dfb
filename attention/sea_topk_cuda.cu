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
// c/32 of (t, h)). The selection itself is sea_topk_select.cuh's topk_select, which the decode's fused CNN output +
// top-k kernel (sea_cnn_cuda.cu) shares.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_topk_select.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kTopkThreads = 256;

__global__ void __launch_bounds__(kTopkThreads)
    topk_kernel(uint32_t *__restrict__ cell_mask, const float *__restrict__ probs, Dims d) {
    extern __shared__ uint32_t sm[];  // keys [H·K], then the row's mask words [H·KW]
    __shared__ TopkShared<kTopkThreads> sh;
    const int t = blockIdx.x, tid = threadIdx.x;
    const int n = d.H * d.K, n_words = d.H * d.KW;
    uint32_t *keys = sm, *mw = sm + n;
    const float *row = probs + (size_t)t * n;
    pdl_wait();  // prefill kernels launch with PDL: the kernel before may still be running
    pdl_launch_dependents();
    for (int i = tid; i < n; i += kTopkThreads) keys[i] = topk_order_key(row[i]);
    for (int i = tid; i < n_words; i += kTopkThreads) mw[i] = 0u;
    __syncthreads();
    topk_select<kTopkThreads>(keys, mw, n, row_budget(query_position(t, d), d), d.K, d.KW, sh);
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
    launch_kernel("sea topk_kernel", programmatic_launch_enabled(), topk_kernel, dim3((unsigned)d.T),
                  dim3(kTopkThreads), smem, stream, cell_mask, probs, d);
}

}  // namespace seaopt::cuda::sea
