// The CPU reference ops: plain fp32 loops, parallel with OpenMP. Every CUDA kernel gets one of
// these beside it as the ground truth in tests. Matrices are row-major; a Linear weight is
// PyTorch's [out, in] (GGUF ne {in, out}).
#pragma once

#include <cstddef>
#include <cstdint>

namespace seaopt::cpu {

// y[t, o] = sum_i x[t, i] * w[o, i] + (b ? b[o] : 0), for t < n_rows.
void linear(float *y, const float *x, const float *w, const float *b, size_t n_rows, size_t n_in, size_t n_out,
            int n_threads);

// Row-wise LayerNorm over n_cols with affine weight and bias (biased variance, as torch).
void layer_norm(float *y, const float *x, const float *weight, const float *bias, size_t n_rows, size_t n_cols,
                float eps);

void relu_inplace(float *x, size_t n);
void add_inplace(float *x, const float *y, size_t n);  // x += y
void scale_inplace(float *x, float s, size_t n);

// out[t, :] = table[ids[t], :] for a table of n_cols columns.
void embedding_rows(float *out, const float *table, const int32_t *ids, size_t n_rows, size_t n_cols);

}  // namespace seaopt::cpu
