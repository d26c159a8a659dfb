// seaopt-perplexity, run as a child process the way a user runs it:
//   - against the transformers reference: the fixture opt-tiny-pre's full fp32 logits of
//     BOS + "Hello, my dog is cute" (tests/data/opt-tiny-pre/logits_seq0.f32) give the reference
//     NLLs and PPL of that one 7-token window, which the tool must reproduce (-c 7);
//   - against an independent computation here: tokenize with the C API (one BOS, no special-token
//     parsing), run each window through seaopt_decode with a cleared KV cache, and score it;
//     for several -c, -b/--batch-size (llama.cpp's tokens per decode, also below the window), --batch-windows and
//     --chunks settings; and --score-second-half (llama.cpp's protocol: BOS per window, the second half scored);
//   - the WikiText-2 reconstruction (Hugging Face rows joined with "\n\n"): 287,645 tokens and 140
//     windows of 2048 on the demo model (needs the shared data, skipped without it);
//   - --kl-divergence on the SEA demo model: its dense and SEA PPLs equal the normal mode's with
//     --attention dense / sea on the same windows, and its PPLs, mean KL, percentiles and top-1
//     agreement equal a computation here through the C API (two contexts, every window's logits,
//     log-softmax in double), with -b batching and --sea-layers / --sea-k;
//   - --help states the protocol; bad input fails cleanly (exit 1, "seaopt-perplexity: error: ...").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "seaopt.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using seaopt_test::describe;
using seaopt_test::read_file;
using seaopt_test::Result;
using seaopt_test::run;
using seaopt_test::temp_dir;
using seaopt_test::write_temp_file;

namespace {

const std::string kTool = SEAOPT_BINARY_DIR "/bin/seaopt-perplexity";
const std::string kConvert = SEAOPT_BINARY_DIR "/bin/seaopt-convert";
const std::string kDemoModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";  // with a SEA estimator
const std::string kDataDir = SEAOPT_TEST_DATA_DIR;
const std::string kSharedData = SEAOPT_SHARED_DATA_DIR;

// A text of a few windows of the fixture model (64 positions), with a literal "</s>" that must be
// tokenized as plain text, and WikiText-style lines.
const std::string kText =
    "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, and the tallest "
    "structure in Paris. Its base is square, measuring 125 metres (410 ft) on each side. During its construction, "
    "the Eiffel Tower surpassed the Washington Monument to become the tallest man-made structure in the world, a "
    "title it held for 41 years until the Chrysler Building in New York City was finished in 1930. It was the first "
    "structure to reach a height of 300 metres. Due to the addition of a broadcasting aerial at the top of the tower "
    "in 1957, it is now taller than the Chrysler Building by 5.2 metres (17 ft). Excluding transmitters, the Eiffel "
    "Tower is the second tallest free-standing structure in France after the Millau Viaduct.</s>\n"
    " = Robert Boulter = \n\n Robert Boulter is an English film , television and theatre actor . He had a guest @-@ "
    "starring role on the television series The Bill in 2000 . This was followed by a starring role in the play "
    "Herons written by Simon Stephens , which was performed in 2001 at the Royal Court Theatre .\n";




bool contains(const std::string &haystack, const std::string &needle) {
    return haystack.find(needle) != std::string::npos;
}

void expect_clean_failure(const Result &r, const std::string &what) {
    EXPECT_TRUE(r.exited) << "killed by signal " << r.signal << "\n" << describe(r);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.err, "seaopt-perplexity: error: ")) << describe(r);
    EXPECT_TRUE(contains(r.err, what)) << "expected '" << what << "' in stderr\n" << describe(r);
}

// A fixture converted once with the built seaopt-convert (f32: the fixture's weights are fp16
// values, so f16 would hold them exactly too). opt-tiny-pre by default; opt-tiny-post is the
// OPT-350m layout (post-LN, project_in/out).
std::string fixture_model(const std::string &name = "opt-tiny-pre") {
    static std::map<std::string, std::string> cache;
    if (auto it = cache.find(name); it != cache.end()) return it->second;
    const std::string ckpt = name == "opt-tiny-pre" ? "safetensors" : "safetensors-sharded";
    const std::string out = temp_dir() + "/" + name + ".gguf";
    const Result r =
        run({kConvert, kDataDir + "/" + name + "/" + ckpt, "-o", out, "--outtype", "f32", "--no-progress"});
    if (!(r.exited && r.status == 0)) throw std::runtime_error("seaopt-convert failed:\n" + describe(r));
    return cache[name] = out;
}

// What the tool printed.
struct Report {
    double ppl = NAN, err = NAN;
    std::vector<double> running;  // [1]x,[2]y,...
    long n_tokens = -1, n_samples = -1, window = -1;
};

Report parse(const Result &r) {
    Report rep;
    std::smatch m;
    if (std::regex_search(r.out, m, std::regex("Final estimate: PPL = ([0-9.e+-]+|nan|inf) \\+/- ([0-9.e+-]+)\n"))) {
        rep.ppl = std::stod(m[1]);
        rep.err = std::stod(m[2]);
    }
    const std::regex value("\\[([0-9]+)\\]([0-9.e+-]+),");
    for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), value); it != std::sregex_iterator(); ++it) {
        EXPECT_EQ(std::stol((*it)[1]), (long)rep.running.size() + 1) << "running values out of order\n" << r.out;
        rep.running.push_back(std::stod((*it)[2]));
    }
    if (std::regex_search(r.err, m,
                          std::regex("perplexity: ([0-9]+) tokens, nsamples = ([0-9]+) windows of ([0-9]+)"))) {
        rep.n_tokens = std::stol(m[1]);
        rep.n_samples = std::stol(m[2]);
        rep.window = std::stol(m[3]);
    }
    return rep;
}

// -log softmax(logits)[target] in double.
double token_nll(const float *logits, size_t n_vocab, int32_t target) {
    double max = logits[0];
    for (size_t j = 1; j < n_vocab; ++j) max = std::max(max, (double)logits[j]);
    double sum = 0;
    for (size_t j = 0; j < n_vocab; ++j) sum += std::exp((double)logits[j] - max);
    return max + std::log(sum) - (double)logits[target];
}

// GPTQ's arithmetic over per-window token NLLs; the error as llama-perplexity estimates it.
struct Expected {
    double ppl = 0, err = 0;
    std::vector<double> running;
};
Expected gptq(const std::vector<std::vector<double>> &windows, int N) {
    Expected e;
    double sum = 0, s1 = 0, s2 = 0;
    size_t n = 0;
    for (size_t w = 0; w < windows.size(); ++w) {
        double window_sum = 0;
        for (double x : windows[w]) {
            window_sum += x;
            s1 += x;
            s2 += x * x;
            ++n;
        }
        sum += window_sum / (double)windows[w].size() * N;  // nll_i = loss * seqlen
        e.running.push_back(std::exp(sum / ((double)(w + 1) * N)));
    }
    e.ppl = e.running.back();
    const double mean = s1 / (double)n, var = s2 / (double)n - mean * mean;
    e.err = e.ppl * std::sqrt(var / (double)(n - 1));
    return e;
}

// llama-perplexity's arithmetic over the scored (second-half) token NLLs: PPL = exp(mean), running after each window.
Expected mean_nll(const std::vector<std::vector<double>> &windows) {
    Expected e;
    double s1 = 0, s2 = 0;
    size_t n = 0;
    for (const std::vector<double> &w : windows) {
        for (double x : w) {
            s1 += x;
            s2 += x * x;
            ++n;
        }
        e.running.push_back(std::exp(s1 / (double)n));
    }
    e.ppl = e.running.back();
    const double mean = s1 / (double)n, var = s2 / (double)n - mean * mean;
    e.err = e.ppl * std::sqrt(var / (double)(n - 1));
    return e;
}

void expect_rel_near(double got, double want, double rel, const std::string &what) {
    EXPECT_LE(std::fabs(got - want), rel * std::fabs(want)) << what << ": got " << got << ", want " << want;
}

class Perplexity : public testing::Test {
protected:
    void SetUp() override {
        for (const std::string &path : {kTool, kConvert, kDemoModel}) {
            ASSERT_TRUE(fs::exists(path))
                << path << " is missing: build seaopt-perplexity, seaopt-convert and tiny_model";
        }
    }
};

}  // namespace

// The reference has full logits only for sequence 0; sequence 1 (60 tokens) has the logits of 64
// subset_ids per position, and none of its next tokens is among them, so it cannot give an NLL.
static void check_against_reference(const std::string &fixture) {
    // Reference: transformers' fp32 logits of sequence 0 (BOS + "Hello, my dog is cute").
    std::ifstream in(kDataDir + "/" + fixture + "/reference.json");
    const json ref = json::parse(in);
    const std::vector<int32_t> ids = ref["sequences"][0]["ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(ids, (std::vector<int32_t>{2, 31414, 6, 127, 2335, 16, 11962}));
    const size_t V = 50272;
    const std::string raw = read_file(kDataDir + "/" + fixture + "/logits_seq0.f32");
    ASSERT_EQ(raw.size(), ids.size() * V * sizeof(float));
    std::vector<float> logits(ids.size() * V);
    std::memcpy(logits.data(), raw.data(), raw.size());
    std::vector<double> nll;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
        nll.push_back(token_nll(logits.data() + i * V, V, ids[i + 1]));
        // The file agrees with the logsumexp stored beside it.
        const double lse = nll.back() + logits[i * V + (size_t)ids[i + 1]];
        EXPECT_NEAR(lse, ref["sequences"][0]["logsumexp"][i].get<double>(), 1e-4);
    }
    const Expected want = gptq({nll}, (int)ids.size());

    // The tool on a text that tokenizes to exactly those ids: one window of 7 tokens.
    const std::string text = write_temp_file("hello.txt", "Hello, my dog is cute");
    const Result r = run({kTool, "-m", fixture_model(fixture), "-f", text, "-c", "7", "-t", "2", "--device", "cpu"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    const Report got = parse(r);
    EXPECT_EQ(got.n_tokens, 7) << describe(r);
    EXPECT_EQ(got.n_samples, 1) << describe(r);
    EXPECT_EQ(got.window, 7) << describe(r);
    ASSERT_EQ(got.running.size(), 1u) << describe(r);
    std::printf("%s: transformers reference PPL %.10g +/- %.6g; seaopt-perplexity %.10g +/- %.6g\n", fixture.c_str(),
                want.ppl, want.err, got.ppl, got.err);
    // At least 4 significant digits (measured: ~3e-8 relative).
    expect_rel_near(got.ppl, want.ppl, 5e-5, "PPL");
    expect_rel_near(got.running[0], want.ppl, 5e-5, "running PPL");
    expect_rel_near(got.err, want.err, 1e-3, "error estimate");
}

TEST_F(Perplexity, MatchesTheTransformersReference) { check_against_reference("opt-tiny-pre"); }
TEST_F(Perplexity, MatchesTheTransformersReferencePostLnWithProjection) { check_against_reference("opt-tiny-post"); }

TEST_F(Perplexity, MatchesAnIndependentComputation) {
    const std::string text_path = write_temp_file("text.txt", kText);

    // Tokens as the protocol says: one BOS, special-token strings as plain text.
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load(fixture_model().c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
    std::vector<seaopt_token> tokens(kText.size() + 1);
    int32_t n_tokens = 0, n_parsed = 0;
    ASSERT_EQ(seaopt_tokenize(model, kText.data(), kText.size(), true, false, tokens.data(), (int32_t)tokens.size(),
                              &n_tokens),
              SEAOPT_OK);
    tokens.resize((size_t)n_tokens);
    std::vector<seaopt_token> parsed(kText.size() + 1);
    ASSERT_EQ(seaopt_tokenize(model, kText.data(), kText.size(), true, true, parsed.data(), (int32_t)parsed.size(),
                              &n_parsed),
              SEAOPT_OK);
    ASSERT_NE(n_parsed, n_tokens) << "the text should tokenize differently with special-token parsing";
    ASSERT_EQ(tokens[0], seaopt_token_bos(model));
    ASSERT_EQ(std::count(tokens.begin(), tokens.end(), seaopt_token_bos(model)), 1);

    // Per window: its own decode from an empty cache, logits of every position; second_half: llama-perplexity's
    // protocol (the window's first token replaced by BOS, the NLLs of positions N/2 .. N-2 only).
    auto expected = [&](int N, int n_windows, bool second_half = false) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = (uint32_t)N;
        cp.n_threads = 2;
        seaopt_context *ctx = nullptr;
        EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
        std::vector<std::vector<double>> windows;
        const int32_t V = seaopt_model_n_vocab(model);
        for (int w = 0; w < n_windows; ++w) {
            seaopt_kv_clear(ctx);
            std::vector<int8_t> want_logits((size_t)N, 1);
            std::vector<seaopt_token> window(tokens.begin() + (ptrdiff_t)w * N, tokens.begin() + (ptrdiff_t)(w + 1) * N);
            if (second_half) window[0] = seaopt_token_bos(model);
            seaopt_batch batch = {N, window.data(), nullptr, nullptr, want_logits.data()};
            EXPECT_EQ(seaopt_decode(ctx, &batch), SEAOPT_OK) << seaopt_last_error();
            std::vector<double> nll;
            for (int i = second_half ? N / 2 : 0; i + 1 < N; ++i) {
                const float *row = seaopt_get_logits_ith(ctx, i);
                nll.push_back(token_nll(row, (size_t)V, tokens[(size_t)w * N + i + 1]));
            }
            windows.push_back(nll);
        }
        seaopt_context_free(ctx);
        return second_half ? mean_nll(windows) : gptq(windows, N);
    };

    struct Case {
        std::vector<std::string> args;
        int N, n_windows;
        bool second_half = false;
    };
    const int n_samples_64 = n_tokens / 64, n_samples_50 = n_tokens / 50;
    ASSERT_GE(n_samples_64, 3);
    const std::vector<Case> cases = {
        {{}, 64, n_samples_64},                                               // -c default: the model's 64 positions
        {{"-c", "64", "-b", "128"}, 64, n_samples_64},                        // 2 windows per decode, then the rest
        {{"-c", "50", "--batch-windows", "3", "-t", "1"}, 50, n_samples_50},  // a window shorter than the context
        {{"-c", "50", "--chunks", "2"}, 50, 2},                               // capped
        {{"-c", "50", "-b", "400", "--chunks", "3"}, 50, 3},                  // -b above the window count
        {{"-c", "50", "-b", "16", "--chunks", "3"}, 50, 3},                   // each window in decodes of 16 tokens
        {{"-c", "50", "--score-second-half"}, 50, n_samples_50, true},        // llama-perplexity's protocol
        {{"-c", "64", "--score-second-half", "-b", "128"}, 64, n_samples_64, true},
        {{"-c", "50", "--score-second-half", "-b", "7", "--chunks", "2"}, 50, 2, true},  // decodes of 7 rows
    };
    std::map<int, Expected> by_n;
    for (const Case &c : cases) {
        std::vector<std::string> args = {kTool, "-m", fixture_model(), "-f", text_path, "--device", "cpu"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        std::string what;
        for (const std::string &a : c.args) what += a + " ";
        SCOPED_TRACE("seaopt-perplexity " + what);
        const Result r = run(args);
        ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
        const Report got = parse(r);
        const Expected want = expected(c.N, c.n_windows, c.second_half);
        EXPECT_EQ(got.n_tokens, n_tokens) << describe(r);
        EXPECT_EQ(got.n_samples, n_tokens / c.N) << describe(r);
        EXPECT_EQ(got.window, c.N) << describe(r);
        ASSERT_EQ(got.running.size(), (size_t)c.n_windows) << describe(r);
        for (size_t w = 0; w < got.running.size(); ++w) {
            expect_rel_near(got.running[w], want.running[w], 1e-6, "running PPL [" + std::to_string(w + 1) + "]");
        }
        expect_rel_near(got.ppl, want.ppl, 1e-6, "PPL");
        expect_rel_near(got.err, want.err, 1e-5, "error estimate");
        EXPECT_TRUE(contains(r.err, "perplexity: tokenizing the input ..")) << describe(r);
        EXPECT_TRUE(std::regex_search(r.err, std::regex(", loaded in [0-9.]+ s on CPU"))) << describe(r);  // the device
        EXPECT_TRUE(
            std::regex_search(r.err, std::regex("perplexity: [0-9.]+ seconds per window - ETA [0-9]+ minutes [0-9]+ "
                                                "seconds\n")))
            << describe(r);
    }
    seaopt_model_free(model);
}

// The tiny SEA model on the CPU and kText's tokens (with BOS, special strings as text), for the tests that
// recompute the tool's numbers through the C API.
void load_sea_model_and_text(seaopt_model **model, std::vector<seaopt_token> &tokens) {
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    ASSERT_EQ(seaopt_model_load(kSeaModel.c_str(), &mp, model), SEAOPT_OK) << seaopt_last_error();
    tokens.resize(kText.size() + 1);
    int32_t n_tokens = 0;
    ASSERT_EQ(seaopt_tokenize(*model, kText.data(), kText.size(), true, false, tokens.data(), (int32_t)tokens.size(),
                              &n_tokens),
              SEAOPT_OK);
    tokens.resize((size_t)n_tokens);
}

// --attention sea: the tool's PPL is the one computed through the C API with a SEA context (each window
// its own prefill from an empty cache), with the windows batched (-b 2) or not; and it differs from dense.
TEST_F(Perplexity, SeaAttentionMatchesAnIndependentComputation) {
    ASSERT_TRUE(fs::exists(kSeaModel)) << kSeaModel << " is missing: build tiny_sea_model";
    const std::string text_path = write_temp_file("sea-text.txt", kText);
    seaopt_model *model = nullptr;
    std::vector<seaopt_token> tokens;
    ASSERT_NO_FATAL_FAILURE(load_sea_model_and_text(&model, tokens));
    const int N = 40, n_windows = 3;
    ASSERT_GE((int)tokens.size() / N, n_windows);
    auto expected = [&](seaopt_attention attention, const char *layers) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = (uint32_t)N;
        cp.n_threads = 2;
        cp.attention = attention;
        cp.sea_layers = layers;
        seaopt_context *ctx = nullptr;
        EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
        std::vector<std::vector<double>> windows;
        for (int w = 0; w < n_windows; ++w) {
            seaopt_kv_clear(ctx);
            std::vector<int8_t> want_logits((size_t)N, 1);
            seaopt_batch batch = {N, tokens.data() + (size_t)w * N, nullptr, nullptr, want_logits.data()};
            EXPECT_EQ(seaopt_decode(ctx, &batch), SEAOPT_OK) << seaopt_last_error();
            std::vector<double> nll;
            for (int i = 0; i + 1 < N; ++i) {
                nll.push_back(token_nll(seaopt_get_logits_ith(ctx, i), 50272, tokens[(size_t)w * N + i + 1]));
            }
            windows.push_back(nll);
        }
        seaopt_context_free(ctx);
        return gptq(windows, N);
    };
    const Expected sea = expected(SEAOPT_ATTENTION_SEA, nullptr), sea1 = expected(SEAOPT_ATTENTION_SEA, "1"),
                   dense = expected(SEAOPT_ATTENTION_DENSE, nullptr);
    seaopt_model_free(model);
    EXPECT_GT(std::fabs(sea.ppl - dense.ppl), 1e-6 * dense.ppl) << "SEA should change the PPL";

    struct Case {
        std::vector<std::string> args;
        const Expected *want;
    };
    const std::vector<Case> cases = {
        {{"--attention", "sea"}, &sea},
        {{"--attention", "sea", "--batch-windows", "2"}, &sea},
        {{"--attention", "sea", "--sea-layers", "1", "-b", "120"}, &sea1},  // 3 windows of 40 per decode
        {{"--attention", "sea", "-b", "16"}, &sea},  // each window's prefill of 16, then SEA's incremental decode
        {{"--attention", "dense"}, &dense},
    };
    for (const Case &c : cases) {
        std::vector<std::string> args = {kTool, "-m", kSeaModel, "-f", text_path, "-c", std::to_string(N), "--chunks",
                                         std::to_string(n_windows), "-t", "2", "--device", "cpu"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        std::string what;
        for (const std::string &a : c.args) what += a + " ";
        SCOPED_TRACE("seaopt-perplexity " + what);
        const Result r = run(args);
        ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
        const Report got = parse(r);
        expect_rel_near(got.ppl, c.want->ppl, 1e-6, "PPL");
        EXPECT_TRUE(contains(r.err, std::string("attention=") + (c.args[1] == "sea" ? "sea" : "dense"))) << describe(r);
    }
}

TEST_F(Perplexity, SeaAttentionNeedsASeaModel) {
    const std::string text = write_temp_file("ok-sea.txt", kText);
    expect_clean_failure(
        run({kTool, "-m", kDemoModel, "-f", text, "-c", "32", "--attention", "sea", "--device", "cpu"}),
                         "has no SEA estimator: convert it with seaopt-convert --sea");
    expect_clean_failure(run({kTool, "-m", kSeaModel, "-f", text, "--sea-k", "2"}), "--sea-k needs --attention sea");
    expect_clean_failure(run({kTool, "-m", kSeaModel, "-f", text, "--attention", "sparse"}), "--attention");
    expect_clean_failure(run({kTool, "-m", kSeaModel, "-f", text, "-c", "32", "--attention", "sea", "--sea-layers",
                              "0-5", "--device", "cpu"}),
                         "layer 5 is out of range");
}

// What --kl-divergence printed.
struct KlReport {
    double ppl_dense = NAN, err_dense = NAN, ppl_sea = NAN, err_sea = NAN, ratio = NAN, ratio_err = NAN;
    double kl = NAN, kl_err = NAN, kl_median = NAN, kl_p99 = NAN, kl_max = NAN, same_pct = NAN;
    long same = -1, compared = -1;
    double mean_nll_dense = NAN, mean_nll_sea = NAN;  // stderr's summary line
    struct Row {
        double ppl_dense, ppl_sea, kl, same_pct;
    };
    std::vector<Row> running;  // one per window
};

// P and Q: the two sides' names, "dense" and "SEA", or with --kl-base-model "base" and "model".
KlReport parse_kl(const Result &r, const std::string &P = "dense", const std::string &Q = "SEA") {
    KlReport rep;
    const std::string num = "([0-9.e+-]+|nan|inf)";
    std::smatch m;
    auto find = [&](const std::string &pattern) { return std::regex_search(r.out, m, std::regex(pattern)); };
    if (find("\nPPL \\(" + P + "\\) += " + num + " \\+/- " + num + "\n")) {
        rep.ppl_dense = std::stod(m[1]), rep.err_dense = std::stod(m[2]);
    }
    if (find("\nPPL \\(" + Q + "\\) += " + num + " \\+/- " + num + "\n")) {
        rep.ppl_sea = std::stod(m[1]), rep.err_sea = std::stod(m[2]);
    }
    if (find("\nPPL ratio " + Q + "/" + P + " += " + num + " \\+/- " + num + "\n")) {
        rep.ratio = std::stod(m[1]), rep.ratio_err = std::stod(m[2]);
    }
    if (find("\nMean KL\\(" + P + "\\|\\|" + Q + "\\) += " + num + " \\+/- " + num + " nats\n")) {
        rep.kl = std::stod(m[1]), rep.kl_err = std::stod(m[2]);
    }
    if (find("\nKL percentiles: median = " + num + ", 99% = " + num + ", max = " + num + " nats\n")) {
        rep.kl_median = std::stod(m[1]), rep.kl_p99 = std::stod(m[2]), rep.kl_max = std::stod(m[3]);
    }
    if (find("\nSame top-1 += " + num + " %  \\(([0-9]+) of ([0-9]+)\\)\n")) {
        rep.same_pct = std::stod(m[1]), rep.same = std::stol(m[2]), rep.compared = std::stol(m[3]);
    }
    const std::regex row("\n *([0-9]+) +" + num + " +" + num + " +" + num + " +" + num + " %");
    for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), row); it != std::sregex_iterator(); ++it) {
        EXPECT_EQ(std::stol((*it)[1]), (long)rep.running.size() + 1) << "running rows out of order\n" << r.out;
        rep.running.push_back({std::stod((*it)[2]), std::stod((*it)[3]), std::stod((*it)[4]), std::stod((*it)[5])});
    }
    if (std::regex_search(r.err, m, std::regex("mean NLL " + P + " ([0-9.]+), " + Q + " ([0-9.]+)"))) {
        rep.mean_nll_dense = std::stod(m[1]), rep.mean_nll_sea = std::stod(m[2]);
    }
    return rep;
}

// log softmax of a row, in double.
std::vector<double> log_softmax(const float *logits, size_t n_vocab) {
    double max = logits[0];
    for (size_t j = 1; j < n_vocab; ++j) max = std::max(max, (double)logits[j]);
    double sum = 0;
    for (size_t j = 0; j < n_vocab; ++j) sum += std::exp((double)logits[j] - max);
    std::vector<double> out(n_vocab);
    for (size_t j = 0; j < n_vocab; ++j) out[j] = (double)logits[j] - max - std::log(sum);
    return out;
}

// The greedy token: the first maximum.
size_t argmax(const float *logits, size_t n_vocab) {
    return (size_t)(std::max_element(logits, logits + n_vocab) - logits);
}

// --kl-divergence against the normal mode (dense and SEA PPLs on the same windows) and against an
// independent computation through the C API: a dense and a SEA context, each window from an empty
// cache with every position's logits, KL / NLLs / argmax from this file's own loops.
TEST_F(Perplexity, KlDivergenceMatchesTheNormalModeAndTheCApi) {
    ASSERT_TRUE(fs::exists(kSeaModel)) << kSeaModel << " is missing: build tiny_sea_model";
    const std::string text_path = write_temp_file("kl-text.txt", kText);
    seaopt_model *model = nullptr;
    std::vector<seaopt_token> tokens;
    ASSERT_NO_FATAL_FAILURE(load_sea_model_and_text(&model, tokens));
    const int N = 40, n_windows = 3;
    const size_t V = (size_t)seaopt_model_n_vocab(model);
    ASSERT_GE((int)tokens.size() / N, n_windows);

    struct Want {
        Expected dense, sea;
        std::vector<double> kl;  // per position, in window order
        long same = 0;
    };
    auto expected = [&](const char *layers, int32_t sea_k) {
        Want want;
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = (uint32_t)N;
        cp.n_threads = 2;
        seaopt_context *dense = nullptr, *sea = nullptr;
        EXPECT_EQ(seaopt_context_new(model, &cp, &dense), SEAOPT_OK) << seaopt_last_error();
        cp.attention = SEAOPT_ATTENTION_SEA;
        cp.sea_layers = layers;
        cp.sea_k = sea_k;
        EXPECT_EQ(seaopt_context_new(model, &cp, &sea), SEAOPT_OK) << seaopt_last_error();
        std::vector<std::vector<double>> nll_dense, nll_sea;
        for (int w = 0; w < n_windows; ++w) {
            std::vector<int8_t> all_logits((size_t)N, 1);
            seaopt_batch batch = {N, tokens.data() + (size_t)w * N, nullptr, nullptr, all_logits.data()};
            for (seaopt_context *ctx : {dense, sea}) {
                seaopt_kv_clear(ctx);
                EXPECT_EQ(seaopt_decode(ctx, &batch), SEAOPT_OK) << seaopt_last_error();
            }
            nll_dense.emplace_back();
            nll_sea.emplace_back();
            for (int i = 0; i + 1 < N; ++i) {
                const float *pd = seaopt_get_logits_ith(dense, i), *ps = seaopt_get_logits_ith(sea, i);
                const std::vector<double> ld = log_softmax(pd, V), ls = log_softmax(ps, V);
                double kl = 0;
                for (size_t v = 0; v < V; ++v) kl += std::exp(ld[v]) * (ld[v] - ls[v]);
                EXPECT_GE(kl, -1e-12) << "window " << w << " position " << i;
                want.kl.push_back(kl);
                want.same += argmax(pd, V) == argmax(ps, V);
                const size_t target = (size_t)tokens[(size_t)w * N + i + 1];
                nll_dense.back().push_back(-ld[target]);
                nll_sea.back().push_back(-ls[target]);
            }
        }
        seaopt_context_free(dense);
        seaopt_context_free(sea);
        want.dense = gptq(nll_dense, N);
        want.sea = gptq(nll_sea, N);
        return want;
    };
    // Interpolated percentile (numpy's default).
    auto percentile = [](std::vector<double> v, double f) {
        std::sort(v.begin(), v.end());
        const double at = f * (double)(v.size() - 1);
        const size_t lo = (size_t)std::floor(at), hi = std::min(lo + 1, v.size() - 1);
        return v[lo] + (at - (double)lo) * (v[hi] - v[lo]);
    };

    struct Case {
        std::vector<std::string> kl_args, sea_args;  // the KL run's extra flags; the SEA side in the normal mode
        const char *layers;
        int32_t sea_k;
    };
    const std::vector<Case> cases = {
        {{"-t", "2"}, {}, nullptr, 0},
        {{"--attention", "sea", "--batch-windows", "2", "-t", "1"}, {}, nullptr, 0},
        {{"--sea-layers", "1", "--sea-k", "2", "-b", std::to_string(3 * N), "-t", "2"}, {"--sea-layers", "1", "--sea-k", "2"}, "1", 2},
    };
    for (const Case &c : cases) {
        std::string what;
        for (const std::string &a : c.kl_args) what += a + " ";
        SCOPED_TRACE("seaopt-perplexity --kl-divergence " + what);
        const std::vector<std::string> common = {kTool, "-m", kSeaModel, "-f", text_path, "-c", std::to_string(N),
                                                 "--chunks", std::to_string(n_windows), "--device", "cpu"};
        std::vector<std::string> kl_args = common, dense_args = common, sea_args = common;
        kl_args.push_back("--kl-divergence");
        kl_args.insert(kl_args.end(), c.kl_args.begin(), c.kl_args.end());
        dense_args.insert(dense_args.end(), {"--attention", "dense", "-t", "2"});
        sea_args.insert(sea_args.end(), {"--attention", "sea", "-t", "2"});
        sea_args.insert(sea_args.end(), c.sea_args.begin(), c.sea_args.end());
        const Result r = run(kl_args), rd = run(dense_args), rs = run(sea_args);
        ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
        ASSERT_TRUE(rd.exited && rd.status == 0) << describe(rd);
        ASSERT_TRUE(rs.exited && rs.status == 0) << describe(rs);
        const KlReport got = parse_kl(r);
        EXPECT_FALSE(contains(r.out, "Final estimate")) << describe(r);
        EXPECT_TRUE(contains(r.err, "attention=dense vs sea")) << describe(r);

        // The normal mode, same windows. Its NLLs pass through the engine's fused loss as floats, the KL
        // mode's are double: the PPLs agree to ~1e-7 relative, the printed mean NLLs to their 6 decimals.
        const Report dense = parse(rd), sea = parse(rs);
        expect_rel_near(got.ppl_dense, dense.ppl, 1e-6, "PPL (dense) vs --attention dense");
        expect_rel_near(got.ppl_sea, sea.ppl, 1e-6, "PPL (SEA) vs --attention sea");
        expect_rel_near(got.err_dense, dense.err, 1e-5, "dense error vs --attention dense");
        expect_rel_near(got.err_sea, sea.err, 1e-5, "SEA error vs --attention sea");
        std::smatch m;
        ASSERT_TRUE(std::regex_search(rd.err, m, std::regex("mean NLL ([0-9.]+)"))) << describe(rd);
        EXPECT_NEAR(got.mean_nll_dense, std::stod(m[1]), 1.5e-6) << describe(r) << describe(rd);
        ASSERT_TRUE(std::regex_search(rs.err, m, std::regex("mean NLL ([0-9.]+)"))) << describe(rs);
        EXPECT_NEAR(got.mean_nll_sea, std::stod(m[1]), 1.5e-6) << describe(r) << describe(rs);

        // The C API computation.
        const Want want = expected(c.layers, c.sea_k);
        const size_t n = want.kl.size();
        ASSERT_EQ(n, (size_t)n_windows * (N - 1));
        double s = 0, s2 = 0;
        for (double x : want.kl) s += x, s2 += x * x;
        const double mean_kl = s / (double)n;
        const double kl_err = std::sqrt((s2 / (double)n - mean_kl * mean_kl) / (double)(n - 1));
        std::printf(
            "%s: PPL dense %.6g (normal mode %.6g), SEA %.6g (%.6g); mean KL %.6f +/- %.6f (C API %.6f), "
            "same top-1 %ld of %ld (C API %ld)\n",
            what.c_str(), got.ppl_dense, dense.ppl, got.ppl_sea, sea.ppl, got.kl, got.kl_err, mean_kl, got.same,
            got.compared, want.same);
        expect_rel_near(got.ppl_dense, want.dense.ppl, 1e-9, "PPL (dense)");
        expect_rel_near(got.ppl_sea, want.sea.ppl, 1e-9, "PPL (SEA)");
        expect_rel_near(got.err_dense, want.dense.err, 1e-6, "dense error");
        expect_rel_near(got.err_sea, want.sea.err, 1e-6, "SEA error");
        expect_rel_near(got.ratio, want.sea.ppl / want.dense.ppl, 1e-6, "PPL ratio");
        EXPECT_GT(got.ratio_err, 0);
        EXPECT_NEAR(got.kl, mean_kl, 1e-6);  // printed with 6 decimals
        EXPECT_NEAR(got.kl_err, kl_err, 1e-6);
        EXPECT_NEAR(got.kl_median, percentile(want.kl, 0.5), 1e-6);
        EXPECT_NEAR(got.kl_p99, percentile(want.kl, 0.99), 1e-6);
        EXPECT_NEAR(got.kl_max, *std::max_element(want.kl.begin(), want.kl.end()), 1e-6);
        EXPECT_GT(got.kl, 1e-4) << "SEA should move the model";
        EXPECT_GE(got.kl_median, 0);
        EXPECT_EQ(got.same, want.same);
        EXPECT_EQ(got.compared, (long)n);
        EXPECT_NEAR(got.same_pct, 100.0 * (double)want.same / (double)n, 1e-3);

        // The running rows: one per window, the last one the final values.
        ASSERT_EQ(got.running.size(), (size_t)n_windows) << describe(r);
        for (size_t w = 0; w < got.running.size(); ++w) {
            expect_rel_near(got.running[w].ppl_dense, want.dense.running[w], 1e-9, "running PPL (dense)");
            expect_rel_near(got.running[w].ppl_sea, want.sea.running[w], 1e-9, "running PPL (SEA)");
            EXPECT_GE(got.running[w].kl, 0);
        }
        EXPECT_EQ(got.running.back().kl, got.kl);
        EXPECT_NEAR(got.running.back().same_pct, got.same_pct, 1e-9);
    }
    seaopt_model_free(model);
}

// --kl-divergence --kl-base-model: two model files side by side. The demo model against itself: KL 0, every top-1
// the same, both PPLs the normal mode's; against its seaopt-quantize'd q8_0 copy: PPL (base) the f16 file's and PPL
// (model) the q8_0 file's normal-mode PPLs, and a positive KL.
TEST_F(Perplexity, KlDivergenceAgainstABaseModel) {
    const std::string text = write_temp_file("kl-base.txt", kText);
    const std::string q8 = seaopt_test::temp_dir() + "/demo-q8.gguf";
    const Result rq = run({SEAOPT_BINARY_DIR "/bin/seaopt-quantize", kDemoModel, q8, "q8_0", "--no-progress"});
    ASSERT_TRUE(rq.exited && rq.status == 0) << describe(rq);
    auto args = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = {kTool, "-f", text, "-c", "40", "--chunks", "3", "--device", "cpu", "-t", "2"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    };
    const Result self = run(args({"-m", kDemoModel, "--kl-divergence", "--kl-base-model", kDemoModel}));
    const Result vs = run(args({"-m", q8, "--kl-divergence", "--kl-base-model", kDemoModel}));
    const Result f16_run = run(args({"-m", kDemoModel})), q8_run = run(args({"-m", q8}));
    for (const Result *r : {&self, &vs, &f16_run, &q8_run}) ASSERT_TRUE(r->exited && r->status == 0) << describe(*r);
    const KlReport a = parse_kl(self, "base", "model"), b = parse_kl(vs, "base", "model");
    const Report f16 = parse(f16_run), q8n = parse(q8_run);
    std::printf("f16 vs itself: KL %.6g, same %ld of %ld; q8_0 vs f16: PPL %.6g vs %.6g, KL %.6g, same %ld of %ld\n",
                a.kl, a.same, a.compared, b.ppl_sea, b.ppl_dense, b.kl, b.same, b.compared);
    EXPECT_EQ(a.kl, 0.0) << describe(self);
    EXPECT_EQ(a.kl_max, 0.0);
    EXPECT_EQ(a.same, a.compared);
    EXPECT_EQ(a.compared, 3L * 39);
    EXPECT_EQ(a.ppl_dense, a.ppl_sea);
    expect_rel_near(a.ppl_dense, f16.ppl, 1e-6, "PPL (base) vs the normal mode");
    expect_rel_near(b.ppl_dense, f16.ppl, 1e-6, "PPL (base) vs the f16 file's normal mode");
    expect_rel_near(b.ppl_sea, q8n.ppl, 1e-6, "PPL (model) vs the q8_0 file's normal mode");
    EXPECT_NE(b.ppl_sea, b.ppl_dense) << "quantizing should move the model";
    EXPECT_GT(b.kl, 0.0);
    EXPECT_EQ(b.running.size(), 3u);
    EXPECT_TRUE(contains(vs.err, "calculating KL(base||model)")) << describe(vs);
    EXPECT_TRUE(contains(vs.err, "q8_0")) << describe(vs);  // the base and model descriptions

    expect_clean_failure(run(args({"-m", q8, "--kl-base-model", kDemoModel})), "--kl-base-model goes with --kl-divergence");
    expect_clean_failure(run(args({"-m", q8, "--kl-divergence", "--kl-base-model", "/nonexistent.gguf"})),
                         "/nonexistent.gguf");
    expect_clean_failure(run(args({"-m", q8, "--kl-divergence", "--kl-base-model", ""})), "--kl-base-model needs a model file");
    // The base model's attention follows --attention: a base without a SEA estimator cannot run SEA.
    expect_clean_failure(run(args({"-m", kSeaModel, "--kl-divergence", "--kl-base-model", kDemoModel, "--attention", "sea"})),
                         "SEA");
}

TEST_F(Perplexity, KlDivergenceNeedsASeaModel) {
    const std::string text = write_temp_file("ok-kl.txt", kText);
    expect_clean_failure(run({kTool, "-m", kDemoModel, "-f", text, "-c", "32", "--kl-divergence", "--device", "cpu"}),
                         "has no SEA estimator: convert it with seaopt-convert --sea");
    expect_clean_failure(run({kTool, "-m", kSeaModel, "-f", text, "-c", "32", "--kl-divergence", "--attention", "dense",
                              "--device", "cpu"}),
                         "--attention dense contradicts it");
    expect_clean_failure(run({kTool, "-m", kSeaModel, "-f", text, "-c", "32", "--kl-divergence", "--sea-layers", "0-5",
                              "--device", "cpu"}),
                         "layer 5 is out of range");
}

TEST_F(Perplexity, WikiText2TestReconstruction) {
    const std::string dir = kSharedData + "/wikitext-2-raw";
    if (!fs::exists(dir + "/wiki.test.raw")) {
        GTEST_SKIP() << dir << "/wiki.test.raw is absent (SEAOPT_SHARED_DATA_DIR): cannot check the WikiText-2 counts";
    }
    const Result r = run({kTool, "-m", kDemoModel, "--wikitext2-test", dir, "-c", "2048", "--chunks", "1", "-t", "2"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    const Report got = parse(r);
    // data/README.md: 4,358 rows, 1,296,370 bytes joined; 287,645 OPT tokens with BOS; 140 windows.
    EXPECT_TRUE(contains(r.err, "4358 rows joined")) << describe(r);
    EXPECT_TRUE(contains(r.err, "1296370 bytes")) << describe(r);
    EXPECT_EQ(got.n_tokens, 287645) << describe(r);
    EXPECT_EQ(got.n_samples, 140) << describe(r);
    EXPECT_EQ(got.window, 2048) << describe(r);
    EXPECT_TRUE(contains(r.err, "the last 925 tokens are dropped")) << describe(r);
    EXPECT_EQ(got.running.size(), 1u) << describe(r);
    EXPECT_TRUE(std::isfinite(got.ppl) && got.ppl > 1) << describe(r);
}

TEST_F(Perplexity, WikiTextRowsAreRebuiltAsHuggingFaceDoes) {
    // A small wiki.test.raw: whitespace-only lines (" \n", a tab, a no-break space) become "" rows,
    // others keep their "\n", CRLF reads as "\n"; rows are joined with "\n\n". The tool must score
    // exactly the same tokens as -f on the expected join.
    const std::string dir = temp_dir() + "/wiki";
    fs::create_directories(dir);
    std::string raw, joined;
    std::vector<std::string> rows;
    for (int k = 0; k < 6; ++k) {
        raw +=
            " \n = Robert Boulter = \n\t\n Robert Boulter is an English film , television and theatre actor .\r\n"
            "\xC2\xA0\n He had a guest @-@ starring role in 2000 .";
        rows.insert(rows.end(), {"", " = Robert Boulter = \n", "",
                                 " Robert Boulter is an English film , television and theatre actor .\n", "",
                                 k < 5 ? " He had a guest @-@ starring role in 2000 . \n"
                                       : " He had a guest @-@ starring role in 2000 ."});
        if (k < 5) raw += " \n";
    }
    std::ofstream(dir + "/wiki.test.raw", std::ios::binary) << raw;
    for (size_t i = 0; i < rows.size(); ++i) joined += (i ? "\n\n" : "") + rows[i];
    const std::string joined_path = write_temp_file("joined.txt", joined);

    const Result a = run({kTool, "-m", fixture_model(), "--wikitext2-test", dir, "-c", "32", "--device", "cpu"});
    const Result b = run({kTool, "-m", fixture_model(), "-f", joined_path, "-c", "32", "--device", "cpu"});
    ASSERT_TRUE(a.exited && a.status == 0) << describe(a);
    ASSERT_TRUE(b.exited && b.status == 0) << describe(b);
    EXPECT_TRUE(contains(a.err, std::to_string(rows.size()) + " rows joined")) << describe(a);
    EXPECT_TRUE(contains(a.err, std::to_string(joined.size()) + " bytes")) << describe(a);
    const Report ra = parse(a), rb = parse(b);
    EXPECT_EQ(ra.n_tokens, rb.n_tokens);
    EXPECT_GE(ra.n_samples, 2);
    EXPECT_EQ(a.out, b.out);  // the same tokens: the same numbers
}

TEST_F(Perplexity, HelpStatesTheProtocol) {
    const Result r = run({kTool, "--help"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    for (const char *s : {"GPTQ", "wiki.test.raw", "\\n\\n", "ONE BOS", "non-overlapping", "nsamples = n_tokens / N",
                          "loss * seqlen", "PPL = exp(sum_i nll_i / (nsamples x N))", "standard error", "--chunks",
                          "-b,--batch-size", "--batch-windows", "--score-second-half", "--wikitext2-test", "--device", "--attention", "--sea-layers",
                          "--sea-k", "--kl-divergence", "KL(dense||SEA) = sum_v p(v) (log p(v) - log q(v))",
                          "Same top-1", "among ties"}) {
        EXPECT_TRUE(contains(r.out, s)) << "--help lacks '" << s << "'\n" << r.out;
    }
}

TEST_F(Perplexity, BadInputFailsCleanly) {
    const std::string model = fixture_model();
    const std::string text = write_temp_file("ok.txt", kText);
    expect_clean_failure(run({kTool, "-m", model, "-f", temp_dir() + "/no-such-file.txt"}), "no-such-file.txt");
    expect_clean_failure(run({kTool, "-m", model, "--wikitext2-test", temp_dir() + "/no-such-dir"}), "wiki.test.raw");
    expect_clean_failure(run({kTool, "-m", temp_dir() + "/no-such-model.gguf", "-f", text}), "no-such-model.gguf");
    expect_clean_failure(run({kTool, "-m", model, "-f", write_temp_file("bad.txt", "caf\xC3 \xFF\xFE ok")}), "UTF-8");
    // Shorter than one window: 6 tokens against the default window of 64.
    expect_clean_failure(run({kTool, "-m", model, "-f", write_temp_file("short.txt", "Hello, my dog is")}),
                         "fewer than one window of 64 tokens");
    expect_clean_failure(run({kTool, "-m", model, "-f", write_temp_file("empty.txt", "")}), "fewer than one window");
    // Windows longer than the model's positions.
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "-c", "65"}), "larger than the model's 64 positions");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "-c", "1"}), "at least 2");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "-c", "-5"}), "-c/--ctx-size");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "-b", "-1"}), "-b/--batch-size");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "--batch-windows", "0"}), "--batch-windows");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "-b", "128", "--batch-windows", "2"}), "excludes");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "-c", "2", "--score-second-half"}),
                         "--score-second-half needs windows of at least 3 tokens");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "--chunks", "-2"}), "--chunks");
    expect_clean_failure(run({kTool, "-m", model}), "-f FILE or --wikitext2-test DIR");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "--wikitext2-test", temp_dir()}), "excludes");
    expect_clean_failure(run({kTool, "-m", model, "-f", text, "--device", "tpu"}), "--device");
}
