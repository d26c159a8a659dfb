// GPT-2 byte-level BPE, identical to Hugging Face's GPT2Tokenizer as configured for OPT.
//
// Why not SentencePiece: OPT was trained with the GPT-2 BPE (fairseq's reordering of GPT-2's ids);
// a SentencePiece model would give different ids and a wrong model input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace seaopt {

// At most this many distinct added-token strings (CONTROL and USER_DEFINED tokens): encode() looks for each at every
// added-token match.
inline constexpr size_t kMaxAddedTokens = 4096;

// Token types, as llama.cpp's GGUF convention (tokenizer.ggml.token_type).
enum class TokenType : int32_t { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

// How an added token (Hugging Face's AddedToken: the CONTROL tokens, which are its special tokens, and the
// USER_DEFINED ones, its other added tokens) is found in text. A token without an entry has none of them.
enum AddedTokenFlags : uint32_t {
    kAddedSingleWord = 1u << 0,  // only where no word character (\w) touches it on either side
    kAddedLstrip = 1u << 1,      // takes the whitespace before it
    kAddedRstrip = 1u << 2,      // takes the whitespace after it
    kAddedNormalized = 1u << 3,  // looked for in a second pass, in the text between the others' matches
    kAddedAllFlags = 15u,
};
struct AddedTokenFlagsEntry {
    int32_t id;
    uint32_t flags;
};

// What a tokenizer is made of: the same data whether it comes from HF files or from GGUF metadata.
struct TokenizerData {
    std::vector<std::string> tokens;      // id -> token string in byte-level form ("Ġthe"); added tokens: their text
    std::vector<int32_t> token_types;     // id -> TokenType; may be empty (= NORMAL, specials CONTROL)
    std::vector<std::string> merges;      // rank order, each "left right"
    std::vector<AddedTokenFlagsEntry> added_flags;  // CONTROL / USER_DEFINED ids only, each at most once
    int32_t bos_id = 2, eos_id = 2, pad_id = 1, unk_id = 3;
    // Whether encode(text, add_bos = true) prepends bos_id: what Hugging Face's tokenizer(text) does for this
    // checkpoint (OPT's hub tokenizer: yes; GGUF tokenizer.ggml.add_bos_token; the converter's hf_post_processor).
    bool add_bos = true;
};

// Reads HF vocab.json + merges.txt. Pads the token list to `n_vocab` entries (the model's
// embedding rows, 50272 for OPT) with UNUSED tokens "<unused_N>" when n_vocab is larger.
// Marks '</s>' and '<pad>' CONTROL. Throws seaopt::Error on bad files.
TokenizerData load_hf_tokenizer(const std::string &vocab_json_path, const std::string &merges_txt_path,
                                int32_t n_vocab);
// The same from a `tokenizers` tokenizer.json (what transformers 5's save_pretrained writes instead of vocab.json and
// merges.txt): its model's vocab and merges, after checking that it is a byte-level BPE as OPT's (no normalizer,
// the ByteLevel pre-tokenizer and decoder); anything else is refused, naming the part. Its added_tokens are not read
// here (the converter's hf_added_tokens does).
TokenizerData load_hf_tokenizer_json(const std::string &tokenizer_json_path, int32_t n_vocab);
// The same from the file already parsed (the converter reads it once for this and its added tokens); `where` names
// it in messages.
TokenizerData load_hf_tokenizer_json(const nlohmann::json &tokenizer_json, int32_t n_vocab, const std::string &where);

class Tokenizer {
public:
    // Validates the data (special ids in range, well-formed merges, no duplicate tokens). Throws
    // seaopt::Error(SEAOPT_ERR_MODEL_FORMAT) naming the problem.
    explicit Tokenizer(TokenizerData data);

    // Encodes UTF-8 text as Hugging Face's tokenizer does: the added tokens are split out first (USER_DEFINED always,
    // CONTROL with parse_special; leftmost, then longest; the flags of AddedTokenFlags), then each stretch of text
    // between them goes through the byte-level BPE. Invalid UTF-8 throws seaopt::Error(SEAOPT_ERR_INVALID_UTF8)
    // naming the byte offset. parse_special false is Hugging Face's split_special_tokens=True.
    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

    // The pieces the GPT-2 pattern cuts UTF-8 text into before BPE (each is merged on its own), as views
    // into `text`; no special-token parsing. Invalid UTF-8 throws as encode() does.
    std::vector<std::string_view> pre_tokenize(std::string_view text) const;

    // The raw bytes of one token (added tokens: their text, through the byte-level decoder as Hugging Face's decode
    // passes it: "é" becomes the byte 0xE9 where all of a token's characters are byte-level ones). Throws on an id
    // out of range.
    std::string token_to_piece(int32_t id) const;
    // Concatenated bytes of the tokens; remove_special skips CONTROL and UNUSED tokens.
    std::string decode(const std::vector<int32_t> &ids, bool remove_special) const;

    int32_t n_tokens() const;
    int32_t bos_id() const;
    int32_t eos_id() const;
    int32_t pad_id() const;
    int32_t unk_id() const;
    const TokenizerData &data() const;
    bool is_control(int32_t id) const;

    ~Tokenizer();
    Tokenizer(Tokenizer &&) noexcept;
    Tokenizer &operator=(Tokenizer &&) noexcept;
    Tokenizer(const Tokenizer &) = delete;
    Tokenizer &operator=(const Tokenizer &) = delete;

private:
    struct Impl;
    Impl *impl_ = nullptr;
};

}  // namespace seaopt
