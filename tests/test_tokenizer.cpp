// The GPT-2 byte-level BPE tokenizer against reference ids: the ids published in transformers'
// tests, ids computed by the reference implementation /work/shared/data/tools/bpe_ref.py (Python
// `regex` module + the HF GPT2Tokenizer.bpe algorithm), the 26 reference cases and the full
// WikiText-2 test text (shared data). Expected ids never come from this tokenizer itself.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/error.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using seaopt::Error;
using seaopt::Tokenizer;
using seaopt::TokenizerData;
using seaopt::TokenType;
using Ids = std::vector<int32_t>;

namespace {

constexpr int32_t kOptVocab = 50272;  // the OPT embedding rows

const std::string kOptDir = std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer";

// Loaded once: building the merge tables takes a noticeable fraction of a second.
const Tokenizer &opt() {
    static const Tokenizer tok(seaopt::load_hf_tokenizer(kOptDir + "/vocab.json", kOptDir + "/merges.txt", kOptVocab));
    return tok;
}

[[maybe_unused]] std::string read_file(const std::string &path) {  // (used only where ../shared exists)
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("test: cannot open " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string ids_str(const Ids &ids, size_t from = 0, size_t to = SIZE_MAX) {
    std::string s;
    for (size_t i = from; i < ids.size() && i < to; ++i) s += (s.empty() ? "" : " ") + std::to_string(ids[i]);
    return s;
}

// Runs f, expects a seaopt::Error with `code` whose message contains `needle`.
void expect_error(const std::function<void()> &f, seaopt_status code, const std::string &needle = "") {
    try {
        f();
        ADD_FAILURE() << "no error thrown (expected code " << code << ")";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
            << "message '" << e.what() << "' does not mention '" << needle << "'";
    }
}

// A scratch directory for the bad-file tests, removed afterwards.
struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() /
               ("seaopt_tok_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id())) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string &name, const std::string &content) const {
        const fs::path p = path / name;
        std::ofstream(p, std::ios::binary) << content;
        return p.string();
    }
};

// Valid byte-level data with a handful of tokens, for the validation tests.
TokenizerData small_data() {
    TokenizerData d;
    d.tokens = {"<s>", "<pad>", "</s>", "<unk>", "a", "b", "ab", "aba", "abab", "Ġ"};
    d.token_types = {3, 3, 3, 3, 1, 1, 1, 1, 1, 1};
    d.merges = {"ab a", "a b"};
    d.bos_id = 2;
    d.eos_id = 2;
    d.pad_id = 1;
    d.unk_id = 3;
    return d;
}

}  // namespace

// ---- known ids --------------------------------------------------------------------------------

TEST(Tokenizer, LoadsHfFilesPaddedToModelVocab) {
    const Tokenizer &t = opt();
    EXPECT_EQ(t.n_tokens(), kOptVocab);
    EXPECT_EQ(t.bos_id(), 2);
    EXPECT_EQ(t.eos_id(), 2);
    EXPECT_EQ(t.pad_id(), 1);
    EXPECT_EQ(t.unk_id(), 2);  // OPT's tokenizer_config.json: unk_token "</s>"
    const TokenizerData &d = t.data();
    EXPECT_EQ(d.tokens[0], "<s>");
    EXPECT_EQ(d.tokens[5], "Ġthe");
    EXPECT_EQ(d.tokens[50264], "<mask>");
    EXPECT_EQ(d.tokens[50265], "<unused_50265>");
    EXPECT_EQ(d.tokens[50271], "<unused_50271>");
    EXPECT_EQ(d.merges.size(), 50000u);
    EXPECT_EQ(d.merges[0], "Ġ t");
    // Hugging Face's special tokens for OPT are '</s>' and '<pad>' only; '<s>', '<unk>', '<mask>' are text to it.
    for (int32_t id : {1, 2}) EXPECT_TRUE(t.is_control(id)) << id;
    for (int32_t id : {0, 3, 50264, 4, 5, 50260, 50261, 50265}) EXPECT_FALSE(t.is_control(id)) << id;
    EXPECT_EQ(d.token_types[50260], (int32_t)TokenType::NORMAL);  // <|endoftext|> is plain text for OPT
    EXPECT_EQ(d.token_types[50271], (int32_t)TokenType::UNUSED);
}

TEST(Tokenizer, KnownIds) {
    // transformers' RoBERTa/BART/OPT integration tests and the OPT model card.
    EXPECT_EQ(opt().encode("Hello", false, false), Ids({31414}));
    EXPECT_EQ(opt().encode("Hello", true, false), Ids({2, 31414}));
    EXPECT_EQ(opt().encode("Hello world! cécé herlolip", false, false),
              Ids({31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588}));
    EXPECT_EQ(opt().encode("", false, false), Ids());
    EXPECT_EQ(opt().encode("", true, false), Ids({2}));
}

TEST(Tokenizer, WhitespaceAndUnicodeClassesAsPythonRegex) {
    // Expected ids from tools/bpe_ref.py. U+180E is not whitespace for Python's `regex` (PCRE2's \s
    // would match it); U+0085, U+00A0, U+3000, \v, \f are; \x1c-\x1f are not.
    struct Case {
        const char *text;
        Ids ids;
    };
    const Case cases[] = {
        {"a \xE1\xA0\x8E" "b", {102, 25974, 21402, 12736, 428}},
        {"a\xE1\xA0\x8E" "b", {102, 1376, 21402, 12736, 428}},
        {"a\xC2\x85" "b", {102, 4056, 5782, 428}},
        {"\xC2\x85\xC2\x85x", {4056, 5782, 4056, 5782, 1178}},
        {"a\x1c" "b", {102, 50136, 428}},
        {"a \x1c b", {102, 1437, 50136, 741}},
        {"a\x1f\x1f!", {102, 50139, 50139, 328}},
        {"x\v\f\r\ny", {1178, 50119, 50120, 50121, 50118, 219}},
        {"a\xE3\x80\x80\xE3\x80\x80" "b", {102, 48516, 7471, 48516, 7471, 428}},
        {"a\xC2\xA0" "b", {102, 50141, 428}},
        {"   x", {1437, 1437, 3023}},
        {"x   \n\n  y  ", {1178, 1437, 1437, 1437, 50140, 1437, 1423, 1437, 1437}},
        {"\xF0\x9F\x98\x80", {18636, 7471}},
        {"日本語のテキスト", {47954, 8210, 44636, 11582, 48537, 17772, 48018, 49312, 49587, 49615}},
        {"<unused_50265>", {41552, 879, 6199, 1215, 1096, 26330, 15698}},
        {"a<|endoftext|>b", {102, 41552, 15483, 1397, 1116, 29015, 15483, 15698, 428}},
    };
    for (const Case &c : cases) {
        EXPECT_EQ(ids_str(opt().encode(c.text, false, false)), ids_str(c.ids)) << "text: " << c.text;
        EXPECT_EQ(ids_str(opt().encode(c.text, false, true)), ids_str(c.ids)) << "parse_special, text: " << c.text;
    }
}

TEST(Tokenizer, ParseSpecial) {
    // Off: plain text (bpe_ref.py). On: HF splits on the special tokens and tokenizes the rest.
    EXPECT_EQ(opt().encode("a</s>b", false, false), Ids({102, 49138, 29, 15698, 428}));
    EXPECT_EQ(opt().encode("a</s>b", false, true), Ids({102, 2, 428}));
    EXPECT_EQ(opt().encode("a</s>b", true, true), Ids({2, 102, 2, 428}));
    EXPECT_EQ(opt().encode("Hello </s> world", false, false), Ids({31414, 49703, 29, 15698, 232}));
    EXPECT_EQ(opt().encode("Hello </s> world", false, true), Ids({31414, 1437, 2, 232}));
    EXPECT_EQ(opt().encode("<s><pad></s><unk><mask>", false, false),
              Ids({41552, 29, 49007, 19320, 49526, 29, 49007, 6435, 49007, 43776, 15698}));
    // transformers 5.17's AutoTokenizer for facebook/opt-*: only '</s>' and '<pad>' are special
    // (tests/data/tokenizer-hf has 4,000 more such cases).
    EXPECT_EQ(opt().encode("<s>hello</s>", true, true), Ids({2, 41552, 29, 15698, 42891, 2}));
    EXPECT_EQ(opt().encode("<unk> <mask>", true, true), Ids({2, 41552, 6435, 15698, 28696, 43776, 15698}));
    EXPECT_EQ(opt().encode("<pad></s>", false, true), Ids({1, 2}));
    EXPECT_EQ(opt().encode("</s></s>", false, true), Ids({2, 2}));
    EXPECT_EQ(opt().encode("a</s", false, true), opt().encode("a</s", false, false));
    // Padding tokens are never matched as text.
    EXPECT_EQ(opt().encode("<unused_50265>", false, true), Ids({41552, 879, 6199, 1215, 1096, 26330, 15698}));
}

TEST(Tokenizer, BpeMergesAllOccurrencesOfARankBeforeTheNext) {
    // merges: rank 0 "ab a", rank 1 "a b". HF's bpe() merges every "a b" first, so "abab" is
    // [ab, ab], not [aba, b]. Expected ids from bpe_ref.py on the same vocabulary and merges.
    const Tokenizer t(small_data());
    EXPECT_EQ(t.encode("abab", false, false), Ids({6, 6}));
    EXPECT_EQ(t.encode("aba", false, false), Ids({7}));
    EXPECT_EQ(t.encode("ababab", false, false), Ids({6, 6, 6}));
    EXPECT_EQ(t.encode("aaab", false, false), Ids({4, 4, 6}));
    // A character with no token becomes unk (HF: encoder.get(token, unk)).
    EXPECT_EQ(t.encode("ac", false, false), Ids({4, 3}));
    EXPECT_EQ(t.encode("a </s>", false, true), Ids({4, 9, 2}));
}

TEST(Tokenizer, TokenTypesDefaultWhenAbsent) {
    TokenizerData d = small_data();
    d.token_types.clear();
    const Tokenizer t(std::move(d));
    for (int32_t id : {1, 2, 3}) EXPECT_TRUE(t.is_control(id)) << id;  // the special ids
    for (int32_t id : {0, 4}) EXPECT_FALSE(t.is_control(id)) << id;
    EXPECT_EQ(t.encode("ab</s>", false, true), Ids({6, 2}));
    EXPECT_EQ(t.decode({2, 6}, true), "ab");
}

// ---- decoding ---------------------------------------------------------------------------------

TEST(Tokenizer, TokenToPiece) {
    EXPECT_EQ(opt().token_to_piece(31414), "Hello");
    EXPECT_EQ(opt().token_to_piece(5), " the");
    EXPECT_EQ(opt().token_to_piece(50118), "\n");
    EXPECT_EQ(opt().token_to_piece(2), "</s>");
    EXPECT_EQ(opt().token_to_piece(50264), "<mask>");
    EXPECT_EQ(opt().token_to_piece(50265), "");
    EXPECT_EQ(opt().token_to_piece(50271), "");
    expect_error([] { opt().token_to_piece(-1); }, SEAOPT_ERR_INVALID_ARGUMENT, "-1");
    expect_error([] { opt().token_to_piece(kOptVocab); }, SEAOPT_ERR_INVALID_ARGUMENT, "50272");
}

TEST(Tokenizer, DecodeSpecialAndSplitCharacters) {
    EXPECT_EQ(opt().decode({2, 31414, 2, 1, 50265}, false), "</s>Hello</s><pad>");
    EXPECT_EQ(opt().decode({2, 31414, 2, 1, 50265}, true), "Hello");
    expect_error([] { opt().decode({31414, 50272}, false); }, SEAOPT_ERR_INVALID_ARGUMENT, "50272");
    // U+1F600 is 2 tokens (bpe_ref.py): neither piece is a whole character, their concatenation is.
    const std::string p1 = opt().token_to_piece(18636), p2 = opt().token_to_piece(7471);
    EXPECT_EQ(p1 + p2, "\xF0\x9F\x98\x80");
    EXPECT_NE(p1, "\xF0\x9F\x98\x80");
    EXPECT_EQ(opt().decode({18636, 7471}, false), "\xF0\x9F\x98\x80");
}

TEST(Tokenizer, DecodeRoundTrip) {
    const char *texts[] = {"Hello world! cécé herlolip", "  leading and trailing  ", "tabs\tand\nnewlines\r\n",
                           "日本語のテキスト 😀 Ελληνικά кириллица", "a</s>b", "\x1c\x1f\xC2\x85", ""};
    for (const char *text : texts) {
        EXPECT_EQ(opt().decode(opt().encode(text, false, false), false), text);
        EXPECT_EQ(opt().decode(opt().encode(text, true, false), true), text);
    }
    EXPECT_EQ(opt().decode(opt().encode("a</s>b", true, true), false), "</s>a</s>b");
    EXPECT_EQ(opt().decode(opt().encode("a</s>b", true, true), true), "ab");
}

// ---- invalid input ----------------------------------------------------------------------------

TEST(Tokenizer, InvalidUtf8) {
    struct Case {
        std::string text;
        size_t offset;
    };
    const Case cases[] = {
        {std::string("ab\x80", 3), 2},                  // stray continuation byte
        {std::string("\xC0\xAF", 2), 0},                // overlong '/'
        {std::string("x\xC1\xBF", 3), 1},               // overlong
        {std::string("xy\xE0\x80\xAF", 5), 2},          // overlong 3-byte
        {std::string("\xF0\x80\x80\xAF", 4), 0},        // overlong 4-byte
        {std::string("ok \xED\xA0\x80", 6), 3},         // high surrogate U+D800
        {std::string("\xED\xBF\xBF", 3), 0},            // low surrogate U+DFFF
        {std::string("abc\xF4\x90\x80\x80", 7), 3},     // U+110000
        {std::string("\xF5\x80\x80\x80", 4), 0},        // byte > 0xF4
        {std::string("a\xFF", 2), 1},                   // 0xFF
        {std::string("Hello \xE2\x82", 8), 6},          // truncated at the end
        {std::string("\xE2\x82x", 3), 0},               // truncated in the middle
        {std::string("\xC3", 1), 0},                    // lone lead byte
        {std::string("é\xF0\x9F\x98", 5), 2},           // truncated 4-byte after a valid 2-byte
    };
    for (const Case &c : cases) {
        for (bool special : {false, true}) {
            expect_error([&] { opt().encode(c.text, true, special); }, SEAOPT_ERR_INVALID_UTF8,
                         "byte offset " + std::to_string(c.offset));
        }
    }
    // Valid edge cases: the largest code points of each length, U+FFFF, U+10FFFF, NUL.
    const std::string ok[] = {std::string("\x7F\xDF\xBF\xEF\xBF\xBF\xF4\x8F\xBF\xBF", 10), std::string("a\0b", 3),
                              "\xEE\x80\x80\xE0\xA0\x80\xF0\x90\x80\x80"};
    for (const std::string &text : ok) {
        Ids ids;
        EXPECT_NO_THROW(ids = opt().encode(text, false, false));
        EXPECT_EQ(opt().decode(ids, false), text);
    }
}

TEST(Tokenizer, LongPiecesAreFastAndExact) {
    // One 200,000-letter word, one run of spaces, one of digits: the BPE must not be quadratic and
    // the PCRE2 match must not run out of stack.
    const std::string word(200000, 'a'), spaces(200000, ' '), digits(200000, '7');
    for (const std::string &body : {word, spaces + "x", digits, std::string(100000, '!') + word}) {
        const auto t0 = std::chrono::steady_clock::now();
        const Ids ids = opt().encode(body, false, false);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_EQ(opt().decode(ids, false), body);
        EXPECT_LT(ids.size(), body.size());
        EXPECT_LT(s, 5.0);
    }
}

TEST(Tokenizer, ConcurrentEncode) {
    // encode() is const and used from several threads at once: every thread must see the reference.
    const std::string text = "Hello world! cécé herlolip";
    const Ids expected = {31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588};
    Ids expected_bos = {2};
    expected_bos.insert(expected_bos.end(), expected.begin(), expected.end());
    std::vector<std::thread> threads;
    std::vector<int> bad(4, 0);
    for (int k = 0; k < 4; ++k) {
        threads.emplace_back([&, k] {
            for (int i = 0; i < 300; ++i) {
                if (opt().encode(text, false, false) != expected || opt().encode(text, true, true) != expected_bos) {
                    ++bad[k];
                }
            }
        });
    }
    for (auto &th : threads) th.join();
    for (int k = 0; k < 4; ++k) EXPECT_EQ(bad[k], 0) << "thread " << k;
}

// ---- bad tokenizer data -----------------------------------------------------------------------

TEST(Tokenizer, RejectsBadData) {
    auto bad = [](const std::function<void(TokenizerData &)> &edit, const std::string &needle) {
        TokenizerData d = small_data();
        edit(d);
        expect_error([&] { Tokenizer t(std::move(d)); }, SEAOPT_ERR_MODEL_FORMAT, needle);
    };
    bad([](TokenizerData &d) { d.tokens.clear(), d.token_types.clear(); }, "empty");
    bad([](TokenizerData &d) { d.tokens[5] = ""; }, "token 5 is an empty string");
    bad([](TokenizerData &d) { d.bos_id = 10; }, "bos_id 10");
    bad([](TokenizerData &d) { d.eos_id = -1; }, "eos_id -1");
    bad([](TokenizerData &d) { d.pad_id = 99; }, "pad_id 99");
    bad([](TokenizerData &d) { d.unk_id = 10; }, "unk_id 10");
    bad([](TokenizerData &d) { d.token_types.pop_back(); }, "token_types has 9 entries for 10 tokens");
    bad([](TokenizerData &d) { d.token_types[4] = 7; }, "token 4 has invalid type 7");
    bad([](TokenizerData &d) { d.token_types[4] = 0; }, "token 4 has invalid type 0");
    bad([](TokenizerData &d) { d.merges.push_back("abc"); }, "merge 2 ('abc') is not two space-separated parts");
    bad([](TokenizerData &d) { d.merges.push_back("a b c"); }, "merge 2");
    bad([](TokenizerData &d) { d.merges.push_back(" b"); }, "merge 2");
    bad([](TokenizerData &d) { d.merges.push_back("a "); }, "merge 2");
    bad([](TokenizerData &d) { d.merges.push_back("a  b"); }, "merge 2");
    bad([](TokenizerData &d) { d.tokens[6] = "a"; }, "tokens 4 and 6 are both 'a'");
    // More than 4,096 distinct CONTROL strings (encode looks for each at every special-token match; a file with a
    // million of them took minutes to load).
    bad(
        [](TokenizerData &d) {
            for (int i = 0; i < 5000; ++i) {
                d.tokens.push_back("<c" + std::to_string(i) + ">");
                d.token_types.push_back(3);
            }
        },
        "more than 4096 distinct added tokens");
    // Duplicates outside the NORMAL tokens, and merges whose parts are not tokens, are allowed; so are many CONTROL
    // tokens with the same string (one counts against the limit).
    TokenizerData many = small_data();
    for (int i = 0; i < 20000; ++i) {
        many.tokens.push_back("<c" + std::to_string(i % 4000) + ">");
        many.token_types.push_back(3);
    }
    EXPECT_NO_THROW(Tokenizer t(std::move(many)));
    TokenizerData ok = small_data();
    ok.tokens[0] = "a";
    ok.merges.push_back("x y");
    EXPECT_NO_THROW(Tokenizer t(std::move(ok)));
}

TEST(Tokenizer, MovedTokenizerKeepsWorking) {
    Tokenizer a(small_data());
    Tokenizer b(std::move(a));
    EXPECT_EQ(b.encode("abab", false, false), Ids({6, 6}));
    Tokenizer c(small_data());
    c = std::move(b);
    EXPECT_EQ(c.encode("aba", true, false), Ids({2, 7}));
}

// ---- bad HF files -----------------------------------------------------------------------------

TEST(Tokenizer, RejectsBadHfFiles) {
    const TempDir dir;
    const std::string merges = dir.write("merges.txt", "#version: 0.2\na b\n");
    auto vocab_error = [&](const std::string &json, seaopt_status code, const std::string &needle) {
        const std::string v = dir.write("vocab.json", json);
        expect_error([&] { seaopt::load_hf_tokenizer(v, merges, 16); }, code, needle);
    };
    vocab_error("{\"a\": 0, \"b\": 1", SEAOPT_ERR_MODEL_FORMAT, "vocab.json is not valid JSON");
    vocab_error("", SEAOPT_ERR_MODEL_FORMAT, "not valid JSON");
    vocab_error("[0, 1]", SEAOPT_ERR_MODEL_FORMAT, "not a JSON object");
    vocab_error("{}", SEAOPT_ERR_MODEL_FORMAT, "no tokens");
    vocab_error("{\"</s>\": 0, \"a\": 1, \"b\": 1}", SEAOPT_ERR_MODEL_FORMAT, "both have id 1");
    vocab_error("{\"</s>\": 0, \"a\": 1, \"b\": \"2\"}", SEAOPT_ERR_MODEL_FORMAT, "not an integer");
    vocab_error("{\"</s>\": 0, \"a\": 1, \"b\": 2.5}", SEAOPT_ERR_MODEL_FORMAT, "not an integer");
    vocab_error("{\"</s>\": 0, \"a\": 1, \"b\": 3}", SEAOPT_ERR_MODEL_FORMAT, "has id 3");
    vocab_error("{\"</s>\": 0, \"a\": -1, \"b\": 2}", SEAOPT_ERR_MODEL_FORMAT, "has id -1");
    vocab_error("{\"x\": 0, \"a\": 1, \"b\": 2}", SEAOPT_ERR_MODEL_FORMAT, "end-of-sequence");

    const std::string good_vocab = dir.write("good.json", "{\"</s>\": 0, \"a\": 1, \"b\": 2, \"ab\": 3}");
    expect_error([&] { seaopt::load_hf_tokenizer(good_vocab, merges, 3); }, SEAOPT_ERR_MODEL_FORMAT,
                 "vocab.json has 4 tokens");
    expect_error([&] { seaopt::load_hf_tokenizer(good_vocab, dir.write("m2.txt", "#version: 0.2\na b c\n"), 8); },
                 SEAOPT_ERR_MODEL_FORMAT, "merges.txt line 2");

    const std::string missing = (dir.path / "no_such_file.json").string();
    expect_error([&] { seaopt::load_hf_tokenizer(missing, merges, 8); }, SEAOPT_ERR_IO, missing);
    expect_error([&] { seaopt::load_hf_tokenizer(good_vocab, missing, 8); }, SEAOPT_ERR_IO, missing);

    // The good files load: header and blank lines skipped, CRLF accepted, padding to n_vocab.
    const TokenizerData d =
        seaopt::load_hf_tokenizer(good_vocab, dir.write("m3.txt", "#version: 0.2\r\n\r\na b\r\n\n"), 6);
    EXPECT_EQ(d.merges, std::vector<std::string>({"a b"}));
    EXPECT_EQ(d.tokens, std::vector<std::string>({"</s>", "a", "b", "ab", "<unused_4>", "<unused_5>"}));
    EXPECT_EQ(d.token_types, std::vector<int32_t>({3, 1, 1, 1, 5, 5}));
    EXPECT_EQ(d.bos_id, 0);
    EXPECT_EQ(d.eos_id, 0);
    const Tokenizer t(d);
    EXPECT_EQ(t.encode("aab", true, false), Ids({0, 1, 3}));
}

// ---- shared reference data (/work/shared/data) ---------------------------------------------------

#ifdef SEAOPT_TOKENIZER_SHARED_DATA_TESTS

namespace {

const std::string kShared = SEAOPT_SHARED_DATA_DIR;

struct RefCase {
    std::string text;
    Ids opt_ids, gpt2_ids;
};

std::vector<RefCase> reference_cases() {
    std::vector<RefCase> cases;
    std::istringstream in(read_file(kShared + "/reference/opt_tokenizer_cases.jsonl"));
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        const nlohmann::json j = nlohmann::json::parse(line);
        cases.push_back({j.at("text").get<std::string>(), j.at("opt_ids").get<Ids>(), j.at("gpt2_ids").get<Ids>()});
    }
    return cases;
}

}  // namespace

TEST(TokenizerReference, OptCases) {
    const std::vector<RefCase> cases = reference_cases();
    ASSERT_EQ(cases.size(), 26u);
    for (const RefCase &c : cases) {
        EXPECT_EQ(ids_str(opt().encode(c.text, false, false)), ids_str(c.opt_ids)) << "text: '" << c.text << "'";
        Ids with_bos = {2};
        with_bos.insert(with_bos.end(), c.opt_ids.begin(), c.opt_ids.end());
        EXPECT_EQ(ids_str(opt().encode(c.text, true, true)), ids_str(with_bos)) << "text: '" << c.text << "'";
        EXPECT_EQ(opt().decode(c.opt_ids, false), c.text);
    }
}

TEST(TokenizerReference, Gpt2Cases) {
    // The same cases with OpenAI's own GPT-2 files (encoder.json / vocab.bpe): other ids, same BPE.
    const Tokenizer gpt2(seaopt::load_hf_tokenizer(kShared + "/gpt2-tokenizer/encoder.json",
                                                   kShared + "/gpt2-tokenizer/vocab.bpe", 50257));
    EXPECT_EQ(gpt2.bos_id(), 50256);
    EXPECT_EQ(gpt2.encode("a<|endoftext|>b", false, true), Ids({64, 50256, 65}));
    for (const RefCase &c : reference_cases()) {
        EXPECT_EQ(ids_str(gpt2.encode(c.text, false, false)), ids_str(c.gpt2_ids)) << "text: '" << c.text << "'";
    }
}

TEST(TokenizerReference, WikiText2TestHfJoin) {
    // data/README.md §1: each line with its "\n" is a row, a whitespace-only row becomes "", and
    // the evaluation text is "\n\n".join(rows).
    const std::string raw = read_file(kShared + "/wikitext-2-raw/wiki.test.raw");
    std::vector<std::string> rows;
    for (size_t start = 0; start < raw.size();) {
        size_t end = raw.find('\n', start);
        end = end == std::string::npos ? raw.size() : end + 1;
        std::string row = raw.substr(start, end - start);
        if (row.find_first_not_of(" \t\r\n\v\f") == std::string::npos) row.clear();
        rows.push_back(std::move(row));
        start = end;
    }
    ASSERT_EQ(rows.size(), 4358u);
    std::string text;
    for (size_t i = 0; i < rows.size(); ++i) text += (i ? "\n\n" : "") + rows[i];
    ASSERT_EQ(text.size(), 1296370u);

    Ids expected;
    {
        std::istringstream in(read_file(kShared + "/reference/opt_wikitext2_test_hfjoin_ids.txt"));
        for (int32_t id; in >> id;) expected.push_back(id);
    }
    ASSERT_EQ(expected.size(), 287645u);

    const Tokenizer &t = opt();
    const auto t0 = std::chrono::steady_clock::now();
    const Ids ids = t.encode(text, true, false);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("WikiText-2 test (%zu bytes) -> %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
    RecordProperty("encode_seconds", std::to_string(seconds));

    size_t first_diff = 0;
    while (first_diff < ids.size() && first_diff < expected.size() && ids[first_diff] == expected[first_diff]) {
        ++first_diff;
    }
    if (first_diff < ids.size() || first_diff < expected.size()) {
        const size_t from = first_diff > 8 ? first_diff - 8 : 0;
        ADD_FAILURE() << "first difference at index " << first_diff << " (got " << ids.size() << " ids, expected "
                      << expected.size() << ")\n  expected: " << ids_str(expected, from, first_diff + 8)
                      << "\n  got:      " << ids_str(ids, from, first_diff + 8) << "\n  reference text there: '"
                      << t.decode(Ids(expected.begin() + from, expected.begin() + std::min(expected.size(), first_diff + 8)),
                                  false)
                      << "'";
    }
#ifdef NDEBUG
    EXPECT_LT(seconds, 2.0) << "tokenizing 1.3 MB must take well under 2 s in a Release build";
#endif

    // Decoding gives back the text, for the whole of it and for a slice cut at token boundaries.
    EXPECT_TRUE(t.decode(ids, true) == text);
    const Ids slice(expected.begin() + 1000, expected.begin() + 6000);
    const std::string slice_text = t.decode(slice, false);
    EXPECT_EQ(t.decode(t.encode(slice_text, false, false), false), slice_text);
}

#endif  // SEAOPT_TOKENIZER_SHARED_DATA_TESTS
