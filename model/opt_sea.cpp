// GGUF SEA tensors -> the CPU reference's SeaConfig / SeaParams (see opt_sea.h for the layouts).
#include "model/opt_sea.h"

#include <algorithm>
#include <string>

#include "engine/error.h"

namespace seaopt {

cpu::SeaConfig sea_config_for_model(const OptHparams &hp, uint32_t k) {
    if (!hp.has_sea) {
        throw_unsupported("the model has no SEA estimator: convert it with seaopt-convert --sea");
    }
    if (hp.head_dim() != cpu::kSeaHeadDim) {
        throw_unsupported("SEA attention needs a head size of " + std::to_string(cpu::kSeaHeadDim) +
                          " (the estimator's shapes, sea.md §5.1); this model has " + std::to_string(hp.head_dim()));
    }
    if (hp.sea.hidden != cpu::kSeaEncHidden) {
        throw_unsupported("SEA attention needs sea.hidden = " + std::to_string(cpu::kSeaEncHidden) +
                          " (2 x head size, sea.md §2.4); this model has " + std::to_string(hp.sea.hidden));
    }
    cpu::SeaConfig cfg;
    cfg.n_head = hp.n_head;
    cfg.head_dim = hp.head_dim();
    cfg.k = k ? k : hp.sea.k;
    cfg.K = hp.sea.compressed_width;
    cfg.n_features = hp.sea.random_features;
    cfg.n_pos_table = hp.sea.position_table_length;
    cfg.n_pos_ctx = std::max<size_t>(hp.sea.position_table_length, hp.n_ctx_train);
    cpu::sea_validate_config(cfg);
    return cfg;
}

namespace {

// (G, G, 3, 3) live kernel rows -> (G, G, 5, 3) with rows 3..4 zero (the stored layout, sea.md §2.6).
std::vector<float> pad_causal_kernel(const std::vector<float> &live, size_t n_kernels) {
    constexpr size_t live_size = cpu::kSeaConvLiveRows * cpu::kSeaConvCols;
    constexpr size_t stored_size = cpu::kSeaConvStoredRows * cpu::kSeaConvCols;
    if (live.size() != n_kernels * live_size) {
        throw Error(SEAOPT_ERR_INTERNAL, "sea: a causal conv weight has " + std::to_string(live.size()) +
                                             " values, expected " + std::to_string(n_kernels * live_size));
    }
    std::vector<float> stored(n_kernels * stored_size, 0.0f);
    for (size_t i = 0; i < n_kernels; ++i) {
        std::copy_n(live.data() + i * live_size, live_size, stored.data() + i * stored_size);
    }
    return stored;
}

}  // namespace

cpu::SeaParams sea_params_from_model(const OptHparams &hp, const SeaLayerWeightsCpu &w) {
    const size_t G = (size_t)hp.sea.cnn_channels_per_head * hp.n_head;
    cpu::SeaParams p;
    p.pos_table = w.pos_table;
    p.performer_proj = w.performer_proj;
    p.enc_w = w.enc_w;
    p.enc_b = w.enc_b;
    p.enc_norm_w = w.enc_norm_w;
    p.enc_norm_b = w.enc_norm_b;
    p.dec_row_w = w.dec_row_w;
    p.dec_row_b = w.dec_row_b;
    p.cnn_norm1_w = w.cnn_norm_in_w;
    p.cnn_norm1_b = w.cnn_norm_in_b;
    p.conv1_w = pad_causal_kernel(w.conv1_w, G * G);
    p.conv1_b = w.conv1_b;
    p.conv2_w = pad_causal_kernel(w.conv2_w, G * G);
    p.conv2_b = w.conv2_b;
    p.conv4_w = w.conv4_w;  // (H, G) is (H, G, 1, 1)
    p.conv4_b = w.conv4_b;
    p.cnn_norm2_w = w.cnn_norm_out_w;
    p.cnn_norm2_b = w.cnn_norm_out_b;
    p.scaler_w = w.scaler_w;
    p.scaler_b = w.scaler_b;
    // The masks stay empty: the file's weights are already weight ⊙ weight_mask.
    return p;
}

}  // namespace seaopt
