// SEA's interpretable attention matrix for one (layer, head) of a prompt (issue 4, item 8), behind
// seaopt_attention_maps in include/seaopt.h: the estimator's compressed probabilities, the selected cells
// expanded to keys, and the dense causal softmax, all from the same q, k, v. CPU model only.
#pragma once

#include <cstdint>
#include <vector>

#include "model/opt_model.h"

namespace seaopt {

// The most tokens seaopt_attention_maps takes: the outputs are T×T.
constexpr int32_t kAttentionMapsMaxTokens = 2048;

struct AttentionMaps {
    int32_t T = 0, K = 0, k = 0;
    int64_t n_selected = 0;        // keys read by the sparse attention over all rows (from the expansion)
    std::vector<float> estimated;  // [T, K] Â of the head (sea.md §2.6), each row sums to 1
    std::vector<float> mask;       // [T, T] 1 where row t's selected cells of the head expand to key j (§2.7, §2.8)
    std::vector<float> dense;      // [T, T] causal softmax(q kᵀ) of the head, each row sums to 1
};

// q, k, v of `layer` from a forward with dense attention in layers 0..layer-1 (positions 0..T-1, one
// sequence), then SEA's prefill on them (sea_k: 0 = the model's sea.k) and the dense probabilities.
// Throws seaopt::Error: SEAOPT_ERR_UNSUPPORTED for a CUDA model or one without a SEA estimator,
// SEAOPT_ERR_INVALID_ARGUMENT for a vocab-only model, a bad layer, head, sea_k, token count or token id.
AttentionMaps compute_attention_maps(const OptModel &model, const int32_t *tokens, int32_t n_tokens, int32_t layer,
                                     int32_t head, int32_t sea_k, int n_threads);

}  // namespace seaopt
