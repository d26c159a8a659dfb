#include "engine/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace seaopt::cpu {

void linear(float *y, const float *x, const float *w, const float *b, size_t n_rows, size_t n_in, size_t n_out,
            int n_threads) {
    // Tile over rows so a weight row stays in L1 while several input rows use it.
    constexpr size_t kRowTile = 16;
    const long long n_out_ll = (long long)n_out;
    // Small products are not worth waking a thread team (and spinning threads hurt a busy machine).
    const bool parallel = n_threads > 1 && n_rows * n_in * n_out >= (1u << 18);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (parallel)
    for (long long oi = 0; oi < n_out_ll; ++oi) {
        const size_t o = (size_t)oi;
        const float *wo = w + o * n_in;
        const float bias = b ? b[o] : 0.0f;
        for (size_t t0 = 0; t0 < n_rows; t0 += kRowTile) {
            const size_t t1 = std::min(n_rows, t0 + kRowTile);
            for (size_t t = t0; t < t1; ++t) {
                const float *xt = x + t * n_in;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (size_t i = 0; i < n_in; ++i) acc += xt[i] * wo[i];
                y[t * n_out + o] = acc + bias;
            }
        }
    }
}

void layer_norm(float *y, const float *x, const float *weight, const float *bias, size_t n_rows, size_t n_cols,
                float eps) {
    for (size_t t = 0; t < n_rows; ++t) {
        const float *xt = x + t * n_cols;
        float *yt = y + t * n_cols;
        double mean = 0.0;
        for (size_t i = 0; i < n_cols; ++i) mean += xt[i];
        mean /= (double)n_cols;
        double var = 0.0;
        for (size_t i = 0; i < n_cols; ++i) {
            const double d = xt[i] - mean;
            var += d * d;
        }
        var /= (double)n_cols;
        const float rstd = (float)(1.0 / std::sqrt(var + (double)eps));
        const float meanf = (float)mean;
        for (size_t i = 0; i < n_cols; ++i) yt[i] = (xt[i] - meanf) * rstd * weight[i] + bias[i];
    }
}

void relu_inplace(float *x, size_t n) {
    for (size_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void add_inplace(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

void scale_inplace(float *x, float s, size_t n) {
    for (size_t i = 0; i < n; ++i) x[i] *= s;
}

void embedding_rows(float *out, const float *table, const int32_t *ids, size_t n_rows, size_t n_cols) {
    for (size_t t = 0; t < n_rows; ++t) std::memcpy(out + t * n_cols, table + (size_t)ids[t] * n_cols, n_cols * 4);
}

}  // namespace seaopt::cpu
