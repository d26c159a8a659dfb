// The CPU reference engine against Hugging Face transformers (fixtures in tests/data, made by
// tests/fixtures/make_fixtures.py): each checkpoint is converted with the real seaopt-convert
// binary, loaded through the public C API, and its logits and greedy tokens compared.
#include <gtest/gtest.h>

#include "test_util.h"
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "seaopt.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Tolerance for fp32 vs fp32: |Δ| <= kAbsTol + kRelTol * |ref|. Logits here have std ~5;
// the measured max |Δ| is ~1e-5 (see the test log), so this is loose enough for any summation
// order and tight enough to catch any real error (a wrong bias or scale moves logits by >1e-2).
constexpr float kAbsTol = 1e-4f;
constexpr float kRelTol = 1e-5f;

struct Fixture {
    std::string model;      // opt-tiny-pre / opt-tiny-post
    std::string ckpt;       // checkpoint subdirectory
};

const std::vector<Fixture> kFixtures = {
    {"opt-tiny-pre", "safetensors"},
    {"opt-tiny-pre", "bin"},
    {"opt-tiny-post", "safetensors-sharded"},
    {"opt-tiny-post", "bin"},
};

std::string data_dir() { return SEAOPT_TEST_DATA_DIR; }

using seaopt_test::temp_dir;

// Exit code of a program, or -1 if it crashed.
int run_command(const std::vector<std::string> &args) {
    const seaopt_test::Result r = seaopt_test::run(args);
    return r.exited ? r.status : -1;
}

// Converts a fixture checkpoint once per (fixture, outtype) and returns the GGUF path.
std::string converted(const Fixture &f, const std::string &outtype) {
    static std::map<std::string, std::string> cache;
    const std::string key = f.model + "/" + f.ckpt + "/" + outtype;
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    const std::string out = temp_dir() + "/" + f.model + "-" + f.ckpt + "-" + outtype + ".gguf";
    const int rc = run_command({std::string(SEAOPT_BINARY_DIR) + "/bin/seaopt-convert", data_dir() + "/" + f.model + "/" + f.ckpt,
                                "-o", out, "--outtype", outtype, "--no-progress"});
    if (rc != 0) throw std::runtime_error("seaopt-convert failed on " + key);
    cache[key] = out;
    return out;
}

json reference(const std::string &model) {
    std::ifstream in(data_dir() + "/" + model + "/reference.json");
    return json::parse(in);
}

std::vector<float> read_f32(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
}

struct Loaded {
    seaopt_model *model = nullptr;
    seaopt_context *ctx = nullptr;
    ~Loaded() {
        seaopt_context_free(ctx);
        seaopt_model_free(model);
    }
};

void load(Loaded &l, const std::string &path, uint32_t n_seq = 1, uint32_t n_ctx = 0) {
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    ASSERT_EQ(seaopt_model_load(path.c_str(), &mp, &l.model), SEAOPT_OK) << seaopt_last_error();
    seaopt_context_params cp = seaopt_context_default_params();
    cp.n_seq_max = n_seq;
    cp.n_ctx = n_ctx;
    cp.n_threads = 2;
    ASSERT_EQ(seaopt_context_new(l.model, &cp, &l.ctx), SEAOPT_OK) << seaopt_last_error();
}

// Max |Δ| over a row, and whether every element is within tolerance.
struct Diff {
    float max_abs = 0;
    bool ok = true;
};
void compare(Diff &d, const float *got, const float *ref, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const float delta = std::fabs(got[i] - ref[i]);
        d.max_abs = std::max(d.max_abs, delta);
        if (!(delta <= kAbsTol + kRelTol * std::fabs(ref[i]))) d.ok = false;
    }
}

std::vector<int32_t> ids_of(const json &j) { return j.get<std::vector<int32_t>>(); }

class ModelVsTransformers : public ::testing::TestWithParam<std::tuple<Fixture, std::string>> {};

TEST_P(ModelVsTransformers, PrefillLogitsMatch) {
    const auto &[fx, outtype] = GetParam();
    const json ref = reference(fx.model);
    Loaded l;
    load(l, converted(fx, outtype));
    const int32_t n_vocab = seaopt_model_n_vocab(l.model);
    ASSERT_EQ(n_vocab, 50272);

    // Sequence 0: full logits at every position.
    {
        const std::vector<int32_t> ids = ids_of(ref["sequences"][0]["ids"]);
        std::vector<int8_t> want(ids.size(), 1);
        seaopt_batch b = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
        b.logits = want.data();
        ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        const std::vector<float> full = read_f32(data_dir() + "/" + fx.model + "/logits_seq0.f32");
        ASSERT_EQ(full.size(), ids.size() * (size_t)n_vocab);
        Diff d;
        for (size_t t = 0; t < ids.size(); ++t) {
            const float *got = seaopt_get_logits_ith(l.ctx, (int32_t)t);
            ASSERT_NE(got, nullptr) << seaopt_last_error();
            compare(d, got, full.data() + t * n_vocab, (size_t)n_vocab);
        }
        std::printf("[ %s/%s %s ] sequence 0 (%zu positions, full logits): max |dlogit| = %.3g\n", fx.model.c_str(),
                    fx.ckpt.c_str(), outtype.c_str(), ids.size(), d.max_abs);
        EXPECT_TRUE(d.ok) << "max |dlogit| " << d.max_abs;
    }

    // Sequence 1 (60 positions, up to near the 64-position limit) in a fresh sequence.
    seaopt_kv_clear(l.ctx);
    {
        const json &s = ref["sequences"][1];
        const std::vector<int32_t> ids = ids_of(s["ids"]);
        const std::vector<int32_t> subset = ids_of(ref["subset_ids"]);
        std::vector<int8_t> want(ids.size(), 1);
        seaopt_batch b = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
        b.logits = want.data();
        ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        Diff d;
        float max_lse = 0;
        for (size_t t = 0; t < ids.size(); ++t) {
            const float *got = seaopt_get_logits_ith(l.ctx, (int32_t)t);
            ASSERT_NE(got, nullptr);
            std::vector<float> got_subset, ref_subset = s["subset_logits"][t].get<std::vector<float>>();
            for (int32_t id : subset) got_subset.push_back(got[id]);
            compare(d, got_subset.data(), ref_subset.data(), subset.size());
            int32_t best = 0;
            double m = got[0];
            for (int32_t v = 1; v < n_vocab; ++v) {
                if (got[v] > got[best]) best = v;
                m = std::max(m, (double)got[v]);
            }
            double sum = 0;
            for (int32_t v = 0; v < n_vocab; ++v) sum += std::exp((double)got[v] - m);
            const float lse = (float)(m + std::log(sum));
            max_lse = std::max(max_lse, std::fabs(lse - s["logsumexp"][t].get<float>()));
            EXPECT_EQ(best, s["argmax"][t].get<int32_t>()) << "argmax differs at position " << t;
        }
        const std::vector<float> last = read_f32(data_dir() + "/" + fx.model + "/logits_seq1_last.f32");
        compare(d, seaopt_get_logits_ith(l.ctx, -1), last.data(), (size_t)n_vocab);
        std::printf("[ %s/%s %s ] sequence 1 (%zu positions, subset + last row): max |dlogit| = %.3g, max |dlogsumexp| = %.3g\n",
                    fx.model.c_str(), fx.ckpt.c_str(), outtype.c_str(), ids.size(), d.max_abs, max_lse);
        EXPECT_TRUE(d.ok) << "max |dlogit| " << d.max_abs;
        EXPECT_LE(max_lse, kAbsTol + kRelTol * 20.0f);
    }
}

TEST_P(ModelVsTransformers, IncrementalDecodeMatchesPrefill) {
    const auto &[fx, outtype] = GetParam();
    const json ref = reference(fx.model);
    Loaded l;
    load(l, converted(fx, outtype));
    const int32_t n_vocab = seaopt_model_n_vocab(l.model);
    const std::vector<int32_t> ids = ids_of(ref["sequences"][0]["ids"]);
    const std::vector<float> full = read_f32(data_dir() + "/" + fx.model + "/logits_seq0.f32");
    Diff d;
    // Prompt of 3 tokens, then one token at a time through the KV cache.
    seaopt_batch b = seaopt_batch_get_one(ids.data(), 3);
    ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
    compare(d, seaopt_get_logits_ith(l.ctx, -1), full.data() + 2 * n_vocab, (size_t)n_vocab);
    for (size_t t = 3; t < ids.size(); ++t) {
        b = seaopt_batch_get_one(&ids[t], 1);
        ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 0), (int32_t)t + 1);
        compare(d, seaopt_get_logits_ith(l.ctx, 0), full.data() + t * n_vocab, (size_t)n_vocab);
    }
    EXPECT_TRUE(d.ok) << "max |dlogit| " << d.max_abs;

    // Rewind to 4 positions and decode the rest again: same logits.
    ASSERT_EQ(seaopt_kv_truncate(l.ctx, 0, 4), SEAOPT_OK);
    EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 0), 4);
    b = seaopt_batch_get_one(&ids[4], (int32_t)ids.size() - 4);
    ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
    Diff d2;
    compare(d2, seaopt_get_logits_ith(l.ctx, -1), full.data() + (ids.size() - 1) * n_vocab, (size_t)n_vocab);
    EXPECT_TRUE(d2.ok) << "after kv_truncate: max |dlogit| " << d2.max_abs;
}

TEST_P(ModelVsTransformers, GreedyContinuationsMatch) {
    const auto &[fx, outtype] = GetParam();
    const json ref = reference(fx.model);
    Loaded l;
    load(l, converted(fx, outtype));
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    sp.temp = 0.0f;
    seaopt_sampler *smpl = nullptr;
    ASSERT_EQ(seaopt_sampler_new(&sp, &smpl), SEAOPT_OK) << seaopt_last_error();
    for (const json &g : ref["greedy"]) {
        seaopt_kv_clear(l.ctx);
        const std::vector<int32_t> prompt = ids_of(g["prompt"]);
        const std::vector<int32_t> expected = ids_of(g["new_tokens"]);
        seaopt_batch b = seaopt_batch_get_one(prompt.data(), (int32_t)prompt.size());
        ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        std::vector<int32_t> got;
        for (size_t i = 0; i < expected.size(); ++i) {
            int32_t tok = -1;
            ASSERT_EQ(seaopt_sampler_sample(smpl, l.ctx, -1, &tok), SEAOPT_OK) << seaopt_last_error();
            got.push_back(tok);
            b = seaopt_batch_get_one(&got.back(), 1);
            ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        }
        EXPECT_EQ(got, expected);
    }
    seaopt_sampler_free(smpl);
}

// seaopt_generate_greedy gives transformers' greedy continuation too, leaves the sequence and the last step's logits
// as a decode loop would, and refuses bad arguments without touching the sequence.
TEST_P(ModelVsTransformers, GenerateGreedyMatchesTransformers) {
    const auto &[fx, outtype] = GetParam();
    const json ref = reference(fx.model);
    Loaded l, loop;
    load(l, converted(fx, outtype), 2);
    load(loop, converted(fx, outtype), 2);
    const int32_t n_vocab = seaopt_model_n_vocab(l.model);
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    sp.temp = 0.0f;
    seaopt_sampler *smpl = nullptr;
    ASSERT_EQ(seaopt_sampler_new(&sp, &smpl), SEAOPT_OK) << seaopt_last_error();
    for (const json &g : ref["greedy"]) {
        seaopt_kv_clear(l.ctx);
        seaopt_kv_clear(loop.ctx);
        const std::vector<int32_t> prompt = ids_of(g["prompt"]);
        const std::vector<int32_t> expected = ids_of(g["new_tokens"]);
        ASSERT_GE(expected.size(), 3u);
        // Sequence 1 of each context (sequence 0 stays empty: the call must touch only its own).
        const std::vector<int32_t> seq1(prompt.size(), 1);
        seaopt_batch b{(int32_t)prompt.size(), prompt.data(), nullptr, seq1.data(), nullptr};
        ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_decode(loop.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        int32_t first = -1;
        ASSERT_EQ(seaopt_sampler_sample(smpl, l.ctx, -1, &first), SEAOPT_OK) << seaopt_last_error();
        const int32_t n = (int32_t)expected.size() - 1;
        std::vector<int32_t> got(1, first);
        got.resize((size_t)n + 1, -7);
        ASSERT_EQ(seaopt_generate_greedy(l.ctx, 1, first, n, got.data() + 1), SEAOPT_OK) << seaopt_last_error();
        EXPECT_EQ(got, expected);
        EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 1), (int32_t)(prompt.size() + (size_t)n));
        EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 0), 0);
        // The loop's last step: the same logits as the call left.
        for (int32_t i = 0; i < n; ++i) {
            const int32_t one = 1;
            const seaopt_batch s{1, &got[(size_t)i], nullptr, &one, nullptr};
            ASSERT_EQ(seaopt_decode(loop.ctx, &s), SEAOPT_OK) << seaopt_last_error();
        }
        const float *a = seaopt_get_logits_ith(l.ctx, -1), *c = seaopt_get_logits_ith(loop.ctx, -1);
        ASSERT_NE(a, nullptr);
        ASSERT_NE(c, nullptr);
        EXPECT_EQ(std::vector<float>(a, a + n_vocab), std::vector<float>(c, c + n_vocab));
    }
    seaopt_sampler_free(smpl);

    // Bad arguments: refused, the sequence unchanged; n_predict = 0 does nothing.
    const int32_t len = seaopt_kv_seq_len(l.ctx, 1);
    int32_t out[4] = {-1, -1, -1, -1};
    EXPECT_EQ(seaopt_generate_greedy(l.ctx, 2, 5, 2, out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(seaopt_last_error()).find("sequence id 2"), std::string::npos) << seaopt_last_error();
    EXPECT_EQ(seaopt_generate_greedy(l.ctx, 1, n_vocab, 2, out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_generate_greedy(l.ctx, 1, -1, 2, out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_generate_greedy(l.ctx, 1, 5, -1, out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_generate_greedy(l.ctx, 1, 5, 2, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_generate_greedy(nullptr, 1, 5, 2, out), SEAOPT_ERR_INVALID_ARGUMENT);
    const int32_t room = (int32_t)seaopt_n_ctx(l.ctx) - len;
    EXPECT_EQ(seaopt_generate_greedy(l.ctx, 1, 5, room + 1, out), SEAOPT_ERR_CONTEXT_FULL);
    EXPECT_NE(std::string(seaopt_last_error()).find("beyond the context"), std::string::npos) << seaopt_last_error();
    EXPECT_EQ(seaopt_generate_greedy(l.ctx, 1, 5, 0, nullptr), SEAOPT_OK);
    EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 1), len);
    EXPECT_EQ(out[0], -1);
}

// seaopt_generate_greedy_until: the transformers continuation cut after the first pick that is the stop token (each
// distinct token of it in turn, and one that never comes), the sequence grown by the picks written, the logits those
// of the last step run; then the sequence goes on as a step loop's would. And its argument checks.
TEST_P(ModelVsTransformers, GenerateGreedyUntilStopsAtTheStopToken) {
    const auto &[fx, outtype] = GetParam();
    const json ref = reference(fx.model);
    Loaded l, loop;
    load(l, converted(fx, outtype), 2);
    load(loop, converted(fx, outtype), 2);
    const int32_t n_vocab = seaopt_model_n_vocab(l.model);
    const json &g = ref["greedy"][0];
    const std::vector<int32_t> prompt = ids_of(g["prompt"]);
    const std::vector<int32_t> expected = ids_of(g["new_tokens"]);  // expected[0]: the prompt's pick
    const int32_t n = (int32_t)expected.size() - 1;
    ASSERT_GE(n, 2);
    const std::vector<int32_t> seq1(prompt.size(), 1);
    std::vector<int32_t> stops(expected.begin() + 1, expected.end());
    std::sort(stops.begin(), stops.end());
    stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
    int32_t never = 0;  // a token the continuation does not contain
    while (std::binary_search(stops.begin(), stops.end(), never)) ++never;
    stops.push_back(never);
    for (const int32_t stop : stops) {
        SCOPED_TRACE("stop token " + std::to_string(stop));
        seaopt_kv_clear(l.ctx);
        seaopt_kv_clear(loop.ctx);
        seaopt_batch b{(int32_t)prompt.size(), prompt.data(), nullptr, seq1.data(), nullptr};
        ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_decode(loop.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        // Where the continuation first picks `stop` (step i picks expected[i + 1]).
        int32_t want = n;
        for (int32_t i = 0; i < n; ++i) {
            if (expected[(size_t)i + 1] == stop) {
                want = i + 1;
                break;
            }
        }
        std::vector<int32_t> got((size_t)n, -7);
        int32_t n_out = -1;
        ASSERT_EQ(seaopt_generate_greedy_until(l.ctx, 1, expected[0], n, stop, got.data(), &n_out), SEAOPT_OK)
            << seaopt_last_error();
        ASSERT_EQ(n_out, want);
        EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + n_out),
                  std::vector<int32_t>(expected.begin() + 1, expected.begin() + 1 + n_out));
        EXPECT_EQ(got[(size_t)n_out - 1] == stop, want < n || expected[(size_t)n] == stop);
        for (size_t i = (size_t)n_out; i < got.size(); ++i) EXPECT_EQ(got[i], -7) << "written past *n_out at " << i;
        EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 1), (int32_t)prompt.size() + n_out);
        // The loop over the same tokens: the same logits, and one more step from there the same again.
        const int32_t one = 1;
        for (int32_t i = 0; i < n_out; ++i) {
            const seaopt_batch s{1, i == 0 ? &expected[0] : &got[(size_t)i - 1], nullptr, &one, nullptr};
            ASSERT_EQ(seaopt_decode(loop.ctx, &s), SEAOPT_OK) << seaopt_last_error();
        }
        const float *a = seaopt_get_logits_ith(l.ctx, -1), *c = seaopt_get_logits_ith(loop.ctx, -1);
        ASSERT_NE(a, nullptr);
        ASSERT_NE(c, nullptr);
        EXPECT_EQ(std::vector<float>(a, a + n_vocab), std::vector<float>(c, c + n_vocab));
        const seaopt_batch next{1, &got[(size_t)n_out - 1], nullptr, &one, nullptr};
        ASSERT_EQ(seaopt_decode(l.ctx, &next), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_decode(loop.ctx, &next), SEAOPT_OK) << seaopt_last_error();
        a = seaopt_get_logits_ith(l.ctx, -1);
        c = seaopt_get_logits_ith(loop.ctx, -1);
        EXPECT_EQ(std::vector<float>(a, a + n_vocab), std::vector<float>(c, c + n_vocab));
    }

    // Bad arguments: refused, the sequence unchanged.
    const int32_t len = seaopt_kv_seq_len(l.ctx, 1);
    int32_t out[4] = {-1, -1, -1, -1}, n_out = 99;
    EXPECT_EQ(seaopt_generate_greedy_until(l.ctx, 1, 5, 2, n_vocab, out, &n_out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(seaopt_last_error()).find("stop token"), std::string::npos) << seaopt_last_error();
    EXPECT_EQ(seaopt_generate_greedy_until(l.ctx, 1, 5, 2, -2, out, &n_out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_generate_greedy_until(l.ctx, 1, 5, 2, 2, out, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_generate_greedy_until(l.ctx, 1, n_vocab, 2, 2, out, &n_out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_generate_greedy_until(nullptr, 1, 5, 2, 2, out, &n_out), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 1), len);
    EXPECT_EQ(out[0], -1);
    EXPECT_EQ(n_out, 99);
    EXPECT_EQ(seaopt_generate_greedy_until(l.ctx, 1, 5, 0, 2, nullptr, &n_out), SEAOPT_OK);
    EXPECT_EQ(n_out, 0);
}

TEST_P(ModelVsTransformers, TwoSequencesInOneBatch) {
    const auto &[fx, outtype] = GetParam();
    const json ref = reference(fx.model);
    Loaded l;
    load(l, converted(fx, outtype), 2);
    const int32_t n_vocab = seaopt_model_n_vocab(l.model);
    const std::vector<int32_t> a = ids_of(ref["sequences"][0]["ids"]);
    const std::vector<int32_t> s1 = ids_of(ref["sequences"][1]["ids"]);
    // Interleave sequence 0 (ids a) and the first 10 tokens of sequence 1 in one batch.
    std::vector<int32_t> tok, pos, seq;
    std::vector<int8_t> want;
    for (size_t i = 0; i < 10; ++i) {
        if (i < a.size()) {
            tok.push_back(a[i]), pos.push_back((int32_t)i), seq.push_back(0), want.push_back(1);
        }
        tok.push_back(s1[i]), pos.push_back((int32_t)i), seq.push_back(1), want.push_back(1);
    }
    seaopt_batch b{(int32_t)tok.size(), tok.data(), pos.data(), seq.data(), want.data()};
    ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK) << seaopt_last_error();
    const std::vector<float> full = read_f32(data_dir() + "/" + fx.model + "/logits_seq0.f32");
    const std::vector<int32_t> subset = ids_of(ref["subset_ids"]);
    Diff d;
    for (size_t i = 0; i < tok.size(); ++i) {
        const float *got = seaopt_get_logits_ith(l.ctx, (int32_t)i);
        ASSERT_NE(got, nullptr);
        if (seq[i] == 0) {
            compare(d, got, full.data() + (size_t)pos[i] * n_vocab, (size_t)n_vocab);
        } else {
            std::vector<float> got_subset, r = ref["sequences"][1]["subset_logits"][pos[i]].get<std::vector<float>>();
            for (int32_t id : subset) got_subset.push_back(got[id]);
            compare(d, got_subset.data(), r.data(), subset.size());
        }
    }
    EXPECT_TRUE(d.ok) << "max |dlogit| " << d.max_abs;
    EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 0), (int32_t)a.size());
    EXPECT_EQ(seaopt_kv_seq_len(l.ctx, 1), 10);
}

std::string fixture_name(const ::testing::TestParamInfo<std::tuple<Fixture, std::string>> &info) {
    std::string s = std::get<0>(info.param).model + "_" + std::get<0>(info.param).ckpt + "_" + std::get<1>(info.param);
    for (char &c : s) c = std::isalnum((unsigned char)c) ? c : '_';
    return s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelVsTransformers,
                         ::testing::Combine(::testing::ValuesIn(kFixtures), ::testing::Values("f32", "f16")),
                         fixture_name);

// fp16 checkpoints hold exactly representable weights: f16 and f32 GGUFs must give identical logits.
TEST(ModelConversion, F16AndF32GiveIdenticalLogits) {
    const json ref = reference("opt-tiny-post");
    const std::vector<int32_t> ids = ids_of(ref["sequences"][0]["ids"]);
    std::vector<std::vector<float>> outs;
    for (const char *outtype : {"f32", "f16"}) {
        Loaded l;
        load(l, converted(kFixtures[2], outtype));
        seaopt_batch b = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
        ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK);
        const float *lg = seaopt_get_logits_ith(l.ctx, -1);
        outs.emplace_back(lg, lg + seaopt_model_n_vocab(l.model));
    }
    EXPECT_EQ(outs[0], outs[1]);
}

// bf16 output is lossy (8 mantissa bits); it must still load and track the reference closely.
TEST(ModelConversion, Bf16RunsAndTracksReference) {
    const json ref = reference("opt-tiny-pre");
    const std::vector<int32_t> ids = ids_of(ref["sequences"][0]["ids"]);
    Loaded l;
    load(l, converted(kFixtures[0], "bf16"));
    seaopt_batch b = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
    ASSERT_EQ(seaopt_decode(l.ctx, &b), SEAOPT_OK);
    const std::vector<float> full = read_f32(data_dir() + "/opt-tiny-pre/logits_seq0.f32");
    const float *got = seaopt_get_logits_ith(l.ctx, -1);
    const float *want = full.data() + (ids.size() - 1) * 50272;
    double max_abs = 0;
    for (int v = 0; v < 50272; ++v) max_abs = std::max(max_abs, (double)std::fabs(got[v] - want[v]));
    std::printf("[ bf16 ] max |dlogit| = %.3g (bf16 weight rounding)\n", max_abs);
    EXPECT_LT(max_abs, 0.5);
    EXPECT_GT(max_abs, 0.0);  // it really is bf16
}

}  // namespace
