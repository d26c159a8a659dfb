// seaopt_attention_maps (include/seaopt.h) on the build's SEA demo model (models/opt-tiny-sea-untrained.gguf,
// 2 layers, 2 heads of 64, K 16, k 4): the estimated rows are distributions, the mask is causal and holds the
// selected keys, the dense rows are causal distributions, a budget covering every cell selects every causal
// key, and the errors. Then seaopt-attnviz as a user runs it: the PNG (signature, IHDR size), and a bad
// layer exits 1 leaving no file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "seaopt.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kAttnviz = SEAOPT_BINARY_DIR "/bin/seaopt-attnviz";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";
const std::string kDenseModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";
const std::string kPrompt = "Hello, my name is Ada and I write programs that run language models on a CPU.";

using seaopt_test::describe;
using seaopt_test::Result;
using seaopt_test::run;

seaopt_model *load(const std::string &path, bool vocab_only = false) {
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    mp.vocab_only = vocab_only;
    seaopt_model *m = nullptr;
    EXPECT_EQ(seaopt_model_load(path.c_str(), &mp, &m), SEAOPT_OK) << seaopt_last_error();
    return m;
}

std::vector<seaopt_token> tokenize(const seaopt_model *m, const std::string &text) {
    std::vector<seaopt_token> t(text.size() + 2);
    int32_t n = 0;
    EXPECT_EQ(seaopt_tokenize(m, text.data(), text.size(), true, true, t.data(), (int32_t)t.size(), &n), SEAOPT_OK);
    t.resize((size_t)n);
    return t;
}

bool contains(const std::string &s, const std::string &needle) { return s.find(needle) != std::string::npos; }

class AttentionMaps : public testing::Test {
protected:
    static void SetUpTestSuite() {
        model_ = load(kSeaModel);
        if (model_) tokens_ = tokenize(model_, kPrompt);
    }
    static void TearDownTestSuite() {
        seaopt_model_free(model_);
        model_ = nullptr;
    }
    void SetUp() override { ASSERT_NE(model_, nullptr); }
    static seaopt_model *model_;
    static std::vector<seaopt_token> tokens_;
};
seaopt_model *AttentionMaps::model_ = nullptr;
std::vector<seaopt_token> AttentionMaps::tokens_;

void check_maps(const seaopt_attention_maps_out &m, int32_t T) {
    ASSERT_EQ(m.T, T);
    ASSERT_EQ(m.K, 16);
    ASSERT_NE(m.estimated, nullptr);
    ASSERT_NE(m.mask, nullptr);
    ASSERT_NE(m.dense, nullptr);
    EXPECT_EQ(m.n_causal, (int64_t)T * (T + 1) / 2);
    int64_t mask_total = 0;
    for (int32_t t = 0; t < T; ++t) {
        double est = 0.0, dense = 0.0;
        for (int32_t c = 0; c < m.K; ++c) {
            const float p = m.estimated[(size_t)t * m.K + c];
            EXPECT_TRUE(p >= 0.0f && p <= 1.0f) << "row " << t << " cell " << c << ": " << p;
            est += p;
        }
        EXPECT_NEAR(est, 1.0, 1e-4) << "estimated row " << t;
        for (int32_t j = 0; j < T; ++j) {
            const float mk = m.mask[(size_t)t * T + j], d = m.dense[(size_t)t * T + j];
            EXPECT_TRUE(mk == 0.0f || mk == 1.0f) << t << "," << j;
            EXPECT_GE(d, 0.0f);
            if (j > t) {
                EXPECT_EQ(mk, 0.0f) << "the mask reads the future at (" << t << ", " << j << ")";
                EXPECT_EQ(d, 0.0f) << "dense reads the future at (" << t << ", " << j << ")";
            }
            mask_total += mk != 0.0f;
            dense += d;
        }
        EXPECT_NEAR(dense, 1.0, 1e-5) << "dense row " << t;
    }
    EXPECT_EQ(mask_total, m.n_selected) << "the mask's ones must be the selected keys";
    EXPECT_GE(m.n_selected, 0);
    EXPECT_LE(m.n_selected, m.n_causal);
}

}  // namespace

TEST_F(AttentionMaps, EveryLayerAndHeadGivesDistributionsAndACausalMask) {
    const int32_t T = (int32_t)tokens_.size();
    ASSERT_GT(T, 16) << "the prompt should be longer than K";
    int64_t selected_somewhere = 0;
    for (int32_t layer = 0; layer < seaopt_model_n_layer(model_); ++layer) {
        for (int32_t head = 0; head < seaopt_model_n_head(model_); ++head) {
            SCOPED_TRACE("layer " + std::to_string(layer) + " head " + std::to_string(head));
            seaopt_attention_maps_out m;
            ASSERT_EQ(seaopt_attention_maps(model_, tokens_.data(), T, layer, head, 0, &m), SEAOPT_OK)
                << seaopt_last_error();
            EXPECT_EQ(m.sea_k, 4) << "0 = the model's sea.k";
            check_maps(m, T);
            selected_somewhere += m.n_selected;
            EXPECT_LT(m.n_selected, m.n_causal) << "k 4 over " << T << " tokens should be sparse";
            seaopt_attention_maps_free(&m);
            EXPECT_EQ(m.mask, nullptr);
            seaopt_attention_maps_free(&m);  // twice is fine
        }
    }
    EXPECT_GT(selected_somewhere, 0);
}

TEST_F(AttentionMaps, IsDeterministicAndTheLayersDiffer) {
    const int32_t T = (int32_t)tokens_.size();
    seaopt_attention_maps_out a, b, c;
    ASSERT_EQ(seaopt_attention_maps(model_, tokens_.data(), T, 1, 0, 0, &a), SEAOPT_OK) << seaopt_last_error();
    ASSERT_EQ(seaopt_attention_maps(model_, tokens_.data(), T, 1, 0, 0, &b), SEAOPT_OK) << seaopt_last_error();
    ASSERT_EQ(seaopt_attention_maps(model_, tokens_.data(), T, 0, 0, 0, &c), SEAOPT_OK) << seaopt_last_error();
    const size_t n = (size_t)T * T;
    EXPECT_EQ(std::memcmp(a.dense, b.dense, n * 4), 0);
    EXPECT_EQ(std::memcmp(a.mask, b.mask, n * 4), 0);
    EXPECT_EQ(std::memcmp(a.estimated, b.estimated, (size_t)T * a.K * 4), 0);
    EXPECT_NE(std::memcmp(a.dense, c.dense, n * 4), 0) << "layer 1's q, k come from layer 0's output";
    seaopt_attention_maps_free(&a);
    seaopt_attention_maps_free(&b);
    seaopt_attention_maps_free(&c);
}

TEST_F(AttentionMaps, ABudgetCoveringEveryCellSelectsEveryCausalKey) {
    // k = 1024: n_t = H·k·K/(t+1) >= H·K cells for t < 1024 and each cell keeps up to 1024 keys, so the
    // cells of every head tile [0, t] (sea.md §2.7, §2.8).
    const int32_t T = (int32_t)tokens_.size();
    seaopt_attention_maps_out m;
    ASSERT_EQ(seaopt_attention_maps(model_, tokens_.data(), T, 1, 1, 1024, &m), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(m.sea_k, 1024);
    check_maps(m, T);
    EXPECT_EQ(m.n_selected, m.n_causal);
    seaopt_attention_maps_free(&m);
    // k = 1 over the whole prompt is sparse.
    seaopt_attention_maps_out small;
    ASSERT_EQ(seaopt_attention_maps(model_, tokens_.data(), T, 1, 1, 1, &small), SEAOPT_OK) << seaopt_last_error();
    check_maps(small, T);
    EXPECT_LT(small.n_selected, (int64_t)T * (T + 1) / 2);
    seaopt_attention_maps_free(&small);
}

TEST_F(AttentionMaps, OneToken) {
    seaopt_attention_maps_out m;
    ASSERT_EQ(seaopt_attention_maps(model_, tokens_.data(), 1, 0, 0, 0, &m), SEAOPT_OK) << seaopt_last_error();
    check_maps(m, 1);
    EXPECT_FLOAT_EQ(m.dense[0], 1.0f);
    seaopt_attention_maps_free(&m);
}

TEST_F(AttentionMaps, Errors) {
    const int32_t T = (int32_t)tokens_.size();
    seaopt_attention_maps_out m;
    const auto expect_error = [&](seaopt_status got, seaopt_status want, const std::string &what) {
        EXPECT_EQ(got, want) << seaopt_status_name(got) << ": " << seaopt_last_error();
        EXPECT_TRUE(contains(seaopt_last_error(), what)) << "'" << what << "' not in: " << seaopt_last_error();
        EXPECT_EQ(m.T, 0);
        EXPECT_EQ(m.estimated, nullptr);
        EXPECT_EQ(m.mask, nullptr);
        EXPECT_EQ(m.dense, nullptr);
    };
    expect_error(seaopt_attention_maps(model_, tokens_.data(), T, 2, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT, "layer 2");
    expect_error(seaopt_attention_maps(model_, tokens_.data(), T, -1, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "layer -1");
    expect_error(seaopt_attention_maps(model_, tokens_.data(), T, 0, 2, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT, "head 2");
    expect_error(seaopt_attention_maps(model_, tokens_.data(), T, 0, -3, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "head -3");
    expect_error(seaopt_attention_maps(model_, tokens_.data(), 0, 0, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "n_tokens = 0");
    const int32_t n_pos = seaopt_model_n_ctx_train(model_);
    std::vector<seaopt_token> many((size_t)n_pos + 1, 2);
    expect_error(seaopt_attention_maps(model_, many.data(), n_pos + 1, 0, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "n_tokens = " + std::to_string(n_pos + 1));
    std::vector<seaopt_token> bad = tokens_;
    bad[3] = seaopt_model_n_vocab(model_);
    expect_error(seaopt_attention_maps(model_, bad.data(), T, 0, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "id " + std::to_string(seaopt_model_n_vocab(model_)));
    bad[3] = -5;
    expect_error(seaopt_attention_maps(model_, bad.data(), T, 0, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT, "id -5");
    expect_error(seaopt_attention_maps(model_, tokens_.data(), T, 0, 0, -1, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "sea_k = -1");
    expect_error(seaopt_attention_maps(model_, tokens_.data(), T, 0, 0, 1 << 23, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "sea_k = 8388608");
    expect_error(seaopt_attention_maps(nullptr, tokens_.data(), T, 0, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT, "model");
    expect_error(seaopt_attention_maps(model_, nullptr, T, 0, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT, "tokens");
    EXPECT_EQ(seaopt_attention_maps(model_, tokens_.data(), T, 0, 0, 0, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);

    seaopt_model *dense = load(kDenseModel);
    ASSERT_NE(dense, nullptr);
    expect_error(seaopt_attention_maps(dense, tokens_.data(), T, 0, 0, 0, &m), SEAOPT_ERR_UNSUPPORTED,
                 "no SEA estimator");
    seaopt_model_free(dense);
    seaopt_model *vocab = load(kSeaModel, true);
    ASSERT_NE(vocab, nullptr);
    expect_error(seaopt_attention_maps(vocab, tokens_.data(), T, 0, 0, 0, &m), SEAOPT_ERR_INVALID_ARGUMENT,
                 "vocab_only");
    seaopt_model_free(vocab);
}

// ---- the tool --------------------------------------------------------------------------------------

namespace {

class Attnviz : public testing::Test {
protected:
    void SetUp() override {
#ifndef SEAOPT_HAVE_ATTNVIZ
        GTEST_SKIP() << "seaopt-attnviz was not built (no libpng)";
#endif
        ASSERT_TRUE(fs::exists(kAttnviz)) << kAttnviz << " is missing: build the seaopt-attnviz target";
    }
};

uint32_t be32(const std::string &b, size_t at) {
    return ((uint32_t)(uint8_t)b[at] << 24) | ((uint32_t)(uint8_t)b[at + 1] << 16) |
           ((uint32_t)(uint8_t)b[at + 2] << 8) | (uint32_t)(uint8_t)b[at + 3];
}

// The PNG's IHDR width and height, after checking the signature and the chunk's name.
void expect_png(const std::string &path, uint32_t width, uint32_t height) {
    ASSERT_TRUE(fs::exists(path)) << path;
    const std::string b = seaopt_test::read_file(path);
    ASSERT_GE(b.size(), 33u);
    EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << "not a PNG signature";
    EXPECT_EQ(be32(b, 8), 13u) << "IHDR length";
    EXPECT_EQ(b.substr(12, 4), "IHDR");
    EXPECT_EQ(be32(b, 16), width);
    EXPECT_EQ(be32(b, 20), height);
    EXPECT_EQ((int)(uint8_t)b[24], 8) << "bit depth";
    EXPECT_EQ((int)(uint8_t)b[25], 2) << "colour type RGB";
    EXPECT_EQ(b.substr(b.size() - 8, 4), "IEND");
}

int32_t prompt_tokens(const std::string &text) {
    seaopt_model *m = load(kSeaModel, true);
    const int32_t n = m ? (int32_t)tokenize(m, text).size() : -1;
    seaopt_model_free(m);
    return n;
}

// No temporary file left beside the output.
void expect_no_temporaries(const std::string &dir) {
    for (const auto &e : fs::directory_iterator(dir)) {
        EXPECT_FALSE(contains(e.path().filename().string(), ".tmp")) << e.path();
    }
}

}  // namespace

TEST_F(Attnviz, WritesThreePanelsAtTheDefaultScale) {
    const std::string dir = seaopt_test::temp_dir() + "/default";
    fs::create_directories(dir);
    const std::string out = dir + "/maps.png";
    const Result r = run({kAttnviz, "-m", kSeaModel, "-p", kPrompt, "--layer", "1", "--head", "1", "-o", out});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    const int32_t T = prompt_tokens(kPrompt);
    ASSERT_GT(T, 0);
    const uint32_t scale = (512 + (uint32_t)T - 1) / (uint32_t)T, P = (uint32_t)T * scale;
    EXPECT_GE(P, 512u);
    expect_png(out, 3 * P + 2 * 8, P);
    EXPECT_TRUE(contains(r.out, "wrote " + out + " (" + std::to_string(3 * P + 16) + " x " + std::to_string(P) + " px"))
        << describe(r);
    EXPECT_TRUE(contains(r.out, "T = " + std::to_string(T) + " tokens, K = 16, k = 4")) << describe(r);
    EXPECT_TRUE(contains(r.out, "selected keys ")) << describe(r);
    EXPECT_TRUE(contains(r.out, " of " + std::to_string(T * (T + 1) / 2) + " causal")) << describe(r);
    expect_no_temporaries(dir);
}

TEST_F(Attnviz, ScaleSeaKAndAPromptFile) {
    const std::string dir = seaopt_test::temp_dir() + "/scaled";
    fs::create_directories(dir);
    const std::string out = dir + "/maps.png";
    const std::string text = "The quick brown fox";
    const std::string file = seaopt_test::write_temp_file("attnviz-prompt.txt", text);
    const Result r = run({kAttnviz, "-m", kSeaModel, "-f", file, "--scale", "3", "--sea-k", "1024", "-o", out});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    const uint32_t T = (uint32_t)prompt_tokens(text), P = 3 * T;
    expect_png(out, 3 * P + 16, P);
    const std::string causal = std::to_string(T * (T + 1) / 2);
    EXPECT_TRUE(contains(r.out, "selected keys " + causal + " of " + causal + " causal (100.0%)")) << describe(r);
}

TEST_F(Attnviz, ABadLayerFailsAndWritesNothing) {
    const std::string dir = seaopt_test::temp_dir() + "/bad";
    fs::create_directories(dir);
    const std::string out = dir + "/maps.png";
    const Result r = run({kAttnviz, "-m", kSeaModel, "-p", kPrompt, "--layer", "7", "-o", out});
    EXPECT_TRUE(r.exited) << describe(r);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.err, "seaopt-attnviz: error: ")) << describe(r);
    EXPECT_TRUE(contains(r.err, "layer 7")) << describe(r);
    EXPECT_FALSE(fs::exists(out));
    EXPECT_TRUE(fs::is_empty(dir)) << "nothing, not even a temporary, is left";

    const Result dense = run({kAttnviz, "-m", kDenseModel, "-p", kPrompt, "-o", out});
    EXPECT_EQ(dense.status, 1) << describe(dense);
    EXPECT_TRUE(contains(dense.err, "no SEA estimator")) << describe(dense);
    EXPECT_FALSE(fs::exists(out));
}
