// Internal to attention/: Hopper's warpgroup matrix multiply-accumulate (wgmma.mma_async, sm_90a) for the flash
// kernels on 64 x 64 tiles of fp16 (dense_prefill_wgmma_cuda.cu): the 128-byte-swizzled
// shared-memory tiles the tensor cores read, their descriptors, the instructions and their fences. The instructions
// exist only where SEAOPT_WGMMA is defined (device code compiled for sm_90a); the tile copies everywhere. Included by
// .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "attention/mma_f16.cuh"

namespace seaopt::cuda {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SEAOPT_WGMMA 1
#endif

// Byte offset of 16-byte chunk c of row r in a 128-byte-swizzled tile.
__device__ __forceinline__ uint32_t swizzled(int r, int c) { return (uint32_t)(r * 128 + ((c ^ (r & 7)) << 4)); }

// A tile: 64 rows of 64 halves (128 bytes), 1024-byte aligned. Copies rows of positions [lo, hi) of the block
// r0 .. r0 + 63 into one (the others are not touched): position p from src + (row_shift + p)·stride (fp16, 64 a
// row), zero past `last`. 128 threads: thread tid copies chunk tid % 8 of rows tid / 8 + 16 i.
__device__ __forceinline__ void load_tile(uint32_t dst, const __half *src, size_t stride, int row_shift, int r0, int lo,
                                          int hi, int last) {
    const int c = (int)threadIdx.x % 8, r_first = (int)threadIdx.x / 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int r = r_first + 16 * i, p = r0 + r;
        if (p < lo || p >= hi) continue;
        const bool valid = p <= last;
        const size_t at = (valid ? (size_t)(row_shift + p) * stride : 0) + (size_t)(8 * c);
        cp_async16(dst + swizzled(r, c), src + at, valid);
    }
}

#ifdef SEAOPT_WGMMA
// A shared-memory matrix descriptor for a 128-byte-swizzled tile: start address, leading byte
// offset 16 (unused by these layouts), stride byte offset 1024 (8 rows of 128 bytes), swizzle mode 1.
__device__ __forceinline__ uint64_t tile_descriptor(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)(16 >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
// Waits until at most kPending committed groups are still running (groups finish in commit order).
template <int kPending> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(kPending) : "memory");
}
__device__ __forceinline__ void fence_proxy_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

#define SEAOPT_WGMMA_D32                                                                                           \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define SEAOPT_WGMMA_ACC(d)                                                                                        \
    "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),      \
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),  \
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),  \
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),  \
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])

// d (+)= A·B, 64 x 64 x 16: A and B from shared memory, both K-major; accumulate = 0 overwrites d.
__device__ __forceinline__ void wgmma_ss(float (&d)[8][4], uint64_t a, uint64_t b, int accumulate) {
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %34, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " SEAOPT_WGMMA_D32 ", %32, %33, p, 1, 1, 0, 0;\n}"
                 : SEAOPT_WGMMA_ACC(d)
                 : "l"(a), "l"(b), "r"(accumulate));
}

// d += A·B, 64 x 64 x 16: A from registers (the mma.m16n8k16 A fragment of each warp's 16 rows), B
// from shared memory N-major (transposed).
__device__ __forceinline__ void wgmma_rs_nmajor(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b) {
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, 1, 0;\n\t"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " SEAOPT_WGMMA_D32
                 ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}"
                 : SEAOPT_WGMMA_ACC(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}
#endif  // SEAOPT_WGMMA

}  // namespace seaopt::cuda
