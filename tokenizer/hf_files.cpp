// Reading Hugging Face's GPT2Tokenizer files (vocab.json + merges.txt) into TokenizerData.
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

}  // namespace

TokenizerData load_hf_tokenizer(const std::string &vocab_json_path, const std::string &merges_txt_path,
                                int32_t n_vocab) {
    TokenizerData d;

    // ---- vocab.json: {"token": id, ...} with ids exactly 0..N-1
    const std::string vocab_text = read_whole_file(vocab_json_path, "vocab.json");
    const nlohmann::json vocab = nlohmann::json::parse(vocab_text, nullptr, /*allow_exceptions=*/false);
    if (vocab.is_discarded()) throw_model_format("vocab.json is not valid JSON ('" + vocab_json_path + "')");
    if (!vocab.is_object()) {
        throw_model_format("vocab.json ('" + vocab_json_path + "') is not a JSON object of token -> id");
    }
    const size_t count = vocab.size();
    if (count == 0) throw_model_format("vocab.json ('" + vocab_json_path + "') has no tokens");
    if (n_vocab < 0 || count > (size_t)n_vocab) {
        throw_model_format("vocab.json has " + std::to_string(count) + " tokens but the model's vocabulary has only " +
                           std::to_string(n_vocab) + " rows");
    }
    d.tokens.assign((size_t)n_vocab, std::string());
    std::vector<bool> seen(count, false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const nlohmann::json &v = it.value();
        if (!v.is_number_integer()) {
            throw_model_format("vocab.json: the id of token " + quote(it.key()) + " is not an integer");
        }
        const int64_t id = v.get<int64_t>();
        if (v.is_number_unsigned() && v.get<uint64_t>() > (uint64_t)INT64_MAX) {
            throw_model_format("vocab.json: the id of token " + quote(it.key()) + " is out of range");
        }
        if (id < 0 || (uint64_t)id >= count) {
            throw_model_format("vocab.json: token " + quote(it.key()) + " has id " + std::to_string(id) + ", but the " +
                               std::to_string(count) + " ids must be exactly 0.." + std::to_string(count - 1) +
                               " (a gap or an out-of-range id)");
        }
        if (seen[(size_t)id]) {
            throw_model_format("vocab.json: tokens " + quote(d.tokens[(size_t)id]) + " and " + quote(it.key()) +
                               " both have id " + std::to_string(id));
        }
        seen[(size_t)id] = true;
        d.tokens[(size_t)id] = it.key();
    }
    // count unique ids in [0, count) means every id is present: no gap left to check.

    // ---- merges.txt: "#version: 0.2" header, then "left right" per line in rank order
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
        d.merges.push_back(std::string(parts[0]) + " " + std::string(parts[1]));
    }

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
        throw_model_format("vocab.json ('" + vocab_json_path +
                           "') has no end-of-sequence token ('</s>' for OPT, '<|endoftext|>' for GPT-2)");
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

}  // namespace seaopt
