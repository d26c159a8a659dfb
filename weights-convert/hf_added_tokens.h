// The added tokens of a Hugging Face tokenizer directory: the strings its tokenizer splits out of text before the
// BPE, each with AddedToken's options (single_word, lstrip, rstrip, normalized), and which of them are special
// (split out only while special tokens are parsed; dropped by decode(skip_special_tokens=True)). For OPT's hub files
// that is '</s>' (bos = eos = unk) and '<pad>', both special: '<s>', '<unk>' and '<mask>' are in vocab.json but are
// ordinary text to Hugging Face. A fine-tune adds its own (chat markers and the like).
//
// Sources, as transformers reads them: tokenizer.json's "added_tokens" (what transformers 5 saves), and
// tokenizer_config.json's "added_tokens_decoder" (transformers >= 4.34), the token keys (bos_token, eos_token,
// unk_token, sep_token, pad_token, cls_token, mask_token: a string or an AddedToken object),
// "additional_special_tokens" and "extra_special_tokens" (transformers 5's name), special_tokens_map.json's keys, and
// added_tokens.json (transformers before 4.34: content -> id, no options).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/tokenizer.h"

namespace seaopt::convert {

struct HfAddedToken {
    std::string content;
    int64_t id = -1;             // the files' id; -1 when the token is only named
    bool special = false;        // any source calls it special
    uint32_t flags = 0;          // AddedTokenFlags (tokenizer.h)
    bool flags_given = false;    // flags came from an AddedToken object, not AddedToken(content, special)'s defaults
};

struct HfAddedTokens {
    bool found = false;               // one of the four files was there
    std::vector<HfAddedToken> tokens; // each content once, in the order first seen
    std::string unk;                  // unk_token's content, "" when not given
    std::string bos;                  // bos_token's content (special_tokens_map.json's over tokenizer_config.json's)
};

// Parses the files' texts (each may be empty: absent).
HfAddedTokens parse_hf_added_tokens(const std::string &tokenizer_config, const std::string &special_tokens_map,
                                    const std::string &tokenizer_json = "", const std::string &added_tokens_json = "");
// Reads `dir`/special_tokens_map.json and added_tokens.json where they exist, with `tokenizer_json` and
// `tokenizer_config`, the directory's tokenizer.json and tokenizer_config.json as read_hf_tokenizer_json and
// read_hf_tokenizer_config parsed them (null where there is none).
HfAddedTokens read_hf_added_tokens(const std::filesystem::path &dir, const nlohmann::json *tokenizer_json,
                                   const nlohmann::json *tokenizer_config);
// `dir`/tokenizer_config.json into `out`, parsed as read_hf_tokenizer_json parses; false where it is absent.
bool read_hf_tokenizer_config(const std::filesystem::path &dir, nlohmann::json &out);
// `dir`/tokenizer.json, parsed as the converter parses JSON (duplicate keys refused, size bounded).
nlohmann::json read_hf_tokenizer_json(const std::filesystem::path &dir);

// Makes exactly the special tokens CONTROL and the other added tokens USER_DEFINED (every other token that is not
// UNUSED becomes NORMAL), with their flags in tok.added_flags, unk_token the unknown id and bos_token the BOS id (as
// transformers' GPT2Tokenizer takes it: special_tokens_map.json's, else tokenizer_config.json's). An added token missing
// from the vocabulary takes its id where that is one of the model's padding rows (UNUSED); anywhere else it is
// refused. Returns notes for the user.
std::vector<std::string> apply_hf_added_tokens(const HfAddedTokens &added, TokenizerData &tok);

// Whether Hugging Face's tokenizer(text) prepends the BOS for this directory, as transformers 5.17 decides it:
// tokenizer.json's post_processor where the directory has one (a TemplateProcessing "</s> $A" adds it; none,
// ByteLevel or "$A" do not; tokenizer_config.json's add_bos_token is then ignored, as transformers ignores it); else
// tokenizer_config.json's add_bos_token (absent: no BOS, GPT2Tokenizer's default; a note says so); else (vocab.json
// and merges.txt alone) OPT's hub tokenizer's true. A post-processor that puts anything else around the text (an EOS
// after it, a Roberta or Bert processor) is refused: seaopt adds at most a BOS before it. bos_id: the tokenizer's
// BOS (apply_hf_added_tokens'); where a template puts another token first, that token is what transformers prepends
// (measured: a "<s> $A" template beside bos_token "</s>" gives id 0), so it becomes bos_id, with a note. Each file as
// its reader parsed it (null: absent).
bool read_hf_add_bos(const nlohmann::json *tokenizer_json, const nlohmann::json *tokenizer_config, int32_t &bos_id,
                     const std::vector<std::string> &tokens, std::vector<std::string> &notes);

}  // namespace seaopt::convert
