// tokenizer.json / tokenizer_config.json / special_tokens_map.json -> the added tokens (hf_added_tokens.h).
#include "weights-convert/hf_added_tokens.h"

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
constexpr size_t kMaxTokenizerJsonBytes = 1u << 30;     // a 256k-token vocabulary is ~20 MB
const char *const kTokenKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                  "pad_token", "cls_token", "mask_token"};

// A token as Hugging Face writes it: a string, or an AddedToken object with "content" and the options; null is
// "none" (returns false). `special` is what the token is where it is named (the options' default: normalized =
// !special, as AddedToken(content, special) has it).
bool read_token(const json &v, const std::string &where, bool special, HfAddedToken &out) {
    if (v.is_null()) return false;
    out = HfAddedToken{};
    out.special = special;
    if (v.is_string()) {
        out.content = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
        out.content = v.at("content").get<std::string>();
        auto option = [&](const char *key, bool default_value) {
            auto it = v.find(key);
            if (it == v.end() || it->is_null()) return default_value;
            if (!it->is_boolean()) {
                throw_model_format(where + "'s \"" + key + "\" is " + json_type_words(*it) + ", not true or false");
            }
            return it->get<bool>();
        };
        out.special = option("special", special);
        out.flags = (option("single_word", false) ? kAddedSingleWord : 0u) | (option("lstrip", false) ? kAddedLstrip : 0u) |
                    (option("rstrip", false) ? kAddedRstrip : 0u) |
                    (option("normalized", !out.special) ? kAddedNormalized : 0u);
        out.flags_given = true;
    } else {
        throw_model_format(where + " is " + json_type_words(v) + ", not a token (a string or an object with a "
                                                                 "\"content\" string)");
    }
    if (out.content.empty()) throw_model_format(where + " is an empty token");
    if (tok_detail::find_invalid_utf8(out.content) != std::string::npos) {
        throw_model_format(where + " is not valid UTF-8");
    }
    return true;
}

// Merges what one source says about a token into `all`: the first id and the first options given stand (a later
// source giving another id is refused), and a token is special where any source says so.
void add_token(HfAddedTokens &all, const HfAddedToken &t, const std::string &where) {
    for (HfAddedToken &have : all.tokens) {
        if (have.content != t.content) continue;
        if (t.id >= 0 && have.id >= 0 && t.id != have.id) {
            throw_model_format(where + " gives " + tok_detail::quote(t.content) + " the id " + std::to_string(t.id) +
                               ", another file " + std::to_string(have.id));
        }
        if (have.id < 0) have.id = t.id;
        if (!have.flags_given && t.flags_given) {
            have.flags = t.flags;
            have.flags_given = true;
        }
        have.special = have.special || t.special;
        return;
    }
    all.tokens.push_back(t);
}

int64_t parse_id(const std::string &key, const std::string &where) {
    bool digits = !key.empty() && key.size() <= 10;
    for (char c : key) {
        if (c < '0' || c > '9') digits = false;
    }
    const int64_t id = digits ? std::stoll(key) : -1;
    if (!digits || id > INT32_MAX) throw_model_format(where + " is not a token id (a decimal number)");
    return id;
}

void read_added_tokens_decoder(const json &j, const std::string &what, HfAddedTokens &all) {
    auto dec = j.find("added_tokens_decoder");
    if (dec == j.end() || dec->is_null()) return;
    if (!dec->is_object()) {
        throw_model_format(what + "'s added_tokens_decoder is " + json_type_words(*dec) + ", not an object");
    }
    for (auto it = dec->begin(); it != dec->end(); ++it) {
        const std::string where = what + "'s added_tokens_decoder entry " + tok_detail::quote(it.key());
        const int64_t id = parse_id(it.key(), where);
        HfAddedToken t;
        if (!it->is_object() || !read_token(*it, where, false, t)) {
            throw_model_format(where + " is not an AddedToken object with a \"content\" string");
        }
        t.id = id;
        add_token(all, t, where);
    }
}

void read_tokenizer_json_added(const json &j, HfAddedTokens &all) {
    auto list = j.find("added_tokens");
    if (list == j.end() || list->is_null()) return;
    if (!list->is_array()) throw_model_format(std::string("tokenizer.json's added_tokens is ") + json_type_words(*list) + ", not an array");
    for (size_t i = 0; i < list->size(); ++i) {
        const json &e = (*list)[i];
        const std::string where = "tokenizer.json's added_tokens[" + std::to_string(i) + "]";
        HfAddedToken t;
        if (!e.is_object() || !read_token(e, where, false, t)) {
            throw_model_format(where + " is not an AddedToken object with a \"content\" string");
        }
        auto id = e.find("id");
        if (id == e.end() || !id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() > INT32_MAX) {
            throw_model_format(where + " has no \"id\" (a token id)");
        }
        t.id = id->get<int64_t>();
        add_token(all, t, where);
    }
}

void read_token_list(const json &list, const std::string &where, HfAddedTokens &all) {
    auto one = [&](const json &v, const std::string &at) {
        HfAddedToken t;
        if (read_token(v, at, true, t)) {
            t.special = true;  // named as a special token, whatever the object says
            add_token(all, t, at);
        }
    };
    if (list.is_array()) {
        for (size_t i = 0; i < list.size(); ++i) one(list[i], where + "[" + std::to_string(i) + "]");
    } else if (list.is_object()) {  // transformers 5's extra_special_tokens may name them: {"image_token": "<image>"}
        for (auto it = list.begin(); it != list.end(); ++it) one(*it, where + "." + it.key());
    } else {
        throw_model_format(where + " is " + json_type_words(list) + ", not an array");
    }
}

void read_token_keys(const json &j, const std::string &what, HfAddedTokens &all) {
    for (const char *key : kTokenKeys) {
        auto it = j.find(key);
        if (it == j.end()) continue;
        HfAddedToken t;
        if (!read_token(*it, what + "'s " + key, true, t)) continue;
        t.special = true;
        add_token(all, t, what + "'s " + key);
        if (std::string(key) == "unk_token") all.unk = t.content;
        if (std::string(key) == "bos_token") all.bos = t.content;
    }
    for (const char *key : {"additional_special_tokens", "extra_special_tokens"}) {
        auto it = j.find(key);
        if (it != j.end() && !it->is_null()) read_token_list(*it, what + "'s " + key, all);
    }
}

// added_tokens.json (transformers before 4.34, slow tokenizers): {"content": id}; options AddedToken's defaults.
void read_added_tokens_json(const json &j, HfAddedTokens &all) {
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string where = "added_tokens.json's entry " + tok_detail::quote(it.key());
        HfAddedToken t;
        read_token(json(it.key()), where, false, t);
        if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX) {
            throw_model_format(where + " is " + json_type_words(*it) + ", not a token id");
        }
        t.id = it->get<int64_t>();
        add_token(all, t, where);
    }
}

json parse_object(const std::string &text, const std::string &what) {
    const json j = parse_json_strict(text.data(), text.size(), what);
    if (!j.is_object()) throw_model_format(what + ": is " + std::string(json_type_words(j)) + ", not a JSON object");
    return j;
}

// Each may be null (the file is absent). The options of added_tokens_decoder come first, then tokenizer.json's,
// then the named special tokens' objects; added_tokens.json has ids only.
HfAddedTokens added_tokens(const json *config, const json *map, const json *tokenizer_json,
                           const json *added_tokens_json) {
    HfAddedTokens all;
    all.found = config || map || tokenizer_json || added_tokens_json;
    if (config) read_added_tokens_decoder(*config, "tokenizer_config.json", all);
    if (tokenizer_json) read_tokenizer_json_added(*tokenizer_json, all);
    if (config) read_token_keys(*config, "tokenizer_config.json", all);
    if (map) read_token_keys(*map, "special_tokens_map.json", all);
    if (added_tokens_json) read_added_tokens_json(*added_tokens_json, all);
    return all;
}

}  // namespace

HfAddedTokens parse_hf_added_tokens(const std::string &tokenizer_config, const std::string &special_tokens_map,
                                    const std::string &tokenizer_json, const std::string &added_tokens_json) {
    json config, map, tj, at;
    if (!tokenizer_config.empty()) config = parse_object(tokenizer_config, "tokenizer_config.json");
    if (!special_tokens_map.empty()) map = parse_object(special_tokens_map, "special_tokens_map.json");
    if (!tokenizer_json.empty()) tj = parse_object(tokenizer_json, "tokenizer.json");
    if (!added_tokens_json.empty()) at = parse_object(added_tokens_json, "added_tokens.json");
    return added_tokens(tokenizer_config.empty() ? nullptr : &config, special_tokens_map.empty() ? nullptr : &map,
                        tokenizer_json.empty() ? nullptr : &tj, added_tokens_json.empty() ? nullptr : &at);
}

// `dir`/`name` as a JSON object into `out`; false where the file is absent.
bool read_object_file(const fs::path &dir, const char *name, size_t max_bytes, json &out) {
    std::error_code ec;
    const fs::path path = dir / name;
    if (!fs::exists(path, ec)) return false;
    out = read_json_file(path.string(), name, max_bytes);
    if (!out.is_object()) throw_model_format(std::string(name) + ": is " + json_type_words(out) + ", not a JSON object");
    return true;
}

json read_hf_tokenizer_json(const fs::path &dir) {
    json tj;
    read_object_file(dir, "tokenizer.json", kMaxTokenizerJsonBytes, tj);
    return tj;
}

bool read_hf_tokenizer_config(const fs::path &dir, json &out) {
    return read_object_file(dir, "tokenizer_config.json", kMaxTokenizerConfigBytes, out);
}

HfAddedTokens read_hf_added_tokens(const fs::path &dir, const json *tokenizer_json, const json *tokenizer_config) {
    json map, at;
    const bool have_map = read_object_file(dir, "special_tokens_map.json", kMaxTokenizerConfigBytes, map);
    const bool have_at = read_object_file(dir, "added_tokens.json", kMaxTokenizerConfigBytes, at);
    return added_tokens(tokenizer_config, have_map ? &map : nullptr, tokenizer_json, have_at ? &at : nullptr);
}

std::vector<std::string> apply_hf_added_tokens(const HfAddedTokens &added, TokenizerData &tok) {
    std::vector<std::string> notes;
    if (!added.found) return notes;
    if (added.tokens.size() > kMaxAddedTokens) {
        throw_model_format("the tokenizer files name " + std::to_string(added.tokens.size()) + " added tokens; seaopt " +
                           "supports at most " + std::to_string(kMaxAddedTokens));
    }
    const size_t n = tok.tokens.size();
    std::unordered_map<std::string, int32_t> index;
    for (size_t id = 0; id < n; ++id) {
        if (tok.token_types[id] == (int32_t)TokenType::UNUSED) continue;
        index.emplace(tok.tokens[id], (int32_t)id);
        tok.token_types[id] = (int32_t)TokenType::NORMAL;
    }
    tok.added_flags.clear();
    for (const HfAddedToken &t : added.tokens) {
        const std::string name = tok_detail::quote(t.content);
        const char *kind = t.special ? "special token " : "added token ";
        auto it = index.find(t.content);
        int32_t id = -1;
        if (it != index.end()) {
            id = it->second;
            if (t.id >= 0 && t.id != id) {
                throw_model_format("the tokenizer files give " + name + " the id " + std::to_string(t.id) +
                                   ", but the vocabulary has it at " + std::to_string(id));
            }
        } else if (t.id < 0) {
            notes.push_back(kind + name + " is not in the vocabulary and has no id: seaopt tokenizes it as plain text");
            continue;
        } else if ((size_t)t.id >= n) {
            throw_model_format("the tokenizer files give " + name + " the id " + std::to_string(t.id) +
                               ", but the model has " + std::to_string(n) + " embedding rows");
        } else if (tok.token_types[(size_t)t.id] != (int32_t)TokenType::UNUSED) {
            throw_model_format("the tokenizer files give " + name + " the id " + std::to_string(t.id) +
                               ", which the vocabulary gives to " + tok_detail::quote(tok.tokens[(size_t)t.id]));
        } else {
            id = (int32_t)t.id;
            tok.tokens[(size_t)id] = t.content;
            index.emplace(t.content, id);
            notes.push_back(std::string("added ") + (t.special ? "special " : "") + "token " + name + " has id " +
                            std::to_string(id) + " (a row past the vocabulary)");
        }
        tok.token_types[(size_t)id] = (int32_t)(t.special ? TokenType::CONTROL : TokenType::USER_DEFINED);
        // AddedToken(content, special)'s options where no file gave them: normalized = !special.
        const uint32_t flags = t.flags_given ? t.flags : (t.special ? 0u : (uint32_t)kAddedNormalized);
        if (flags != 0) tok.added_flags.push_back({id, flags});
    }
    if (!added.unk.empty()) {
        auto it = index.find(added.unk);
        if (it != index.end()) tok.unk_id = it->second;
    }
    if (!added.bos.empty()) {
        auto it = index.find(added.bos);
        if (it != index.end()) {
            tok.bos_id = it->second;
        } else {
            notes.push_back("bos_token " + tok_detail::quote(added.bos) + " is not in the vocabulary: seaopt keeps " +
                            tok_detail::quote(tok.tokens[(size_t)tok.bos_id]) + " (id " + std::to_string(tok.bos_id) +
                            ") as the BOS");
        }
    }
    return notes;
}

namespace {

// The tokens one post-processor puts around the text of tokenizer(text), as far as seaopt can run them: the id of
// the one token it puts before the text, -1 where nothing; anything else is refused, naming it.
int64_t post_processor_first_token(const json &pp, const std::string &where) {
    if (pp.is_null()) return -1;
    if (!pp.is_object() || !pp.contains("type") || !pp["type"].is_string()) {
        throw_model_format(where + ": is " + json_type_words(pp) + " without a \"type\" string");
    }
    const std::string type = pp["type"].get<std::string>();
    if (type == "ByteLevel") return -1;  // offsets only
    if (type == "Sequence") {
        const json *list = pp.contains("processors") ? &pp["processors"] : nullptr;
        if (!list || !list->is_array()) throw_model_format(where + ": a Sequence without a \"processors\" array");
        int64_t first = -1;
        for (size_t i = 0; i < list->size(); ++i) {
            const int64_t id = post_processor_first_token((*list)[i], where + ".processors[" + std::to_string(i) + "]");
            if (id < 0) continue;
            if (first >= 0) throw_model_format(where + ": two processors add a BOS; seaopt adds at most one");
            first = id;
        }
        return first;
    }
    if (type != "TemplateProcessing") {
        throw_model_format(where + ": a " + type + " post-processor (seaopt adds at most a BOS before the text, as " +
                           "OPT's TemplateProcessing \"</s> $A\" does)");
    }
    const json *single = pp.contains("single") ? &pp["single"] : nullptr;
    if (!single || !single->is_array()) throw_model_format(where + ": a TemplateProcessing without a \"single\" array");
    // [$A] or [special, $A]
    std::vector<std::string> pieces;  // "A" for the sequence, else the special token's name
    for (size_t i = 0; i < single->size(); ++i) {
        const json &piece = (*single)[i];
        const std::string at = where + ".single[" + std::to_string(i) + "]";
        if (piece.is_object() && piece.size() == 1 && piece.contains("Sequence") && piece["Sequence"].is_object() &&
            piece["Sequence"].value("id", std::string()) == "A") {
            pieces.push_back("A");
        } else if (piece.is_object() && piece.size() == 1 && piece.contains("SpecialToken") &&
                   piece["SpecialToken"].is_object() && piece["SpecialToken"].contains("id") &&
                   piece["SpecialToken"]["id"].is_string()) {
            pieces.push_back(piece["SpecialToken"]["id"].get<std::string>());
            if (pieces.back() == "A") pieces.back() = " A";  // a token named A is not the sequence
        } else {
            throw_model_format(at + ": neither the sequence $A nor a SpecialToken");
        }
    }
    if (pieces == std::vector<std::string>{"A"}) return -1;
    if (pieces.size() != 2 || pieces[1] != "A" || pieces[0] == "A") {
        throw_model_format(where + ": its template for one text puts " + std::to_string(pieces.size()) +
                           " pieces around it; seaopt adds at most one BOS before the text (\"</s> $A\")");
    }
    const std::string &name = pieces[0];
    const json *specials = pp.contains("special_tokens") ? &pp["special_tokens"] : nullptr;
    const json *entry = specials && specials->is_object() && specials->contains(name) ? &(*specials)[name] : nullptr;
    const json *ids = entry && entry->is_object() && entry->contains("ids") ? &(*entry)["ids"] : nullptr;
    if (!ids || !ids->is_array() || ids->size() != 1 || !(*ids)[0].is_number_integer()) {
        throw_model_format(where + ": special_tokens[" + tok_detail::quote(name) + "] does not give it one id");
    }
    const int64_t id = (*ids)[0].get<int64_t>();
    if (id < 0 || id > INT32_MAX) {
        throw_model_format(where + ": special_tokens[" + tok_detail::quote(name) + "] has the id " + std::to_string(id));
    }
    return id;
}

}  // namespace

bool read_hf_add_bos(const json *tokenizer_json, const json *tokenizer_config, int32_t &bos_id,
                     const std::vector<std::string> &tokens, std::vector<std::string> &notes) {
    if (tokenizer_json) {
        // transformers 5.17 runs tokenizer.json's post-processor and ignores tokenizer_config.json's add_bos_token
        // (measured: a config saying false beside a "</s> $A" template still gives the BOS) and its bos_token (a
        // "</s> $A" template beside bos_token "<s>" still gives id 2).
        const json &pp = tokenizer_json->contains("post_processor") ? (*tokenizer_json)["post_processor"] : json();
        const int64_t first = post_processor_first_token(pp, "tokenizer.json's post_processor");
        if (first < 0) return false;
        if ((size_t)first >= tokens.size()) {
            throw_model_format("tokenizer.json's post_processor puts the id " + std::to_string(first) +
                               " before the text, outside the vocabulary of " + std::to_string(tokens.size()));
        }
        if (first != bos_id) {
            notes.push_back("tokenizer.json's post_processor puts " + tok_detail::quote(tokens[(size_t)first]) +
                            " (id " + std::to_string(first) + ") before the text, not the bos_token " +
                            tok_detail::quote(tokens[(size_t)bos_id]) + " (id " + std::to_string(bos_id) +
                            "): it is the BOS, as transformers prepends it");
            bos_id = (int32_t)first;
        }
        return true;
    }
    // vocab.json and merges.txt alone: OPT's hub tokenizer (its tokenizer_config.json says add_bos_token true).
    if (!tokenizer_config) return true;
    const json &config = *tokenizer_config;
    if (!config.contains("add_bos_token") || config["add_bos_token"].is_null()) {
        notes.push_back("tokenizer_config.json has no add_bos_token: no BOS is added, as transformers' GPT2Tokenizer "
                        "does by default (OPT's hub files say true)");
        return false;
    }
    if (!config["add_bos_token"].is_boolean()) {
        throw_model_format("tokenizer_config.json: add_bos_token is " +
                           std::string(json_type_words(config["add_bos_token"])) + ", not true or false");
    }
    return config["add_bos_token"].get<bool>();
}

}  // namespace seaopt::convert
