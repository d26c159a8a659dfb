// The CUDA engine against the CPU reference engine on a small random model with OPT's head_dim 64
// (made by seaopt-make-tiny-checkpoint --hidden 256 --heads 4), and the memory planner's promise:
// the device memory a context really takes matches its plan.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

#include "seaopt.h"
#include "test_util.h"

namespace {

// Exit code of a program, or -1 if it crashed.
int run(const std::vector<std::string> &args) {
    const seaopt_test::Result r = seaopt_test::run(args);
    return r.exited ? r.status : -1;
}

const std::string &model_path() {
    static const std::string path = [] {
        const std::string dir = seaopt_test::temp_dir() + "/hd64-hf", out = seaopt_test::temp_dir() + "/hd64.gguf";
        const std::string bin = std::string(SEAOPT_BINARY_DIR) + "/bin/";
        if (run({bin + "seaopt-make-tiny-checkpoint", "--out", dir, "--tokenizer-dir",
                 std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer", "--seed", "3", "--hidden", "256", "--heads",
                 "4", "--layers", "3", "--ffn", "1024"}) != 0 ||
            run({bin + "seaopt-convert", dir, "-o", out, "--outtype", "f16", "--no-progress"}) != 0) {
            throw std::runtime_error("cannot make the head_dim-64 test model");
        }
        return out;
    }();
    return path;
}

struct Engine {
    seaopt_model *model = nullptr;
    seaopt_context *ctx = nullptr;
    Engine(seaopt_device device, uint32_t n_ctx) {
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = device;
        EXPECT_EQ(seaopt_model_load(model_path().c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = n_ctx;
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

std::vector<int32_t> test_ids(size_t n) {
    std::vector<int32_t> ids{2};
    uint32_t state = 12345;
    while (ids.size() < n) {
        state = state * 1664525u + 1013904223u;
        ids.push_back(4 + (int32_t)(state % 50000u));
    }
    return ids;
}

double std_of(const std::vector<float> &v) {
    double m = 0, s = 0;
    for (float x : v) m += x;
    m /= (double)v.size();
    for (float x : v) s += (x - m) * (x - m);
    return std::sqrt(s / (double)v.size());
}

TEST(GpuEngine, MatchesTheCpuReference) {
    const std::vector<int32_t> ids = test_ids(100);
    Engine cpu(SEAOPT_DEVICE_CPU, 128), gpu(SEAOPT_DEVICE_CUDA, 128);
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

TEST(GpuEngine, DeviceMemoryMatchesThePlan) {
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load(model_path().c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
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

// SEA attention has no CUDA kernels yet: a CUDA context with attention = SEA is refused clearly (the
// build's SEA demo model), while a dense CUDA context on the same model runs.
TEST(GpuEngine, SeaAttentionIsRefusedOnCuda) {
    const std::string path = std::string(SEAOPT_BINARY_DIR) + "/models/opt-tiny-sea-untrained.gguf";
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load(path.c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
    ASSERT_TRUE(seaopt_model_has_sea(model));
    seaopt_context_params cp = seaopt_context_default_params();
    cp.n_ctx = 64;
    cp.attention = SEAOPT_ATTENTION_SEA;
    seaopt_context *ctx = nullptr;
    EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_ERR_UNSUPPORTED);
    EXPECT_EQ(ctx, nullptr);
    EXPECT_NE(std::string(seaopt_last_error()).find("SEA attention runs on the CPU engine only for now (--device cpu)"),
              std::string::npos)
        << seaopt_last_error();
    cp.attention = SEAOPT_ATTENTION_DENSE;
    ASSERT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
    seaopt_context_free(ctx);
    seaopt_model_free(model);
}

}  // namespace
