// The CUDA engine against the CPU reference engine on small random models with OPT's head sizes
// (made by seaopt-make-tiny-checkpoint: --hidden 256 --heads 4 for head_dim 64, as OPT-125m to 1.3B;
// 320 / 4 for 80, as OPT-2.7B; 512 / 4 for 128, as OPT-6.7B and larger), and the memory planner's
// promise: the device memory a context really takes matches its plan.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <stdexcept>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "engine/api_internal.h"
#include "seaopt.h"
#include "test_util.h"

namespace {

// Exit code of a program, or -1 if it crashed.
int run(const std::vector<std::string> &args) {
    const seaopt_test::Result r = seaopt_test::run(args);
    return r.exited ? r.status : -1;
}

// A random checkpoint made by seaopt-make-tiny-checkpoint with these shape flags, converted to fp16 GGUF; with_sea:
// with a random SEA estimator (fp32 safetensors) imported by the converter.
std::string make_model(const std::string &name, const std::vector<std::string> &shape, bool with_sea = false,
                       const std::string &seed = "3", const std::string &outtype = "f16") {
    const std::string dir = seaopt_test::temp_dir() + "/" + name + "-hf", out = seaopt_test::temp_dir() + "/" + name + ".gguf";
    const std::string bin = std::string(SEAOPT_BINARY_DIR) + "/bin/", sea = dir + "/sea.safetensors";
    std::vector<std::string> make{bin + "seaopt-make-tiny-checkpoint", "--out", dir, "--tokenizer-dir",
                                  std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer", "--seed", seed};
    std::vector<std::string> convert{bin + "seaopt-convert", dir, "-o", out, "--outtype", outtype, "--no-progress"};
    if (with_sea) {
        make.insert(make.end(), {"--sea", sea, "--sea-layout", "safetensors", "--sea-dtype", "f32"});
        convert.insert(convert.end(), {"--sea", sea});
    }
    make.insert(make.end(), shape.begin(), shape.end());
    if (run(make) != 0 || run(convert) != 0) throw std::runtime_error("cannot make the test model " + name);
    return out;
}

const std::string &model_path() {
    static const std::string path =
        make_model("hd64", {"--hidden", "256", "--heads", "4", "--layers", "3", "--ffn", "1024"});
    return path;
}

// A temperature-0 sampler (null if it could not be made).
using SamplerPtr = std::unique_ptr<seaopt_sampler, void (*)(seaopt_sampler *)>;
SamplerPtr greedy_sampler() {
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    sp.temp = 0.0f;
    seaopt_sampler *s = nullptr;
    if (seaopt_sampler_new(&sp, &s) != SEAOPT_OK) s = nullptr;
    return SamplerPtr(s, seaopt_sampler_free);
}

struct Engine {
    seaopt_model *model = nullptr;
    seaopt_context *ctx = nullptr;
    Engine(seaopt_device device, uint32_t n_ctx, uint32_t n_head_batch = 0, const std::string &path = model_path(),
           uint32_t n_seq = 1) {
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = device;
        EXPECT_EQ(seaopt_model_load(path.c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_head_batch = n_head_batch;
        cp.n_seq_max = n_seq;
        EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
    }
    ~Engine() {
        seaopt_context_free(ctx);
        seaopt_model_free(model);
    }
    std::vector<std::vector<float>> prefill(const std::vector<int32_t> &ids) {
        std::vector<int8_t> want(ids.size(), 1);
        seaopt_batch b = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
        b.logits = want.data();
        EXPECT_EQ(seaopt_decode(ctx, &b), SEAOPT_OK) << seaopt_last_error();
        std::vector<std::vector<float>> rows;
        for (size_t t = 0; t < ids.size(); ++t) {
            const float *lg = seaopt_get_logits_ith(ctx, (int32_t)t);
            rows.emplace_back(lg, lg + seaopt_model_n_vocab(model));
        }
        return rows;
    }
};

std::vector<int32_t> test_ids(size_t n) { return seaopt_test::lcg_token_ids(n, 12345); }

double std_of(const std::vector<float> &v) {
    double m = 0, s = 0;
    for (float x : v) m += x;
    m /= (double)v.size();
    for (float x : v) s += (x - m) * (x - m);
    return std::sqrt(s / (double)v.size());
}

// Prefill of 100 tokens, then one token at a time through the KV cache, against the CPU engine.
void check_against_cpu(const std::string &path) {
    std::vector<int32_t> ids = test_ids(100);
    Engine cpu(SEAOPT_DEVICE_CPU, 128, 0, path), gpu(SEAOPT_DEVICE_CUDA, 128, 0, path);
    const int32_t V = seaopt_model_n_vocab(cpu.model);
    for (int32_t &id : ids) id %= V;  // small-vocabulary fixtures
    const auto ref = cpu.prefill(ids), got = gpu.prefill(ids);
    double max_err = 0, scale = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
        scale = std::max(scale, std_of(ref[t]));
        for (size_t v = 0; v < ref[t].size(); ++v) max_err = std::max(max_err, (double)std::fabs(got[t][v] - ref[t][v]));
    }
    std::printf("GPU (fp16) vs CPU (fp32) prefill of %zu tokens: max |dlogit| = %.4f, logit std %.2f\n", ids.size(),
                max_err, scale);
    EXPECT_LE(max_err, 0.02 * scale);  // fp16 activations: a few 1e-3 of the spread; a real bug is O(spread)

    // One token at a time through the KV cache (batch-1 decode: CUDA-graph replays after step 2).
    seaopt_kv_clear(gpu.ctx);
    double max_step_err = 0;
    for (size_t t = 0; t < 40; ++t) {
        seaopt_batch b = seaopt_batch_get_one(&ids[t], 1);
        ASSERT_EQ(seaopt_decode(gpu.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        const float *lg = seaopt_get_logits_ith(gpu.ctx, -1);
        for (size_t v = 0; v < ref[t].size(); ++v) max_step_err = std::max(max_step_err, (double)std::fabs(lg[v] - ref[t][v]));
    }
    std::printf("GPU one-token decode (40 steps) vs CPU prefill: max |dlogit| = %.4f\n", max_step_err);
    EXPECT_LE(max_step_err, 0.02 * scale);
}

TEST(GpuEngine, MatchesTheCpuReference) { check_against_cpu(model_path()); }

// The same model converted with --outtype q8_0: the CPU engine holds the exact q * d values in fp32; the GPU keeps the
// int8 values and runs its q8 GEMV (decode) and dequantize + cuBLASLt (prefill) on them (engine/cuda/gemm.h).
const std::string &q8_model_path() {
    static const std::string path =
        make_model("hd64q8", {"--hidden", "256", "--heads", "4", "--layers", "3", "--ffn", "1024"}, false, "3", "q8_0");
    return path;
}

// Q8_0 on the post-LN, projected (OPT-350m-style) path: the committed hd64-post fixture converted with --outtype q8_0.
TEST(GpuEngine, Q8_0PostLnProjectedMatchesTheCpuReference) {
    const std::string out = seaopt_test::temp_dir() + "/hd64-post-q8.gguf";
    ASSERT_EQ(run({std::string(SEAOPT_BINARY_DIR) + "/bin/seaopt-convert",
                   std::string(SEAOPT_TEST_DATA_DIR) + "/opt-hd64-post/safetensors", "-o", out, "--outtype", "q8_0",
                   "--no-progress"}),
              0);
    check_against_cpu(out);
}

// Q8_0 at the OPT-13B width (one layer of hidden 5120, ffn 20480; 40 heads of 128).
TEST(GpuEngine, Q8_0AtTheOpt13bWidthMatchesTheCpuReference) {
    check_against_cpu(make_model("opt13b-layer-q8", {"--hidden", "5120", "--heads", "40", "--layers", "1", "--ffn", "20480"},
                                 false, "3", "q8_0"));
}

TEST(GpuEngine, Q8_0MatchesTheCpuReference) {
    check_against_cpu(q8_model_path());
    // 8-bit matrices: the weights take less device memory than the f16 file's (the embeddings stay f16).
    seaopt_memory_report f16_rep{}, q8_rep{};
    {
        Engine a(SEAOPT_DEVICE_CUDA, 128, 0, model_path()), b(SEAOPT_DEVICE_CUDA, 128, 0, q8_model_path());
        ASSERT_EQ(seaopt_context_memory(a.ctx, &f16_rep), SEAOPT_OK);
        ASSERT_EQ(seaopt_context_memory(b.ctx, &q8_rep), SEAOPT_OK);
    }
    const double matrix_params = 3.0 * (4 * 256 * 256 + 2 * 256 * 1024);
    std::printf("weights: f16 %.2f MiB, q8_0 %.2f MiB\n", f16_rep.weights_bytes / 1048576.0, q8_rep.weights_bytes / 1048576.0);
    EXPECT_LE((double)q8_rep.weights_bytes, (double)f16_rep.weights_bytes - 0.9 * matrix_params * (2.0 - 34.0 / 32.0));
}

// The head sizes of OPT-2.7B (80) and of OPT-6.7B and larger (128).
TEST(GpuEngine, OtherHeadSizesMatchTheCpuReference) {
    std::printf("head_dim 80:\n");
    check_against_cpu(make_model("hd80", {"--hidden", "320", "--heads", "4", "--layers", "2", "--ffn", "1280"}));
    std::printf("head_dim 128:\n");
    check_against_cpu(make_model("hd128", {"--hidden", "512", "--heads", "4", "--layers", "2", "--ffn", "2048"}));
}

// n_head_batch only changes how many logits rows one lm_head GEMM computes: the same logits (up to
// the GEMM algorithm cuBLASLt picks for the chunk's row count), in 1, 4 and 100 chunks.
TEST(GpuEngine, HeadBatchKeepsTheLogits) {
    const std::vector<int32_t> ids = test_ids(100);
    Engine one(SEAOPT_DEVICE_CUDA, 128, 512), four(SEAOPT_DEVICE_CUDA, 128, 32), rows(SEAOPT_DEVICE_CUDA, 128, 1);
    const auto ref = one.prefill(ids), got4 = four.prefill(ids), got1 = rows.prefill(ids);
    double max_err = 0, scale = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
        scale = std::max(scale, std_of(ref[t]));
        for (size_t v = 0; v < ref[t].size(); ++v) {
            max_err = std::max({max_err, (double)std::fabs(got4[t][v] - ref[t][v]), (double)std::fabs(got1[t][v] - ref[t][v])});
        }
    }
    std::printf("lm_head in chunks of 512, 32, 1 rows: max |dlogit| = %.2e, logit std %.2f\n", max_err, scale);
    EXPECT_LE(max_err, 1e-4 * scale);  // fp32 sums of the same fp16 products, maybe in another order
}

// Batch-1 decode as one persistent kernel (engine/cuda/decode_persistent.h) at OPT-1.3B's layer and
// head shapes (hidden 2048, 32 heads, ffn 8192, the 50k-row lm_head; one layer): chunks of 4 rows
// split over 2 warps each and of 1 row over 8 warps. Step by step over 640 positions (up to 3 key
// ranges per head, several 128-key steps per range with the cached keys through the weight ring, the
// step's own key alone in a step at positions 128, 256, ...), against the CPU reference's prefill
// logits, and against the kernel-per-op step (SEAOPT_PERSISTENT_DECODE=0), which sums in another order.
std::vector<std::string> g_log_lines;
void capture_log(seaopt_log_level, const char *text, void *) { g_log_lines.emplace_back(text); }

void check_persistent_decode(const std::string &path, int n_steps) {
    const std::vector<int32_t> ids = test_ids((size_t)n_steps);
    g_log_lines.clear();
    seaopt_log_set(capture_log, nullptr);
    Engine persistent(SEAOPT_DEVICE_CUDA, 1024, 0, path);  // the default where the device allows it
    seaopt_log_set(nullptr, nullptr);
    setenv("SEAOPT_PERSISTENT_DECODE", "0", 1);
    Engine per_op(SEAOPT_DEVICE_CUDA, 1024, 0, path);
    unsetenv("SEAOPT_PERSISTENT_DECODE");
    bool ran_persistent = false;
    for (const std::string &line : g_log_lines) ran_persistent |= line.find("one persistent kernel") != std::string::npos;
    int major = 0;
    ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), cudaSuccess);
    // The kernel needs sm_90 code: a build without 90 / 90a (its compute_80 PTX compiled at load) must refuse it.
    const bool built_for_sm90 = std::string(seaopt_build_info()).find("sm_90") != std::string::npos;
    if (major >= 9 && built_for_sm90) {
        EXPECT_TRUE(ran_persistent) << "the context did not plan the persistent decode kernel";
    }
    if (!built_for_sm90) {
        EXPECT_FALSE(ran_persistent) << "a build without sm_90 code planned the persistent kernel (" << seaopt_build_info() << ")";
    }
    if (!ran_persistent) std::printf("note: no persistent decode kernel here (%s): the per-op step twice\n", seaopt_build_info());

    Engine cpu(SEAOPT_DEVICE_CPU, 1024, 0, path);
    const auto ref = cpu.prefill(ids);
    double err_ref = 0, err_op = 0, scale = 0;
    int argmax_same = 0;
    // The device's greedy pick of each step (engine/argmax_key.h; the persistent kernel's last phase, the
    // per-op step's argmax_parts kernel) against the sampler's own scan of the same logits.
    const SamplerPtr own_greedy = greedy_sampler();
    seaopt_sampler *const greedy = own_greedy.get();
    ASSERT_NE(greedy, nullptr) << seaopt_last_error();
    int picks_made = 0, picks_same = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
        seaopt_batch b = seaopt_batch_get_one(&ids[t], 1);
        ASSERT_EQ(seaopt_decode(persistent.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_decode(per_op.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        for (seaopt_context *c : {persistent.ctx, per_op.ctx}) {
            const int32_t device_pick = seaopt::context_device_greedy(c, -1);
            seaopt_token scan = -1, api = -1;
            ASSERT_EQ(seaopt_sampler_sample_logits(greedy, seaopt_get_logits_ith(c, -1), seaopt_context_n_vocab(c), &scan),
                      SEAOPT_OK);
            ASSERT_EQ(seaopt_sampler_sample(greedy, c, -1, &api), SEAOPT_OK);  // takes the device's pick
            picks_made += device_pick >= 0;
            picks_same += device_pick == scan && api == scan;
        }
        const float *got = seaopt_get_logits_ith(persistent.ctx, -1), *op = seaopt_get_logits_ith(per_op.ctx, -1);
        scale = std::max(scale, std_of(ref[t]));
        size_t a_got = 0, a_op = 0;
        for (size_t v = 0; v < ref[t].size(); ++v) {
            err_ref = std::max(err_ref, (double)std::fabs(got[v] - ref[t][v]));
            err_op = std::max(err_op, (double)std::fabs(got[v] - op[v]));
            if (got[v] > got[a_got]) a_got = v;
            if (op[v] > op[a_op]) a_op = v;
        }
        argmax_same += a_got == a_op;
    }
    std::printf("persistent decode, %d steps: max |dlogit| vs CPU %.4f, vs kernel-per-op %.4f (logit std %.2f); "
                "argmax equal in %d of %d\n",
                n_steps, err_ref, err_op, scale, argmax_same, n_steps);
    EXPECT_LE(err_ref, 0.02 * scale);
    EXPECT_LE(err_op, 0.01 * scale);
    EXPECT_GE(argmax_same, n_steps - n_steps / 100);
    std::printf("device greedy picks: %d made of %d steps x 2 contexts, %d equal to the sampler's scan\n", picks_made,
                n_steps, picks_same);
    EXPECT_EQ(picks_made, 2 * n_steps) << "a one-row decode made no device pick";
    EXPECT_EQ(picks_same, 2 * n_steps);
}

TEST(GpuEngine, PersistentDecodeMatchesTheReference) {
    const std::string path =
        make_model("opt1.3b-layer", {"--hidden", "2048", "--heads", "32", "--layers", "1", "--ffn", "8192"});
    check_persistent_decode(path, 640);
    // The shared-memory layouts the default replaced, kept behind switches for comparisons: the lm_head's row parts
    // all at once (24 KB) and separate vector / row-part / attention areas (11 ring slots instead of 13).
    std::printf("with SEAOPT_PERSISTENT_HEAD_ROWS=0 and SEAOPT_PERSISTENT_COMPACT=0:\n");
    struct OldLayout {  // the switches are unset however the check leaves (an ASSERT returns early)
        OldLayout() {
            setenv("SEAOPT_PERSISTENT_HEAD_ROWS", "0", 1);
            setenv("SEAOPT_PERSISTENT_COMPACT", "0", 1);
        }
        ~OldLayout() {
            unsetenv("SEAOPT_PERSISTENT_HEAD_ROWS");
            unsetenv("SEAOPT_PERSISTENT_COMPACT");
        }
    } old_layout;
    check_persistent_decode(path, 300);
}

// Q8_0 matrices in the persistent kernel: the stream carries each chunk's int8 rows and their scales (17 KB slots),
// the tensor-core span product takes a block's exact int8 values and scales its fp32 sum (as the per-op step's int8
// GEMV does, so the two agree as closely as the fp16 paths do), against the CPU engine's exact q * d in fp32.
TEST(GpuEngine, PersistentDecodeQ8_0MatchesTheReference) {
    check_persistent_decode(make_model("opt1.3b-layer-q8", {"--hidden", "2048", "--heads", "32", "--layers", "1", "--ffn",
                                                            "8192"}, false, "3", "q8_0"),
                            640);
}

// The other layer shapes with Q8_0 matrices: OPT-2.7B (rows of 2,560 and 10,240 values: the FMA path), OPT-6.7B
// (tensor cores, 8 tiles a warp), OPT-13B (the FMA path, 5 float4s of the residual), and OPT-125m's (FMA, 12 heads);
// then hidden sizes 1,024 and 512, whose rows of 8 a chunk give a warp 4 and 2 tiles of the q8 span product.
TEST(GpuEngine, PersistentDecodeQ8_0OtherShapes) {
    std::printf("hidden 1024 (16 heads of 64; 4 tiles a warp on the C-wide rows), 2 layers:\n");
    check_persistent_decode(make_model("h1024-q8", {"--hidden", "1024", "--heads", "16", "--layers", "2", "--ffn", "4096"},
                                       false, "3", "q8_0"),
                            300);
    std::printf("hidden 512 (8 heads of 64; 2 tiles a warp on the C-wide rows), 2 layers:\n");
    check_persistent_decode(make_model("h512-q8", {"--hidden", "512", "--heads", "8", "--layers", "2", "--ffn", "2048"},
                                       false, "3", "q8_0"),
                            300);
    std::printf("OPT-125m shape (12 heads of 64, hidden 768), 2 layers:\n");
    check_persistent_decode(make_model("opt125m-q8", {"--hidden", "768", "--heads", "12", "--layers", "2", "--ffn", "3072"},
                                       false, "3", "q8_0"),
                            300);
    std::printf("OPT-2.7B layer shape (head_dim 80):\n");
    check_persistent_decode(make_model("opt27b-layer-q8", {"--hidden", "2560", "--heads", "32", "--layers", "1", "--ffn",
                                                           "10240"}, false, "3", "q8_0"),
                            300);
    std::printf("OPT-6.7B layer shape (head_dim 128):\n");
    check_persistent_decode(make_model("opt67b-layer-q8", {"--hidden", "4096", "--heads", "32", "--layers", "1", "--ffn",
                                                           "16384"}, false, "3", "q8_0"),
                            300);
    std::printf("OPT-13B layer shape (40 heads of 128, hidden 5120):\n");
    check_persistent_decode(make_model("opt13b-layer-q8", {"--hidden", "5120", "--heads", "40", "--layers", "1", "--ffn",
                                                           "20480"}, false, "3", "q8_0"),
                            300);
}

// seaopt_generate_greedy on the persistent kernel's chain (every step in one launch, each block taking the step's
// pick from all blocks' keys, the cached rows of earlier steps of the launch through the weight ring) against a loop
// of single steps and the greedy sampler on another context of the same model: the same kernel arithmetic, so the
// same picks and bit-identical logits, after the chain and one step after it. From position 0 (BOS) and after a
// 200-token prefill, across the attention's key-range splits (256, 512) and 128-key steps, two layers.
void check_greedy_chain(const std::string &path) {
    Engine chain(SEAOPT_DEVICE_CUDA, 1024, 0, path), loop(SEAOPT_DEVICE_CUDA, 1024, 0, path);
    const int32_t n_vocab = seaopt_model_n_vocab(chain.model);
    const SamplerPtr own_greedy = greedy_sampler();
    seaopt_sampler *const greedy = own_greedy.get();
    ASSERT_NE(greedy, nullptr) << seaopt_last_error();
    const std::vector<int32_t> prompt = test_ids(200);
    for (const auto &[n_prompt, n_gen] : {std::pair<int32_t, int32_t>{0, 40}, {200, 420}}) {
        seaopt_kv_clear(chain.ctx);
        seaopt_kv_clear(loop.ctx);
        int32_t first = 2;  // BOS
        if (n_prompt > 0) {
            const seaopt_batch b = seaopt_batch_get_one(prompt.data(), n_prompt);
            ASSERT_EQ(seaopt_decode(chain.ctx, &b), SEAOPT_OK) << seaopt_last_error();
            ASSERT_EQ(seaopt_decode(loop.ctx, &b), SEAOPT_OK) << seaopt_last_error();
            ASSERT_EQ(seaopt_sampler_sample(greedy, chain.ctx, -1, &first), SEAOPT_OK) << seaopt_last_error();
        }
        std::vector<int32_t> got((size_t)n_gen, -1), want;
        ASSERT_EQ(seaopt_generate_greedy(chain.ctx, 0, first, n_gen, got.data()), SEAOPT_OK) << seaopt_last_error();
        int32_t token = first;
        for (int32_t i = 0; i < n_gen; ++i) {
            const seaopt_batch b = seaopt_batch_get_one(&token, 1);
            ASSERT_EQ(seaopt_decode(loop.ctx, &b), SEAOPT_OK) << seaopt_last_error();
            ASSERT_EQ(seaopt_sampler_sample(greedy, loop.ctx, -1, &token), SEAOPT_OK) << seaopt_last_error();
            want.push_back(token);
        }
        EXPECT_EQ(got, want) << "from position " << n_prompt;
        EXPECT_EQ(seaopt_kv_seq_len(chain.ctx, 0), n_prompt + n_gen);
        const std::set<int32_t> distinct(got.begin(), got.end());
        EXPECT_GE(distinct.size(), 8u) << "the continuation hardly changes: a wrong pick fed back would go unseen";
        std::printf("greedy chain from position %d: %d steps, %zu distinct tokens, picks %s the step loop's\n", n_prompt,
                    n_gen, distinct.size(), got == want ? "equal to" : "DIFFERENT from");
        for (int k = 0; k < 2; ++k) {  // the chain's last logits, then one step after it
            const float *a = seaopt_get_logits_ith(chain.ctx, -1), *c = seaopt_get_logits_ith(loop.ctx, -1);
            ASSERT_NE(a, nullptr);
            ASSERT_NE(c, nullptr);
            EXPECT_EQ(std::vector<float>(a, a + n_vocab), std::vector<float>(c, c + n_vocab)) << "step " << k;
            const int32_t next = want.back();
            const seaopt_batch b = seaopt_batch_get_one(&next, 1);
            ASSERT_EQ(seaopt_decode(chain.ctx, &b), SEAOPT_OK) << seaopt_last_error();
            ASSERT_EQ(seaopt_decode(loop.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        }
    }
}

// A small token embedding: greedy continuations wander instead of repeating the last token (each pick then
// matters to the next step).
TEST(GpuEngine, GenerateGreedyChainMatchesTheStepLoop) {
    check_greedy_chain(make_model("opt1.3b-2layers-wander", {"--hidden", "2048", "--heads", "32", "--layers", "2",
                                                             "--ffn", "8192", "--token-embedding-std", "0.05"}));
    std::printf("Q8_0 matrices:\n");
    check_greedy_chain(make_model("opt1.3b-2layers-wander-q8", {"--hidden", "2048", "--heads", "32", "--layers", "2",
                                                                "--ffn", "8192", "--token-embedding-std", "0.05"},
                                  false, "3", "q8_0"));
    std::printf("OPT-2.7B layer shape (head_dim 80):\n");
    check_greedy_chain(make_model("opt27b-layer-wander", {"--hidden", "2560", "--heads", "32", "--layers", "1", "--ffn",
                                                          "10240", "--token-embedding-std", "0.05"}));
}

// seaopt_generate_greedy_until on the persistent kernel's chain: the launch stops after the step that picks the stop
// token (every block leaves the step loop there; the producer, which streams the next step's qkv rows before it
// learns of the stop, returns and the compute warps drain those rows). Against a loop of single steps on another
// context: the picks up to the stop, the sequence length, the logits of the stop step bit for bit, one step after
// it, and a second chain from there that goes on as the loop did (the stopped launch left the cache, the tags and
// the next launch's ring in order). Stops at step 0, inside the chain, at its last step, and never.
void check_greedy_until(const std::string &path) {
    Engine chain(SEAOPT_DEVICE_CUDA, 1024, 0, path), loop(SEAOPT_DEVICE_CUDA, 1024, 0, path);
    const int32_t n_vocab = seaopt_model_n_vocab(chain.model);
    const SamplerPtr own_greedy = greedy_sampler();
    seaopt_sampler *const greedy = own_greedy.get();
    ASSERT_NE(greedy, nullptr) << seaopt_last_error();
    constexpr int32_t kSteps = 300, kBos = 2;
    // The loop's continuation from BOS, and its logits after `steps` steps (decoding BOS, then its picks).
    std::vector<int32_t> want;
    int32_t token = kBos;
    for (int32_t i = 0; i < kSteps; ++i) {
        const seaopt_batch b = seaopt_batch_get_one(&token, 1);
        ASSERT_EQ(seaopt_decode(loop.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_sampler_sample(greedy, loop.ctx, -1, &token), SEAOPT_OK) << seaopt_last_error();
        want.push_back(token);
    }
    const auto loop_logits_after = [&](int32_t steps) {
        seaopt_kv_clear(loop.ctx);
        for (int32_t i = 0; i < steps; ++i) {
            const int32_t t = i == 0 ? kBos : want[(size_t)i - 1];
            const seaopt_batch b = seaopt_batch_get_one(&t, 1);
            EXPECT_EQ(seaopt_decode(loop.ctx, &b), SEAOPT_OK) << seaopt_last_error();
        }
        const float *lg = seaopt_get_logits_ith(loop.ctx, -1);
        return lg ? std::vector<float>(lg, lg + n_vocab) : std::vector<float>();
    };
    const auto first_at = [&](int32_t tok) {
        return (int32_t)(std::find(want.begin(), want.end(), tok) - want.begin());
    };
    int32_t never = 0;
    while (first_at(never) < kSteps) ++never;
    const std::set<int32_t> distinct(want.begin(), want.end());
    EXPECT_GE(distinct.size(), 8u) << "the continuation hardly changes";
    const int32_t mid = want[37];
    for (const auto &[stop, n_steps] : {std::pair<int32_t, int32_t>{want[0], kSteps}, {mid, kSteps},
                                        {mid, first_at(mid) + 1}, {want[(size_t)kSteps - 1], kSteps}, {never, kSteps}}) {
        const int32_t stop_at = first_at(stop);  // kSteps: never
        const int32_t n_expect = std::min(stop_at + 1, n_steps);
        SCOPED_TRACE("stop token " + std::to_string(stop) + ", first picked at step " + std::to_string(stop_at) +
                     ", " + std::to_string(n_steps) + " steps");
        seaopt_kv_clear(chain.ctx);
        std::vector<int32_t> got((size_t)n_steps, -7);
        int32_t n_out = -1;
        ASSERT_EQ(seaopt_generate_greedy_until(chain.ctx, 0, kBos, n_steps, stop, got.data(), &n_out), SEAOPT_OK)
            << seaopt_last_error();
        ASSERT_EQ(n_out, n_expect);
        EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + n_out),
                  std::vector<int32_t>(want.begin(), want.begin() + n_out));
        EXPECT_EQ(seaopt_kv_seq_len(chain.ctx, 0), n_out);
        const float *a = seaopt_get_logits_ith(chain.ctx, -1);
        ASSERT_NE(a, nullptr);
        EXPECT_EQ(std::vector<float>(a, a + n_vocab), loop_logits_after(n_out)) << "the stop step's logits";
        std::printf("greedy chain until %d: stopped after %d of %d steps (%s)\n", stop, n_out, n_steps,
                    n_out == n_expect ? "as the loop" : "WRONG");
        if (n_out >= kSteps) continue;
        // One more chain from the stop token on: the loop's next picks, and the logits at its end.
        const int32_t rest = std::min(kSteps - n_out, 64);
        std::vector<int32_t> more((size_t)rest, -7);
        ASSERT_EQ(seaopt_generate_greedy_until(chain.ctx, 0, want[(size_t)n_out - 1], rest, -1, more.data(), &n_out),
                  SEAOPT_OK)
            << seaopt_last_error();
        ASSERT_EQ(n_out, rest);
        const int32_t done = n_expect + rest;
        EXPECT_EQ(more, std::vector<int32_t>(want.begin() + n_expect, want.begin() + done));
        EXPECT_EQ(seaopt_kv_seq_len(chain.ctx, 0), done);
        a = seaopt_get_logits_ith(chain.ctx, -1);
        ASSERT_NE(a, nullptr);
        EXPECT_EQ(std::vector<float>(a, a + n_vocab), loop_logits_after(done)) << "after the second chain";
    }
}

TEST(GpuEngine, GenerateGreedyUntilStopsInsideTheChain) {
    const std::vector<std::string> shape{"--hidden", "2048", "--heads", "32", "--layers", "2", "--ffn", "8192",
                                         "--token-embedding-std", "0.05"};
    check_greedy_until(make_model("opt1.3b-2layers-wander", shape));
    // Q8_0: the stopped launch drains the next step's Q8_0 qkv chunks.
    std::printf("Q8_0 matrices:\n");
    check_greedy_until(make_model("opt1.3b-2layers-wander-q8", shape, false, "3", "q8_0"));
}

// The same at the layer shapes of OPT-2.7B (heads of 80: key groups of 16 lanes with 6 idle, 64 keys a
// step, FMA row parts of 20 KB rows), OPT-6.7B (heads of 128, 32 KB ring slots) and OPT-13B (40 heads,
// hidden 5,120: 5 float4s of the residual a thread, 3 ring slots of 40 KB), one layer each, 300 steps
// (two key ranges per head from position 256).
TEST(GpuEngine, PersistentDecodeOtherHeadSizes) {
    std::printf("OPT-2.7B layer shape (head_dim 80):\n");
    check_persistent_decode(
        make_model("opt27b-layer", {"--hidden", "2560", "--heads", "32", "--layers", "1", "--ffn", "10240"}), 300);
    std::printf("OPT-6.7B layer shape (head_dim 128):\n");
    check_persistent_decode(
        make_model("opt67b-layer", {"--hidden", "4096", "--heads", "32", "--layers", "1", "--ffn", "16384"}), 300);
    std::printf("OPT-13B layer shape (40 heads of 128, hidden 5120):\n");
    check_persistent_decode(
        make_model("opt13b-layer", {"--hidden", "5120", "--heads", "40", "--layers", "1", "--ffn", "20480"}), 300);
}

// Batch-1 decode of two sequences, one token at a time and alternating, on the default path (the
// persistent kernel where the device allows it: each step reads and writes its own sequence's KV
// cache) against each sequence's CPU prefill and against the per-op step.
TEST(GpuEngine, OneTokenDecodeOfTwoSequencesAlternating) {
    const std::vector<int32_t> ids = test_ids(81);
    const std::vector<int32_t> a(ids.begin(), ids.begin() + 40), b(ids.begin() + 40, ids.end() - 1);
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load(model_path().c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
    seaopt_context_params cp = seaopt_context_default_params();
    cp.n_ctx = 64;
    cp.n_seq_max = 2;
    seaopt_context *dflt = nullptr, *per_op = nullptr;
    ASSERT_EQ(seaopt_context_new(model, &cp, &dflt), SEAOPT_OK) << seaopt_last_error();
    setenv("SEAOPT_PERSISTENT_DECODE", "0", 1);
    const seaopt_status per_op_status = seaopt_context_new(model, &cp, &per_op);
    unsetenv("SEAOPT_PERSISTENT_DECODE");  // before any assertion can leave the test
    ASSERT_EQ(per_op_status, SEAOPT_OK) << seaopt_last_error();
    Engine cpu(SEAOPT_DEVICE_CPU, 64);
    const auto ref_a = cpu.prefill(a);
    seaopt_kv_clear(cpu.ctx);
    const auto ref_b = cpu.prefill(b);
    const int32_t V = seaopt_model_n_vocab(model);
    double err_ref = 0, err_op = 0, scale = 0;
    for (size_t t = 0; t < a.size(); ++t) {
        for (int32_t s = 0; s < 2; ++s) {
            int32_t tok = (s == 0 ? a : b)[t], pos = (int32_t)t, seq = s;
            int8_t want = 1;
            seaopt_batch batch{1, &tok, &pos, &seq, &want};
            ASSERT_EQ(seaopt_decode(dflt, &batch), SEAOPT_OK) << seaopt_last_error();
            ASSERT_EQ(seaopt_decode(per_op, &batch), SEAOPT_OK) << seaopt_last_error();
            const float *got = seaopt_get_logits_ith(dflt, 0), *op = seaopt_get_logits_ith(per_op, 0);
            const std::vector<float> &ref = (s == 0 ? ref_a : ref_b)[t];
            scale = std::max(scale, std_of(ref));
            for (int32_t v = 0; v < V; ++v) {
                err_ref = std::max(err_ref, (double)std::fabs(got[v] - ref[(size_t)v]));
                err_op = std::max(err_op, (double)std::fabs(got[v] - op[v]));
            }
        }
    }
    std::printf("two sequences, 2 x 40 alternating one-token steps: max |dlogit| vs CPU %.4f, vs the per-op step %.4f "
                "(logit std %.2f)\n",
                err_ref, err_op, scale);
    EXPECT_LE(err_ref, 0.02 * scale);
    EXPECT_LE(err_op, 0.01 * scale);
    EXPECT_EQ(seaopt_kv_seq_len(dflt, 0), 40);
    EXPECT_EQ(seaopt_kv_seq_len(dflt, 1), 40);
    seaopt_context_free(dflt);
    seaopt_context_free(per_op);
    seaopt_model_free(model);
}

void check_device_memory_matches_plan(const std::string &path) {
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load(path.c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
    const std::vector<int32_t> ids = test_ids(2048);
    // Warm-up context: the first launches load kernel code (CUDA lazy loading, cuBLASLt's kernels)
    // and reserve local memory; that is the runtime's, not the plan's. Measure a second context.
    {
        seaopt_context_params wp = seaopt_context_default_params();
        wp.n_ctx = 2048;
        seaopt_context *warm = nullptr;
        ASSERT_EQ(seaopt_context_new(model, &wp, &warm), SEAOPT_OK) << seaopt_last_error();
        seaopt_batch wb = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
        ASSERT_EQ(seaopt_decode(warm, &wb), SEAOPT_OK) << seaopt_last_error();
        for (int i = 0; i < 3; ++i) {
            seaopt_kv_truncate(warm, 0, 2047);
            wb = seaopt_batch_get_one(&ids[2047], 1);
            ASSERT_EQ(seaopt_decode(warm, &wb), SEAOPT_OK) << seaopt_last_error();
        }
        seaopt_context_free(warm);
    }
    size_t free_before = 0, total = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
    seaopt_context_params cp = seaopt_context_default_params();
    cp.n_ctx = 2048;
    seaopt_context *ctx = nullptr;
    ASSERT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
    seaopt_batch b = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
    ASSERT_EQ(seaopt_decode(ctx, &b), SEAOPT_OK) << seaopt_last_error();
    for (int i = 0; i < 3; ++i) {  // include the captured decode graph
        seaopt_kv_truncate(ctx, 0, 2047);
        b = seaopt_batch_get_one(&ids[2047], 1);
        ASSERT_EQ(seaopt_decode(ctx, &b), SEAOPT_OK) << seaopt_last_error();
    }
    size_t free_after = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
    seaopt_memory_report rep;
    ASSERT_EQ(seaopt_context_memory(ctx, &rep), SEAOPT_OK);
    const double measured = (double)free_before - (double)free_after;
    const double planned = (double)(rep.kv_cache_bytes + rep.arena_bytes + rep.workspace_bytes);
    std::printf("context memory: planned %.2f MiB (KV %.2f, arena %.2f, workspace %.2f), measured %.2f MiB (%+.2f%%)\n",
                planned / 1048576, rep.kv_cache_bytes / 1048576.0, rep.arena_bytes / 1048576.0,
                rep.workspace_bytes / 1048576.0, measured / 1048576, 100.0 * (measured - planned) / planned);
    EXPECT_LE(std::fabs(measured - planned), 0.01 * planned);
    seaopt_context_free(ctx);
    seaopt_model_free(model);
}

TEST(GpuEngine, DeviceMemoryMatchesThePlan) { check_device_memory_matches_plan(model_path()); }
// Q8_0: the plan also holds the dequantized matrix of the prefill's GEMMs (memory_plan.h: dequant_w16).
TEST(GpuEngine, Q8_0DeviceMemoryMatchesThePlan) { check_device_memory_matches_plan(q8_model_path()); }

// ---- SEA attention on the CUDA engine ----
// The build's SEA demo model (models/opt-tiny-sea-untrained.gguf: head size 64, 2 heads, 2 layers, K 16, k 4, a
// random estimator), CUDA engine against the CPU engine, both with attention = SEA.

const std::string &sea_model_path() {
    static const std::string path = std::string(SEAOPT_BINARY_DIR) + "/models/opt-tiny-sea-untrained.gguf";
    return path;
}

struct SeaEngine {
    seaopt_model *model = nullptr;
    seaopt_context *ctx = nullptr;
    SeaEngine(seaopt_device device, uint32_t n_ctx, uint32_t n_seq = 1, const char *layers = nullptr,
              const std::string &path = sea_model_path()) {
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = device;
        EXPECT_EQ(seaopt_model_load(path.c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_seq_max = n_seq;
        cp.attention = SEAOPT_ATTENTION_SEA;
        cp.sea_layers = layers;
        EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
    }
    ~SeaEngine() {
        seaopt_context_free(ctx);
        seaopt_model_free(model);
    }
    // Runs tokens [from, to) of sequence `seq` in one batch; returns the logits of every token.
    std::vector<std::vector<float>> run(const std::vector<int32_t> &ids, size_t from, size_t to, int32_t seq = 0) {
        const size_t n = to - from;
        std::vector<int32_t> seqs(n, seq);
        std::vector<int8_t> want(n, 1);
        seaopt_batch b = seaopt_batch_get_one(ids.data() + from, (int32_t)n);
        b.seq_id = seqs.data();
        b.logits = want.data();
        EXPECT_EQ(seaopt_decode(ctx, &b), SEAOPT_OK) << seaopt_last_error();
        std::vector<std::vector<float>> rows;
        for (size_t i = 0; i < n; ++i) {
            const float *lg = seaopt_get_logits_ith(ctx, (int32_t)i);
            if (!lg) return rows;
            rows.emplace_back(lg, lg + seaopt_model_n_vocab(model));
        }
        return rows;
    }
};

// Per-position comparison: max |Δlogit| relative to the reference row's spread, and whether the argmax agrees.
struct RowsDiff {
    size_t n = 0, far = 0, argmax_differ = 0;
    double worst = 0, median = 0;
};

RowsDiff compare_rows(const std::vector<std::vector<float>> &got, const std::vector<std::vector<float>> &ref,
                      double tol_rel) {
    RowsDiff d;
    std::vector<double> errs;
    for (size_t t = 0; t < ref.size() && t < got.size(); ++t) {
        const double scale = std_of(ref[t]);
        double e = 0;
        for (size_t v = 0; v < ref[t].size(); ++v) {
            const double x = std::fabs((double)got[t][v] - ref[t][v]);
            e = std::isfinite(x) ? std::max(e, x) : INFINITY;
        }
        errs.push_back(e / scale);
        d.far += !(e <= tol_rel * scale);
        const auto am = [](const std::vector<float> &r) { return std::max_element(r.begin(), r.end()) - r.begin(); };
        d.argmax_differ += am(got[t]) != am(ref[t]);
        ++d.n;
    }
    EXPECT_EQ(got.size(), ref.size());
    std::sort(errs.begin(), errs.end());
    if (!errs.empty()) {
        d.worst = errs.back();
        d.median = errs[errs.size() / 2];
    }
    return d;
}

// Prefill of 80 tokens, then 40 one-token steps (CUDA graph replays from the second), CUDA vs CPU. The GPU runs q,
// k, v in fp16 and the CPU in fp32, so the estimator's probabilities differ by ~1e-3 and a query whose top-k margin
// is that small may keep another cell (sea.md §2.7: "accept rare boundary flips"); such positions are counted. A
// wrong kernel or a wrong state moves (nearly) every position.
void check_sea_against_cpu(const std::string &path) {
    const std::vector<int32_t> ids = test_ids(120);
    for (const char *layers : {(const char *)nullptr, "1"}) {
        SeaEngine cpu(SEAOPT_DEVICE_CPU, 256, 1, layers, path), gpu(SEAOPT_DEVICE_CUDA, 256, 1, layers, path);
        std::vector<std::vector<float>> ref = cpu.run(ids, 0, 80), got = gpu.run(ids, 0, 80);
        for (size_t t = 80; t < ids.size(); ++t) {
            ref.push_back(cpu.run(ids, t, t + 1)[0]);
            got.push_back(gpu.run(ids, t, t + 1)[0]);
        }
        const RowsDiff d = compare_rows(got, ref, 0.02);
        std::printf("SEA (layers %s) CUDA vs CPU engine, 80-token prefill + 40 decode steps: %zu of %zu positions "
                    "beyond 0.02 x logit std (median %.4f, worst %.3f x std), argmax differs at %zu\n",
                    layers ? layers : "all", d.far, d.n, d.median, d.worst, d.argmax_differ);
        EXPECT_LE(d.median, 0.005);
        EXPECT_LE(d.far, d.n / 10);
        EXPECT_LE(d.argmax_differ, d.n / 10);
    }
}

TEST(GpuEngine, SeaMatchesTheCpuEngine) { check_sea_against_cpu(sea_model_path()); }

// A prompt in several batches (seaopt-generate -b, a prompt after a cached one): the later batches continue the
// sequence with the SEA prefill from its state (a batch of one token with the decode). Against the CPU engine
// running the whole prompt as one prefill, under the rule of SeaMatchesTheCpuEngine.
TEST(GpuEngine, SeaPromptInBatchesMatchesTheCpuEngine) {
    const std::vector<int32_t> ids = test_ids(150);
    SeaEngine cpu(SEAOPT_DEVICE_CPU, 256), gpu(SEAOPT_DEVICE_CUDA, 256);
    const std::vector<std::vector<float>> ref = cpu.run(ids, 0, ids.size());
    std::vector<std::vector<float>> got;
    const size_t cuts[] = {0, 30, 31, 33, 97, ids.size()};
    for (size_t i = 0; i + 1 < std::size(cuts); ++i) {
        for (auto &r : gpu.run(ids, cuts[i], cuts[i + 1])) got.push_back(std::move(r));
    }
    const RowsDiff d = compare_rows(got, ref, 0.02);
    std::printf("SEA CUDA, a 150-token prompt in batches of 30, 1, 2, 64, 53 tokens, vs the CPU engine's one batch: "
                "%zu of %zu positions beyond 0.02 x logit std (median %.4f, worst %.3f x std), argmax differs at %zu\n",
                d.far, d.n, d.median, d.worst, d.argmax_differ);
    EXPECT_LE(d.median, 0.005);
    EXPECT_LE(d.far, d.n / 10);
    EXPECT_LE(d.argmax_differ, d.n / 10);
}

// SEA with Q8_0 matrices (the SEA demo model through seaopt-quantize): the estimator is untouched, the GEMMs and
// GEMVs read int8 weights.
TEST(GpuEngine, SeaOnAQ8_0ModelMatchesTheCpuEngine) {
    const std::string q8 = seaopt_test::temp_dir() + "/sea-q8.gguf";
    ASSERT_EQ(run({std::string(SEAOPT_BINARY_DIR) + "/bin/seaopt-quantize", sea_model_path(), q8, "q8_0", "--no-progress"}), 0);
    check_sea_against_cpu(q8);
}

// The GPU engine's own consistency: (a) a sequence cut back by seaopt_kv_truncate (its SEA states rebuilt by
// re-running its tokens) continues with exactly the bits it had before the cut; (b) two sequences in one batch, one
// starting (SEA prefill) and one continuing with several tokens, give what the same
// tokens give in batches of their own -- up to rounding, since the GEMMs of a 35-row batch and of 30- and 5-row
// batches may round differently (cuBLASLt vs the GEMV), so the rule of SeaMatchesTheCpuEngine. (The 5-token
// continuation runs the SEA prefill from sequence 0's state; SeaPromptInBatchesMatchesTheCpuEngine checks it
// against the CPU.)
TEST(GpuEngine, SeaTruncateAndBatchesAreExact) {
    const std::vector<int32_t> ids = test_ids(100);
    {
        SeaEngine gpu(SEAOPT_DEVICE_CUDA, 256);
        gpu.run(ids, 0, 60);
        std::vector<std::vector<float>> first, again;
        for (size_t t = 60; t < 70; ++t) first.push_back(gpu.run(ids, t, t + 1)[0]);
        ASSERT_EQ(seaopt_kv_truncate(gpu.ctx, 0, 60), SEAOPT_OK) << seaopt_last_error();
        EXPECT_EQ(seaopt_kv_seq_len(gpu.ctx, 0), 60);
        for (size_t t = 60; t < 70; ++t) again.push_back(gpu.run(ids, t, t + 1)[0]);
        EXPECT_TRUE(first == again) << "decoding after kv_truncate differs from decoding before it";
    }
    SeaEngine mixed(SEAOPT_DEVICE_CUDA, 256, 2), solo(SEAOPT_DEVICE_CUDA, 256, 2);
    // Sequence 0: 40 tokens. Then one batch: sequence 1's first 30 tokens and sequence 0's next 5.
    mixed.run(ids, 0, 40, 0);
    std::vector<int32_t> tok, seq;
    for (size_t i = 0; i < 30; ++i) tok.push_back(ids[50 + i]), seq.push_back(1);
    for (size_t i = 40; i < 45; ++i) tok.push_back(ids[i]), seq.push_back(0);
    std::vector<int8_t> want(tok.size(), 1);
    seaopt_batch b = seaopt_batch_get_one(tok.data(), (int32_t)tok.size());
    b.seq_id = seq.data();
    b.logits = want.data();
    ASSERT_EQ(seaopt_decode(mixed.ctx, &b), SEAOPT_OK) << seaopt_last_error();
    std::vector<std::vector<float>> got;
    for (size_t i = 0; i < tok.size(); ++i) {
        const float *lg = seaopt_get_logits_ith(mixed.ctx, (int32_t)i);
        got.emplace_back(lg, lg + seaopt_model_n_vocab(mixed.model));
    }
    // The same tokens, each sequence alone: sequence 1's 30 as one prefill, sequence 0's 40 then 5 more in one batch.
    const std::vector<int32_t> ids1(ids.begin() + 50, ids.begin() + 80);
    std::vector<std::vector<float>> want_rows = solo.run(ids1, 0, 30, 1);
    solo.run(ids, 0, 40, 0);
    for (const auto &r : solo.run(ids, 40, 45, 0)) want_rows.push_back(r);
    const RowsDiff d = compare_rows(got, want_rows, 0.02);
    std::printf("SEA mixed batch (a 30-token prefill + a 5-token continuation) vs separate batches: %zu of %zu "
                "positions beyond 0.02 x logit std (median %.5f, worst %.3f x std)\n",
                d.far, d.n, d.median, d.worst);
    EXPECT_LE(d.median, 0.005);
    EXPECT_LE(d.far, d.n / 10);
}

// Memory with SEA: the plan shows dense and SEA side by side, and the device memory a SEA context takes matches
// the plan (arena with the SEA scratch, KV cache, SEA states and parameters, GEMM workspace) within 1%.
TEST(GpuEngine, SeaDeviceMemoryMatchesThePlan) {
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load(sea_model_path().c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
    const std::vector<int32_t> ids = test_ids(2048);
    auto make = [&](seaopt_context **ctx) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = 2048;
        cp.n_seq_max = 4;
        cp.attention = SEAOPT_ATTENTION_SEA;
        ASSERT_EQ(seaopt_context_new(model, &cp, ctx), SEAOPT_OK) << seaopt_last_error();
        seaopt_batch b = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
        ASSERT_EQ(seaopt_decode(*ctx, &b), SEAOPT_OK) << seaopt_last_error();
        for (int i = 0; i < 3; ++i) {
            ASSERT_EQ(seaopt_kv_truncate(*ctx, 0, 2047), SEAOPT_OK) << seaopt_last_error();
            b = seaopt_batch_get_one(&ids[2047], 1);
            ASSERT_EQ(seaopt_decode(*ctx, &b), SEAOPT_OK) << seaopt_last_error();
        }
    };
    {
        seaopt_context *warm = nullptr;  // loads the kernels (see DeviceMemoryMatchesThePlan)
        make(&warm);
        seaopt_context_free(warm);
    }
    size_t free_before = 0, free_after = 0, total = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
    seaopt_context *ctx = nullptr;
    make(&ctx);
    ASSERT_NE(ctx, nullptr);
    ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
    seaopt_memory_report rep;
    ASSERT_EQ(seaopt_context_memory(ctx, &rep), SEAOPT_OK);
    const double measured = (double)free_before - (double)free_after;
    const double planned = (double)(rep.kv_cache_bytes + rep.arena_bytes + rep.workspace_bytes);
    std::printf("SEA context memory: planned %.2f MiB (KV %.2f, arena %.2f, workspace + SEA %.2f), measured %.2f MiB "
                "(%+.2f%%)\n",
                planned / 1048576, rep.kv_cache_bytes / 1048576.0, rep.arena_bytes / 1048576.0,
                rep.workspace_bytes / 1048576.0, measured / 1048576, 100.0 * (measured - planned) / planned);
    EXPECT_LE(std::fabs(measured - planned), 0.01 * planned);
    char buf[8192];
    size_t n = 0;
    ASSERT_EQ(seaopt_context_memory_plan(ctx, buf, sizeof buf, &n), SEAOPT_OK) << seaopt_last_error();
    const std::string plan(buf, std::min(n, sizeof buf));
    std::printf("%s", plan.c_str());
    EXPECT_NE(plan.find("dense        SEA"), std::string::npos);
    EXPECT_NE(plan.find("SEA decode states"), std::string::npos);
    EXPECT_NE(plan.find("sea_scratch"), std::string::npos);
    seaopt_context_free(ctx);
    seaopt_model_free(model);
}

// SEA inside the persistent decode kernel (engine/cuda/decode_persistent.cu: a SEA layer's estimator, convs, CNN
// output + grouped top-k and sparse attention as sub-phases of the step) at OPT-1.3B's layer and head shapes (32
// heads of 64, K 64, a random estimator), 2 layers, against the kernel-per-op SEA decode (SEAOPT_PERSISTENT_SEA=0):
// a 64-token prefill then 300 one-token steps (the prefill's state continued), and a sequence decoded one token at a
// time from position 0 (fresh state, the conv rows before 0); SEA on both layers and on layer 1 only (a dense layer
// and a SEA layer in one step). The SEA path inside the kernel is opt-in (SEAOPT_PERSISTENT_SEA=1: still slower).
// The two paths' GEMVs round differently, so q, k and v may differ by an fp16 ulp and a
// query with a top-k margin that small may keep another cell: the row rule of SeaMatchesTheCpuEngine.
struct SeaContext {
    seaopt_context *ctx = nullptr;
    // persistent_sea: SEAOPT_PERSISTENT_SEA ("1" inside the kernel, "split" the split step, "0" the per-op step).
    SeaContext(seaopt_model *model, const char *layers, const char *persistent_sea) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = 512;
        cp.n_seq_max = 2;
        cp.attention = SEAOPT_ATTENTION_SEA;
        cp.sea_layers = layers;
        setenv("SEAOPT_PERSISTENT_SEA", persistent_sea, 1);
        const seaopt_status st = seaopt_context_new(model, &cp, &ctx);
        unsetenv("SEAOPT_PERSISTENT_SEA");
        EXPECT_EQ(st, SEAOPT_OK) << seaopt_last_error();
    }
    ~SeaContext() { seaopt_context_free(ctx); }
    std::vector<float> step(int32_t tok, int32_t pos, int32_t seq, int32_t n_vocab) {
        int8_t want = 1;
        seaopt_batch b{1, &tok, &pos, &seq, &want};
        EXPECT_EQ(seaopt_decode(ctx, &b), SEAOPT_OK) << seaopt_last_error();
        const float *lg = seaopt_get_logits_ith(ctx, 0);
        return lg ? std::vector<float>(lg, lg + n_vocab) : std::vector<float>();
    }
};

// The OPT-1.3B-shaped 2-layer SEA model decoded by a context with SEAOPT_PERSISTENT_SEA=sea_env against one with 0
// (the kernel-per-op SEA step), for each SEA layer set (null: all): sequence 0 a 64-token prefill then 300 one-token
// steps, sequence 1 one token a step from position 0. log_marker: the planner's log line that says the context runs
// the path under test (expected on sm_90 with an sm_90 build); what: the path's name in the printed figures.
void check_persistent_sea_against_per_op(const char *sea_env, const char *log_marker, const char *what,
                                         std::initializer_list<const char *> layer_sets) {
    const std::string path =
        make_model("opt1.3b-sea", {"--hidden", "2048", "--heads", "32", "--layers", "2", "--ffn", "8192"}, true,
                   "5");
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load(path.c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
    const int32_t V = seaopt_model_n_vocab(model);
    const std::vector<int32_t> ids = test_ids(364);
    int major = 0;
    ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), cudaSuccess);
    const bool expect_persistent = major >= 9 && std::string(seaopt_build_info()).find("sm_90") != std::string::npos;
    for (const char *layers : layer_sets) {
        g_log_lines.clear();
        seaopt_log_set(capture_log, nullptr);
        SeaContext tested(model, layers, sea_env);
        seaopt_log_set(nullptr, nullptr);
        SeaContext per_op(model, layers, "0");
        bool ran = false;
        for (const std::string &line : g_log_lines) ran |= line.find(log_marker) != std::string::npos;
        if (expect_persistent) {
            EXPECT_TRUE(ran) << "the SEA context did not plan " << what;
        }
        if (!ran) std::printf("note: no persistent decode kernel here: the per-op SEA step twice\n");
        std::vector<int32_t> seq0(64, 0);
        std::vector<int8_t> want(64, 0);
        seaopt_batch pre = seaopt_batch_get_one(ids.data(), 64);
        pre.seq_id = seq0.data();
        pre.logits = want.data();
        ASSERT_EQ(seaopt_decode(tested.ctx, &pre), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_decode(per_op.ctx, &pre), SEAOPT_OK) << seaopt_last_error();
        std::vector<std::vector<float>> got, ref;
        for (int32_t t = 64; t < 364; ++t) {
            got.push_back(tested.step(ids[(size_t)t], t, 0, V));
            ref.push_back(per_op.step(ids[(size_t)t], t, 0, V));
        }
        for (int32_t t = 0; t < 40; ++t) {
            got.push_back(tested.step(ids[(size_t)t + 100], t, 1, V));
            ref.push_back(per_op.step(ids[(size_t)t + 100], t, 1, V));
        }
        const RowsDiff d = compare_rows(got, ref, 0.02);
        std::printf("SEA (layers %s) %s vs the per-op SEA step, 300 steps after a 64-token prefill + 40 from "
                    "position 0: %zu of %zu beyond 0.02 x logit std (median %.5f, worst %.3f x std), argmax differs "
                    "at %zu\n",
                    layers ? layers : "all", what, d.far, d.n, d.median, d.worst, d.argmax_differ);
        EXPECT_LE(d.median, 0.005);
        EXPECT_LE(d.far, d.n / 20);
        EXPECT_LE(d.argmax_differ, d.n / 20);
    }
    seaopt_model_free(model);
}

TEST(GpuEngine, PersistentSeaDecodeMatchesThePerOpStep) {
    check_persistent_sea_against_per_op("1", "SEA attention inside", "the persistent kernel with SEA inside",
                                        {nullptr, "1"});
}

// The split step (the default for SEA contexts on sm_90: the persistent kernel in segments, each SEA layer's
// attention as the kernel-per-op SEA kernels between them; model/opt_cuda.cpp persistent_split_step) against the
// per-op SEA step, as above: SEA on both layers (two SEA layers in a row: a segment that resumes at one layer's
// out-projection and stops after the next one's qkv), on layer 1 only (a dense layer's attention inside the first
// segment) and on layer 0 only (inside the last). The split step's GEMVs are the persistent kernel's, so the same
// rounding rule.
TEST(GpuEngine, PersistentSplitSeaDecodeMatchesThePerOpStep) {
    check_persistent_sea_against_per_op("split", "in segments between the SEA layers' kernels", "the split step",
                                        {nullptr, "1", "0"});
}

// ---- Saved sequence states (seaopt_state_seq_*, engine/state.h) on the GPU ----

std::vector<uint8_t> saved_state(seaopt_context *ctx) {
    size_t size = 0, written = 0;
    EXPECT_EQ(seaopt_state_seq_get_size(ctx, 0, &size), SEAOPT_OK) << seaopt_last_error();
    std::vector<uint8_t> blob(size);
    EXPECT_EQ(seaopt_state_seq_get_data(ctx, 0, blob.data(), size, &written), SEAOPT_OK) << seaopt_last_error();
    return blob;
}

// Tokens [from, to) of sequence 0 one at a time (batch-1 decode: the captured or persistent step): each one's logits.
std::vector<std::vector<float>> decode_steps(seaopt_context *ctx, const std::vector<int32_t> &ids, size_t from,
                                             size_t to) {
    std::vector<std::vector<float>> rows;
    const int32_t V = seaopt_context_n_vocab(ctx);
    for (size_t t = from; t < to; ++t) {
        seaopt_batch b = seaopt_batch_get_one(&ids[t], 1);
        EXPECT_EQ(seaopt_decode(ctx, &b), SEAOPT_OK) << seaopt_last_error();
        const float *lg = seaopt_get_logits_ith(ctx, -1);
        if (!lg) break;
        rows.emplace_back(lg, lg + V);
    }
    return rows;
}

// A 90-token prompt and 3 single steps, saved; then 20 more steps. Restored (1) on the GPU from the GPU's state: the
// same continuation (the fp16 keys and values go back as they were; the SEA states through the CPU engine's
// layout); (2) on the GPU from the CPU engine's state (fp32 keys and values rounded to fp16) and (3) on the CPU from
// the GPU's: the receiving engine's own continuation, up to the two engines' usual difference (SeaMatchesTheCpuEngine's
// rule). A state that restored the wrong rows, heads or history slots moves nearly every position.
template <typename E, typename Make> void check_state_round_trips(const char *what, Make make) {
    const std::vector<int32_t> ids = test_ids(120);
    std::unique_ptr<E> gpu = make(SEAOPT_DEVICE_CUDA), cpu = make(SEAOPT_DEVICE_CPU);
    for (E *e : {gpu.get(), cpu.get()}) {
        seaopt_batch b = seaopt_batch_get_one(ids.data(), 90);
        ASSERT_EQ(seaopt_decode(e->ctx, &b), SEAOPT_OK) << seaopt_last_error();
        decode_steps(e->ctx, ids, 90, 93);
    }
    const std::vector<uint8_t> gpu_state = saved_state(gpu->ctx), cpu_state = saved_state(cpu->ctx);
    const auto gpu_next = decode_steps(gpu->ctx, ids, 93, 113), cpu_next = decode_steps(cpu->ctx, ids, 93, 113);

    struct Leg {
        const char *name;
        seaopt_device device;
        const std::vector<uint8_t> *state;
        const std::vector<std::vector<float>> *ref;
        double tol;
    };
    for (const Leg &leg : {Leg{"GPU state on the GPU", SEAOPT_DEVICE_CUDA, &gpu_state, &gpu_next, 1e-3},
                           Leg{"CPU state on the GPU", SEAOPT_DEVICE_CUDA, &cpu_state, &gpu_next, 0.02},
                           Leg{"GPU state on the CPU", SEAOPT_DEVICE_CPU, &gpu_state, &cpu_next, 0.02}}) {
        SCOPED_TRACE(leg.name);
        std::unique_ptr<E> to = make(leg.device);
        ASSERT_EQ(seaopt_state_seq_set_data(to->ctx, 0, leg.state->data(), leg.state->size()), SEAOPT_OK)
            << seaopt_last_error();
        ASSERT_EQ(seaopt_kv_seq_len(to->ctx, 0), 93);
        const auto got = decode_steps(to->ctx, ids, 93, 113);
        const RowsDiff d = compare_rows(got, *leg.ref, leg.tol);
        std::printf("%s, %s: 20 steps after the restore vs the receiving engine's own: %zu beyond %.3g x logit std "
                    "(median %.5f, worst %.4f x std), argmax differs at %zu%s\n",
                    what, leg.name, d.far, leg.tol, d.median, d.worst, d.argmax_differ,
                    got == *leg.ref ? " (bit-identical)" : "");
        if (leg.tol < 0.01) {
            EXPECT_EQ(d.far, 0u);
            EXPECT_EQ(d.argmax_differ, 0u);
        } else {
            EXPECT_LE(d.median, 0.005);
            EXPECT_LE(d.far, d.n / 10);
            EXPECT_LE(d.argmax_differ, d.n / 10);
        }
    }
}

TEST(GpuEngine, SavedStatesRestoreOnEitherEngine) {
    check_state_round_trips<Engine>("dense (hidden 256, 4 heads of 64, 3 layers)", [](seaopt_device device) {
        return std::make_unique<Engine>(device, 128);
    });
    check_state_round_trips<SeaEngine>("SEA demo model (2 heads of 64, K 16, k 4)", [](seaopt_device device) {
        return std::make_unique<SeaEngine>(device, 128);
    });
}

// seaopt_context_memory_estimate on the GPU: the planned report equals the made context's (the same create_cuda_state
// plan, nothing allocated), for dense and SEA contexts; a plan of 6 GiB of KV cache leaves the device's free memory
// as it was.
TEST(GpuEngine, MemoryEstimateEqualsTheContextMade) {
    for (const auto &[path, attention] : std::vector<std::pair<std::string, seaopt_attention>>{
             {model_path(), SEAOPT_ATTENTION_DENSE}, {sea_model_path(), SEAOPT_ATTENTION_SEA}}) {
        SCOPED_TRACE(path);
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = SEAOPT_DEVICE_CUDA;
        seaopt_model *model = nullptr;
        ASSERT_EQ(seaopt_model_load(path.c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = 512;
        cp.n_seq_max = 2;
        cp.attention = attention;
        seaopt_memory_report est{}, made{};
        ASSERT_EQ(seaopt_context_memory_estimate(model, &cp, &est), SEAOPT_OK) << seaopt_last_error();
        seaopt_context *ctx = nullptr;
        ASSERT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_context_memory(ctx, &made), SEAOPT_OK);
        EXPECT_EQ(est.weights_bytes, made.weights_bytes);
        EXPECT_EQ(est.kv_cache_bytes, made.kv_cache_bytes);
        EXPECT_EQ(est.arena_bytes, made.arena_bytes);
        EXPECT_EQ(est.workspace_bytes, made.workspace_bytes);
        EXPECT_EQ(est.total_bytes, made.total_bytes);
        EXPECT_GT(est.device_free_bytes, 0u);
        std::printf("memory estimate (%s): KV %.2f MiB, arena %.2f MiB, workspace %.2f MiB: equal to the context made\n",
                    attention == SEAOPT_ATTENTION_SEA ? "SEA" : "dense", est.kv_cache_bytes / 1048576.0,
                    est.arena_bytes / 1048576.0, est.workspace_bytes / 1048576.0);
        seaopt_context_free(ctx);
        cp.n_ctx = 2048;
        cp.n_seq_max = 1024;
        cp.n_batch = 2048;
        size_t free_before = 0, free_after = 0, total = 0;
        ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
        ASSERT_EQ(seaopt_context_memory_estimate(model, &cp, &est), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
        EXPECT_GT(est.kv_cache_bytes, 1ull << 30);
        EXPECT_EQ(free_before, free_after) << "the estimate allocated device memory";
        seaopt_model_free(model);
    }
}

// seaopt_kv_seq_cp on the GPU (device-to-device copies of the keys, values and SEA states): a prompt in sequence 0,
// copied to 1 and 2 (2 held other tokens), all three continued in one batch: the three rows alike (the same GEMM
// rows), and like sequence 0 continued alone (batch-1 decode: another kernel path, so within the engine's rounding).
template <typename E, typename Make> void check_sequence_copies(const char *what, Make make) {
    const std::vector<int32_t> ids = test_ids(120), other = test_ids(30);
    std::unique_ptr<E> c = make(3), alone = make(1);
    for (auto [e, seq, from, to, src] : {std::tuple{c.get(), 0, 0, 90, &ids}, std::tuple{c.get(), 2, 0, 30, &other},
                                         std::tuple{alone.get(), 0, 0, 90, &ids}}) {
        std::vector<int32_t> seqs((size_t)(to - from), seq);
        seaopt_batch b = seaopt_batch_get_one(src->data() + from, to - from);
        b.seq_id = seqs.data();
        ASSERT_EQ(seaopt_decode(e->ctx, &b), SEAOPT_OK) << seaopt_last_error();
    }
    ASSERT_EQ(seaopt_kv_seq_cp(c->ctx, 0, 1), SEAOPT_OK) << seaopt_last_error();
    ASSERT_EQ(seaopt_kv_seq_cp(c->ctx, 0, 2), SEAOPT_OK) << seaopt_last_error();
    const auto want = decode_steps(alone->ctx, ids, 90, 100);
    std::vector<std::vector<float>> got[3];
    const int32_t V = seaopt_context_n_vocab(c->ctx);
    for (size_t t = 90; t < 100; ++t) {
        const int32_t tok[3] = {ids[t], ids[t], ids[t]}, seq[3] = {0, 1, 2};
        const int8_t out[3] = {1, 1, 1};
        seaopt_batch b = seaopt_batch_get_one(tok, 3);
        b.seq_id = seq;
        b.logits = out;
        ASSERT_EQ(seaopt_decode(c->ctx, &b), SEAOPT_OK) << seaopt_last_error();
        for (int i = 0; i < 3; ++i) {
            const float *lg = seaopt_get_logits_ith(c->ctx, i);
            ASSERT_NE(lg, nullptr);
            got[i].emplace_back(lg, lg + V);
        }
    }
    for (int i = 1; i < 3; ++i) {
        const RowsDiff same = compare_rows(got[i], got[0], 1e-3);
        EXPECT_EQ(same.far, 0u) << what << ": copy " << i << " differs from the original in the same batch";
    }
    const RowsDiff d = compare_rows(got[1], want, 0.02);
    std::printf("%s: a copied sequence in a 3-sequence batch vs the original alone (batch-1 decode), 10 steps: %zu "
                "beyond 0.02 x logit std (median %.5f, worst %.4f x std), argmax differs at %zu%s\n",
                what, d.far, d.median, d.worst, d.argmax_differ,
                got[1] == got[0] && got[2] == got[0] ? "; the three rows bit-identical" : "");
    EXPECT_LE(d.median, 0.005);
    EXPECT_LE(d.far, d.n / 10);
    EXPECT_LE(d.argmax_differ, d.n / 10);
}

TEST(GpuEngine, SequenceCopiesContinueAsTheOriginal) {
    check_sequence_copies<Engine>("dense (hidden 256, 4 heads of 64, 3 layers)", [](uint32_t n_seq) {
        return std::make_unique<Engine>(SEAOPT_DEVICE_CUDA, 128, 0, model_path(), n_seq);
    });
    check_sequence_copies<SeaEngine>("SEA demo model", [](uint32_t n_seq) {
        return std::make_unique<SeaEngine>(SEAOPT_DEVICE_CUDA, 128, n_seq);
    });
}

}  // namespace
