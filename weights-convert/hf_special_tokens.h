// The special tokens of a Hugging Face tokenizer directory: the strings its tokenizer splits out of text and
// decode(skip_special_tokens=True) drops. For OPT that is '</s>' (bos = eos = unk) and '<pad>' only: '<s>',
// '<unk>' and '<mask>' are in vocab.json but are ordinary text to Hugging Face.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace seaopt::convert {

struct HfAddedToken {
    std::string content;
    int64_t id = -1;  // added_tokens_decoder's id; -1 when the token is named without one
};

struct HfSpecialTokens {
    bool found = false;                 // tokenizer_config.json or special_tokens_map.json was there
    std::vector<HfAddedToken> special;  // bos/eos/unk/pad/sep/cls/mask_token, additional_special_tokens,
                                        // added_tokens_decoder's "special": true entries; each content once
    std::string unk;                    // unk_token's content, "" when not given
    std::vector<std::string> not_special;  // added_tokens_decoder entries with "special": false
};

// Parses the two files' texts (either may be empty: absent). `what` names them in messages.
HfSpecialTokens parse_hf_special_tokens(const std::string &tokenizer_config, const std::string &special_tokens_map);
// Reads `dir`/tokenizer_config.json and `dir`/special_tokens_map.json where they exist.
HfSpecialTokens read_hf_special_tokens(const std::filesystem::path &dir);

// Makes exactly `st.special` the CONTROL tokens of `tok` (every other token that is not UNUSED becomes NORMAL) and
// unk_token the unknown id. A special token missing from vocab.json takes its added_tokens_decoder id where that is
// one of the model's padding rows (UNUSED); anywhere else it is refused. Returns notes for the user.
std::vector<std::string> apply_hf_special_tokens(const HfSpecialTokens &st, TokenizerData &tok);

}  // namespace seaopt::convert
