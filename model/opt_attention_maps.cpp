// SEA's attention maps of one (layer, head): see opt_attention_maps.h.
#include "model/opt_attention_maps.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "attention/sea_cpu.h"
#include "engine/error.h"
#include "model/opt_forward_cpu.h"
#include "model/opt_sea.h"

namespace seaopt {

AttentionMaps compute_attention_maps(const OptModel &model, const int32_t *tokens, int32_t n_tokens, int32_t layer,
                                     int32_t head, int32_t sea_k, int n_threads) {
    const OptHparams &hp = model.hp;
    if (model.vocab_only) throw_invalid_argument("the model was loaded with vocab_only: it has no weights to run");
    if (model.device == SEAOPT_DEVICE_CUDA) {
        throw_unsupported("attention maps run on the CPU engine only: load the model with device CPU (--device cpu)");
    }
    if (!hp.has_sea) {
        throw_unsupported("attention maps: the model " + (model.name.empty() ? std::string() : "'" + model.name + "' ") +
                          "has no SEA estimator: convert it with seaopt-convert --sea");
    }
    if (layer < 0 || (uint32_t)layer >= hp.n_layer) {
        throw_invalid_argument("layer " + std::to_string(layer) + " is out of range: the model has " +
                               std::to_string(hp.n_layer) + " layers (0.." + std::to_string(hp.n_layer - 1) + ")");
    }
    if (head < 0 || (uint32_t)head >= hp.n_head) {
        throw_invalid_argument("head " + std::to_string(head) + " is out of range: the model has " +
                               std::to_string(hp.n_head) + " heads (0.." + std::to_string(hp.n_head - 1) + ")");
    }
    const int32_t max_tokens = std::min<int32_t>(kAttentionMapsMaxTokens, (int32_t)hp.n_ctx_train);
    if (n_tokens < 1 || n_tokens > max_tokens) {
        throw_invalid_argument("n_tokens = " + std::to_string(n_tokens) + " must be in [1, " +
                               std::to_string(max_tokens) + "] (the maps are T x T; at most " +
                               std::to_string(kAttentionMapsMaxTokens) + " and the model's positions)");
    }
    if (sea_k < 0) throw_invalid_argument("sea_k = " + std::to_string(sea_k) + " must be >= 0 (0 = the model's sea.k)");
    const uint64_t Kw = hp.sea.compressed_width, max_k = Kw ? ((uint64_t)1 << 24) / Kw : 0;
    if ((uint64_t)sea_k > max_k) {
        throw_invalid_argument("sea_k = " + std::to_string(sea_k) + " is out of range: at most " +
                               std::to_string(max_k) + " with this model's compressed width K = " + std::to_string(Kw) +
                               " (k·K <= 2^24)");
    }
    for (int32_t i = 0; i < n_tokens; ++i) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp.n_vocab) {
            throw_invalid_argument("token " + std::to_string(i) + " has id " + std::to_string(tokens[i]) +
                                   ", outside the vocabulary [0, " + std::to_string(hp.n_vocab) + ")");
        }
    }
    const cpu::SeaConfig cfg = sea_config_for_model(hp, (uint32_t)sea_k);
    const cpu::SeaParams params = sea_params_from_model(hp, model.sea[(size_t)layer]);
    cpu::sea_validate(cfg, params);

    // q, k, v of the layer: the dense forward up to it (it stops there), KV cache for layers 0..layer only.
    const size_t T = (size_t)n_tokens, C = hp.n_embd, hd = hp.head_dim(), K = cfg.K;
    std::vector<TokenSlot> slots(T);
    for (size_t i = 0; i < T; ++i) slots[i] = TokenSlot{tokens[i], (int32_t)i, 0};
    KvCacheCpu kv;
    kv.allocate((uint32_t)layer + 1, 1, (uint32_t)T, (uint32_t)C);
    CpuForwardCapture cap;
    cap.layer = (uint32_t)layer;
    opt_forward_cpu(model, kv, slots, {}, nullptr, n_threads, nullptr, &cap);
    if (cap.q.size() != T * C) throw Error(SEAOPT_ERR_INTERNAL, "attention maps: the forward captured no q, k, v");

    cpu::SeaDebug debug;
    std::vector<float> out(T * C);
    cpu::sea_attention_prefill_cpu(cfg, params, cap.q.data(), cap.k.data(), cap.v.data(), T, out.data(), &debug,
                                   nullptr, n_threads);

    AttentionMaps m;
    m.T = n_tokens;
    m.K = (int32_t)K;
    m.k = (int32_t)cfg.k;
    const size_t h = (size_t)head;
    m.estimated.assign(debug.probs.begin() + (std::ptrdiff_t)(h * T * K),
                       debug.probs.begin() + (std::ptrdiff_t)((h + 1) * T * K));
    m.mask.assign(T * T, 0.0f);
    std::vector<int32_t> keys, head_ptr;
    for (size_t t = 0; t < T; ++t) {
        const int32_t *cells = debug.selected_cells.data() + debug.selected_row_ptr[t];
        const size_t n_cells = (size_t)(debug.selected_row_ptr[t + 1] - debug.selected_row_ptr[t]);
        cpu::sea_expand_cells_to_keys(cfg, t, cells, n_cells, keys, head_ptr);
        for (int32_t i = head_ptr[h]; i < head_ptr[h + 1]; ++i) m.mask[t * T + (size_t)keys[(size_t)i]] = 1.0f;
        m.n_selected += head_ptr[h + 1] - head_ptr[h];
    }

    // Dense causal softmax of the head on the same q (scaled) and k, in double.
    m.dense.assign(T * T, 0.0f);
    std::vector<double> s(T);
    for (size_t t = 0; t < T; ++t) {
        const float *qt = cap.q.data() + t * C + h * hd;
        double max = -INFINITY;
        for (size_t j = 0; j <= t; ++j) {
            const float *kj = cap.k.data() + j * C + h * hd;
            double dot = 0.0;
            for (size_t d = 0; d < hd; ++d) dot += (double)qt[d] * kj[d];
            s[j] = dot;
            max = std::max(max, dot);
        }
        double sum = 0.0;
        for (size_t j = 0; j <= t; ++j) sum += (s[j] = std::exp(s[j] - max));
        for (size_t j = 0; j <= t; ++j) m.dense[t * T + j] = (float)(s[j] / sum);
    }
    return m;
}

}  // namespace seaopt
