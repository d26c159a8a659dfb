// tokenizer_config.json / special_tokens_map.json -> which tokens are special (hf_special_tokens.h).
#include "weights-convert/hf_special_tokens.h"

#include <system_error>
#include <unordered_map>

#include "engine/error.h"
#include "tokenizer/tokenizer_internal.h"
#include "weights-convert/json_strict.h"

namespace seaopt::convert {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kMaxTokenizerConfigBytes = 64u << 20;  // chat templates make some large; not 64 MiB large
const char *const kTokenKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                  "pad_token", "cls_token", "mask_token"};

// A token as Hugging Face writes it: a string, or an AddedToken object with "content"; null is "none".
// Returns false for null.
bool token_content(const json &v, const std::string &where, std::string &out) {
    if (v.is_null()) return false;
    if (v.is_string()) {
        out = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
        out = v.at("content").get<std::string>();
    } else {
        throw_model_format(where + " is " + json_type_words(v) + ", not a token (a string or an object with a "
                                                                 "\"content\" string)");
    }
    if (out.empty()) throw_model_format(where + " is an empty token");
    if (tok_detail::find_invalid_utf8(out) != std::string::npos) throw_model_format(where + " is not valid UTF-8");
    return true;
}

void add_special(HfSpecialTokens &st, const std::string &content, int64_t id) {
    for (HfAddedToken &t : st.special) {
        if (t.content == content) {
            if (t.id < 0) t.id = id;
            return;
        }
    }
    st.special.push_back({content, id});
}

void read_token_keys(const json &j, const std::string &what, HfSpecialTokens &st) {
    for (const char *key : kTokenKeys) {
        auto it = j.find(key);
        if (it == j.end()) continue;
        std::string content;
        if (!token_content(*it, what + "'s " + key, content)) continue;
        add_special(st, content, -1);
        if (std::string(key) == "unk_token") st.unk = content;
    }
    auto extra = j.find("additional_special_tokens");
    if (extra != j.end() && !extra->is_null()) {
        if (!extra->is_array()) {
            throw_model_format(what + "'s additional_special_tokens is " + json_type_words(*extra) + ", not an array");
        }
        for (size_t i = 0; i < extra->size(); ++i) {
            std::string content;
            if (token_content((*extra)[i], what + "'s additional_special_tokens[" + std::to_string(i) + "]", content)) {
                add_special(st, content, -1);
            }
        }
    }
}

json parse_object(const std::string &text, const std::string &what) {
    const json j = parse_json_strict(text.data(), text.size(), what);
    if (!j.is_object()) throw_model_format(what + ": is " + std::string(json_type_words(j)) + ", not a JSON object");
    return j;
}

// Either may be null (the file is absent).
HfSpecialTokens special_tokens(const json *config, const json *map) {
    HfSpecialTokens st;
    if (config) {
        const std::string what = "tokenizer_config.json";
        const json &j = *config;
        st.found = true;
        auto dec = j.find("added_tokens_decoder");
        if (dec != j.end() && !dec->is_null()) {
            if (!dec->is_object()) {
                throw_model_format(what + "'s added_tokens_decoder is " + json_type_words(*dec) + ", not an object");
            }
            for (auto it = dec->begin(); it != dec->end(); ++it) {
                const std::string &key = it.key();
                const std::string where = what + "'s added_tokens_decoder entry " + tok_detail::quote(key);
                int64_t id = 0;
                bool digits = !key.empty() && key.size() <= 10;
                for (char c : key) {
                    if (c < '0' || c > '9') digits = false;
                }
                if (digits) id = std::stoll(key);
                if (!digits || id > INT32_MAX) throw_model_format(where + " is not a token id (a decimal number)");
                std::string content;
                if (!it->is_object() || !token_content(*it, where, content)) {
                    throw_model_format(where + " is not an AddedToken object with a \"content\" string");
                }
                auto special = it->find("special");
                if (special != it->end() && !special->is_boolean()) {
                    throw_model_format(where + "'s \"special\" is " + json_type_words(*special) + ", not true or false");
                }
                if (special != it->end() && special->get<bool>()) {
                    add_special(st, content, id);
                } else {
                    st.not_special.push_back(content);
                }
            }
        }
        read_token_keys(j, what, st);
    }
    if (map) {
        st.found = true;
        read_token_keys(*map, "special_tokens_map.json", st);
    }
    return st;
}

}  // namespace

HfSpecialTokens parse_hf_special_tokens(const std::string &tokenizer_config, const std::string &special_tokens_map) {
    json config, map;
    if (!tokenizer_config.empty()) config = parse_object(tokenizer_config, "tokenizer_config.json");
    if (!special_tokens_map.empty()) map = parse_object(special_tokens_map, "special_tokens_map.json");
    return special_tokens(tokenizer_config.empty() ? nullptr : &config,
                          special_tokens_map.empty() ? nullptr : &map);
}

HfSpecialTokens read_hf_special_tokens(const fs::path &dir) {
    auto read = [&](const char *name, json &out) {
        std::error_code ec;
        const fs::path path = dir / name;
        if (!fs::exists(path, ec)) return false;
        out = read_json_file(path.string(), name, kMaxTokenizerConfigBytes);
        if (!out.is_object()) throw_model_format(std::string(name) + ": is " + json_type_words(out) + ", not a JSON object");
        return true;
    };
    json config, map;
    const bool have_config = read("tokenizer_config.json", config), have_map = read("special_tokens_map.json", map);
    return special_tokens(have_config ? &config : nullptr, have_map ? &map : nullptr);
}

std::vector<std::string> apply_hf_special_tokens(const HfSpecialTokens &st, TokenizerData &tok) {
    std::vector<std::string> notes;
    if (!st.found) return notes;
    if (st.special.size() > kMaxSpecialTokens) {
        throw_model_format("the tokenizer files name " + std::to_string(st.special.size()) + " special tokens; seaopt " +
                           "supports at most " + std::to_string(kMaxSpecialTokens));
    }
    const size_t n = tok.tokens.size();
    std::unordered_map<std::string, int32_t> index;
    for (size_t id = 0; id < n; ++id) {
        if (tok.token_types[id] == (int32_t)TokenType::UNUSED) continue;
        index.emplace(tok.tokens[id], (int32_t)id);
        tok.token_types[id] = (int32_t)TokenType::NORMAL;
    }
    for (const HfAddedToken &t : st.special) {
        const std::string name = tok_detail::quote(t.content);
        auto it = index.find(t.content);
        int32_t id = -1;
        if (it != index.end()) {
            id = it->second;
            if (t.id >= 0 && t.id != id) {
                throw_model_format("tokenizer_config.json's added_tokens_decoder gives " + name + " the id " +
                                   std::to_string(t.id) + ", but vocab.json has it at " + std::to_string(id));
            }
        } else if (t.id < 0) {
            notes.push_back("special token " + name + " is not in vocab.json and has no id: seaopt tokenizes it as "
                            "plain text");
            continue;
        } else if ((size_t)t.id >= n) {
            throw_model_format("tokenizer_config.json's added_tokens_decoder gives " + name + " the id " +
                               std::to_string(t.id) + ", but the model has " + std::to_string(n) + " embedding rows");
        } else if (tok.token_types[(size_t)t.id] != (int32_t)TokenType::UNUSED) {
            throw_model_format("tokenizer_config.json's added_tokens_decoder gives " + name + " the id " +
                               std::to_string(t.id) + ", which vocab.json gives to " +
                               tok_detail::quote(tok.tokens[(size_t)t.id]));
        } else {
            id = (int32_t)t.id;
            tok.tokens[(size_t)id] = t.content;
            index.emplace(t.content, id);
            notes.push_back("added special token " + name + " has id " + std::to_string(id) + " (a row past vocab.json)");
        }
        tok.token_types[(size_t)id] = (int32_t)TokenType::CONTROL;
    }
    if (!st.unk.empty()) {
        auto it = index.find(st.unk);
        if (it != index.end()) tok.unk_id = it->second;
    }
    for (const std::string &s : st.not_special) {
        notes.push_back("added token " + tok_detail::quote(s) + " is not special; seaopt does not split it out of "
                        "text as Hugging Face does (it is tokenized by BPE)");
    }
    return notes;
}

}  // namespace seaopt::convert
