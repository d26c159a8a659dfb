#include "attention/dense_cpu.h"

#include <cmath>

namespace seaopt::cpu {

void dense_attention_one_query(float *out, const float *q, const float *k, const float *v, size_t kv_stride,
                               size_t n_kv, size_t n_head, size_t head_dim, float *scratch) {
    for (size_t h = 0; h < n_head; ++h) {
        const float *qh = q + h * head_dim;
        float max_score = -INFINITY;
        for (size_t j = 0; j < n_kv; ++j) {
            const float *kj = k + j * kv_stride + h * head_dim;
            float s = 0.0f;
            for (size_t d = 0; d < head_dim; ++d) s += qh[d] * kj[d];
            scratch[j] = s;
            max_score = s > max_score ? s : max_score;
        }
        double sum = 0.0;  // softmax statistics in higher precision
        for (size_t j = 0; j < n_kv; ++j) {
            scratch[j] = std::exp(scratch[j] - max_score);
            sum += scratch[j];
        }
        const float inv = (float)(1.0 / sum);
        float *oh = out + h * head_dim;
        for (size_t d = 0; d < head_dim; ++d) oh[d] = 0.0f;
        for (size_t j = 0; j < n_kv; ++j) {
            const float p = scratch[j] * inv;
            const float *vj = v + j * kv_stride + h * head_dim;
            for (size_t d = 0; d < head_dim; ++d) oh[d] += p * vj[d];
        }
    }
}

}  // namespace seaopt::cpu
