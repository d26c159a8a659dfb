// seaopt_bench_attention_layer (include/seaopt.h) where no GPU runs it: the defaults, the parameter checks (each a
// clear error naming the bad value), SEA on a model without an estimator, and a model loaded on the CPU refused as
// unsupported (the benchmark times CUDA kernels); *out is zeroed on every error. Also the benchmark's random data
// (model/opt_attention_bench.h): deterministic, N(0, 1). The runs themselves are tests/test_gpu_attention_bench.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "model/opt_attention_bench.h"
#include "seaopt.h"

namespace fs = std::filesystem;

namespace {

const std::string kModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";         // no SEA estimator
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";  // SEA: 2 layers, K 16, k 4

bool contains(const std::string &haystack, const std::string &needle) { return haystack.find(needle) != std::string::npos; }

struct Model {
    seaopt_model *m = nullptr;
    explicit Model(const std::string &path, bool vocab_only = false) {
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = SEAOPT_DEVICE_CPU;
        mp.vocab_only = vocab_only;
        EXPECT_EQ(seaopt_model_load(path.c_str(), &mp, &m), SEAOPT_OK) << path << ": " << seaopt_last_error();
    }
    ~Model() { seaopt_model_free(m); }
};

// Runs the call with *out first filled with garbage; expects `status`, a message containing `what`, *out zeroed.
void expect_error(const seaopt_model *model, const seaopt_attention_layer_bench_params &p, seaopt_status status,
                  const std::string &what) {
    seaopt_attention_layer_bench_result out;
    std::memset(&out, 0xAB, sizeof out);
    EXPECT_EQ(seaopt_bench_attention_layer(model, &p, &out), status)
        << "expected " << seaopt_status_name(status) << " for '" << what << "'; message: " << seaopt_last_error();
    const std::string message = seaopt_last_error();
    EXPECT_TRUE(contains(message, what)) << "expected '" << what << "' in the message: " << message;
    seaopt_attention_layer_bench_result zero;
    std::memset(&zero, 0, sizeof zero);
    EXPECT_EQ(std::memcmp(&out, &zero, sizeof out), 0) << "*out is not zeroed after an error";
}

class AttentionBench : public testing::Test {
protected:
    void SetUp() override {
        for (const std::string &path : {kModel, kSeaModel}) {
            ASSERT_TRUE(fs::exists(path)) << path << " is missing: build the tiny_model and tiny_sea_model targets";
        }
    }
};

}  // namespace

TEST(AttentionBenchParams, Defaults) {
    const seaopt_attention_layer_bench_params p = seaopt_attention_layer_bench_default_params();
    EXPECT_EQ(p.attention, SEAOPT_ATTENTION_DENSE);
    EXPECT_EQ(p.layer, 0);
    EXPECT_EQ(p.n_tokens, 2048);
    EXPECT_EQ(p.sea_k, 0);
    EXPECT_EQ(p.n_reps, 10);
    EXPECT_EQ(p.n_warmup, 3);
    EXPECT_EQ(SEAOPT_ATTENTION_BENCH_MAX_TOKENS, 131072);
}

TEST_F(AttentionBench, CpuModelIsUnsupported) {
    Model model(kSeaModel);
    ASSERT_NE(model.m, nullptr);
    seaopt_attention_layer_bench_params p = seaopt_attention_layer_bench_default_params();
    p.n_tokens = 64;
    expect_error(model.m, p, SEAOPT_ERR_UNSUPPORTED, "loaded on the CPU");
    expect_error(model.m, p, SEAOPT_ERR_UNSUPPORTED, "--device cuda");
    // SEA, and a T beyond the model's 2048 positions (valid: the positional table is stretched), then the
    // largest T: all valid parameters, refused only for the device.
    p.attention = SEAOPT_ATTENTION_SEA;
    p.n_tokens = 4096;
    p.layer = 1;
    p.sea_k = 2;
    expect_error(model.m, p, SEAOPT_ERR_UNSUPPORTED, "loaded on the CPU");
    p.n_tokens = SEAOPT_ATTENTION_BENCH_MAX_TOKENS;
    expect_error(model.m, p, SEAOPT_ERR_UNSUPPORTED, "CUDA kernels");
    // NULL params = the defaults: also valid, also refused for the device.
    seaopt_attention_layer_bench_result out;
    EXPECT_EQ(seaopt_bench_attention_layer(model.m, nullptr, &out), SEAOPT_ERR_UNSUPPORTED) << seaopt_last_error();
}

TEST_F(AttentionBench, BadParametersAreNamed) {
    Model model(kSeaModel);
    ASSERT_NE(model.m, nullptr);
    const seaopt_attention_layer_bench_params base = seaopt_attention_layer_bench_default_params();
    for (const seaopt_attention kind : {SEAOPT_ATTENTION_DENSE, SEAOPT_ATTENTION_SEA}) {
        SCOPED_TRACE(kind == SEAOPT_ATTENTION_SEA ? "SEA" : "dense");
        seaopt_attention_layer_bench_params p = base;
        p.attention = kind;
        p.n_tokens = 0;
        expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "n_tokens = 0 is out of range: it must be in [1, 131072]");
        p.n_tokens = -5;
        expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "n_tokens = -5 is out of range");
        p.n_tokens = SEAOPT_ATTENTION_BENCH_MAX_TOKENS + 1;
        expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "n_tokens = 131073 is out of range");
        p = base;
        p.attention = kind;
        p.layer = 2;
        expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "layer 2 is out of range: the model has 2 layers");
        p.layer = -1;
        expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "layer -1 is out of range");
        p = base;
        p.attention = kind;
        p.n_reps = 0;
        expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "n_reps = 0 must be in [1, 100000]");
        p = base;
        p.attention = kind;
        p.n_warmup = -1;
        expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "n_warmup = -1 must be in [0, 1000]");
    }
    seaopt_attention_layer_bench_params p = base;
    p.attention = (seaopt_attention)7;
    expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "unknown attention kind 7");
    p = base;
    p.sea_k = 3;
    expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "sea_k = 3 is set but attention is dense");
    p.attention = SEAOPT_ATTENTION_SEA;
    p.sea_k = -1;
    expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "sea_k = -1 must be >= 0");
    p.sea_k = (1 << 24) / 16 + 1;  // K = 16: k·K must stay <= 2^24
    expect_error(model.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "is out of range: at most 1048576");
}

TEST_F(AttentionBench, SeaNeedsAnEstimator) {
    Model model(kModel);
    ASSERT_NE(model.m, nullptr);
    ASSERT_FALSE(seaopt_model_has_sea(model.m));
    seaopt_attention_layer_bench_params p = seaopt_attention_layer_bench_default_params();
    p.attention = SEAOPT_ATTENTION_SEA;
    p.n_tokens = 64;
    expect_error(model.m, p, SEAOPT_ERR_UNSUPPORTED, "has no SEA estimator: convert it with seaopt-convert --sea");
    p.attention = SEAOPT_ATTENTION_DENSE;  // dense needs no estimator: refused only for the device
    expect_error(model.m, p, SEAOPT_ERR_UNSUPPORTED, "loaded on the CPU");
}

TEST_F(AttentionBench, NullArgumentsAndVocabOnly) {
    Model model(kSeaModel);
    ASSERT_NE(model.m, nullptr);
    const seaopt_attention_layer_bench_params p = seaopt_attention_layer_bench_default_params();
    seaopt_attention_layer_bench_result out;
    EXPECT_EQ(seaopt_bench_attention_layer(nullptr, &p, &out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(seaopt_last_error(), "model is NULL")) << seaopt_last_error();
    EXPECT_EQ(seaopt_bench_attention_layer(model.m, &p, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(seaopt_last_error(), "out is NULL")) << seaopt_last_error();

    Model vocab(kSeaModel, /*vocab_only=*/true);
    ASSERT_NE(vocab.m, nullptr);
    expect_error(vocab.m, p, SEAOPT_ERR_INVALID_ARGUMENT, "vocab_only");
}

TEST(AttentionBenchData, DeterministicStandardNormal) {
    constexpr uint64_t n = 1 << 20;
    double sum = 0, sum2 = 0, sum4 = 0;
    for (uint64_t i = 0; i < n; ++i) {
        const float x = seaopt::attention_bench_normal(seaopt::kAttentionBenchSeed, i);
        ASSERT_TRUE(std::isfinite(x)) << "value " << i;
        ASSERT_LT(std::fabs(x), 7.0f) << "value " << i;  // 32-bit uniforms bound |x| by sqrt(2 ln 2^32) = 6.66
        sum += x, sum2 += (double)x * x, sum4 += (double)x * x * x * x;
    }
    const double mean = sum / n, var = sum2 / n - mean * mean;
    EXPECT_NEAR(mean, 0.0, 0.005);     // standard error 1/1024
    EXPECT_NEAR(var, 1.0, 0.01);       // standard error sqrt(2/n) ~ 0.0014
    EXPECT_NEAR(sum4 / n, 3.0, 0.05);  // a normal's fourth moment
    // A function of (seed, i) only: the same value whenever and in whatever order it is asked for.
    EXPECT_EQ(seaopt::attention_bench_normal(seaopt::kAttentionBenchSeed, 12345),
              seaopt::attention_bench_normal(seaopt::kAttentionBenchSeed, 12345));
    EXPECT_NE(seaopt::attention_bench_normal(seaopt::kAttentionBenchSeed, 0),
              seaopt::attention_bench_normal(seaopt::kAttentionBenchSeed, 1));
}
