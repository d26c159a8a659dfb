// The tensor layout of a seaopt OPT GGUF file (see opt_format.h), with the Hugging Face source names.
#include "model/opt_format.h"

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
        auto add = [&](const char *gguf, const std::string &hf_rest, std::vector<int64_t> ne) {
            t.push_back({blk_tensor(l, gguf), hf + hf_rest, std::move(ne)});
        };
        add("attn_norm.weight", "self_attn_layer_norm.weight", {C});
        add("attn_norm.bias", "self_attn_layer_norm.bias", {C});
        for (const Part &p : {Part{"attn_q", "q_proj"}, Part{"attn_k", "k_proj"}, Part{"attn_v", "v_proj"},
                              Part{"attn_output", "out_proj"}}) {
            add((std::string(p.gguf) + ".weight").c_str(), std::string("self_attn.") + p.hf + ".weight", {C, C});
            add((std::string(p.gguf) + ".bias").c_str(), std::string("self_attn.") + p.hf + ".bias", {C});
        }
        add("ffn_norm.weight", "final_layer_norm.weight", {C});
        add("ffn_norm.bias", "final_layer_norm.bias", {C});
        add("ffn_up.weight", "fc1.weight", {C, F});
        add("ffn_up.bias", "fc1.bias", {F});
        add("ffn_down.weight", "fc2.weight", {F, C});
        add("ffn_down.bias", "fc2.bias", {C});
    }
    return t;
}

}  // namespace seaopt
