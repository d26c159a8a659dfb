// The tensor layout of a seaopt OPT GGUF file (see opt_format.h), with the Hugging Face source names.
#include "model/opt_format.h"

#include "attention/sea_cpu.h"
#include "engine/error.h"
#include "model/q8_0.h"

namespace seaopt {

std::vector<OptTensorSpec> opt_tensor_specs(const OptHparams &hp, bool untied_output) {
    const int64_t C = hp.n_embd, D = hp.n_embd_proj, F = hp.n_ff, V = hp.n_vocab, P = hp.n_pos_rows();
    std::vector<OptTensorSpec> t;
    t.push_back({"token_embd.weight", "decoder.embed_tokens.weight", {D, V}});
    t.push_back({"position_embd.weight", "decoder.embed_positions.weight", {C, P}});
    if (hp.has_proj()) {
        t.push_back({"proj_in.weight", "decoder.project_in.weight", {D, C}});
        t.push_back({"proj_out.weight", "decoder.project_out.weight", {C, D}});
    }
    if (hp.has_output_norm()) {
        t.push_back({"output_norm.weight", "decoder.final_layer_norm.weight", {C}});
        t.push_back({"output_norm.bias", "decoder.final_layer_norm.bias", {C}});
    }
    if (untied_output) t.push_back({"output.weight", "lm_head.weight", {D, V}});

    struct Part {
        const char *gguf;
        const char *hf;
    };
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        const std::string hf = "decoder.layers." + std::to_string(l) + ".";
        auto add = [&](const char *gguf, const std::string &hf_rest, std::vector<int64_t> ne, bool matrix = false) {
            t.push_back({blk_tensor(l, gguf), hf + hf_rest, std::move(ne), matrix});
        };
        add("attn_norm.weight", "self_attn_layer_norm.weight", {C});
        add("attn_norm.bias", "self_attn_layer_norm.bias", {C});
        for (const Part &p : {Part{"attn_q", "q_proj"}, Part{"attn_k", "k_proj"}, Part{"attn_v", "v_proj"},
                              Part{"attn_output", "out_proj"}}) {
            add((std::string(p.gguf) + ".weight").c_str(), std::string("self_attn.") + p.hf + ".weight", {C, C}, true);
            add((std::string(p.gguf) + ".bias").c_str(), std::string("self_attn.") + p.hf + ".bias", {C});
        }
        add("ffn_norm.weight", "final_layer_norm.weight", {C});
        add("ffn_norm.bias", "final_layer_norm.bias", {C});
        add("ffn_up.weight", "fc1.weight", {C, F}, true);
        add("ffn_up.bias", "fc1.bias", {F});
        add("ffn_down.weight", "fc2.weight", {F, C}, true);
        add("ffn_down.bias", "fc2.bias", {C});
    }
    return t;
}

void check_q8_0_widths(const OptHparams &hp) {
    if (hp.n_embd % kQ8Block != 0 || hp.n_ff % kQ8Block != 0) {
        throw_invalid_argument("q8_0 needs hidden_size and ffn_dim to be multiples of 32 (Q8_0 blocks of 32 run along "
                               "the weight matrices' rows); this model has " + std::to_string(hp.n_embd) + " and " +
                               std::to_string(hp.n_ff));
    }
}

std::string sea_hf_prefix(uint32_t layer) {
    return "decoder.layers." + std::to_string(layer) + ".self_attn.perlin_self_attention.";
}

std::vector<OptTensorSpec> sea_tensor_specs(const OptHparams &hp) {
    std::vector<OptTensorSpec> t;
    if (!hp.has_sea) return t;
    const SeaHparams &s = hp.sea;
    const int64_t d = hp.head_dim(), H = hp.n_head, m = s.random_features, Dh = s.hidden, K = s.compressed_width,
                  P = s.position_table_length, W = s.cnn_width(), G = (int64_t)s.cnn_channels_per_head * H,
                  R = (int64_t)s.cnn_channels_per_head * W;
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        const std::string hf = sea_hf_prefix(l) + "attention.";
        auto add = [&](const char *gguf, const char *hf_rest, std::vector<int64_t> ne) {
            t.push_back({blk_tensor(l, gguf), hf + hf_rest, std::move(ne)});
        };
        add("sea.pos_table", "v_eye_learned_causal", {d, P});  // stored as (1, 1, P, d)
        add("sea.performer_proj", "performer.projection_matrix", {d, m});
        add("sea.enc.weight", "attention_predictor_enc.0.weight", {3 * d, Dh});
        add("sea.enc.bias", "attention_predictor_enc.0.bias", {Dh});
        add("sea.enc_norm.weight", "attention_predictor_enc.1.weight", {Dh});
        add("sea.enc_norm.bias", "attention_predictor_enc.1.bias", {Dh});
        add("sea.dec_row.weight", "attention_predictor_dec_row.0.weight", {Dh, R});
        add("sea.dec_row.bias", "attention_predictor_dec_row.0.bias", {R});
        add("sea.cnn_norm_in.weight", "attention_predictor_cnn.0.module.weight", {W});
        add("sea.cnn_norm_in.bias", "attention_predictor_cnn.0.module.bias", {W});
        // Stored as (G, G, 5, 3) with a weight_mask: only kernel rows 0..2 are live (§2.6).
        add("sea.conv1.weight", "attention_predictor_cnn.1.module.net.0.module.weight", {3, 3, G, G});
        add("sea.conv1.bias", "attention_predictor_cnn.1.module.net.0.module.bias", {G});
        add("sea.conv2.weight", "attention_predictor_cnn.1.module.net.2.module.weight", {3, 3, G, G});
        add("sea.conv2.bias", "attention_predictor_cnn.1.module.net.2.module.bias", {G});
        add("sea.conv4.weight", "attention_predictor_cnn.1.module.net.5.module.weight", {G, H});  // stored (H, G, 1, 1)
        add("sea.conv4.bias", "attention_predictor_cnn.1.module.net.5.module.bias", {H});
        add("sea.cnn_norm_out.weight", "attention_predictor_cnn.2.module.weight", {K});
        add("sea.cnn_norm_out.bias", "attention_predictor_cnn.2.module.bias", {K});
        add("sea.scaler.weight", "attention_predictor_dec_scaler.0.weight", {Dh, 2});
        add("sea.scaler.bias", "attention_predictor_dec_scaler.0.bias", {2});
    }
    return t;
}

namespace {

void check_range(const char *key, uint32_t v, uint32_t lo, uint32_t hi, const char *why) {
    if (v < lo || v > hi) {
        throw_model_format(std::string("key ") + key + " = " + std::to_string(v) + " is out of range [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "] (" + why + ")");
    }
}

}  // namespace

void check_sea_hparams(const OptHparams &hp) {
    if (!hp.has_sea) return;
    const SeaHparams &s = hp.sea;
    check_range(keys::kSeaK, s.k, 1, kSeaMaxK, "sea.md §2.7: the per-query budget is max(1, round(H k K / (t+1)))");
    check_range(keys::kSeaRandomFeatures, s.random_features, 1, kSeaMaxRandomFeatures, "sea.md §2.3");
    check_range(keys::kSeaHidden, s.hidden, 1, kMaxEmbedding, "sea.md §2.4");
    check_range(keys::kSeaPositionTableLength, s.position_table_length, 1, kMaxContext, "sea.md §2.2");
    if (s.cnn_channels_per_head != kSeaCnnChannelsPerHead) {
        throw_unsupported(std::string("key ") + keys::kSeaCnnChannelsPerHead + " = " +
                          std::to_string(s.cnn_channels_per_head) + ": seaopt implements SEA's OPT estimator with " +
                          std::to_string(kSeaCnnChannelsPerHead) + " CNN channels per head (sea.md §1, §2.5)");
    }
    if (s.width_reduction != kSeaWidthReduction) {
        throw_unsupported(std::string("key ") + keys::kSeaWidthReduction + " = " + std::to_string(s.width_reduction) +
                          ": seaopt implements SEA's OPT estimator with width reduction " +
                          std::to_string(kSeaWidthReduction) + " (sea.md §1, §2.6)");
    }
    check_range(keys::kSeaCompressedWidth, s.compressed_width, s.width_reduction, kSeaMaxCompressedWidth,
                "sea.md §2.5-2.8");
    if (s.compressed_width % s.width_reduction != 0) {
        throw_model_format(std::string("key ") + keys::kSeaCompressedWidth + " = " + std::to_string(s.compressed_width) +
                           " is not a multiple of " + std::to_string(s.width_reduction) +
                           ": the CNN works on a K/4-wide image upsampled x4 (sea.md §2.5, §2.6)");
    }
    // The engine's rule (sea_validate_config): the budget H·k·K/(t+1) of sea.md §2.7 is computed in fp32, so k·K must
    // be exact there. Checked here so that a file with such a k is refused at load, naming the key.
    const uint64_t max_k = cpu::sea_max_k(s.compressed_width);
    if (s.k > max_k) {
        throw_model_format(std::string("key ") + keys::kSeaK + " = " + std::to_string(s.k) + " is out of range: with " +
                           keys::kSeaCompressedWidth + " = " + std::to_string(s.compressed_width) + " it can be at most " +
                           std::to_string(max_k) + " (k·K <= 2^24: the budget of sea.md §2.7 is computed in fp32)");
    }
}

}  // namespace seaopt
