// SEA prefill: the estimator's weights split into tf32 mma B fragments (attention/sea_mma.cuh's 3xTF32), once per
// prefill call, by one kernel launch, for the kernels that read them straight from L2 instead of staging and
// splitting them in shared memory in every block.
//
//   weight_fragments_kernel  one thread per fragment (16 bytes: {b0 hi, b1 hi, b0 lo, b1 lo}) of up to five jobs:
//     linear (nn.Linear w [out][in], B(k, n) = w[n][k]): [in/8 k-steps][⌈out/8⌉ n-tiles][32 lanes], b0 =
//       w[8nt + lane/4][8k8 + lane%4], b1 four inputs later, 0 past `out` (W_enc, W_row, the Performer projection;
//       sea_estimator_cuda.cu; offsets sea_layout.h SeaWeightFragments);
//     conv (a causal 3×3 conv's w ⊙ mask [2H][2H][5][3], live rows 0..2; B(ci, co) = w[co][ci][tap]): [9 taps][2H/8
//       ci-steps][2H/8 n-tiles][32 lanes], b0 = (w ⊙ mask)[8nt + lane/4][8ci8 + lane%4][tap], b1 four input channels
//       later (sea_conv_tc_cuda.cu).
//   The split is split_tf32's, so the products are the ones warp_mma_3xtf32 would form from the raw weights.
#include <cuda_runtime.h>

#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_mma.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kMaxJobs = 5;

struct FragmentJob {
    uint4 *dst;
    const float *w, *mask;  // mask: conv jobs only, may be null
    int out, in;            // linear: w's shape; conv: out = in = 2H
    int conv;               // 1: a conv job
    int count;              // fragments
};

struct FragmentJobs {
    FragmentJob job[kMaxJobs];
    int n;
};

__device__ __forceinline__ uint4 split_pair(float v0, float v1) {
    uint4 f;
    split_tf32(v0, f.x, f.z);
    split_tf32(v1, f.y, f.w);
    return f;
}

__global__ void weight_fragments_kernel(FragmentJobs jobs) {
    pdl_wait();  // prefill kernels launch with PDL: the kernel before may still be running
    pdl_launch_dependents();
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    int j = 0;
    while (j < jobs.n && i >= jobs.job[j].count) i -= jobs.job[j++].count;
    if (j >= jobs.n) return;
    const FragmentJob &f = jobs.job[j];
    const int lane = i % kWarpSize, n_tiles = (f.out + 7) / 8;
    const int nt = i / kWarpSize % n_tiles, rest = i / kWarpSize / n_tiles;
    const int n = 8 * nt + lane / 4;
    if (!f.conv) {
        const int k = 8 * rest + lane % 4;  // rest = the k-step
        f.dst[i] = split_pair(n < f.out ? f.w[(size_t)n * f.in + k] : 0.0f,
                              n < f.out ? f.w[(size_t)n * f.in + k + 4] : 0.0f);
        return;
    }
    const int ci8 = rest % n_tiles, tap = rest / n_tiles, ci = 8 * ci8 + lane % 4, C = f.out;
    const size_t at0 = ((size_t)n * C + ci) * kConvStoredTaps + tap;  // live rows 0..2 of the stored [5][3]
    const size_t at1 = at0 + 4 * (size_t)kConvStoredTaps;               // input channel ci + 4
    f.dst[i] = split_pair(f.mask ? f.w[at0] * f.mask[at0] : f.w[at0], f.mask ? f.w[at1] * f.mask[at1] : f.w[at1]);
}

}  // namespace

void launch_weight_fragments(char *region, const SeaWeightFragments &layout, void *conv_frag,
                             const SeaDeviceParams &p, const Dims &d, cudaStream_t stream) {
    FragmentJobs jobs{};
    auto linear = [&](size_t offset, const float *w, int out, int in) {
        jobs.job[jobs.n++] = {reinterpret_cast<uint4 *>(region + offset), w, nullptr, out, in, 0,
                              in / 8 * ((out + 7) / 8) * kWarpSize};
    };
    linear(layout.enc, p.enc_w, kEncHidden, kEncIn);
    linear(layout.row, p.dec_row_w, d.KH, kEncHidden);
    linear(layout.proj, p.performer_proj, d.m, kHeadDim);
    if (conv_frag) {
        const int count = 9 * (d.C / 8) * (d.C / 8) * kWarpSize;
        uint4 *c1 = static_cast<uint4 *>(conv_frag);
        jobs.job[jobs.n++] = {c1, p.conv1_w, p.conv1_mask, d.C, d.C, 1, count};
        jobs.job[jobs.n++] = {c1 + count, p.conv2_w, p.conv2_mask, d.C, d.C, 1, count};
    }
    int total = 0;
    for (int j = 0; j < jobs.n; ++j) total += jobs.job[j].count;
    launch_kernel("sea weight_fragments_kernel", programmatic_launch_enabled(), weight_fragments_kernel,
                  dim3((unsigned)ceil_div(total, 256)), dim3(256), 0, stream, jobs);
}

}  // namespace seaopt::cuda::sea
