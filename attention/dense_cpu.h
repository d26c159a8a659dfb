// Dense causal attention, CPU reference (fp32). The query of one token attends to keys/values
// 0..n_kv-1 of its sequence; causality comes from the caller passing n_kv = position + 1.
#pragma once

#include <cstddef>

namespace seaopt::cpu {

// q: [n_head * head_dim] for one token, already scaled by head_dim^-0.5 (OPT scales q after its bias).
// k, v: rows of a KV cache with row stride kv_stride floats (head h at columns h*head_dim...).
// out: [n_head * head_dim]. scratch: at least n_kv floats.
void dense_attention_one_query(float *out, const float *q, const float *k, const float *v, size_t kv_stride,
                               size_t n_kv, size_t n_head, size_t head_dim, float *scratch);

}  // namespace seaopt::cpu
