// Internal to attention/: the fp16 tensor-core and async-copy PTX wrappers (sm_80 and later) that the
// flash-style kernels share (dense_prefill_cuda.cu, sea_sparse_flash_cuda.cu; the async copies also
// sea_estimator_cuda.cu). Fragment layouts: see the top of
// dense_prefill_cuda.cu. Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "engine/cuda/common.cuh"

namespace seaopt::cuda {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define SEAOPT_MMA_SM80 1
#endif

// 16 bytes global -> shared, asynchronously; with `valid` false the 16 bytes are zero-filled and
// nothing is read (src-size 0; src is then any mapped address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
#ifdef SEAOPT_MMA_SM80
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
#endif
}
// 4 bytes global -> shared, asynchronously (through L1: .ca; for unaligned float arrays).
__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src) {
#ifdef SEAOPT_MMA_SM80
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(src) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef SEAOPT_MMA_SM80
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending> __device__ __forceinline__ void cp_async_wait() {
#ifdef SEAOPT_MMA_SM80
    asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
#ifdef SEAOPT_MMA_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#else
    r[0] = r[1] = r[2] = r[3] = 0u;
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
#ifdef SEAOPT_MMA_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#else
    r[0] = r[1] = r[2] = r[3] = 0u;
#endif
}

// d += A·B, m16n8k16, fp16 inputs, fp32 accumulators (row-major A, column-major B).
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef SEAOPT_MMA_SM80
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();  // never run: device.cu refuses GPUs older than compute capability 8.0
#endif
}

// Two fp32 values rounded to an fp16 pair: lo in bits 0..15 (the lower column / key), hi in 16..31.
__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
#ifdef SEAOPT_MMA_SM80
    uint32_t r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));  // d = (hi << 16) | lo: one F2FP
    return r;
#else
    return (uint32_t)__half_as_ushort(__float2half_rn(lo)) | ((uint32_t)__half_as_ushort(__float2half_rn(hi)) << 16);
#endif
}

// 2^x (MUFU.EX2; x <= 0 here; -inf gives 0).
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// One step of the flash online softmax (log2 domain: scores scaled by q_scale inside the exponent) for the two rows a
// (g) and b (g + 8) of a warp's m16 tile, shared by the dense prefill kernel and SEA's sparse one. s: the step's NT
// score tiles in the mma accumulator layout ([j][0, 1] row a, [j][2, 3] row b), masked scores -inf, turned into p in
// place; m_a, m_b: the rows' running maxima of the raw scores (equal over the quad); l_a, l_b: this lane's share of
// the running sums; o: the DT output tiles, rescaled. keep(j) false: every score of tile j is masked, its p are set to
// 0 without exponentials.
// flash_softmax_scores: the same without o; returns the rows' factors (alpha_a, alpha_b) that o must be multiplied
// by before its next product (the wgmma kernel rescales later, once the product in flight has finished).
template <int NT, typename Keep>
__device__ __forceinline__ float2 flash_softmax_scores(float (&s)[NT][4], float &m_a, float &m_b, float &l_a, float &l_b,
                                                       float q_scale, Keep keep) {
    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        mx_a = fmaxf(mx_a, fmaxf(s[j][0], s[j][1]));
        mx_b = fmaxf(mx_b, fmaxf(s[j][2], s[j][3]));
    }
    mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));  // the quad shares rows g, g+8
    mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
    mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
    mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
    const float mn_a = fmaxf(m_a, mx_a);
    const float mn_b = fmaxf(m_b, mx_b);
    // A row with every key so far masked keeps max -inf: use 0 so that exp2(-inf - -inf) =
    // NaN cannot happen (all its p and alpha are then exp2(-inf) = 0).
    const float ms_a = mn_a == -INFINITY ? 0.0f : mn_a * q_scale;
    const float ms_b = mn_b == -INFINITY ? 0.0f : mn_b * q_scale;
    const float alpha_a = fast_exp2(m_a * q_scale - ms_a);  // 0 while m was -inf
    const float alpha_b = fast_exp2(m_b * q_scale - ms_b);
    m_a = mn_a;
    m_b = mn_b;
    float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        if (!keep(j)) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            continue;
        }
        s[j][0] = fast_exp2(fmaf(s[j][0], q_scale, -ms_a));  // masked: exp2(-inf) = 0
        s[j][1] = fast_exp2(fmaf(s[j][1], q_scale, -ms_a));
        s[j][2] = fast_exp2(fmaf(s[j][2], q_scale, -ms_b));
        s[j][3] = fast_exp2(fmaf(s[j][3], q_scale, -ms_b));
        sum_a += s[j][0] + s[j][1];
        sum_b += s[j][2] + s[j][3];
    }
    l_a = l_a * alpha_a + sum_a;
    l_b = l_b * alpha_b + sum_b;
    return make_float2(alpha_a, alpha_b);
}

template <int DT>
__device__ __forceinline__ void flash_rescale(float (&o)[DT][4], float2 alpha) {
#pragma unroll
    for (int j = 0; j < DT; ++j) {
        o[j][0] *= alpha.x;
        o[j][1] *= alpha.x;
        o[j][2] *= alpha.y;
        o[j][3] *= alpha.y;
    }
}

// The causal mask of the dense prefill kernels (dense_prefill_cuda.cu, dense_prefill_wgmma_cuda.cu): s[j][e] is key
// j0 + 8j + 2t + e of row a (e < 2) or of row b (e >= 2, 8 positions later); diag = row a's position − 2t − j0.
// Scores of keys past the row's position become -inf.
template <int NT>
__device__ __forceinline__ void flash_causal_mask(float (&s)[NT][4], int diag) {
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        if (8 * j > diag) s[j][0] = -INFINITY;
        if (8 * j + 1 > diag) s[j][1] = -INFINITY;
        if (8 * j > diag + 8) s[j][2] = -INFINITY;  // row_b: 8 positions later
        if (8 * j + 1 > diag + 8) s[j][3] = -INFINITY;
    }
}

template <int NT, int DT, typename Keep>
__device__ __forceinline__ void flash_softmax_step(float (&s)[NT][4], float (&o)[DT][4], float &m_a, float &m_b,
                                                   float &l_a, float &l_b, float q_scale, Keep keep) {
    flash_rescale(o, flash_softmax_scores(s, m_a, m_b, l_a, l_b, q_scale, keep));
}

}  // namespace seaopt::cuda
