// Embedding lookup and row gathers (launchers declared in engine/cuda/ops.h).
//
// One block per output row, its threads striding over the columns: rows are independent and a
// row's columns are contiguous, so every load and store is coalesced. Ids and positions are device
// data and are not range-checked here: the host validates a batch before it reaches the GPU
// (engine/context.cpp). rows == 0 is a no-op; negative sizes or null pointers throw
// SEAOPT_ERR_INVALID_ARGUMENT.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {
namespace {

constexpr int kRowBlockThreads = 256;

// ------------------------------------------------------------------------------------------------
// CUDA kernels

// x[row, :] = tok[ids[row], :] + pos[positions[row] + pos_offset, :]  (fp16 tables, fp32 sum).
// Without tok, x[row, :] += pos[...]. One fp32 add of two exactly converted fp16 values, so the
// result is bitwise the CPU reference's.
__global__ void embedding_forward_kernel(float *x, const __half *tok, const __half *pos, const int32_t *ids,
                                         const int32_t *positions, int C, int pos_offset) {
    const int row = blockIdx.x;
    const int64_t pos_row = (int64_t)positions[row] + pos_offset;
    const __half *pos_src = pos + pos_row * C;
    float *x_row = x + (int64_t)row * C;
    if (tok != nullptr) {
        const __half *tok_src = tok + (int64_t)ids[row] * C;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            x_row[c] = __half2float(tok_src[c]) + __half2float(pos_src[c]);
        }
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) x_row[c] += __half2float(pos_src[c]);
    }
}

// out[row, :] = table[row_idx[row], :]: a plain copy of the element type (fp16 copied as bits).
template <typename T>
__global__ void gather_rows_kernel(T *out, const T *table, const int32_t *row_idx, int cols) {
    const int row = blockIdx.x;
    const T *src = table + (int64_t)row_idx[row] * cols;
    T *dst = out + (int64_t)row * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
}

template <typename T>
void launch_gather_rows(const char *name, T *out, const T *table, const int32_t *row_idx, int rows, int cols,
                        cudaStream_t stream) {
    check_arg(rows >= 0 && cols > 0, name, "rows must be >= 0 and cols > 0");
    if (rows == 0) return;
    check_arg(out != nullptr && table != nullptr && row_idx != nullptr, name, "null pointer");
    gather_rows_kernel<T><<<rows, kRowBlockThreads, 0, stream>>>(out, table, row_idx, cols);
    check_launch(name);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// kernel launchers

void embedding_forward(float *x, const half_t *tok, const half_t *pos, const int32_t *ids, const int32_t *positions,
                       int rows, int C, int pos_offset, cudaStream_t stream) {
    const char *name = "embedding_forward";
    check_arg(rows >= 0 && C > 0, name, "rows must be >= 0 and C > 0");
    check_arg(pos_offset >= 0, name, "pos_offset must be >= 0");
    if (rows == 0) return;
    check_arg(x != nullptr && pos != nullptr && positions != nullptr, name, "null pointer");
    check_arg(tok == nullptr || ids != nullptr, name, "ids is null while tok is given");
    embedding_forward_kernel<<<rows, kRowBlockThreads, 0, stream>>>(
        x, reinterpret_cast<const __half *>(tok), reinterpret_cast<const __half *>(pos), ids, positions, C, pos_offset);
    check_launch(name);
}

void gather_rows_f16(half_t *out, const half_t *table, const int32_t *ids, int rows, int cols, cudaStream_t stream) {
    launch_gather_rows<half_t>("gather_rows_f16", out, table, ids, rows, cols, stream);
}

void gather_rows_f32(float *out, const float *in, const int32_t *row_idx, int rows, int cols, cudaStream_t stream) {
    launch_gather_rows<float>("gather_rows_f32", out, in, row_idx, rows, cols, stream);
}

}  // namespace seaopt::cuda
