// Internal to attention/: tensor-core products in fp32-equivalent precision ("3xTF32") for the SEA kernels, which
// need fp32-level estimates (the top-k of sea.md §2.7 meets ties at ~1e-6). Each operand is split as
// x = tf32(x) + (x − tf32(x)) and x·w ≈ x_hi·w_hi + x_hi·w_lo + x_lo·w_hi (the dropped x_lo·w_lo is ~2^-22 of the
// product), accumulated in fp32 by mma.sync m16n8k8 (sm_80+). Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/common.cuh"

namespace seaopt::cuda::sea {

// tf32(x), round to nearest with ties away from zero, as cvt.rna.tf32.f32 rounds a finite x: half a tf32 ulp added to
// the magnitude bits, then the 13 low bits cleared. Two integer instructions; the cvt compiles to four, its extra two
// guarding inf/NaN, which the estimator's finite operands never are.
__device__ __forceinline__ uint32_t to_tf32(float x) { return (__float_as_uint(x) + 0x1000u) & 0xffffe000u; }

// x = hi + lo with hi = tf32(x) and lo = x − hi (exact in fp32), lo handed to the mma as it is: the tensor cores read
// a .tf32 operand's top 19 bits, so lo is truncated rather than rounded there, an error of at most 2^-21 of x·w in
// its product, the size of the dropped lo·lo term. Rounding lo first (another cvt) cost 4 instructions per operand:
// with hi's, the splits were ~30% of the estimator kernels' instructions (Nsight Compute).
__device__ __forceinline__ void split_tf32(float x, uint32_t &hi, uint32_t &lo) {
    hi = to_tf32(x);
    lo = __float_as_uint(x - __uint_as_float(hi));
}

// d += a·b for a 16×8 (row) tile, an 8×8 (col) tile: fragments as the PTX ISA's mma.m16n8k8 .tf32 layout.
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// d += a·b for one tile and k-step in 3xTF32, a split here (ah, al), b already split: {b0 hi, b1 hi, b0 lo, b1 lo} (the
// layout of the pre-split weight fragments, sea_layout.h sea_pack_weight_fragments). The small terms first.
__device__ __forceinline__ void mma_3xtf32(float (&d)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4],
                                           const uint4 &b) {
    mma_tf32(d, al, b.x, b.y);
    mma_tf32(d, ah, b.z, b.w);
    mma_tf32(d, ah, b.x, b.y);
}

// One warp: acc[nt] += Σ_{k<K} A(m0 + row, k) · B(k, n0 + 8·nt + col) for a 16-row tile and NT tiles of 8 columns,
// 3xTF32. A(r, k) = a[r·lda + k·lda_k]; B(k, n) = b[k·ldb_k + n·ldb_n] (either layout); r ≥ M, k ≥ K or n ≥ N read
// as 0.
// Fragments (PTX ISA, mma.m16n8k8 .tf32): g = lane / 4, t = lane % 4; A rows g, g+8 at columns t, t+4; B rows t, t+4
// at column g; acc[nt][q] is row g + 8·(q / 2), column 2t + q % 2.
template <int NT>
__device__ __forceinline__ void warp_mma_3xtf32(float (&acc)[NT][4], const float *a, int lda, int lda_k, const float *b,
                                                int ldb_k, int ldb_n, int m0, int n0, int M, int K, int N) {
    const int lane = threadIdx.x % kWarpSize, g = lane >> 2, t4 = lane & 3;
    const bool r0 = m0 + g < M, r1 = m0 + g + 8 < M;
    for (int k0 = 0; k0 < K; k0 += 8) {
        const int ka = k0 + t4, kb = k0 + t4 + 4;
        const bool va = ka < K, vb = kb < K;
        uint32_t ah[4], al[4];
        split_tf32(va && r0 ? a[(m0 + g) * lda + ka * lda_k] : 0.0f, ah[0], al[0]);
        split_tf32(va && r1 ? a[(m0 + g + 8) * lda + ka * lda_k] : 0.0f, ah[1], al[1]);
        split_tf32(vb && r0 ? a[(m0 + g) * lda + kb * lda_k] : 0.0f, ah[2], al[2]);
        split_tf32(vb && r1 ? a[(m0 + g + 8) * lda + kb * lda_k] : 0.0f, ah[3], al[3]);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int n = n0 + 8 * nt + g;
            const bool vn = n < N;
            uint4 bs;
            split_tf32(va && vn ? b[ka * ldb_k + n * ldb_n] : 0.0f, bs.x, bs.z);
            split_tf32(vb && vn ? b[kb * ldb_k + n * ldb_n] : 0.0f, bs.y, bs.w);
            mma_3xtf32(acc[nt], ah, al, bs);
        }
    }
}

}  // namespace seaopt::cuda::sea
