// seaopt_bench_attention_layer on a GPU (include/seaopt.h), on the SEA demo model (models/opt-tiny-sea-untrained.gguf:
// hidden 128 = 2 heads of 64, 2 layers, K 16, k 4, 2048 positions) loaded on CUDA: both kinds at T = 64 and at
// T = 4096, beyond the model's positions (SEA's table stretched to 4096 rows), give finite positive timings, the
// memory fields the header promises and a fully written, finite output; the same data gives the same dense output;
// --layer and sea_k are honoured; T = SEAOPT_ATTENTION_BENCH_MAX_TOKENS runs and one more is refused. Then
// seaopt-bench --attention-layer as a child process (JSON and the markdown table). Timings are not compared with
// anything: the H100 numbers of issue 4 come from `seaopt-bench --attention-layer` on OPT-1.3B (README).
// Skipped without a GPU (tests/gpu_test_main.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "seaopt.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";
const std::string kBench = SEAOPT_BINARY_DIR "/bin/seaopt-bench";
constexpr int kHeads = 2, kC = 128;

struct CudaModel {
    seaopt_model *m = nullptr;
    CudaModel() {
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = SEAOPT_DEVICE_CUDA;
        EXPECT_EQ(seaopt_model_load(kSeaModel.c_str(), &mp, &m), SEAOPT_OK) << seaopt_last_error();
    }
    ~CudaModel() { seaopt_model_free(m); }
};

seaopt_attention_layer_bench_result bench(const seaopt_model *model, seaopt_attention kind, int32_t T, int32_t layer = 0,
                                          int32_t sea_k = 0, int32_t reps = 3, int32_t warmup = 1) {
    seaopt_attention_layer_bench_params p = seaopt_attention_layer_bench_default_params();
    p.attention = kind;
    p.n_tokens = T;
    p.layer = layer;
    p.sea_k = sea_k;
    p.n_reps = reps;
    p.n_warmup = warmup;
    seaopt_attention_layer_bench_result r;
    std::memset(&r, 0, sizeof r);
    EXPECT_EQ(seaopt_bench_attention_layer(model, &p, &r), SEAOPT_OK)
        << (kind == SEAOPT_ATTENTION_SEA ? "SEA" : "dense") << " T " << T << ": " << seaopt_last_error();
    return r;
}

void expect_sane(const seaopt_attention_layer_bench_result &r, seaopt_attention kind, int32_t T, int32_t reps) {
    SCOPED_TRACE(std::string(kind == SEAOPT_ATTENTION_SEA ? "SEA" : "dense") + " T " + std::to_string(T));
    EXPECT_EQ(r.attention, kind);
    EXPECT_EQ(r.n_tokens, T);
    EXPECT_EQ(r.n_reps, reps);
    EXPECT_EQ(r.n_head, kHeads);
    EXPECT_EQ(r.head_dim, 64);
    for (double v : {r.mean_ms, r.min_ms, r.max_ms, r.kv_append_ms}) {
        EXPECT_TRUE(std::isfinite(v) && v > 0) << v;
    }
    EXPECT_TRUE(std::isfinite(r.std_ms) && r.std_ms >= 0) << r.std_ms;
    EXPECT_LE(r.min_ms, r.mean_ms);
    EXPECT_LE(r.mean_ms, r.max_ms);
    // Finite: every output written (it starts as NaN) and no overflow; positive: not all zeros.
    EXPECT_TRUE(std::isfinite(r.output_mean_abs) && r.output_mean_abs > 0) << r.output_mean_abs;
    EXPECT_EQ(r.qkv_bytes, (uint64_t)T * 3 * kC * 2);
    EXPECT_EQ(r.kv_cache_bytes, (uint64_t)T * 2 * kC * 2);
    EXPECT_EQ(r.out_bytes, (uint64_t)T * kC * 2);
    EXPECT_EQ(r.extra_bytes, r.scratch_bytes + r.state_bytes);
    if (kind == SEAOPT_ATTENTION_DENSE) {
        EXPECT_EQ(r.extra_bytes, 0u);
        EXPECT_EQ(r.sea_params_bytes, 0u);
        EXPECT_EQ(r.n_pos_table, 0);
        EXPECT_FALSE(r.pos_stretched);
    } else {
        EXPECT_GT(r.scratch_bytes, 0u);
        EXPECT_GT(r.state_bytes, 0u);
        EXPECT_GT(r.sea_params_bytes, 0u);
        EXPECT_EQ(r.sea_K, 16);
        EXPECT_GT(r.n_pos_table, 0);
        EXPECT_EQ(r.n_pos_ctx, std::max({r.n_pos_table, 2048, T}));  // the model's 2048 positions, or T beyond them
        EXPECT_EQ(r.pos_stretched, r.n_pos_ctx > r.n_pos_table);
    }
}

}  // namespace

TEST(GpuAttentionBench, BothKindsRunWithinAndBeyondTheModelsPositions) {
    ASSERT_TRUE(fs::exists(kSeaModel)) << kSeaModel << " is missing: build tiny_sea_model";
    CudaModel model;
    ASSERT_NE(model.m, nullptr);
    for (const int32_t T : {64, 4096}) {
        for (const seaopt_attention kind : {SEAOPT_ATTENTION_DENSE, SEAOPT_ATTENTION_SEA}) {
            const seaopt_attention_layer_bench_result r = bench(model.m, kind, T);
            expect_sane(r, kind, T, 3);
            if (kind == SEAOPT_ATTENTION_SEA) {
                EXPECT_EQ(r.sea_k, 4);  // the model's sea.k
            }
            std::printf("  %s T %5d: %.4f ± %.4f ms (KV append %.4f ms), extra %.3f MiB, E_pos %d -> %d, mean |out| %.4f\n",
                        kind == SEAOPT_ATTENTION_SEA ? "SEA  " : "dense", T, r.mean_ms, r.std_ms, r.kv_append_ms,
                        r.extra_bytes / 1048576.0, r.n_pos_table, r.n_pos_ctx, r.output_mean_abs);
        }
    }
    const seaopt_attention_layer_bench_result sea = bench(model.m, SEAOPT_ATTENTION_SEA, 4096);
    EXPECT_EQ(sea.n_pos_ctx, 4096);
    EXPECT_TRUE(sea.pos_stretched);
}

TEST(GpuAttentionBench, FixedDataLayerAndK) {
    CudaModel model;
    ASSERT_NE(model.m, nullptr);
    // The data is fixed by (seed, T): the same dense output twice (the flash prefill is deterministic).
    const seaopt_attention_layer_bench_result a = bench(model.m, SEAOPT_ATTENTION_DENSE, 300, 0, 0, 1, 0);
    const seaopt_attention_layer_bench_result b = bench(model.m, SEAOPT_ATTENTION_DENSE, 300, 1, 0, 2, 2);
    expect_sane(a, SEAOPT_ATTENTION_DENSE, 300, 1);
    EXPECT_EQ(a.output_mean_abs, b.output_mean_abs);
    EXPECT_EQ(a.std_ms, 0.0);  // one run
    // Another layer's estimator and another k: a different SEA output.
    const seaopt_attention_layer_bench_result s0 = bench(model.m, SEAOPT_ATTENTION_SEA, 300, 0, 0);
    const seaopt_attention_layer_bench_result s1 = bench(model.m, SEAOPT_ATTENTION_SEA, 300, 1, 2);
    expect_sane(s0, SEAOPT_ATTENTION_SEA, 300, 3);
    expect_sane(s1, SEAOPT_ATTENTION_SEA, 300, 3);
    EXPECT_EQ(s1.layer, 1);
    EXPECT_EQ(s1.sea_k, 2);
    EXPECT_NE(s0.output_mean_abs, s1.output_mean_abs);
}

TEST(GpuAttentionBench, LargestTRunsAndOneMoreIsRefused) {
    CudaModel model;
    ASSERT_NE(model.m, nullptr);
    constexpr int32_t kMax = SEAOPT_ATTENTION_BENCH_MAX_TOKENS;
    for (const seaopt_attention kind : {SEAOPT_ATTENTION_DENSE, SEAOPT_ATTENTION_SEA}) {
        const seaopt_attention_layer_bench_result r = bench(model.m, kind, kMax, 0, 0, 1, 0);
        expect_sane(r, kind, kMax, 1);
        seaopt_attention_layer_bench_params p = seaopt_attention_layer_bench_default_params();
        p.attention = kind;
        p.n_tokens = kMax + 1;
        seaopt_attention_layer_bench_result out;
        EXPECT_EQ(seaopt_bench_attention_layer(model.m, &p, &out), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_NE(std::string(seaopt_last_error()).find("n_tokens = 131073 is out of range: it must be in [1, 131072]"),
                  std::string::npos)
            << seaopt_last_error();
        EXPECT_EQ(out.mean_ms, 0.0);
    }
}

TEST(GpuAttentionBench, ToolPrintsTheTableAndJson) {
    seaopt_test::Result r = seaopt_test::run({kBench, "-m", kSeaModel, "--attention-layer", "64,4096", "--layer", "1",
                                              "-r", "2", "-o", "json", "--device", "cuda"});
    ASSERT_TRUE(r.exited && r.status == 0) << seaopt_test::describe(r);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << seaopt_test::describe(r);
    ASSERT_EQ(j.size(), 2u) << seaopt_test::describe(r);
    const int Ts[] = {64, 4096};
    for (size_t i = 0; i < 2; ++i) {
        const nlohmann::json &o = j[i];
        SCOPED_TRACE(o.dump());
        EXPECT_EQ(o.at("test"), "attention-layer");
        EXPECT_EQ(o.at("backend"), "seaopt-cuda");
        EXPECT_EQ(o.at("n_tokens"), Ts[i]);
        EXPECT_EQ(o.at("layer"), 1);
        EXPECT_EQ(o.at("reps"), 2);
        EXPECT_EQ(o.at("sea_k"), 4);
        for (const char *key : {"dense_avg_ms", "sea_avg_ms", "sea_dense_ratio", "kv_append_ms", "sea_output_mean_abs",
                                "dense_output_mean_abs"}) {
            ASSERT_TRUE(o.at(key).is_number()) << key;
            EXPECT_GT(o.at(key).get<double>(), 0.0) << key;
        }
        EXPECT_NEAR(o.at("sea_dense_ratio").get<double>(),
                    o.at("sea_avg_ms").get<double>() / o.at("dense_avg_ms").get<double>(), 1e-3);
        EXPECT_EQ(o.at("dense_extra_bytes"), 0);
        EXPECT_EQ(o.at("sea_extra_bytes").get<uint64_t>(),
                  o.at("sea_scratch_bytes").get<uint64_t>() + o.at("sea_state_bytes").get<uint64_t>());
        EXPECT_EQ(o.at("pos_stretched"), Ts[i] > 2048);
    }
    EXPECT_EQ(j[1].at("n_pos_ctx"), 4096);

    r = seaopt_test::run({kBench, "-m", kSeaModel, "--attention-layer", "4096", "-r", "2", "--device", "cuda"});
    ASSERT_TRUE(r.exited && r.status == 0) << seaopt_test::describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\\| +T \\| +dense ms \\| +SEA ms \\| SEA/dense \\|")))
        << seaopt_test::describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\\| seaopt-cuda +\\| +0 \\| +4096 \\| +[0-9]+\\.[0-9]{3} ± [0-9]+\\.[0-9]{3} \\| "
                                                    "+[0-9]+\\.[0-9]{3} ± [0-9]+\\.[0-9]{3} \\| +[0-9]+\\.[0-9]{2} \\| +0\\.00 \\| "
                                                    "+[0-9]+\\.[0-9]{2} \\| +4 \\| [0-9]+ -> 4096 +\\|\n")))
        << seaopt_test::describe(r);
    EXPECT_TRUE(r.out.find("KV append") != std::string::npos) << seaopt_test::describe(r);
}
