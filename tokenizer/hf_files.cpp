// Reading Hugging Face's GPT2Tokenizer files (vocab.json + merges.txt, or tokenizer.json) into TokenizerData.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

namespace seaopt {

using tok_detail::quote;

namespace {

std::string read_whole_file(const std::string &path, const char *what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw_io(std::string("cannot open ") + what + " '" + path + "': " + std::strerror(errno));
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) throw_io(std::string("cannot read ") + what + " '" + path + "'");
    return ss.str();
}

bool is_blank(std::string_view s) {
    return s.find_first_not_of(" \t\r\n\v\f") == std::string_view::npos;
}

// vocab (token -> id, ids exactly 0..N-1) and merges ("left right", rank order) -> TokenizerData with '</s>' and
// '<pad>' CONTROL and the rows past the vocabulary UNUSED. `where` names the vocabulary's source in messages.
TokenizerData from_vocab_and_merges(const nlohmann::json &vocab, std::vector<std::string> merges, int32_t n_vocab,
                                    const std::string &vocab_name, const std::string &where) {
    TokenizerData d;
    if (!vocab.is_object()) throw_model_format(vocab_name + " (" + where + ") is not a JSON object of token -> id");
    const size_t count = vocab.size();
    if (count == 0) throw_model_format(vocab_name + " (" + where + ") has no tokens");
    if (n_vocab < 0 || count > (size_t)n_vocab) {
        throw_model_format(vocab_name + " has " + std::to_string(count) +
                           " tokens but the model's vocabulary has only " + std::to_string(n_vocab) + " rows");
    }
    d.tokens.assign((size_t)n_vocab, std::string());
    std::vector<bool> seen(count, false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const nlohmann::json &v = it.value();
        if (!v.is_number_integer()) {
            throw_model_format(vocab_name + ": the id of token " + quote(it.key()) + " is not an integer");
        }
        const int64_t id = v.get<int64_t>();
        if (v.is_number_unsigned() && v.get<uint64_t>() > (uint64_t)INT64_MAX) {
            throw_model_format(vocab_name + ": the id of token " + quote(it.key()) + " is out of range");
        }
        if (id < 0 || (uint64_t)id >= count) {
            throw_model_format(vocab_name + ": token " + quote(it.key()) + " has id " + std::to_string(id) +
                               ", but the " + std::to_string(count) + " ids must be exactly 0.." +
                               std::to_string(count - 1) + " (a gap or an out-of-range id)");
        }
        if (seen[(size_t)id]) {
            throw_model_format(vocab_name + ": tokens " + quote(d.tokens[(size_t)id]) + " and " + quote(it.key()) +
                               " both have id " + std::to_string(id));
        }
        seen[(size_t)id] = true;
        d.tokens[(size_t)id] = it.key();
    }
    // count unique ids in [0, count) means every id is present: no gap left to check.
    d.merges = std::move(merges);

    // ---- types and special ids
    d.token_types.assign((size_t)n_vocab, (int32_t)TokenType::NORMAL);
    auto find_id = [&](const char *s) -> int32_t {
        auto it = vocab.find(s);
        return it == vocab.end() ? -1 : it->get<int32_t>();
    };
    // OPT's tokenizer files on the hub (tokenizer_config.json, special_tokens_map.json): bos = eos = unk = "</s>",
    // pad = "<pad>", and those two are its only special tokens. "<s>", "<unk>" and "<mask>" are in vocab.json but
    // Hugging Face treats them as text. GPT-2's own files have "<|endoftext|>" for every role, so those load too.
    // (seaopt-convert refines this from the checkpoint's tokenizer_config.json where it has one.)
    int32_t eos = find_id("</s>");
    if (eos < 0) eos = find_id("<|endoftext|>");
    if (eos < 0) {
        throw_model_format(vocab_name + " (" + where +
                           ") has no end-of-sequence token ('</s>' for OPT, '<|endoftext|>' for GPT-2)");
    }
    const int32_t pad = find_id("<pad>");
    d.bos_id = eos;
    d.eos_id = eos;
    d.pad_id = pad >= 0 ? pad : eos;
    d.unk_id = eos;
    d.token_types[(size_t)eos] = (int32_t)TokenType::CONTROL;
    d.token_types[(size_t)d.pad_id] = (int32_t)TokenType::CONTROL;

    // ---- padding rows of the embedding matrix, named by their id
    for (size_t id = count; id < (size_t)n_vocab; ++id) {
        d.tokens[id] = "<unused_" + std::to_string(id) + ">";
        d.token_types[id] = (int32_t)TokenType::UNUSED;
    }
    return d;
}

nlohmann::json parse_json_file(const std::string &path, const char *what) {
    const std::string text = read_whole_file(path, what);
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw_model_format(std::string(what) + " is not valid JSON ('" + path + "')");
    return j;
}

// A JSON value for a message: its text, cut short.
std::string json_words(const nlohmann::json &v) {
    std::string s = v.dump();
    if (s.size() > 80) s = s.substr(0, 77) + "...";
    return s;
}

}  // namespace

TokenizerData load_hf_tokenizer(const std::string &vocab_json_path, const std::string &merges_txt_path,
                                int32_t n_vocab) {
    const nlohmann::json vocab = parse_json_file(vocab_json_path, "vocab.json");

    // ---- merges.txt: "#version: 0.2" header, then "left right" per line in rank order
    std::vector<std::string> merges;
    const std::string merges_text = read_whole_file(merges_txt_path, "merges.txt");
    size_t line_start = 0;
    for (size_t line_no = 1; line_start < merges_text.size(); ++line_no) {
        size_t line_end = merges_text.find('\n', line_start);
        if (line_end == std::string::npos) line_end = merges_text.size();
        std::string_view line(merges_text.data() + line_start, line_end - line_start);
        line_start = line_end + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
        if (is_blank(line)) continue;
        // HF splits on any whitespace: "a  b" and "a\tb" are the pair (a, b).
        std::vector<std::string_view> parts;
        size_t p = 0;
        while (p < line.size()) {
            const size_t b = line.find_first_not_of(" \t", p);
            if (b == std::string_view::npos) break;
            const size_t e = std::min(line.size(), line.find_first_of(" \t", b));
            parts.push_back(line.substr(b, e - b));
            p = e;
        }
        if (parts.size() != 2) {
            throw_model_format("merges.txt line " + std::to_string(line_no) + " (" + quote(line) +
                               ") is not two space-separated parts ('" + merges_txt_path + "')");
        }
        merges.push_back(std::string(parts[0]) + " " + std::string(parts[1]));
    }
    return from_vocab_and_merges(vocab, std::move(merges), n_vocab, "vocab.json", "'" + vocab_json_path + "'");
}

TokenizerData load_hf_tokenizer_json(const std::string &path, int32_t n_vocab) {
    return load_hf_tokenizer_json(parse_json_file(path, "tokenizer.json"), n_vocab, "'" + path + "'");
}

TokenizerData load_hf_tokenizer_json(const nlohmann::json &j, int32_t n_vocab, const std::string &where) {
    using nlohmann::json;
    if (!j.is_object()) throw_model_format("tokenizer.json (" + where + ") is not a JSON object");
    auto member = [&](const json &obj, const char *key) -> const json * {
        auto it = obj.find(key);
        return it == obj.end() ? nullptr : &*it;
    };
    auto is_type = [&](const json *v, const char *type) {
        return v && v->is_object() && v->contains("type") && v->at("type") == type;
    };
    // OPT's pipeline (transformers' GPT2Tokenizer): no normalizer, ByteLevel(add_prefix_space=False, use_regex=True)
    // before the model, ByteLevel as the decoder. Another pipeline would give other ids, so it is refused.
    const std::string not_opt = ": seaopt's tokenizer is OPT's (GPT-2's byte-level BPE) and cannot reproduce this one";
    if (const json *norm = member(j, "normalizer"); norm && !norm->is_null()) {
        throw_model_format("tokenizer.json's normalizer is " + json_words(*norm) + not_opt);
    }
    const json *pre = member(j, "pre_tokenizer");
    if (!is_type(pre, "ByteLevel")) {
        throw_model_format("tokenizer.json's pre_tokenizer is " + (pre ? json_words(*pre) : std::string("missing")) +
                           ", not ByteLevel" + not_opt);
    }
    auto flag = [&](const json &obj, const char *key, bool default_value) {
        const json *v = member(obj, key);
        if (!v || v->is_null()) return default_value;
        if (!v->is_boolean()) throw_model_format("tokenizer.json: " + std::string(key) + " is not true or false");
        return v->get<bool>();
    };
    if (flag(*pre, "add_prefix_space", true) || !flag(*pre, "use_regex", true)) {
        throw_model_format("tokenizer.json's pre_tokenizer is " + json_words(*pre) +
                           " (OPT's has add_prefix_space false and use_regex true)" + not_opt);
    }
    if (const json *dec = member(j, "decoder"); !is_type(dec, "ByteLevel")) {
        throw_model_format("tokenizer.json's decoder is " + (dec ? json_words(*dec) : std::string("missing")) +
                           ", not ByteLevel" + not_opt);
    }
    const json *model = member(j, "model");
    if (!model || !model->is_object()) throw_model_format("tokenizer.json (" + where + ") has no \"model\" object");
    if (!is_type(model, "BPE")) {
        const json *type = member(*model, "type");
        throw_model_format("tokenizer.json's model is " + (type ? json_words(*type) : std::string("untyped")) +
                           ", not BPE" + not_opt);
    }
    if (const json *v = member(*model, "dropout"); v && !v->is_null()) {
        throw_model_format("tokenizer.json's BPE has dropout " + json_words(*v) + not_opt);
    }
    for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const json *v = member(*model, key);
        if (v && !v->is_null() && !(v->is_string() && v->get<std::string>().empty())) {
            throw_model_format("tokenizer.json's BPE has " + std::string(key) + " " + json_words(*v) + not_opt);
        }
    }
    for (const char *key : {"byte_fallback", "ignore_merges"}) {
        if (flag(*model, key, false)) throw_model_format("tokenizer.json's BPE has " + std::string(key) + " true" + not_opt);
    }
    const json *vocab = member(*model, "vocab");
    if (!vocab) throw_model_format("tokenizer.json (" + where + ") has no model.vocab");
    const json *merge_list = member(*model, "merges");
    if (!merge_list || !merge_list->is_array()) {
        throw_model_format("tokenizer.json (" + where + ") has no model.merges array");
    }
    // Merges are "left right" strings (tokenizers before 0.20) or ["left", "right"] pairs.
    std::vector<std::string> merges;
    merges.reserve(merge_list->size());
    for (size_t i = 0; i < merge_list->size(); ++i) {
        const json &m = (*merge_list)[i];
        const std::string at = "tokenizer.json's model.merges[" + std::to_string(i) + "] (" + json_words(m) + ")";
        if (m.is_string()) {
            const std::string s = m.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos) {
                throw_model_format(at + " is not two space-separated parts");
            }
            merges.push_back(s);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            const std::string left = m[0].get<std::string>(), right = m[1].get<std::string>();
            if (left.empty() || right.empty() || left.find(' ') != std::string::npos ||
                right.find(' ') != std::string::npos) {
                throw_model_format(at + " has an empty part or a part with a space");
            }
            merges.push_back(left + " " + right);
        } else {
            throw_model_format(at + " is neither a \"left right\" string nor a pair of strings");
        }
    }
    return from_vocab_and_merges(*vocab, std::move(merges), n_vocab, "tokenizer.json's model.vocab", where);
}

}  // namespace seaopt
