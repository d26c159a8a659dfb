// seaopt_context_memory_estimate on the CPU engine with the build's demo models: the report of a context that is
// only planned equals the report of the context when it is made, it refuses what seaopt_context_new refuses with
// the same message, and it allocates nothing. The GPU side: test_gpu_engine (GpuEngine.MemoryEstimate*).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <string>
#include <vector>

#include "seaopt.h"
#include "test_util.h"

namespace {

const std::string kDenseModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";

using Model = seaopt_test::CpuModel;

seaopt_context_params params(uint32_t n_ctx, uint32_t n_seq, seaopt_attention attention = SEAOPT_ATTENTION_DENSE) {
    seaopt_context_params p = seaopt_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.attention = attention;
    p.n_threads = 1;
    return p;
}

long max_rss_kib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

}  // namespace

TEST(ContextMemory, EstimateEqualsTheReportOfTheContextMade) {
    const std::vector<std::pair<std::string, seaopt_attention>> cases = {{kDenseModel, SEAOPT_ATTENTION_DENSE},
                                                                         {kSeaModel, SEAOPT_ATTENTION_SEA}};
    for (const auto &[path, attention] : cases) {
        SCOPED_TRACE(path);
        Model model(path);
        const seaopt_context_params p = params(256, 3, attention);
        seaopt_memory_report est{}, made{};
        ASSERT_EQ(seaopt_context_memory_estimate(model.m, &p, &est), SEAOPT_OK) << seaopt_last_error();
        seaopt_context *ctx = nullptr;
        ASSERT_EQ(seaopt_context_new(model.m, &p, &ctx), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(seaopt_context_memory(ctx, &made), SEAOPT_OK);
        seaopt_context_free(ctx);
        EXPECT_EQ(est.weights_bytes, made.weights_bytes);
        EXPECT_EQ(est.kv_cache_bytes, made.kv_cache_bytes);
        EXPECT_EQ(est.arena_bytes, made.arena_bytes);
        EXPECT_EQ(est.workspace_bytes, made.workspace_bytes);
        EXPECT_EQ(est.total_bytes, made.total_bytes);
        // The CPU engine's KV cache: fp32 K and V of every layer, sequence and position.
        EXPECT_EQ(est.kv_cache_bytes, 2ull * (uint64_t)seaopt_model_n_layer(model.m) * 3 * 256 *
                                          (uint64_t)seaopt_model_n_embd(model.m) * 4);
        if (attention == SEAOPT_ATTENTION_SEA) {
            EXPECT_GT(est.workspace_bytes, 0u);  // the SEA states and parameters
        }
        EXPECT_GT(est.device_free_bytes, 0u);  // MemAvailable on Linux
    }
}

TEST(ContextMemory, EstimateRefusesWhatContextNewRefuses) {
    Model dense(kDenseModel), sea(kSeaModel);
    struct Case {
        const char *what;
        seaopt_model *model;
        seaopt_context_params p;
    };
    std::vector<Case> cases = {{"n_ctx past the trained positions", dense.m, params(100000, 1)},
                               {"no sequences", dense.m, params(64, 0)},
                               {"SEA on a model without an estimator", dense.m, params(64, 1, SEAOPT_ATTENTION_SEA)}};
    seaopt_context_params bad_layers = params(64, 1, SEAOPT_ATTENTION_SEA);
    bad_layers.sea_layers = "0-9";
    cases.push_back({"a SEA layer out of range", sea.m, bad_layers});
    seaopt_context_params k_on_dense = params(64, 1);
    k_on_dense.sea_k = 3;
    cases.push_back({"sea_k with dense attention", sea.m, k_on_dense});
    for (const Case &c : cases) {
        SCOPED_TRACE(c.what);
        seaopt_context *ctx = nullptr;
        const seaopt_status made = seaopt_context_new(c.model, &c.p, &ctx);
        const std::string made_error = seaopt_last_error();
        EXPECT_NE(made, SEAOPT_OK);
        seaopt_memory_report r{};
        EXPECT_EQ(seaopt_context_memory_estimate(c.model, &c.p, &r), made);
        EXPECT_EQ(std::string(seaopt_last_error()), made_error);
    }
    seaopt_memory_report r{};
    EXPECT_EQ(seaopt_context_memory_estimate(nullptr, nullptr, &r), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_context_memory_estimate(dense.m, nullptr, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_context_memory_estimate(dense.m, nullptr, &r), SEAOPT_OK);  // NULL params: the defaults
}

// A plan of 1,024 sequences of 2,048 positions (a 2 GiB KV cache for the demo model) costs no memory.
TEST(ContextMemory, EstimateAllocatesNothing) {
    Model model(kDenseModel);
    seaopt_context_params p = params(2048, 1024);
    p.n_batch = 2048;
    const long before = max_rss_kib();
    seaopt_memory_report r{};
    ASSERT_EQ(seaopt_context_memory_estimate(model.m, &p, &r), SEAOPT_OK) << seaopt_last_error();
    EXPECT_GE(r.kv_cache_bytes, 2ull << 30);
    EXPECT_LT(max_rss_kib() - before, 64 * 1024) << "the estimate allocated memory";
}
