// Internal to attention/: the fp16 tensor-core and async-copy PTX wrappers (sm_80 and later) that the
// flash-style kernels share (dense_prefill_cuda.cu, sea_sparse_flash_cuda.cu). Fragment layouts: see the top of
// dense_prefill_cuda.cu. Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

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

}  // namespace seaopt::cuda
