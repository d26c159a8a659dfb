// Hugging Face OPT config.json -> seaopt::OptHparams, with every value validated.
//
// Accepts the whole published family (OPT-125m ... OPT-66B, including OPT-350m's post-LayerNorm
// layout with word_embed_proj_dim 512). Variants seaopt does not implement (another activation,
// no biases, no LayerNorm affine, _remove_final_layer_norm) are refused with
// SEAOPT_ERR_UNSUPPORTED naming the key and value; malformed files with SEAOPT_ERR_MODEL_FORMAT.
#pragma once

#include <string>

#include "model/opt_format.h"

namespace seaopt::convert {

struct HfOptConfig {
    OptHparams hp;
    bool tie_word_embeddings = true;
};

// `what` names the source in messages (usually "config.json").
HfOptConfig parse_hf_config(const std::string &json_text, const std::string &what = "config.json");
HfOptConfig read_hf_config(const std::string &path);

}  // namespace seaopt::convert
