// The OPT forward on the CPU, fp32: the reference every other backend is tested against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/opt_model.h"

namespace seaopt {

// KV cache of the CPU engine: per (layer, sequence) n_ctx rows of n_embd floats for K and for V.
struct KvCacheCpu {
    uint32_t n_layer = 0, n_seq = 0, n_ctx = 0, n_embd = 0;
    std::vector<float> k, v;  // [n_layer][n_seq][n_ctx][n_embd]

    void allocate(uint32_t layers, uint32_t seqs, uint32_t ctx, uint32_t embd);
    float *k_rows(uint32_t layer, uint32_t seq) { return k.data() + offset(layer, seq); }
    float *v_rows(uint32_t layer, uint32_t seq) { return v.data() + offset(layer, seq); }
    size_t offset(uint32_t layer, uint32_t seq) const {
        return ((size_t)layer * n_seq + seq) * (size_t)n_ctx * n_embd;
    }
};

// One token of a batch, already validated by the caller (ids, sequences and positions in range;
// each token's position p has keys 0..p-1 of its sequence either in the cache or earlier in the batch).
struct TokenSlot {
    int32_t token;
    int32_t pos;
    int32_t seq;
};

// Runs the tokens through the model, writing their keys and values into `kv`, and fills
// logits[r * n_vocab ...] for each batch index output_tokens[r].
void opt_forward_cpu(const OptModel &model, KvCacheCpu &kv, const std::vector<TokenSlot> &tokens,
                     const std::vector<int32_t> &output_tokens, float *logits, int n_threads);

}  // namespace seaopt
