// Hugging Face OPT config.json -> seaopt::OptHparams, with every value validated.
//
// Accepts the whole published family (OPT-125m ... OPT-66B, including OPT-350m's post-LayerNorm
// layout with word_embed_proj_dim 512). Variants seaopt does not implement (another activation,
// no biases, no LayerNorm affine, _remove_final_layer_norm) are refused with
// SEAOPT_ERR_UNSUPPORTED naming the key and value; malformed files with SEAOPT_ERR_MODEL_FORMAT.
#pragma once

#include <cstdint>
#include <string>

#include "model/opt_format.h"

namespace seaopt::convert {

// A special token id from config.json: -1 when the key is absent, null or negative (some configs
// write -1 for "none"). A list (newer configs allow several end-of-sequence ids) gives its first.
struct HfTokenId {
    int64_t id = -1;
    bool from_list = false;  // the key held a list of more than one id; only the first is used
};

struct HfOptConfig {
    OptHparams hp;
    bool tie_word_embeddings = true;
    // The ids generation uses (Hugging Face's generate() stops at config.eos_token_id). The converter
    // stores them in the GGUF when present; vocab.json's '</s>' etc. are the fallback.
    HfTokenId bos_token_id, eos_token_id, pad_token_id;
};

// `what` names the source in messages (usually "config.json").
HfOptConfig parse_hf_config(const std::string &json_text, const std::string &what = "config.json");
HfOptConfig read_hf_config(const std::string &path);

}  // namespace seaopt::convert
