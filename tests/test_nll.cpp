// seaopt_decode_nll on the CPU engine (fixture opt-tiny-pre, converted with the built seaopt-convert):
// the NLLs equal -log softmax(logits)[target] computed here, in double, from seaopt_decode's logits
// of the same tokens; bad targets and NULL pointers give SEAOPT_ERR_INVALID_ARGUMENT and change
// nothing (KV cache, out_nll); a batch run through it has no logits.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "seaopt.h"
#include "test_util.h"

namespace {

int run_command(const std::vector<std::string> &args) {
    pid_t pid = fork();
    if (pid == 0) {
        std::vector<char *> argv;
        for (const std::string &a : args) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const std::string &model_path() {
    static const std::string path = [] {
        const std::string out = seaopt_test::temp_dir() + "/opt-tiny-pre-nll.gguf";
        const int rc = run_command({std::string(SEAOPT_BINARY_DIR) + "/bin/seaopt-convert",
                                    std::string(SEAOPT_TEST_DATA_DIR) + "/opt-tiny-pre/safetensors", "-o", out,
                                    "--outtype", "f32", "--no-progress"});
        return rc == 0 ? out : std::string();
    }();
    return path;
}

double ref_nll(const float *logits, int32_t V, int32_t target) {
    double max = logits[0];
    for (int32_t j = 1; j < V; ++j) max = std::max(max, (double)logits[j]);
    double sum = 0;
    for (int32_t j = 0; j < V; ++j) sum += std::exp((double)logits[j] - max);
    return std::log(sum) + max - (double)logits[target];
}

class Nll : public testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(model_path().empty()) << "seaopt-convert failed on the opt-tiny-pre fixture";
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = SEAOPT_DEVICE_CPU;
        ASSERT_EQ(seaopt_model_load(model_path().c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
        V = seaopt_model_n_vocab(model);
    }
    void TearDown() override {
        for (seaopt_context *c : contexts) seaopt_context_free(c);
        seaopt_model_free(model);
    }
    seaopt_context *new_context(uint32_t n_seq = 1) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = 64;
        cp.n_seq_max = n_seq;
        cp.n_threads = 2;
        seaopt_context *c = nullptr;
        EXPECT_EQ(seaopt_context_new(model, &cp, &c), SEAOPT_OK) << seaopt_last_error();
        contexts.push_back(c);
        return c;
    }
    seaopt_model *model = nullptr;
    int32_t V = 0;
    std::vector<seaopt_context *> contexts;
};

const std::vector<seaopt_token> kTokens = {2, 31414, 6, 127, 2335, 16, 11962, 4, 38, 657, 5};

}  // namespace

TEST_F(Nll, EqualsLogSoftmaxOfTheLogits) {
    const int32_t n = (int32_t)kTokens.size();
    std::vector<int8_t> want(n);
    std::vector<seaopt_token> targets(n);
    for (int32_t i = 0; i < n; ++i) {
        want[i] = i % 3 != 1;  // a subset of the positions
        targets[i] = i + 1 < n ? kTokens[i + 1] : (i * 7919) % V;
    }
    seaopt_batch batch = {n, kTokens.data(), nullptr, nullptr, want.data()};

    seaopt_context *a = new_context();
    ASSERT_EQ(seaopt_decode(a, &batch), SEAOPT_OK) << seaopt_last_error();
    std::vector<double> ref(n, 0.0);
    for (int32_t i = 0; i < n; ++i) {
        if (!want[i]) continue;
        const float *row = seaopt_get_logits_ith(a, i);
        ASSERT_NE(row, nullptr) << seaopt_last_error();
        ref[i] = ref_nll(row, V, targets[i]);
    }

    seaopt_context *b = new_context();
    const float kUntouched = -12345.0f;
    std::vector<float> nll(n, kUntouched);
    ASSERT_EQ(seaopt_decode_nll(b, &batch, targets.data(), nll.data()), SEAOPT_OK) << seaopt_last_error();
    double max_diff = 0;
    for (int32_t i = 0; i < n; ++i) {
        if (!want[i]) {
            EXPECT_EQ(nll[i], kUntouched) << "position " << i << " did not ask for an output";
            continue;
        }
        EXPECT_TRUE(std::isfinite(nll[i]));
        EXPECT_GT(nll[i], 0.0f);
        EXPECT_LE(std::fabs(nll[i] - ref[i]), 1e-5) << "position " << i << ": " << nll[i] << " vs " << ref[i];
        max_diff = std::max(max_diff, std::fabs(nll[i] - ref[i]));
    }
    std::printf("max |nll - ref| = %.3g\n", max_diff);
    EXPECT_EQ(seaopt_kv_seq_len(b, 0), n);

    // No logits after a fused-loss batch.
    EXPECT_EQ(seaopt_get_logits_ith(b, 0), nullptr);
    EXPECT_EQ(seaopt_get_logits_ith(b, -1), nullptr);
    EXPECT_NE(std::string(seaopt_last_error()).find("no logits"), std::string::npos) << seaopt_last_error();

    // It continues the cache as seaopt_decode does: one more token on each context agrees.
    const seaopt_token next = 7, next_target = 100;
    seaopt_batch one = seaopt_batch_get_one(&next, 1);  // logits = NULL: the last (only) token
    ASSERT_EQ(seaopt_decode(a, &one), SEAOPT_OK) << seaopt_last_error();
    const float *row = seaopt_get_logits_ith(a, -1);
    ASSERT_NE(row, nullptr);
    float one_nll = kUntouched;
    ASSERT_EQ(seaopt_decode_nll(b, &one, &next_target, &one_nll), SEAOPT_OK) << seaopt_last_error();
    EXPECT_LE(std::fabs(one_nll - ref_nll(row, V, next_target)), 1e-5);
    EXPECT_EQ(seaopt_kv_seq_len(b, 0), n + 1);

    // A later seaopt_decode makes logits available again.
    ASSERT_EQ(seaopt_kv_truncate(b, 0, n), SEAOPT_OK);
    ASSERT_EQ(seaopt_decode(b, &one), SEAOPT_OK) << seaopt_last_error();
    EXPECT_NE(seaopt_get_logits_ith(b, -1), nullptr) << seaopt_last_error();
}

TEST_F(Nll, SeveralSequencesInOneBatch) {
    // Two windows as two sequences, as seaopt-perplexity -b 2 runs them.
    const int32_t N = 5;
    std::vector<seaopt_token> tok, tgt;
    std::vector<seaopt_pos> pos;
    std::vector<seaopt_seq_id> seq;
    std::vector<int8_t> want;
    for (int32_t s = 0; s < 2; ++s) {
        for (int32_t i = 0; i < N; ++i) {
            tok.push_back(kTokens[(size_t)(s * N + i)]);
            tgt.push_back(i < N - 1 ? kTokens[(size_t)(s * N + i + 1)] : 0);
            pos.push_back(i);
            seq.push_back(s);
            want.push_back(i < N - 1);
        }
    }
    seaopt_batch batch = {2 * N, tok.data(), pos.data(), seq.data(), want.data()};
    seaopt_context *a = new_context(2), *b = new_context(2);
    ASSERT_EQ(seaopt_decode(a, &batch), SEAOPT_OK) << seaopt_last_error();
    std::vector<float> nll(2 * N, 0.0f);
    ASSERT_EQ(seaopt_decode_nll(b, &batch, tgt.data(), nll.data()), SEAOPT_OK) << seaopt_last_error();
    for (int32_t i = 0; i < 2 * N; ++i) {
        if (!want[i]) continue;
        const float *row = seaopt_get_logits_ith(a, i);
        ASSERT_NE(row, nullptr);
        EXPECT_LE(std::fabs(nll[i] - ref_nll(row, V, tgt[i])), 1e-5) << "token " << i;
    }
}

TEST_F(Nll, BadInputIsRefusedAndChangesNothing) {
    seaopt_context *c = new_context();
    // Some history first, so that "unchanged" means something.
    seaopt_batch first = seaopt_batch_get_one(kTokens.data(), 3);
    ASSERT_EQ(seaopt_decode(c, &first), SEAOPT_OK) << seaopt_last_error();
    ASSERT_EQ(seaopt_kv_seq_len(c, 0), 3);

    const int32_t n = 4;
    const seaopt_token *toks = kTokens.data() + 3;
    std::vector<int8_t> want = {1, 0, 1, 1};
    seaopt_batch batch = {n, toks, nullptr, nullptr, want.data()};
    std::vector<float> nll(n, 7.0f);
    auto unchanged = [&](const char *what) {
        EXPECT_EQ(seaopt_kv_seq_len(c, 0), 3) << what;
        for (float x : nll) EXPECT_EQ(x, 7.0f) << what;
        EXPECT_STRNE(seaopt_last_error(), "") << what;
    };

    for (seaopt_token badt : {-1, V, V + 1000}) {
        std::vector<seaopt_token> tgt = {5, 6, 7, 8};
        tgt[2] = badt;
        EXPECT_EQ(seaopt_decode_nll(c, &batch, tgt.data(), nll.data()), SEAOPT_ERR_INVALID_ARGUMENT) << badt;
        unchanged("bad target");
    }
    // A bad target where no output is asked for is not read.
    {
        std::vector<seaopt_token> tgt = {5, -1, 7, 8};
        std::vector<float> scratch(n, 7.0f);
        seaopt_context *d = new_context();
        EXPECT_EQ(seaopt_decode_nll(d, &batch, tgt.data(), scratch.data()), SEAOPT_OK) << seaopt_last_error();
        EXPECT_EQ(scratch[1], 7.0f);
    }
    const std::vector<seaopt_token> tgt = {5, 6, 7, 8};
    EXPECT_EQ(seaopt_decode_nll(c, &batch, nullptr, nll.data()), SEAOPT_ERR_INVALID_ARGUMENT);
    unchanged("NULL targets");
    EXPECT_EQ(seaopt_decode_nll(c, &batch, tgt.data(), nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    unchanged("NULL out_nll");
    EXPECT_EQ(seaopt_decode_nll(c, nullptr, tgt.data(), nll.data()), SEAOPT_ERR_INVALID_ARGUMENT);
    unchanged("NULL batch");
    EXPECT_EQ(seaopt_decode_nll(nullptr, &batch, tgt.data(), nll.data()), SEAOPT_ERR_INVALID_ARGUMENT);
    // The batch's own validation, as seaopt_decode: a bad token id, a position gap.
    const std::vector<seaopt_token> bad_tok = {5, V, 7, 8};
    seaopt_batch bad = {n, bad_tok.data(), nullptr, nullptr, want.data()};
    EXPECT_EQ(seaopt_decode_nll(c, &bad, tgt.data(), nll.data()), SEAOPT_ERR_INVALID_ARGUMENT);
    unchanged("bad token");
    const std::vector<seaopt_pos> gap = {3, 4, 6, 7};
    seaopt_batch gapped = {n, toks, gap.data(), nullptr, want.data()};
    EXPECT_EQ(seaopt_decode_nll(c, &gapped, tgt.data(), nll.data()), SEAOPT_ERR_INVALID_ARGUMENT);
    unchanged("position gap");
    // The previous batch's logits survive a refused call.
    EXPECT_NE(seaopt_get_logits_ith(c, -1), nullptr) << seaopt_last_error();

    // And the same batch with valid input then works from the unchanged cache.
    ASSERT_EQ(seaopt_decode_nll(c, &batch, tgt.data(), nll.data()), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(seaopt_kv_seq_len(c, 0), 3 + n);
    EXPECT_EQ(nll[1], 7.0f);
    EXPECT_NE(nll[0], 7.0f);
}
