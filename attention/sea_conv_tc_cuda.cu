// SEA prefill's causal dilated 3×3 convs (sea.md §2.6 steps 2-5; sea_cpu.cpp causal_dilated_conv_row) on the tensor
// cores, in fp32-equivalent precision (3xTF32, attention/sea_mma.cuh), for K/4 = 16 columns and 2H = 8·NT channels
// (sea_conv_on_tensor_cores: OPT-125m, 350m, 1.3B). Other shapes run causal_conv_kernel (sea_cnn_cuda.cu).
//
//   The weights come split into tf32 hi and lo parts as the mma B fragments (SeaDeviceParams::conv_frags, made once
//       at upload by sea_pack_conv_fragments): [tap][ci8][nt][lane] -> {b0 hi, b1 hi, b0 lo, b1 lo}, b0 = W[co = 8nt + lane/4][ci = 8ci8 +
//       lane%4][tap]; a lane's fragment is one 16-byte load, shared by all blocks through L1/L2.
//   causal_conv_tc_kernel<NT>  an implicit GEMM per block of 8 output rows × 16 columns × all 2H output channels:
//       the block stages input rows t0-4 .. t0+7 of every channel ([12][2H][24] floats, columns x+2 with zeros at
//       x = -2, -1, 16, 17: the width padding; rows before -Dims::hist zero: the causal top padding); warp w owns output rows
//       t0 + 2w and t0 + 2w + 1 (two m16 tiles of 16 columns) and every output channel (NT n8 tiles). For each
//       8-channel slice ci8 and tap (a, b): A(x, ci) = in[t-4+2a][ci][x-2+2b] (split into hi and lo on the fly,
//       each split feeding 3·NT mma), B(ci, co) = W[co][ci][a][b] (the fragments above). The 27 mma of a slice
//       accumulate into zeroed registers that are then added to the output sums in fp32 (round to nearest), so no
//       sum runs longer than 72 products inside the tensor cores. Then + bias, ReLU.
// The sum order differs from the CPU's (ci, b, a) loop: results agree to fp32 rounding (~1e-6 relative), not bit for
// bit; the tests' conv and Â tolerances and the top-k tie rules cover it (tests/test_gpu_sea.cpp).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_mma.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"
#include "engine/error.h"

namespace seaopt::cuda::sea {
namespace {

constexpr int kTcRows = 8;                    // output rows per block
constexpr int kTcTileRows = kTcRows + 4;      // input rows t0-4 .. t0+7
constexpr int kTcWarps = kTcRows / 2;         // two output rows per warp
constexpr int kTcThreads = kTcWarps * kWarpSize;
constexpr int kTcW4 = 16;                     // columns (K = 64)
constexpr int kTcPitch = 24;                  // floats per staged (row, channel): conflict-free A fragment loads
constexpr int kTaps = 9;

template <int NT>
__global__ void __launch_bounds__(kTcThreads, 2)
    causal_conv_tc_kernel(float *__restrict__ y, const float *__restrict__ x, const uint4 *__restrict__ frag,
                          const float *__restrict__ bias, int T, int hist) {
    constexpr int C = 8 * NT;
    extern __shared__ float tile[];  // [kTcTileRows][C][kTcPitch]
    const int t0 = blockIdx.x * kTcRows, tid = threadIdx.x;
    const int warp = tid / kWarpSize, lane = tid % kWarpSize, g = lane / 4, t4 = lane % 4;
    pdl_wait();  // prefill kernels launch with PDL: the kernel before may still be running
    pdl_launch_dependents();

    // Stage: each (row, channel)'s 16 columns as four float4 loads into columns 2..17; zeros in columns 0, 1, 18, 19
    // (columns 20..23 are never read).
    for (int i = tid; i < kTcTileRows * C * 4; i += kTcThreads) {
        const int rc = i / 4, q = i % 4, r = rc / C, row = t0 - 4 + r;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (row >= -hist && row < T) {  // rows -hist .. -1: a continued prefill's history (Dims::hist)
            v = reinterpret_cast<const float4 *>(x + ((long long)row * C + rc % C) * kTcW4)[q];
        }
        float *dst = tile + rc * kTcPitch + 2 + 4 * q;
        reinterpret_cast<float2 *>(dst)[0] = make_float2(v.x, v.y);
        reinterpret_cast<float2 *>(dst)[1] = make_float2(v.z, v.w);
    }
    for (int rc = tid; rc < kTcTileRows * C; rc += kTcThreads) {
        float *dst = tile + rc * kTcPitch;
        reinterpret_cast<float2 *>(dst)[0] = make_float2(0.0f, 0.0f);
        reinterpret_cast<float2 *>(dst + 18)[0] = make_float2(0.0f, 0.0f);
    }
    __syncthreads();

    float acc[2][NT][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) acc[mt][nt][0] = acc[mt][nt][1] = acc[mt][nt][2] = acc[mt][nt][3] = 0.0f;

#pragma unroll 1
    for (int ci8 = 0; ci8 < NT; ++ci8) {
        float part[2][NT][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int q = 0; q < 4; ++q) part[mt][nt][q] = 0.0f;
#pragma unroll
        for (int tap = 0; tap < kTaps; ++tap) {
            const int a = tap / 3, b = tap % 3;
            // A fragments (PTX mma.m16n8k8 .tf32): rows g, g+8 = columns x; k columns t4, t4+4 = channels.
            uint32_t ah[2][4], al[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const float *src = tile + ((2 * warp + mt + 2 * a) * C + 8 * ci8 + t4) * kTcPitch + 2 * b + g;
                split_tf32(src[0], ah[mt][0], al[mt][0]);
                split_tf32(src[8], ah[mt][1], al[mt][1]);
                split_tf32(src[4 * kTcPitch], ah[mt][2], al[mt][2]);
                split_tf32(src[4 * kTcPitch + 8], ah[mt][3], al[mt][3]);
            }
            const uint4 *fb = frag + ((size_t)(tap * NT + ci8) * NT) * kWarpSize + lane;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const uint4 bf = __ldg(fb + nt * kWarpSize);
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    mma_3xtf32(part[mt][nt], ah[mt], al[mt], bf);
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int q = 0; q < 4; ++q) acc[mt][nt][q] += part[mt][nt][q];
    }

    // acc[mt][nt][q]: column x = g + 8·(q / 2), output channel 8nt + 2t4 + q % 2 of row t0 + 2·warp + mt.
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
        const int t = t0 + 2 * warp + mt;
        if (t >= T) continue;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int co = 8 * nt + 2 * t4 + q % 2, xo = g + 8 * (q / 2);
                y[((size_t)t * C + co) * kTcW4 + xo] = fmaxf(acc[mt][nt][q] + bias[co], 0.0f);
            }
        }
    }
}

template <int NT>
void launch_tc(float *y, const float *x, const void *frag, const float *b, const Dims &d, cudaStream_t stream) {
    constexpr size_t smem = (size_t)kTcTileRows * 8 * NT * kTcPitch * sizeof(float);  // 73,728 bytes at 2H = 64
    if (smem > (size_t(48) << 10)) {
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(causal_conv_tc_kernel<NT>),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(causal_conv_tc)", __FILE__, __LINE__);
    }
    launch_kernel("sea causal_conv_tc_kernel", programmatic_launch_enabled(), causal_conv_tc_kernel<NT>,
                  dim3((unsigned)ceil_div(d.T, kTcRows)), dim3(kTcThreads), smem, stream, y, x,
                  static_cast<const uint4 *>(frag), b, d.T, d.hist);
}

}  // namespace

size_t conv_tc_smem_bytes(const Dims &d) { return (size_t)kTcTileRows * d.C * kTcPitch * sizeof(float); }

void launch_causal_conv_tc(float *y, const float *x, const void *frag, const float *b, const Dims &d,
                           cudaStream_t stream) {
    if (d.W4 != kTcW4) throw_unsupported("sea conv on tensor cores: K/4 = " + std::to_string(d.W4));
    switch (d.C) {
        case 24: return launch_tc<3>(y, x, frag, b, d, stream);
        case 32: return launch_tc<4>(y, x, frag, b, d, stream);
        case 64: return launch_tc<8>(y, x, frag, b, d, stream);
        default: throw_unsupported("sea conv on tensor cores: 2H = " + std::to_string(d.C));
    }
}

}  // namespace seaopt::cuda::sea
