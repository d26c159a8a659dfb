// The output step the GEMV kernels share (gemm.cu's fp16 GEMV, gemm_q8.cu's int8 GEMV): y = sum + bias, then ReLU
// and fp16 out, or beta * y + that in fp32. Included by .cu files only.
#pragma once

#include <cuda_fp16.h>

#include <cstddef>

namespace seaopt::cuda {

struct GemvOutput {
    void *y;           // __half [rows, n_out] or float [rows, n_out]
    const void *bias;  // __half or float [n_out], or nullptr
    float beta;        // fp32 output only
    int n_out;
    bool relu;  // fp16 output only
};

// The epilogue's operands of output (r, o), loaded ahead of the sum: the bias, and (fp32 output,
// beta != 0) the old y. y[r, o] is read and written only by the thread that stores (r, o).
struct GemvEpilogueIn {
    float bias = 0.0f, y = 0.0f;
};

template <bool kF16Out>
__device__ __forceinline__ GemvEpilogueIn gemv_epilogue_load(const GemvOutput &out, int r, int o) {
    GemvEpilogueIn in;
    if constexpr (kF16Out) {
        if (out.bias != nullptr) in.bias = __half2float(static_cast<const __half *>(out.bias)[o]);
    } else {
        if (out.bias != nullptr) in.bias = static_cast<const float *>(out.bias)[o];
        // beta == 0: y is not read (it may hold NaN)
        if (out.beta != 0.0f) in.y = static_cast<const float *>(out.y)[(size_t)r * out.n_out + o];
    }
    return in;
}

template <bool kF16Out>
__device__ __forceinline__ void gemv_store(const GemvOutput &out, int r, int o, float v, const GemvEpilogueIn &in) {
    const size_t i = (size_t)r * out.n_out + o;
    if (out.bias != nullptr) v += in.bias;
    if constexpr (kF16Out) {
        if (out.relu && v < 0.0f) v = 0.0f;  // NaN stays NaN
        static_cast<__half *>(out.y)[i] = __float2half_rn(v);
    } else {
        if (out.beta != 0.0f) v += out.beta * in.y;
        static_cast<float *>(out.y)[i] = v;
    }
}

}  // namespace seaopt::cuda
