// GPT-2 byte-level BPE as Hugging Face's tokenizer for OPT runs it (transformers' GPT2Tokenizer, the `tokenizers`
// library's ByteLevel BPE; the same ids as transformers 4's Python GPT2Tokenizer wherever the two agree):
//   1. split off the added tokens (`tokenizers`' AddedVocabulary: USER_DEFINED ones always, CONTROL ones with
//      parse_special; for OPT '</s>' and '<pad>'), with their single_word / lstrip / rstrip / normalized rules;
//   2. pre-tokenize each stretch of text between them with the GPT-2 regex (PCRE2, with Hugging Face's
//      letter/number/space classes);
//   3. map each piece's bytes to GPT-2's printable "byte-level" characters;
//   4. apply the merges by rank, exactly as HF's GPT2Tokenizer.bpe() does;
//   5. look the resulting strings up in the vocabulary.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <memory>
#include <string_view>
#include <unordered_set>
#include <utility>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/error.h"
#include "tokenizer/tokenizer_internal.h"

namespace seaopt {

namespace tok_detail {

size_t find_invalid_utf8(std::string_view s) {
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        // RFC 3629 table 3-7: the allowed range of the second byte depends on the first, which rules
        // out overlongs (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and > U+10FFFF.
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;  // a continuation byte, C0/C1, or F5..FF
        }
        if (i + len > n) return i;  // truncated at the end
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
        }
        i += len;
    }
    return std::string_view::npos;
}

// Decodes one code point from possibly invalid UTF-8 (token strings from a file are not
// validated); an invalid lead byte comes back as a 1-byte "code point" with ok = false.
struct CodePoint {
    uint32_t cp;
    size_t len;
    bool ok;
};

static CodePoint next_code_point(std::string_view s, size_t i) {
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    const size_t bad = find_invalid_utf8(s.substr(i, std::min<size_t>(4, s.size() - i)));
    const unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (bad == 0 || (bad != std::string_view::npos && bad < len)) return {c, 1, false};
    uint32_t cp;
    if (len == 1) {
        cp = c;
    } else if (len == 2) {
        cp = ((c & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
    } else if (len == 3) {
        cp = ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
    } else {
        cp = ((c & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
    }
    return {cp, len, true};
}

std::string utf8_encode(uint32_t cp) {
    std::string out;
    if (cp < 0x80) {
        out += (char)cp;
    } else if (cp < 0x800) {
        out += (char)(0xC0 | (cp >> 6));
        out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += (char)(0xE0 | (cp >> 12));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    } else {
        out += (char)(0xF0 | (cp >> 18));
        out += (char)(0x80 | ((cp >> 12) & 0x3F));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    }
    return out;
}

std::array<uint32_t, 256> byte_to_code_point() {
    // GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes
    // get U+0100.. in byte order, so that every byte has a visible, non-space character.
    std::array<uint32_t, 256> map{};
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[b] = printable ? b : 256 + extra++;
    }
    return map;
}

std::string quote(std::string_view s) {
    constexpr size_t kMax = 48;
    std::string out = "'";
    for (size_t i = 0; i < s.size() && i < kMax; ++i) {
        const unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {
            static const char *hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += (char)c;
        }
    }
    if (s.size() > kMax) out += "...";
    return out + "'";
}

}  // namespace tok_detail

using namespace tok_detail;

namespace {

struct CodePointRange {
    uint32_t first, last;
};
#include "tokenizer/gpt2_classes.inc"
#include "tokenizer/word_space_classes.inc"

template <size_t N>
bool in_ranges(const CodePointRange (&ranges)[N], uint32_t cp) {
    const CodePointRange *end = ranges + N;
    const CodePointRange *it = std::upper_bound(ranges, end, cp, [](uint32_t c, const CodePointRange &r) {
        return c < r.first;
    });
    return it != ranges && cp <= (it - 1)->last;
}

// A class's ranges as the inside of a PCRE2 character class: "\\x{41}-\\x{5A}...".
template <size_t N>
std::string class_ranges(const CodePointRange (&ranges)[N]) {
    std::string s;
    char buf[40];
    for (const CodePointRange &r : ranges) {
        if (r.first == r.last) {
            std::snprintf(buf, sizeof buf, "\\x{%X}", (unsigned)r.first);
        } else {
            std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", (unsigned)r.first, (unsigned)r.last);
        }
        s += buf;
    }
    return s;
}

// The GPT-2 pre-tokenizer pattern, 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+, with
// \p{L}, \p{N} and \s spelled out as the code point ranges Hugging Face's tokenizer gives them
// (gpt2_classes.inc, generated from its classification of every code point): PCRE2's own tables are those of
// the library's Unicode version (Debian 12's 10.42: Unicode 15), which lacks the 9,392 letters and numbers of
// Unicode 15.1 and 16 that Hugging Face knows; and PCRE2's \s also matches U+180E, which Hugging Face does not.
std::string gpt2_pattern() {
    const std::string white = class_ranges(kGpt2Whitespace), letters = class_ranges(kGpt2Letters),
                      numbers = class_ranges(kGpt2Numbers);
    return "'s|'t|'re|'ve|'m|'ll|'d| ?[" + letters + "]+| ?[" + numbers + "]+| ?[^" + white + letters + numbers +
           "]+|[" + white + "]+(?![^" + white + "])|[" + white + "]+";
}

struct Pcre2CodeDeleter {
    void operator()(pcre2_code *c) const { pcre2_code_free(c); }
};
struct Pcre2MatchDataDeleter {
    void operator()(pcre2_match_data *m) const { pcre2_match_data_free(m); }
};

// One candidate merge in the BPE heap: the pair (a, b) of symbols at nodes left/right.
struct PairEntry {
    int32_t rank;
    int32_t left, right;
    int32_t a, b, merged;
};
// std heap functions build a max-heap: "less" here means later rank, then further right.
struct LaterPair {
    bool operator()(const PairEntry &x, const PairEntry &y) const {
        return x.rank != y.rank ? x.rank > y.rank : x.left > y.left;
    }
};

struct MergeRule {
    int32_t rank;
    int32_t merged;  // symbol of left+right
};

inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

// Scratch space for one encode() call: nothing here is shared between threads.
struct EncodeState {
    std::unique_ptr<pcre2_match_data, Pcre2MatchDataDeleter> match;
    std::unordered_map<std::string_view, std::vector<int32_t>> word_cache;  // views into the input text
    std::vector<int32_t> sym, prev, next;
    std::vector<PairEntry> heap, batch;
};

void require_valid_utf8(std::string_view text) {
    const size_t bad = find_invalid_utf8(text);
    if (bad != std::string_view::npos) {
        throw Error(SEAOPT_ERR_INVALID_UTF8, "invalid UTF-8 at byte offset " + std::to_string(bad));
    }
}

// Pieces longer than this are not cached: they are rare and would only fill the cache.
constexpr size_t kMaxCachedPiece = 64;

// The code point that ends text[0, end) (valid UTF-8).
uint32_t code_point_before(std::string_view text, size_t end) {
    size_t begin = end - 1;
    while (begin > 0 && ((unsigned char)text[begin] & 0xC0) == 0x80) --begin;
    return next_code_point(text, begin).cp;
}

}  // namespace

namespace tok_detail {
bool is_word_char(uint32_t cp) { return in_ranges(kAddedWordChars, cp); }
bool is_added_white_space(uint32_t cp) { return in_ranges(kAddedWhiteSpace, cp); }
}  // namespace tok_detail

struct Tokenizer::Impl {
    TokenizerData data;
    std::vector<TokenType> types;        // effective type of each id (token_types, or the defaults)
    std::vector<std::string> pieces;     // id -> raw bytes, for token_to_piece / decode
    std::unordered_map<std::string, int32_t> token_ids;  // token string -> id, for BPE output

    // BPE symbols: every string that can appear while merging (the 256 byte characters and the
    // parts and results of merges), interned so that merging compares integers.
    std::unordered_map<std::string, int32_t> symbol_ids;
    std::vector<int32_t> symbol_token;  // symbol -> token id, or -1 if the string is not a token
    int32_t byte_symbol[256] = {};
    std::unordered_map<uint64_t, MergeRule> merges;

    struct Added {
        std::string text;
        int32_t id;
        uint32_t flags;  // AddedTokenFlags
        bool special;    // CONTROL: split out only with parse_special
    };
    std::vector<Added> added;  // the CONTROL and USER_DEFINED tokens, each string once
    // Indices into `added`: the tokens of the first pass (not kAddedNormalized) and of the second.
    std::vector<uint32_t> first_pass, second_pass;

    std::unique_ptr<pcre2_code, Pcre2CodeDeleter> regex;

    int32_t intern(const std::string &s) {
        auto it = symbol_ids.find(s);
        if (it != symbol_ids.end()) return it->second;
        const int32_t id = (int32_t)symbol_token.size();
        symbol_ids.emplace(s, id);
        auto t = token_ids.find(s);
        symbol_token.push_back(t == token_ids.end() ? -1 : t->second);
        return id;
    }

    void validate_and_index();
    void compile_regex();
    void bpe_word(std::string_view piece, EncodeState &st, std::vector<int32_t> &out) const;
    // f(piece) for each piece the GPT-2 pattern cuts `chunk` into, in order.
    template <typename F>
    void for_each_piece(std::string_view chunk, EncodeState &st, F f) const;
    void encode_chunk(std::string_view chunk, EncodeState &st, std::vector<int32_t> &out) const;
    // A stretch of the text being encoded: [begin, end), an added token's id or -1 (text for the BPE).
    struct Split {
        size_t begin, end;
        int32_t id;
    };
    void split_added(std::string_view text, size_t begin, size_t end, const std::vector<uint32_t> &set,
                     bool parse_special, std::vector<Split> &out) const;
    EncodeState new_state() const;
    void check_id(int32_t id) const {
        if (id < 0 || id >= (int32_t)data.tokens.size()) {
            throw_invalid_argument("token id " + std::to_string(id) + " is out of range (the vocabulary has " +
                                   std::to_string(data.tokens.size()) + " tokens)");
        }
    }
};

void Tokenizer::Impl::validate_and_index() {
    const size_t n = data.tokens.size();
    if (n == 0) throw_model_format("tokenizer: the token list is empty");
    if (n > (size_t)INT32_MAX) throw_model_format("tokenizer: more than 2^31 tokens");
    if (!data.token_types.empty() && data.token_types.size() != n) {
        throw_model_format("tokenizer: token_types has " + std::to_string(data.token_types.size()) + " entries for " +
                           std::to_string(n) + " tokens");
    }
    const std::pair<const char *, int32_t> specials[] = {
        {"bos_id", data.bos_id}, {"eos_id", data.eos_id}, {"pad_id", data.pad_id}, {"unk_id", data.unk_id}};
    for (const auto &[name, id] : specials) {
        if (id < 0 || (size_t)id >= n) {
            throw_model_format(std::string("tokenizer: ") + name + " " + std::to_string(id) +
                               " is out of range (the vocabulary has " + std::to_string(n) + " tokens)");
        }
    }

    types.resize(n);
    if (data.token_types.empty()) {
        // No types given: everything is NORMAL except the special ids.
        for (size_t i = 0; i < n; ++i) types[i] = TokenType::NORMAL;
        for (const auto &[name, id] : specials) types[id] = TokenType::CONTROL;
    } else {
        for (size_t i = 0; i < n; ++i) {
            const int32_t t = data.token_types[i];
            if (t < (int32_t)TokenType::NORMAL || t > (int32_t)TokenType::BYTE) {
                throw_model_format("tokenizer: token " + std::to_string(i) + " has invalid type " + std::to_string(t));
            }
            types[i] = (TokenType)t;
        }
    }

    // The string -> id map for BPE output: NORMAL tokens first (their strings must be unique), then
    // the other kinds where their string is not already taken. UNUSED padding is never produced.
    token_ids.reserve(n * 2);
    for (size_t i = 0; i < n; ++i) {
        if (types[i] != TokenType::UNUSED && data.tokens[i].empty()) {
            throw_model_format("tokenizer: token " + std::to_string(i) + " is an empty string");
        }
        if (types[i] != TokenType::NORMAL) continue;
        auto [it, inserted] = token_ids.emplace(data.tokens[i], (int32_t)i);
        if (!inserted) {
            throw_model_format("tokenizer: tokens " + std::to_string(it->second) + " and " + std::to_string(i) +
                               " are both " + quote(data.tokens[i]));
        }
    }
    for (size_t i = 0; i < n; ++i) {
        if (types[i] != TokenType::NORMAL && types[i] != TokenType::UNUSED) token_ids.emplace(data.tokens[i], (int32_t)i);
    }

    // Raw bytes of each token, computed once so that decode is a concatenation.
    uint32_t code_point_byte[512];
    std::fill(std::begin(code_point_byte), std::end(code_point_byte), 0xFFFFFFFFu);
    const auto b2cp = byte_to_code_point();
    for (uint32_t b = 0; b < 256; ++b) code_point_byte[b2cp[b]] = b;
    // A token's characters as the bytes they stand for (a character that is not a byte-level one is kept as it is);
    // true where every character was a byte-level one.
    auto byte_level_bytes = [&](const std::string &t, std::string &bytes) {
        bool all = true;
        for (size_t k = 0; k < t.size();) {
            const CodePoint cp = next_code_point(t, k);
            if (cp.ok && cp.cp < 512 && code_point_byte[cp.cp] != 0xFFFFFFFFu) {
                bytes += (char)code_point_byte[cp.cp];
            } else {
                bytes.append(t, k, cp.len);
                all = false;
            }
            k += cp.len;
        }
        return all;
    };
    pieces.resize(n);
    for (size_t i = 0; i < n; ++i) {
        const std::string &t = data.tokens[i];
        switch (types[i]) {
            case TokenType::UNUSED:
                break;  // padding rows of the embedding: no text
            case TokenType::UNKNOWN:
                pieces[i] = t;  // literal text
                break;
            case TokenType::CONTROL:
            case TokenType::USER_DEFINED:
                // Hugging Face's decode passes an added token through the byte-level decoder too: where every
                // character is a byte-level one, the token is those bytes ("é" is the byte 0xE9); else its text.
                if (!byte_level_bytes(t, pieces[i])) pieces[i] = t;
                break;
            case TokenType::BYTE:
                // llama.cpp's "<0xAB>" form; anything else is read as byte-level text below.
                if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit((unsigned char)t[3]) &&
                    std::isxdigit((unsigned char)t[4])) {
                    pieces[i] = std::string(1, (char)std::stoi(t.substr(3, 2), nullptr, 16));
                    break;
                }
                [[fallthrough]];
            case TokenType::NORMAL:
                byte_level_bytes(t, pieces[i]);
                break;
        }
    }

    // The added tokens; one id per string (the lowest). encode() looks for every one of them at each match, so their
    // number is bounded (OPT has 2; a file with a million took minutes to load and tokenized 100 KB in 41 s).
    std::vector<uint32_t> flags_of(n, 0);
    std::vector<bool> has_flags(n, false);
    for (const AddedTokenFlagsEntry &e : data.added_flags) {
        const std::string what = "tokenizer: the added-token flags of id " + std::to_string(e.id);
        if (e.id < 0 || (size_t)e.id >= n) throw_model_format(what + ": the id is out of range");
        if (types[e.id] != TokenType::CONTROL && types[e.id] != TokenType::USER_DEFINED) {
            throw_model_format(what + ": that token is not an added token (CONTROL or USER_DEFINED)");
        }
        if (has_flags[e.id]) throw_model_format(what + ": given twice");
        if (e.flags & ~(uint32_t)kAddedAllFlags) {
            throw_model_format(what + ": unknown flag bits " + std::to_string(e.flags & ~(uint32_t)kAddedAllFlags));
        }
        has_flags[e.id] = true;
        flags_of[e.id] = e.flags;
    }
    std::unordered_set<std::string_view> seen_added;
    for (size_t i = 0; i < n; ++i) {
        if (types[i] != TokenType::CONTROL && types[i] != TokenType::USER_DEFINED) continue;
        if (!seen_added.insert(data.tokens[i]).second) continue;
        if (added.size() == kMaxAddedTokens) {
            throw_model_format("tokenizer: more than " + std::to_string(kMaxAddedTokens) +
                               " distinct added tokens (CONTROL or USER_DEFINED in tokenizer.ggml.token_type; seaopt "
                               "supports at most that many)");
        }
        const uint32_t k = (uint32_t)added.size();
        added.push_back({data.tokens[i], (int32_t)i, flags_of[i], types[i] == TokenType::CONTROL});
        (flags_of[i] & kAddedNormalized ? second_pass : first_pass).push_back(k);
    }

    // BPE symbols and merges.
    for (uint32_t b = 0; b < 256; ++b) byte_symbol[b] = intern(utf8_encode(b2cp[b]));
    merges.reserve(data.merges.size() * 2);
    for (size_t r = 0; r < data.merges.size(); ++r) {
        const std::string &m = data.merges[r];
        const size_t sp = m.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == m.size() || m.find(' ', sp + 1) != std::string::npos) {
            throw_model_format("tokenizer: merge " + std::to_string(r) + " (" + quote(m) +
                               ") is not two space-separated parts");
        }
        if (r > (size_t)INT32_MAX) throw_model_format("tokenizer: more than 2^31 merges");
        const int32_t a = intern(m.substr(0, sp));
        const int32_t b = intern(m.substr(sp + 1));
        const int32_t ab = intern(m.substr(0, sp) + m.substr(sp + 1));
        // A repeated merge takes its last rank, as HF's dict(zip(merges, range(...))) does.
        merges[pair_key(a, b)] = MergeRule{(int32_t)r, ab};
    }
}

void Tokenizer::Impl::compile_regex() {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    const std::string pattern = gpt2_pattern();
    pcre2_code *code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF, &err,
                                     &err_offset, nullptr);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw Error(SEAOPT_ERR_INTERNAL, "tokenizer: the GPT-2 pattern does not compile with PCRE2 at offset " +
                                             std::to_string(err_offset) + ": " + reinterpret_cast<const char *>(msg));
    }
    regex.reset(code);
    // JIT makes pre-tokenizing several times faster; where it is unavailable (no JIT support in the
    // library, or executable memory refused) pcre2_match simply runs the interpreter.
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
}

// HF GPT2Tokenizer.bpe(): repeatedly take the lowest-ranked adjacent pair and merge *all* its
// occurrences left to right, then look again. Done with a heap over a linked list so that a long
// word costs O(n log n) instead of O(n^2). Entries of the lowest rank are taken as one batch, so
// a cheaper pair formed mid-step waits until the step is over, as in HF.
void Tokenizer::Impl::bpe_word(std::string_view piece, EncodeState &st, std::vector<int32_t> &out) const {
    const auto *bytes = reinterpret_cast<const unsigned char *>(piece.data());
    const int32_t n = (int32_t)piece.size();
    auto emit = [&](int32_t symbol) {
        const int32_t t = symbol_token[symbol];
        out.push_back(t >= 0 ? t : data.unk_id);  // HF: encoder.get(token, unk)
    };
    if (n == 1) {
        emit(byte_symbol[bytes[0]]);
        return;
    }
    auto &sym = st.sym, &prev = st.prev, &next = st.next;
    sym.resize(n);
    prev.resize(n);
    next.resize(n);
    for (int32_t i = 0; i < n; ++i) {
        sym[i] = byte_symbol[bytes[i]];
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
    auto &heap = st.heap;
    heap.clear();
    auto push_pair = [&](int32_t l) {
        if (l < 0 || next[l] < 0) return;
        const int32_t r = next[l];
        auto it = merges.find(pair_key(sym[l], sym[r]));
        if (it == merges.end()) return;
        heap.push_back({it->second.rank, l, r, sym[l], sym[r], it->second.merged});
        std::push_heap(heap.begin(), heap.end(), LaterPair{});
    };
    // Merged-away nodes get symbol -1, so a stale entry fails this check.
    auto still_there = [&](const PairEntry &e) { return sym[e.left] == e.a && next[e.left] == e.right && sym[e.right] == e.b; };
    for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

    auto &batch = st.batch;
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), LaterPair{});
        const PairEntry top = heap.back();
        heap.pop_back();
        if (!still_there(top)) continue;
        batch.clear();
        batch.push_back(top);
        while (!heap.empty() && heap.front().rank == top.rank) {
            std::pop_heap(heap.begin(), heap.end(), LaterPair{});
            batch.push_back(heap.back());
            heap.pop_back();
        }
        for (const PairEntry &e : batch) {  // left to right, as the heap orders equal ranks
            if (!still_there(e)) continue;  // overlapped by the previous merge ("a a a")
            sym[e.left] = e.merged;
            sym[e.right] = -1;
            next[e.left] = next[e.right];
            if (next[e.right] >= 0) prev[next[e.right]] = e.left;
            push_pair(prev[e.left]);
            push_pair(e.left);
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i]) emit(sym[i]);
}

template <typename F>
void Tokenizer::Impl::for_each_piece(std::string_view chunk, EncodeState &st, F f) const {
    const auto *subject = reinterpret_cast<PCRE2_SPTR>(chunk.data());
    const size_t len = chunk.size();
    size_t offset = 0;
    while (offset < len) {
        // The text was validated already: skip PCRE2's own UTF check (it would rescan each time).
        int rc = pcre2_match(regex.get(), subject, len, offset, PCRE2_NO_UTF_CHECK, st.match.get(), nullptr);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // a huge piece: the interpreter keeps its stack on the heap
            rc = pcre2_match(regex.get(), subject, len, offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, st.match.get(),
                             nullptr);
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;  // cannot happen: every character matches some branch
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            throw Error(SEAOPT_ERR_INTERNAL, "tokenizer: PCRE2 match failed at byte " + std::to_string(offset) + ": " +
                                                 reinterpret_cast<const char *>(msg));
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st.match.get());
        const size_t start = ov[0], end = ov[1];
        if (end <= start) {  // an empty match gives no tokens (findall); step over one character
            offset = start + next_code_point(chunk, start).len;
            continue;
        }
        offset = end;
        f(chunk.substr(start, end - start));
    }
}

void Tokenizer::Impl::encode_chunk(std::string_view chunk, EncodeState &st, std::vector<int32_t> &out) const {
    for_each_piece(chunk, st, [&](std::string_view piece) {
        if (piece.size() > kMaxCachedPiece) {
            bpe_word(piece, st, out);
            return;
        }
        auto it = st.word_cache.find(piece);
        if (it == st.word_cache.end()) {
            std::vector<int32_t> ids;
            bpe_word(piece, st, ids);
            it = st.word_cache.emplace(piece, std::move(ids)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
    });
}

EncodeState Tokenizer::Impl::new_state() const {
    EncodeState st;
    st.match.reset(pcre2_match_data_create_from_pattern(regex.get(), nullptr));
    if (!st.match) throw Error(SEAOPT_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for PCRE2 match data");
    return st;
}

Tokenizer::Tokenizer(TokenizerData data) : impl_(new Impl) {
    try {
        impl_->data = std::move(data);
        impl_->validate_and_index();
        impl_->compile_regex();
    } catch (...) {
        delete impl_;
        impl_ = nullptr;
        throw;
    }
}

Tokenizer::~Tokenizer() { delete impl_; }
Tokenizer::Tokenizer(Tokenizer &&o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
Tokenizer &Tokenizer::operator=(Tokenizer &&o) noexcept {
    if (this != &o) {
        delete impl_;
        impl_ = o.impl_;
        o.impl_ = nullptr;
    }
    return *this;
}

// `tokenizers`' AddedVocabulary::find_matches on text[begin, end): the tokens of `set` found leftmost first, the
// longest at one place, each search going on after the last match (a match that is then dropped too: a special
// token without parse_special, a single_word token touching a word character); lstrip / rstrip widen a kept match
// over the whitespace beside it (lstrip not back into the previous match).
void Tokenizer::Impl::split_added(std::string_view text, size_t begin, size_t end, const std::vector<uint32_t> &set,
                                  bool parse_special, std::vector<Split> &out) const {
    const std::string_view sentence = text.substr(begin, end - begin);
    const size_t n = sentence.size();
    constexpr size_t npos = std::string_view::npos;
    std::vector<size_t> next_at(set.size(), 0);
    std::vector<bool> fresh(set.size(), false);
    size_t search = 0, cursor = 0;
    while (search < n) {
        size_t at = npos;
        const Added *best = nullptr;
        for (size_t k = 0; k < set.size(); ++k) {
            const Added &a = added[set[k]];
            if (!fresh[k] || (next_at[k] != npos && next_at[k] < search)) {
                next_at[k] = sentence.find(a.text, search);
                fresh[k] = true;
            }
            if (next_at[k] == npos) continue;
            if (at == npos || next_at[k] < at || (next_at[k] == at && a.text.size() > best->text.size())) {
                at = next_at[k];
                best = &a;
            }
        }
        if (!best) break;
        size_t start = at, stop = at + best->text.size();
        search = stop;
        if (best->special && !parse_special) continue;
        if (best->flags & kAddedSingleWord) {
            const bool word_before = start > 0 && is_word_char(code_point_before(sentence, start));
            const bool word_after = stop < n && is_word_char(next_code_point(sentence, stop).cp);
            if (word_before || word_after) continue;
        }
        if (best->flags & kAddedLstrip) {
            size_t s = start;
            while (s > 0) {
                const uint32_t cp = code_point_before(sentence, s);
                if (!is_added_white_space(cp)) break;
                s -= utf8_encode(cp).size();
            }
            start = std::max(s, cursor);
        }
        if (best->flags & kAddedRstrip) {
            while (stop < n) {
                const CodePoint cp = next_code_point(sentence, stop);
                if (!is_added_white_space(cp.cp)) break;
                stop += cp.len;
            }
        }
        if (cursor < start) out.push_back({begin + cursor, begin + start, -1});
        out.push_back({begin + start, begin + stop, best->id});
        cursor = std::max(cursor, stop);
    }
    if (cursor < n) out.push_back({begin + cursor, end, -1});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
    const Impl &im = *impl_;
    if (text.size() > (size_t)INT32_MAX) throw_invalid_argument("text to tokenize is longer than 2^31 - 1 bytes");
    require_valid_utf8(text);
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 4 + 2);
    if (add_bos && im.data.add_bos) ids.push_back(im.data.bos_id);

    EncodeState st = im.new_state();
    if (im.added.empty()) {
        im.encode_chunk(text, st, ids);
        return ids;
    }
    // As `tokenizers`' AddedVocabulary::extract_and_normalize: the tokens that are not "normalized" are split out of
    // the whole text first, then the others out of each stretch of text left between (OPT has no normalizer, so
    // their text is as it is); the BPE encodes each stretch that is left on its own.
    std::vector<Impl::Split> first, splits;
    im.split_added(text, 0, text.size(), im.first_pass, parse_special, first);
    for (const Impl::Split &s : first) {
        if (s.id >= 0) {
            splits.push_back(s);
        } else {
            im.split_added(text, s.begin, s.end, im.second_pass, parse_special, splits);
        }
    }
    for (const Impl::Split &s : splits) {
        if (s.id >= 0) {
            ids.push_back(s.id);
        } else {
            im.encode_chunk(text.substr(s.begin, s.end - s.begin), st, ids);
        }
    }
    return ids;
}

std::vector<std::string_view> Tokenizer::pre_tokenize(std::string_view text) const {
    require_valid_utf8(text);
    EncodeState st = impl_->new_state();
    std::vector<std::string_view> pieces;
    impl_->for_each_piece(text, st, [&](std::string_view piece) { pieces.push_back(piece); });
    return pieces;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
    impl_->check_id(id);
    return impl_->pieces[id];
}

std::string Tokenizer::decode(const std::vector<int32_t> &ids, bool remove_special) const {
    std::string out;
    for (const int32_t id : ids) {
        impl_->check_id(id);
        const TokenType t = impl_->types[id];
        if (remove_special && (t == TokenType::CONTROL || t == TokenType::UNUSED)) continue;
        out += impl_->pieces[id];
    }
    return out;
}

int32_t Tokenizer::n_tokens() const { return (int32_t)impl_->data.tokens.size(); }
int32_t Tokenizer::bos_id() const { return impl_->data.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->data.eos_id; }
int32_t Tokenizer::pad_id() const { return impl_->data.pad_id; }
int32_t Tokenizer::unk_id() const { return impl_->data.unk_id; }
const TokenizerData &Tokenizer::data() const { return impl_->data; }

bool Tokenizer::is_control(int32_t id) const {
    return id >= 0 && id < n_tokens() && impl_->types[id] == TokenType::CONTROL;
}

}  // namespace seaopt
