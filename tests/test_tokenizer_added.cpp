// Added tokens (chat markers and the like that a fine-tune adds) against Hugging Face's own tokenizer, on references
// made by tests/fixtures/make_added_token_cases.py with transformers (tests/data/tokenizer-added/meta.json has the
// versions): an OPT tokenizer with 15 added tokens covering every AddedToken option (special or not, single_word,
// lstrip, rstrip, normalized; new ids and ids already in the vocabulary), saved by transformers 5 (tokenizer.json +
// tokenizer_config.json, no vocab.json / merges.txt), and
//   - how `tokenizers` classifies every Unicode scalar value as a word character (single_word) and as whitespace
//     (lstrip / rstrip);
//   - 3,000 random texts around the added tokens: ids as tok(text) gives them, with split_special_tokens=True, and
//     decode with and without skip_special_tokens;
//   - the same through the transformers 4 layout (vocab.json, merges.txt, added_tokens_decoder), and through
//     seaopt-convert to a GGUF file and the C API;
//   - tokenizer.json pipelines that are not OPT's are refused.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "codepoint_classes_check.h"
#include "jsonl_cases.h"
#include "engine/error.h"
#include "seaopt.h"
#include "test_convert_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"
#include "weights-convert/convert.h"

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;
using nlohmann::json;

namespace {

const std::string kDir = std::string(SEAOPT_SOURCE_DIR) + "/tests/data/tokenizer-added";
const std::string kOptDir = std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer";

std::string read_text(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

json read_json(const std::string &path) { return json::parse(read_text(path)); }

// j with `key` set to value, or removed where value is null (a file that does not name it).
json with_key(json j, const char *key, const json &value) {
    if (value.is_null()) {
        j.erase(key);
    } else {
        j[key] = value;
    }
    return j;
}

// Whether one of the converter's notes contains `needle`.
bool has_note(const std::vector<std::string> &notes, const std::string &needle) {
    for (const std::string &n : notes) {
        if (n.find(needle) != std::string::npos) return true;
    }
    return false;
}

struct Case {
    std::string text, decoded, decoded_skip;
    Ids ids, ids_split;
};

std::vector<Case> read_cases(const std::string &path) {
    std::vector<Case> v;
    for (const std::string &line : read_case_lines(path)) {
        const json j = json::parse(line);
        v.push_back({j.at("text"), j.at("decoded"), j.at("decoded_skip"), j.at("ids"), j.at("ids_split")});
    }
    return v;
}

const std::vector<Case> &cases() {
    static const std::vector<Case> all = read_cases(kDir + "/cases.jsonl.gz");
    return all;
}

uint32_t n_vocab() { return read_json(kDir + "/meta.json").at("n_tokens").get<uint32_t>(); }

// OPT's merges.txt as tokenizer.json's pairs.
json merge_pairs() {
    json pairs = json::array();
    std::istringstream in(read_text(kOptDir + "/merges.txt"));
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("#version", 0) == 0 || line.empty()) continue;
        const size_t sp = line.find(' ');
        pairs.push_back({line.substr(0, sp), line.substr(sp + 1)});
    }
    return pairs;
}

// The fine-tune's tokenizer.json: the saved skeleton with OPT's vocabulary and merges put back.
json tokenizer_json() {
    json j = read_json(kDir + "/tokenizer_skeleton.json");
    j["model"]["vocab"] = read_json(kOptDir + "/vocab.json");
    j["model"]["merges"] = merge_pairs();
    return j;
}

// The directory transformers 5 saved: tokenizer.json and tokenizer_config.json.
std::string v5_dir(const std::string &root) {
    const std::string dir = root + "/v5";
    fs::create_directories(dir);
    std::ofstream(dir + "/tokenizer.json") << tokenizer_json().dump();
    fs::copy_file(kDir + "/tokenizer_config.json", dir + "/tokenizer_config.json", fs::copy_options::overwrite_existing);
    return dir;
}

// The same tokenizer as transformers 4 saved it: vocab.json, merges.txt, tokenizer_config.json with
// added_tokens_decoder (the reloaded tokenizer's, from meta.json), additional_special_tokens and add_bos_token true
// (transformers 4 saves GPT2Tokenizer's init arguments; OPT's hub config has it: without it, no BOS).
std::string v4_dir(const std::string &root) {
    const std::string dir = root + "/v4";
    fs::create_directories(dir);
    for (const char *f : {"vocab.json", "merges.txt"}) {
        fs::copy_file(kOptDir + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
    }
    json config = read_json(kDir + "/tokenizer_config.json");
    config["additional_special_tokens"] = config.at("extra_special_tokens");
    config.erase("extra_special_tokens");
    config["added_tokens_decoder"] = read_json(kDir + "/meta.json").at("added_tokens_decoder");
    config["add_bos_token"] = true;
    std::ofstream(dir + "/tokenizer_config.json") << config.dump();
    return dir;
}

std::string ids_str(const Ids &ids) {
    std::string s;
    for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
    return s;
}

// Python's bytes.decode("utf-8", "replace") (Rust's from_utf8_lossy: one U+FFFD per maximal invalid subpart), which
// Hugging Face's decode applies to the bytes its byte-level decoder makes.
std::string lossy_utf8(const std::string &s) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        const size_t bad = seaopt::tok_detail::find_invalid_utf8(std::string_view(s).substr(i));
        if (bad == std::string_view::npos) {
            out += s.substr(i);
            break;
        }
        out += s.substr(i, bad);
        i += bad;
        // The maximal subpart: a lead byte and the continuation bytes that fit its allowed ranges.
        const unsigned char c = (unsigned char)s[i];
        size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
        size_t k = 1;
        for (; k < len && i + k < s.size(); ++k) {
            unsigned lo = 0x80, hi = 0xBF;
            if (k == 1 && c == 0xE0) lo = 0xA0;
            if (k == 1 && c == 0xED) hi = 0x9F;
            if (k == 1 && c == 0xF0) lo = 0x90;
            if (k == 1 && c == 0xF4) hi = 0x8F;
            const unsigned char d = (unsigned char)s[i + k];
            if (d < lo || d > hi) break;
        }
        out += "\xEF\xBF\xBD";
        i += k;
    }
    return out;
}

// Every case: ids with special tokens parsed and with split_special_tokens, and both decodes.
void expect_cases_match(const seaopt::Tokenizer &tok, const std::vector<Case> &all = cases(), size_t at_least = 3000) {
    size_t n = 0, wrong = 0;
    for (const Case &c : all) {
        ++n;
        const Ids ids = tok.encode(c.text, true, true), split = tok.encode(c.text, true, false);
        const std::string decoded = lossy_utf8(tok.decode(c.ids, false));
        const std::string skip = lossy_utf8(tok.decode(c.ids, true));
        if (ids != c.ids || split != c.ids_split || decoded != c.decoded || skip != c.decoded_skip) {
            if (++wrong <= 10) {
                ADD_FAILURE() << json(c.text).dump() << "\n  ids   " << ids_str(ids) << "\n  HF    " << ids_str(c.ids)
                              << "\n  split " << ids_str(split) << "\n  HF    " << ids_str(c.ids_split)
                              << "\n  decoded " << json(decoded).dump() << " HF " << json(c.decoded).dump()
                              << "\n  skip    " << json(skip).dump() << " HF " << json(c.decoded_skip).dump();
            }
        }
    }
    EXPECT_EQ(wrong, 0u) << "of " << n << " texts";
    EXPECT_GE(n, at_least);
}

}  // namespace

TEST(TokenizerAdded, WordAndSpaceClassesAreHuggingFaces) {
    expect_codepoint_classes(kDir + "/word_space_classes.txt", [](uint32_t c) {
        return (seaopt::tok_detail::is_word_char(c) ? 1u : 0u) | (seaopt::tok_detail::is_added_white_space(c) ? 2u : 0u);
    });
}

// transformers 5's layout, read as seaopt-convert reads a checkpoint directory.
TEST(TokenizerAdded, Transformers5LayoutMatchesHuggingFace) {
    convert_test::TempDir tmp;
    std::vector<std::string> notes;
    const seaopt::TokenizerData data = seaopt::convert::load_checkpoint_tokenizer(v5_dir(tmp.path()), n_vocab(), notes);
    EXPECT_EQ(data.tokens[50265], "<|im_start|>");
    EXPECT_EQ(data.token_types[50265], (int32_t)seaopt::TokenType::CONTROL);
    EXPECT_EQ(data.token_types[50268], (int32_t)seaopt::TokenType::USER_DEFINED);
    EXPECT_EQ(data.token_types[42891], (int32_t)seaopt::TokenType::USER_DEFINED);  // "hello", in vocab.json
    EXPECT_EQ(data.token_types[3], (int32_t)seaopt::TokenType::NORMAL);            // "<unk>": text
    EXPECT_EQ(notes.size(), 11u);  // one per new id
    expect_cases_match(seaopt::Tokenizer(data));
}

// SEAOPT_TOKENIZER_ADDED_CASES=FILE: more texts, from make_added_token_cases.py --n N --seed S (the same tokenizer).
TEST(TokenizerAdded, MoreTextsFromTheEnvironment) {
    const char *path = std::getenv("SEAOPT_TOKENIZER_ADDED_CASES");
    if (!path || !*path) GTEST_SKIP() << "SEAOPT_TOKENIZER_ADDED_CASES is not set";
    convert_test::TempDir tmp;
    std::vector<std::string> notes;
    const seaopt::TokenizerData data = seaopt::convert::load_checkpoint_tokenizer(v5_dir(tmp.path()), n_vocab(), notes);
    const std::vector<Case> more = read_cases(path);
    expect_cases_match(seaopt::Tokenizer(data), more, 1);
    std::printf("%s: %zu texts\n", path, more.size());
}

TEST(TokenizerAdded, Transformers4LayoutMatchesHuggingFace) {
    convert_test::TempDir tmp;
    std::vector<std::string> notes;
    const seaopt::TokenizerData data = seaopt::convert::load_checkpoint_tokenizer(v4_dir(tmp.path()), n_vocab(), notes);
    expect_cases_match(seaopt::Tokenizer(data));
}

// A transformers 4.2x slow-tokenizer save: vocab.json, merges.txt, added_tokens.json (content -> id, no options),
// special_tokens_map.json naming one of them special. The ids with special tokens parsed are transformers 5.17's
// for this directory (AutoTokenizer on the GPU machine). transformers 5 reads '<|bot|>' as not special (it does
// not take additional_special_tokens from special_tokens_map.json); seaopt keeps what the files say, as
// transformers 4 that wrote them read them: special.
TEST(TokenizerAdded, LegacyAddedTokensJson) {
    convert_test::TempDir tmp;
    const std::string dir = tmp.path() + "/legacy";
    fs::create_directories(dir);
    for (const char *f : {"vocab.json", "merges.txt"}) fs::copy_file(kOptDir + "/" + f, dir + "/" + f);
    std::ofstream(dir + "/added_tokens.json") << R"({"<|user|>": 50265, "<|bot|>": 50266, "[X]": 50267})";
    std::ofstream(dir + "/special_tokens_map.json") << R"({"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>",
        "pad_token": "<pad>", "additional_special_tokens": ["<|bot|>"]})";
    std::ofstream(dir + "/tokenizer_config.json") << R"({"errors": "replace", "add_prefix_space": false,
        "add_bos_token": true, "bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>",
        "tokenizer_class": "GPT2Tokenizer"})";
    std::vector<std::string> notes;
    const seaopt::TokenizerData data = seaopt::convert::load_checkpoint_tokenizer(dir, 50272, notes);
    EXPECT_EQ(data.token_types[50265], (int32_t)seaopt::TokenType::USER_DEFINED);
    EXPECT_EQ(data.token_types[50266], (int32_t)seaopt::TokenType::CONTROL);
    EXPECT_EQ(data.token_types[50267], (int32_t)seaopt::TokenType::USER_DEFINED);
    const seaopt::Tokenizer tok(data);
    const std::pair<const char *, Ids> hf[] = {
        {"a<|user|>b", {2, 102, 50265, 428}},
        {" <|user|> hi<|bot|>x", {2, 1437, 50265, 20280, 50266, 1178}},
        {"[X][X] [X]", {2, 50267, 50267, 1437, 50267}},
        {"<|bot|></s>", {2, 50266, 2}},
        {"x<|user|><|bot|>", {2, 1178, 50265, 50266}},
    };
    for (const auto &[text, ids] : hf) EXPECT_EQ(tok.encode(text, true, true), ids) << text;
    // Without special-token parsing the non-special ones are still split out (transformers 5.17: the same ids).
    EXPECT_EQ(tok.encode("[X][X] [X]", true, false), Ids({2, 50267, 50267, 1437, 50267}));
    EXPECT_EQ(tok.encode("a<|user|>b", true, false), Ids({2, 102, 50265, 428}));
    std::ofstream(dir + "/added_tokens.json") << R"({"<|user|>": "50265"})";
    try {
        seaopt::convert::load_checkpoint_tokenizer(dir, 50272, notes);
        ADD_FAILURE() << "a string id was accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_NE(std::string(e.what()).find("added_tokens.json's entry '<|user|>' is a string, not a token id"),
                  std::string::npos) << e.what();
    }
}

namespace {

// A tiny random checkpoint in root/NAME-ck without vocab.json and merges.txt, its tokenizer files put there by
// put_tokenizer(dir), converted to root/NAME.gguf (returned).
std::string convert_with_tokenizer(const std::string &root, const std::string &name,
                                   const std::function<void(const std::string &)> &put_tokenizer) {
    convert_test::TinyConfig c;
    c.vocab = n_vocab();
    const std::string ck = root + "/" + name + "-ck";
    convert_test::write_hf_checkpoint(ck, c.to_json(), convert_test::make_hf_tensors(c, false), seaopt::convert::DType::F16,
                                      convert_test::Layout::Safetensors, true);
    fs::remove(ck + "/vocab.json");
    fs::remove(ck + "/merges.txt");
    put_tokenizer(ck);
    seaopt::convert::ConvertOptions o;
    o.input_dir = ck;
    o.output_path = root + "/" + name + ".gguf";
    seaopt::convert::convert_checkpoint(o);
    return o.output_path;
}

// The converted file's tokenizer only, through the C API.
seaopt_status load_vocab_only(const std::string &path, seaopt_model **model) {
    seaopt_model_params params = seaopt_model_default_params();
    params.device = SEAOPT_DEVICE_CPU;
    params.vocab_only = true;
    return seaopt_model_load(path.c_str(), &params, model);
}

}  // namespace

// Through the converter to a GGUF file (tokenizer.seaopt.added_token_*), then the C API.
TEST(TokenizerAdded, SurvivesConversionToGguf) {
    convert_test::TempDir tmp;
    const std::string v5 = v5_dir(tmp.path());
    const std::string gguf = convert_with_tokenizer(tmp.path(), "out", [&](const std::string &ck) {
        for (const char *f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(v5 + "/" + f, ck + "/" + f);
    });
    seaopt_model *model = nullptr;
    ASSERT_EQ(load_vocab_only(gguf, &model), SEAOPT_OK) << seaopt_last_error();
    for (int32_t id : {2, 1, 50264, 50265, 50266, 50267}) EXPECT_TRUE(seaopt_token_is_special(model, id)) << id;
    for (int32_t id : {0, 3, 873, 42891, 50268, 50275, -1, 50276}) EXPECT_FALSE(seaopt_token_is_special(model, id)) << id;
    EXPECT_FALSE(seaopt_token_is_special(nullptr, 2));
    size_t n = 0, wrong = 0;
    for (const Case &cs : cases()) {
        if (++n > 500) break;
        for (bool parse_special : {true, false}) {
            std::vector<seaopt_token> ids(cs.text.size() + 2);
            int32_t got = 0;
            ASSERT_EQ(seaopt_tokenize(model, cs.text.data(), cs.text.size(), true, parse_special, ids.data(),
                                      (int32_t)ids.size(), &got),
                      SEAOPT_OK);
            ids.resize((size_t)got);
            if (ids != (parse_special ? cs.ids : cs.ids_split) && ++wrong <= 5) {
                ADD_FAILURE() << json(cs.text).dump() << " parse_special " << parse_special << ": " << ids_str(ids);
            }
        }
        std::string buf(cs.text.size() * 3 + 64, '\0');
        size_t len = 0;
        ASSERT_EQ(seaopt_detokenize(model, cs.ids.data(), (int32_t)cs.ids.size(), true, buf.data(), buf.size(), &len),
                  SEAOPT_OK);
        if (lossy_utf8(buf.substr(0, len)) != cs.decoded_skip && ++wrong <= 5) {
            ADD_FAILURE() << json(cs.text).dump() << " decodes to " << json(lossy_utf8(buf.substr(0, len))).dump();
        }
    }
    EXPECT_EQ(wrong, 0u);
    seaopt_model_free(model);
}

// tokenizer.json pipelines other than OPT's byte-level BPE would tokenize differently: refused, naming the part.
TEST(TokenizerAdded, OtherTokenizerJsonPipelinesAreRefused) {
    convert_test::TempDir tmp;
    const json good = tokenizer_json();
    const std::string path = tmp.path() + "/tokenizer.json";
    auto expect_refused = [&](const json &j, const std::string &needle) {
        std::ofstream(path) << j.dump();
        try {
            seaopt::load_hf_tokenizer_json(path, 50272);
            ADD_FAILURE() << "accepted; expected: " << needle;
        } catch (const seaopt::Error &e) {
            EXPECT_EQ(e.code(), SEAOPT_ERR_MODEL_FORMAT);
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    std::ofstream(path) << good.dump();
    const seaopt::TokenizerData from_pairs = seaopt::load_hf_tokenizer_json(path, 50272);
    EXPECT_EQ(from_pairs.merges.size(), 50000u);
    EXPECT_EQ(from_pairs.merges[0], "\xC4\xA0 t");  // "Ġ t"
    json j = good;
    j["normalizer"] = {{"type", "NFC"}};
    expect_refused(j, "tokenizer.json's normalizer is {\"type\":\"NFC\"}");
    j = good;
    j["pre_tokenizer"] = {{"type", "Metaspace"}};
    expect_refused(j, "pre_tokenizer is {\"type\":\"Metaspace\"}, not ByteLevel");
    j = good;
    j["pre_tokenizer"]["add_prefix_space"] = true;
    expect_refused(j, "OPT's has add_prefix_space false");
    j = good;
    j["decoder"] = nullptr;
    expect_refused(j, "decoder is null, not ByteLevel");
    j = good;
    j["model"]["type"] = "WordPiece";
    expect_refused(j, "model is \"WordPiece\", not BPE");
    j = good;
    j["model"]["ignore_merges"] = true;
    expect_refused(j, "BPE has ignore_merges true");
    j = good;
    j["model"]["merges"][3] = json::array({"a"});
    expect_refused(j, "model.merges[3] ([\"a\"]) is neither");
    j = good;
    j["model"]["merges"][4] = "ab";
    expect_refused(j, "model.merges[4] (\"ab\") is not two space-separated parts");
    j = good;
    j["model"].erase("vocab");
    expect_refused(j, "has no model.vocab");
    // Merges as "left right" strings (tokenizers before 0.20) load too.
    j = good;
    for (json &m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
    std::ofstream(path) << j.dump();
    EXPECT_EQ(seaopt::load_hf_tokenizer_json(path, 50272).merges, from_pairs.merges);
}

// Whether tokenizer(text) starts with the BOS, as transformers 5.17 decides it (measured on the GPU machine with OPT's
// vocab.json / merges.txt, this session's probe): with tokenizer.json its post_processor alone decides ("</s> $A":
// [2, 31414, 232] for "Hello world"; "$A", as transformers saves a tokenizer loaded with add_bos_token false, and a
// null or ByteLevel post_processor: [31414, 232]; tokenizer_config.json's add_bos_token false beside "</s> $A" still
// gives the BOS); without it tokenizer_config.json's add_bos_token (absent: no BOS). Through the GGUF to the C API.
TEST(TokenizerAdded, BosAsTransformersAddsIt) {
    convert_test::TempDir tmp;
    const Ids with_bos{2, 31414, 232}, without{31414, 232};
    auto load = [&](const std::string &dir, std::vector<std::string> *notes_out = nullptr) {
        std::vector<std::string> notes;
        seaopt::TokenizerData d = seaopt::convert::load_checkpoint_tokenizer(dir, n_vocab(), notes);
        if (notes_out) *notes_out = notes;
        return d;
    };
    auto encode = [](const seaopt::TokenizerData &d) { return seaopt::Tokenizer(d).encode("Hello world", true, true); };
    const std::string v5 = v5_dir(tmp.path());
    EXPECT_EQ(encode(load(v5)), with_bos);
    const json template_bos = tokenizer_json()["post_processor"];
    auto with_post_processor = [&](const json &pp) {
        json j = tokenizer_json();
        j["post_processor"] = pp;
        std::ofstream(v5 + "/tokenizer.json") << j.dump();
    };
    json a_only = template_bos;
    a_only["single"] = json::array({{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}});
    a_only["special_tokens"] = json::object();
    for (const json &pp : {a_only, json(nullptr), json{{"type", "ByteLevel"}, {"add_prefix_space", true},
                                                         {"trim_offsets", false}, {"use_regex", true}}}) {
        with_post_processor(pp);
        EXPECT_EQ(encode(load(v5)), without) << pp.dump();
    }
    with_post_processor({{"type", "Sequence"},
                         {"processors", json::array({json{{"type", "ByteLevel"}, {"trim_offsets", false}}, template_bos})}});
    EXPECT_EQ(encode(load(v5)), with_bos);
    // The config's add_bos_token does not override tokenizer.json's template.
    with_post_processor(template_bos);
    json config = read_json(v5 + "/tokenizer_config.json");
    config["add_bos_token"] = false;
    std::ofstream(v5 + "/tokenizer_config.json") << config.dump();
    EXPECT_EQ(encode(load(v5)), with_bos);
    // What seaopt cannot run is refused, naming it.
    auto expect_refused = [&](const json &pp, const std::string &needle) {
        with_post_processor(pp);
        try {
            load(v5);
            ADD_FAILURE() << "accepted; expected: " << needle;
        } catch (const seaopt::Error &e) {
            EXPECT_EQ(e.code(), SEAOPT_ERR_MODEL_FORMAT);
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    json eos_after = template_bos;
    eos_after["single"].push_back({{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}});
    expect_refused(eos_after, "its template for one text puts 3 pieces around it");
    json huge_first = template_bos;
    huge_first["special_tokens"]["</s>"]["ids"] = {1 << 30};
    expect_refused(huge_first, "puts the id 1073741824 before the text, outside the vocabulary");
    expect_refused({{"type", "RobertaProcessing"}, {"sep", {"</s>", 2}}, {"cls", {"<s>", 0}}},
                   "a RobertaProcessing post-processor");
    expect_refused({{"type", "Sequence"}, {"processors", json::array({template_bos, template_bos})}},
                   "two processors add a BOS");

    // Which token: the template's, whatever bos_token says (transformers 5.17, measured: a "<s> $A" template beside
    // bos_token "</s>" gives [0, 31414, 232]; "</s> $A" beside bos_token "<s>" gives [2, ...]).
    auto expect_first = [&](const json &pp, const json &bos_token, const Ids &ids, const std::string &note) {
        with_post_processor(pp);
        json c = read_json(kDir + "/tokenizer_config.json");
        c["bos_token"] = bos_token;
        std::ofstream(v5 + "/tokenizer_config.json") << c.dump();
        std::vector<std::string> notes;
        EXPECT_EQ(encode(load(v5, &notes)), ids) << pp.dump() << " bos_token " << bos_token.dump();
        EXPECT_TRUE(note.empty() || has_note(notes, note)) << "no note: " << note;
    };
    json s_first = template_bos;
    s_first["single"][0]["SpecialToken"]["id"] = "<s>";
    s_first["special_tokens"] = {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}}};
    const std::string s_note = "puts '<s>' (id 0) before the text, not the bos_token '</s>' (id 2): it is the BOS";
    expect_first(s_first, "</s>", Ids{0, 31414, 232}, s_note);
    expect_first(s_first, "<s>", Ids{0, 31414, 232}, "");
    expect_first(template_bos, "<s>", with_bos, "puts '</s>' (id 2) before the text, not the bos_token '<s>' (id 0)");
    json pad_first = template_bos;
    pad_first["single"][0]["SpecialToken"]["id"] = "<pad>";
    pad_first["special_tokens"] = {{"<pad>", {{"id", "<pad>"}, {"ids", {1}}, {"tokens", {"<pad>"}}}}};
    expect_first(pad_first, "</s>", Ids{1, 31414, 232}, "puts '<pad>' (id 1) before the text");
    fs::copy_file(kDir + "/tokenizer_config.json", v5 + "/tokenizer_config.json", fs::copy_options::overwrite_existing);

    // Without tokenizer.json: tokenizer_config.json's add_bos_token; no config at all: OPT's hub tokenizer's (true).
    const std::string v4 = v4_dir(tmp.path());
    json v4_config = read_json(v4 + "/tokenizer_config.json");
    for (const json &value : {json(true), json(false), json()}) {
        std::ofstream(v4 + "/tokenizer_config.json") << with_key(v4_config, "add_bos_token", value).dump();
        std::vector<std::string> notes;
        EXPECT_EQ(encode(load(v4, &notes)), value.is_boolean() && value.get<bool>() ? with_bos : without) << value.dump();
        EXPECT_EQ(has_note(notes, "has no add_bos_token: no BOS is added"), value.is_null());
    }
    v4_config["add_bos_token"] = "yes";
    std::ofstream(v4 + "/tokenizer_config.json") << v4_config.dump();
    try {
        load(v4);
        ADD_FAILURE() << "a string add_bos_token was accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_NE(std::string(e.what()).find("add_bos_token is a string, not true or false"), std::string::npos) << e.what();
    }
    // The BOS is bos_token, special_tokens_map.json's over tokenizer_config.json's (transformers 5.17, measured: "<s>"
    // in both gives [0, 31414, 232], "<s>" in the config beside "</s>" in the map [2, ...], "<s>" alone [0, ...]).
    v4_config["add_bos_token"] = true;
    auto expect_v4 = [&](const json &config_bos, const json &map_bos, const Ids &ids) {
        std::ofstream(v4 + "/tokenizer_config.json") << with_key(v4_config, "bos_token", config_bos).dump();
        fs::remove(v4 + "/special_tokens_map.json");
        if (!map_bos.is_null()) std::ofstream(v4 + "/special_tokens_map.json") << json{{"bos_token", map_bos}}.dump();
        std::vector<std::string> notes;
        EXPECT_EQ(encode(load(v4, &notes)), ids) << config_bos.dump() << " " << map_bos.dump();
        return notes;
    };
    expect_v4("<s>", "<s>", Ids{0, 31414, 232});
    expect_v4("<s>", "</s>", with_bos);
    expect_v4(json{{"content", "<s>"}, {"special", true}}, json(), Ids{0, 31414, 232});
    // No bos_token anywhere: transformers would add its default '<|endoftext|>' as a new token; seaopt says so.
    EXPECT_TRUE(has_note(expect_v4(json(), json(), with_bos), "no file names the bos_token"));
    // A bos_token that is not in the vocabulary: the default stays, with a note.
    EXPECT_TRUE(has_note(expect_v4("<nope>", json(), with_bos), "bos_token '<nope>' is not in the vocabulary"));
    fs::remove(v4 + "/special_tokens_map.json");
    fs::remove(v4 + "/tokenizer_config.json");
    EXPECT_EQ(encode(load(v4)), with_bos);

    // A converted checkpoint whose tokenizer adds no BOS: the GGUF says so, the C API follows it.
    const std::string gguf = convert_with_tokenizer(tmp.path(), "no-bos", [&](const std::string &ck) {
        json j = tokenizer_json();
        j["post_processor"] = a_only;
        std::ofstream(ck + "/tokenizer.json") << j.dump();
    });
    seaopt_model *model = nullptr;
    ASSERT_EQ(load_vocab_only(gguf, &model), SEAOPT_OK) << seaopt_last_error();
    EXPECT_FALSE(seaopt_model_add_bos(model));
    EXPECT_FALSE(seaopt_model_add_bos(nullptr));
    std::vector<seaopt_token> ids(8);
    int32_t got = 0;
    ASSERT_EQ(seaopt_tokenize(model, "Hello world", 11, true, true, ids.data(), 8, &got), SEAOPT_OK);
    ids.resize((size_t)got);
    EXPECT_EQ(ids, without);
    seaopt_model_free(model);
}
