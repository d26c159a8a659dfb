// Device helpers for int8 weights in ggml's Q8_0 grouping, shared by the int8 GEMV (gemm_q8.cu) and the persistent
// decode kernel's int8 weight stream (decode_persistent.cu).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace seaopt::cuda {

// The four int8 of a word as two half2 registers (bytes 0, 1 and bytes 2, 3), exact: the byte b ^ 0x80 under the
// exponent of 1024 (prmt with 0x64) is the fp16 value 1024 + 128 + q, minus 1152 (one exact hsub2 per two weights).
__device__ __forceinline__ void q8_to_half2x2(uint32_t w, uint32_t &lo, uint32_t &hi) {
    const uint32_t biased = w ^ 0x80808080u;                 // q + 128 as unsigned bytes
    uint32_t l = __byte_perm(biased, 0x64646464u, 0x4140u);  // fp16 1024 + (q + 128), two of them
    uint32_t h = __byte_perm(biased, 0x64646464u, 0x4342u);
    const __half2 magic = __half2half2(__ushort_as_half((unsigned short)0x6480u));  // 1152
    const __half2 lh = __hsub2(*reinterpret_cast<const __half2 *>(&l), magic);
    const __half2 hh = __hsub2(*reinterpret_cast<const __half2 *>(&h), magic);
    lo = *reinterpret_cast<const uint32_t *>(&lh);
    hi = *reinterpret_cast<const uint32_t *>(&hh);
}

}  // namespace seaopt::cuda
