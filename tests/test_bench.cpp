// seaopt-bench as a user runs it: started as a child process on the demo model (made at build time
// by the tiny_model target) on the CPU; its exit status, stdout (JSON or the markdown table) and
// stderr checked. The numbers themselves are timings and are only checked to be positive.
#include <gtest/gtest.h>

#include "test_util.h"
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const std::string kBench = SEAOPT_BINARY_DIR "/bin/seaopt-bench";
const std::string kModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";  // with a SEA estimator

using seaopt_test::Result;

// Runs seaopt-bench with `args`.
Result run(const std::vector<std::string> &args) {
    std::vector<std::string> argv = {kBench};
    argv.insert(argv.end(), args.begin(), args.end());
    return seaopt_test::run(argv);
}

using seaopt_test::describe;

bool contains(const std::string &haystack, const std::string &needle) { return haystack.find(needle) != std::string::npos; }

// A failed run: a plain exit 1 (no crash) with a "seaopt-bench: error: ..." line mentioning `what`.
void expect_clean_failure(const Result &r, const std::string &what) {
    EXPECT_TRUE(r.exited) << "killed by signal " << r.signal << "\n" << describe(r);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.err, "seaopt-bench: error: ")) << describe(r);
    EXPECT_TRUE(contains(r.err, what)) << "expected '" << what << "' in stderr\n" << describe(r);
}

class Bench : public testing::Test {
protected:
    void SetUp() override {
        for (const std::string &path : {kBench, kModel}) {
            ASSERT_TRUE(fs::exists(path)) << path << " is missing: build the seaopt-bench and tiny_model targets";
        }
    }
};

}  // namespace

// -o jsonl (llama-bench's): the same objects as -o json, one per line, no array.
TEST_F(Bench, JsonlHasOneObjectPerLine) {
    const Result r = run({"-m", kModel, "-p", "16", "-n", "4", "-r", "1", "-o", "jsonl", "--device", "cpu", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    std::stringstream lines(r.out);
    std::string line;
    std::vector<std::string> tests;
    while (std::getline(lines, line)) {
        nlohmann::json o;
        ASSERT_NO_THROW(o = nlohmann::json::parse(line)) << "not a JSON object: " << line << "\n" << describe(r);
        ASSERT_TRUE(o.is_object()) << line;
        EXPECT_GT(o.at("avg_ts").get<double>(), 0.0);
        tests.push_back(o.at("test"));
    }
    EXPECT_EQ(tests, (std::vector<std::string>{"pp16", "tg4"})) << describe(r);
}

TEST_F(Bench, JsonHasOneObjectPerTestWithPositiveThroughput) {
    const Result r = run({"-m", kModel, "-p", "16", "-n", "4", "-r", "2", "-o", "json", "--device", "cpu"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << "stdout is not JSON\n" << describe(r);
    ASSERT_TRUE(j.is_array()) << describe(r);
    ASSERT_EQ(j.size(), 2u) << describe(r);

    struct Expected {
        const char *test;
        int n_prompt, n_gen, n_batch;
    };
    const Expected expected[] = {{"pp16", 16, 0, 16}, {"tg4", 0, 4, 1}};
    for (size_t i = 0; i < 2; ++i) {
        const nlohmann::json &o = j[i];
        SCOPED_TRACE(o.dump());
        EXPECT_EQ(o.at("test"), expected[i].test);
        EXPECT_EQ(o.at("n_prompt"), expected[i].n_prompt);
        EXPECT_EQ(o.at("n_gen"), expected[i].n_gen);
        EXPECT_EQ(o.at("n_batch"), expected[i].n_batch);
        EXPECT_EQ(o.at("n_ctx"), 256);  // BOS + 4 and 16 positions, rounded up to 256
        EXPECT_EQ(o.at("reps"), 2);
        EXPECT_EQ(o.at("backend"), "seaopt-cpu");
        EXPECT_EQ(o.at("attention"), "dense");
        EXPECT_EQ(o.at("sea_layers"), "");
        EXPECT_EQ(o.at("sea_k"), 0);
        EXPECT_TRUE(contains(o.at("model").get<std::string>(), "opt"));
        EXPECT_GT(o.at("n_params").get<uint64_t>(), 0u);
        EXPECT_GT(o.at("model_size").get<uint64_t>(), 0u);
        EXPECT_FALSE(o.at("build_info").get<std::string>().empty());
        EXPECT_EQ(o.at("device_info").get<std::string>().rfind("CPU", 0), 0u);  // "CPU (its model name)"

        const double avg_ts = o.at("avg_ts").get<double>();
        EXPECT_GT(avg_ts, 0.0);
        EXPECT_GE(o.at("stddev_ts").get<double>(), 0.0);
        EXPECT_GT(o.at("avg_ms").get<double>(), 0.0);
        const std::vector<double> samples = o.at("samples_ts").get<std::vector<double>>();
        ASSERT_EQ(samples.size(), 2u);
        for (double s : samples) EXPECT_GT(s, 0.0);
        EXPECT_NEAR(avg_ts, (samples[0] + samples[1]) / 2, 1e-3 * avg_ts);
        EXPECT_EQ(o.at("samples_ms").size(), 2u);

        // Planned memory: the fp32 weights and the KV cache on the CPU; no device memory.
        const uint64_t planned = o.at("planned_bytes").get<uint64_t>();
        EXPECT_EQ(planned, o.at("weights_bytes").get<uint64_t>() + o.at("kv_cache_bytes").get<uint64_t>() +
                               o.at("arena_bytes").get<uint64_t>() + o.at("workspace_bytes").get<uint64_t>());
        EXPECT_EQ(o.at("weights_bytes").get<uint64_t>(), 4 * o.at("n_params").get<uint64_t>());
        EXPECT_GT(o.at("kv_cache_bytes").get<uint64_t>(), 0u);
        EXPECT_EQ(o.at("device_used_bytes").get<uint64_t>(), 0u);
    }
}

TEST_F(Bench, MarkdownPrintsTheTableAndTheMemory) {
    const Result r = run({"-m", kModel, "-p", "16", "-n", "4", "-r", "2", "--device", "cpu"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    EXPECT_TRUE(std::regex_search(
        r.out,
        std::regex("\\| model +\\| +size \\| +params \\| backend +\\| attention \\| +test \\| +t/s \\| +ms \\|\n")))
        << describe(r);
    const std::string row_tail = " \\| +[0-9]+\\.[0-9]{2} ± [0-9]+\\.[0-9]{2} \\| +[0-9]+\\.[0-9]{2} \\|\n";
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\\| opt [^|]*\\| +[0-9.]+ MiB \\| +[0-9.]+ M \\| seaopt-cpu +\\| "
                                                    "dense +\\| +pp16" + row_tail)))
        << describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\\| seaopt-cpu +\\| dense +\\| +tg4" + row_tail))) << describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\n  pp16 +dense +n_ctx +256, n_batch +16: planned [0-9.]+ MiB = weights ")))
        << describe(r);
    EXPECT_TRUE(contains(r.out, "\nbuild: seaopt ")) << describe(r);
    EXPECT_TRUE(contains(r.out, "\ndevice: CPU")) << describe(r);
    EXPECT_FALSE(contains(r.out, "device used")) << "no device memory on the CPU\n" << describe(r);
}

TEST_F(Bench, ZeroSizesSkipTests) {
    const Result r = run({"-m", kModel, "-p", "0", "-n", "3,0,3", "-r", "1", "-o", "json", "--device", "cpu", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    const nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 1u) << describe(r);  // tg3 once: duplicates are dropped
    EXPECT_EQ(j[0].at("test"), "tg3");
}

TEST_F(Bench, BadFlagsFailCleanly) {
    expect_clean_failure(run({"-p", "16"}), "--model is required");
    expect_clean_failure(run({"-m", kModel, "-r", "0"}), "-r/--repetitions must be >= 1");
    expect_clean_failure(run({"-m", kModel, "-p", "abc"}), "-p/--n-prompt takes a comma-separated list");
    expect_clean_failure(run({"-m", kModel, "-n", "4,,8"}), "-n/--n-gen takes a comma-separated list");
    expect_clean_failure(run({"-m", kModel, "-p", "-5"}), "-p/--n-prompt");
    expect_clean_failure(run({"-m", kModel, "-o", "csv"}), "--output");
    expect_clean_failure(run({"-m", kModel, "--device", "tpu"}), "--device");
    expect_clean_failure(run({"-m", kModel, "--no-such-flag"}), "--no-such-flag");
    expect_clean_failure(run({"-m", kModel, "-p", "0", "-n", "0"}), "nothing to run");
    expect_clean_failure(run({"-m", kModel, "-t", "-1"}), "-t/--threads must be >= 0");
}

TEST_F(Bench, TestsThatDoNotFitFailBeforeRunning) {
    expect_clean_failure(run({"-m", kModel, "-p", "4096", "-n", "0", "--device", "cpu"}),
                         "pp4096 needs 4096 positions, more than the model's 2048");
    expect_clean_failure(run({"-m", kModel, "-p", "0", "-n", "2048", "--device", "cpu"}),
                         "tg2048 needs 2049 positions (BOS + 2048 generated)");
    expect_clean_failure(run({"-m", kModel, "-p", "16", "-n", "4", "-c", "8", "--device", "cpu"}),
                         "pp16 needs 16 positions, more than -c 8 holds");
    expect_clean_failure(run({"-m", kModel, "-c", "4096", "--device", "cpu"}), "-c 4096 is larger than the model's");
}

TEST_F(Bench, MissingModelFailsCleanly) {
    expect_clean_failure(run({"-m", seaopt_test::temp_dir() + "/no-such-model.gguf", "--device", "cpu"}),
                         "no-such-model.gguf");
}

TEST_F(Bench, DepthRunsEachTestOnAFilledCache) {
    // As llama-bench: for each depth the pp tests, then the tg tests; a depth > 0 is in the name.
    const Result r = run({"-m", kModel, "-p", "8", "-n", "4", "-d", "0,16", "-r", "1", "-o", "json", "--device",
                          "cpu", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << "stdout is not JSON\n" << describe(r);
    ASSERT_EQ(j.size(), 4u) << describe(r);

    struct Expected {
        const char *test;
        int n_prompt, n_gen, n_depth, n_batch;
    };
    // The depth goes in as one batch: the context's batches hold it.
    const Expected expected[] = {
        {"pp8", 8, 0, 0, 8}, {"tg4", 0, 4, 0, 1}, {"pp8 @ d16", 8, 0, 16, 16}, {"tg4 @ d16", 0, 4, 16, 16}};
    for (size_t i = 0; i < 4; ++i) {
        const nlohmann::json &o = j[i];
        SCOPED_TRACE(o.dump());
        EXPECT_EQ(o.at("test"), expected[i].test);
        EXPECT_EQ(o.at("n_prompt"), expected[i].n_prompt);
        EXPECT_EQ(o.at("n_gen"), expected[i].n_gen);
        EXPECT_EQ(o.at("n_depth"), expected[i].n_depth);
        EXPECT_EQ(o.at("n_batch"), expected[i].n_batch);
        EXPECT_EQ(o.at("n_ctx"), 256);
        EXPECT_GT(o.at("avg_ts").get<double>(), 0.0);
    }
}

TEST_F(Bench, TgApiGenerateRunsTheGreedyCall) {
    const Result r = run({"-m", kModel, "-p", "0", "-n", "4", "-d", "0,16", "--tg-api", "decode,generate", "-r", "1",
                          "-o", "json", "--device", "cpu", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << "stdout is not JSON\n" << describe(r);
    ASSERT_EQ(j.size(), 4u) << describe(r);
    const char *names[] = {"tg4", "tg4 generate", "tg4 @ d16", "tg4 generate @ d16"};
    const char *apis[] = {"decode", "generate", "decode", "generate"};
    for (size_t i = 0; i < 4; ++i) {
        SCOPED_TRACE(j[i].dump());
        EXPECT_EQ(j[i].at("test"), names[i]);
        EXPECT_EQ(j[i].at("tg_api"), apis[i]);
        EXPECT_EQ(j[i].at("n_gen"), 4);
        EXPECT_GT(j[i].at("avg_ts").get<double>(), 0.0);
    }
    expect_clean_failure(run({"-m", kModel, "--tg-api", "chain"}), "--tg-api: 'chain' is not decode or generate");
    expect_clean_failure(run({"-m", kModel, "--tg-api", ","}), "--tg-api");
}

TEST_F(Bench, DepthShowsInTheMarkdownTable) {
    const Result r = run({"-m", kModel, "-p", "0", "-n", "4", "-d", "16", "-r", "1", "--device", "cpu", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    EXPECT_TRUE(
        std::regex_search(r.out, std::regex("\\| seaopt-cpu +\\| dense +\\| +tg4 @ d16 \\| +[0-9]+\\.[0-9]{2} ± ")))
        << describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\n  tg4 @ d16 +dense +n_ctx +256, n_batch +16: planned ")))
        << describe(r);
    EXPECT_FALSE(std::regex_search(r.out, std::regex("\\| +tg4 \\|"))) << "-d 16 alone runs no test at depth 0\n"
                                                                       << describe(r);
}

TEST_F(Bench, DepthFillsTheWholeContext) {
    // 2046 tokens in the cache + 2 generated = the model's 2048 positions exactly.
    const Result r = run({"-m", kModel, "-p", "0", "-n", "2", "-d", "2046", "-r", "1", "-o", "json", "--device",
                          "cpu", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    const nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 1u) << describe(r);
    EXPECT_EQ(j[0].at("test"), "tg2 @ d2046");
    EXPECT_EQ(j[0].at("n_ctx"), 2048);
}

TEST_F(Bench, DepthThatDoesNotFitFailsBeforeRunning) {
    expect_clean_failure(run({"-m", kModel, "-p", "0", "-n", "128", "-d", "1921", "--device", "cpu"}),
                         "tg128 @ d1921 needs 2049 positions (1921 in the KV cache + 128 generated), more than the "
                         "model's 2048 (n_ctx_train)");
    expect_clean_failure(run({"-m", kModel, "-p", "512", "-n", "0", "-d", "0,1600", "--device", "cpu"}),
                         "pp512 @ d1600 needs 2112 positions (1600 in the KV cache + 512 prompt), more than the "
                         "model's 2048");
    expect_clean_failure(run({"-m", kModel, "-p", "16", "-n", "0", "-d", "16", "-c", "24", "--device", "cpu"}),
                         "pp16 @ d16 needs 32 positions, more than -c 24 holds");
    expect_clean_failure(run({"-m", kModel, "-d", "x"}), "-d/--n-depth takes a comma-separated list");
    expect_clean_failure(run({"-m", kModel, "-d", "16,-1"}), "-d/--n-depth takes a comma-separated list");
}

// ---- --attention sea ------------------------------------------------------------------------------

TEST_F(Bench, SeaAttentionRunsAndIsReported) {
    ASSERT_TRUE(fs::exists(kSeaModel)) << kSeaModel << " is missing: build tiny_sea_model";
    Result r = run({"-m", kSeaModel, "-p", "16", "-n", "4", "-d", "0,8", "-r", "1", "-o", "json", "--device", "cpu",
                    "--attention", "sea", "--sea-layers", "0-1", "--sea-k", "2", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << "stdout is not JSON\n" << describe(r);
    ASSERT_EQ(j.size(), 4u) << describe(r);
    for (const nlohmann::json &o : j) {
        SCOPED_TRACE(o.dump());
        EXPECT_EQ(o.at("attention"), "sea");
        EXPECT_EQ(o.at("sea_layers"), "0-1");
        EXPECT_EQ(o.at("sea_k"), 2);
        EXPECT_GT(o.at("avg_ts").get<double>(), 0.0);
        EXPECT_GT(o.at("workspace_bytes").get<uint64_t>(), 0u);  // SEA's states and parameters
    }
    EXPECT_TRUE(contains(r.err, "sea (layers 0-1, k 2) attention")) << describe(r);

    r = run({"-m", kSeaModel, "-p", "8", "-n", "2", "-r", "1", "--device", "cpu", "--attention", "sea", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\\| attention \\| +test \\|"))) << describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\\| seaopt-cpu +\\| sea +\\| +pp8 \\|"))) << describe(r);
    EXPECT_TRUE(std::regex_search(r.out, std::regex("\\| seaopt-cpu +\\| sea +\\| +tg2 \\|"))) << describe(r);
}

// --attention dense,sea (llama-bench's list convention): every test with each attention, in list order, one model
// load; the SEA flags go to the sea rows only; their ppN runs SEA (its workspace holds the SEA states).
TEST_F(Bench, AttentionListRunsEachTestWithEach) {
    ASSERT_TRUE(fs::exists(kSeaModel)) << kSeaModel << " is missing: build tiny_sea_model";
    const Result r = run({"-m", kSeaModel, "-p", "16", "-n", "4", "-r", "1", "-o", "json", "--device", "cpu",
                          "--attention", "dense,sea", "--sea-k", "2", "--no-warmup"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << "stdout is not JSON\n" << describe(r);
    ASSERT_EQ(j.size(), 4u) << describe(r);
    const char *want_attention[] = {"dense", "dense", "sea", "sea"}, *want_test[] = {"pp16", "tg4", "pp16", "tg4"};
    for (size_t i = 0; i < 4; ++i) {
        SCOPED_TRACE(j[i].dump());
        EXPECT_EQ(j[i].at("attention"), want_attention[i]);
        EXPECT_EQ(j[i].at("test"), want_test[i]);
        EXPECT_EQ(j[i].at("sea_k"), i < 2 ? 0 : 2);
        EXPECT_EQ(j[i].at("sea_layers"), "");
        if (i < 2) {
            EXPECT_EQ(j[i].at("workspace_bytes").get<uint64_t>(), 0u);
        } else {
            EXPECT_GT(j[i].at("workspace_bytes").get<uint64_t>(), 0u);
        }
    }
    expect_clean_failure(run({"-m", kSeaModel, "--attention", "dense,sparse", "--device", "cpu"}),
                         "--attention: 'sparse' is not dense or sea");
    expect_clean_failure(run({"-m", kSeaModel, "--attention", "dense", "--sea-k", "2", "--device", "cpu"}),
                         "--sea-k needs --attention sea");
}

TEST_F(Bench, SeaAttentionFailsCleanly) {
    expect_clean_failure(run({"-m", kModel, "-p", "8", "-n", "0", "--device", "cpu", "--attention", "sea"}),
                         "has no SEA estimator: convert it with seaopt-convert --sea");
    expect_clean_failure(run({"-m", kSeaModel, "--sea-layers", "1"}), "--sea-layers needs --attention sea");
    expect_clean_failure(run({"-m", kSeaModel, "--attention", "both"}), "--attention");
    const Result help = run({"--help"});
    ASSERT_TRUE(help.exited && help.status == 0) << describe(help);
    for (const char *s : {"--attention", "--sea-layers", "--sea-k", "'attention' column"}) {
        EXPECT_TRUE(contains(help.out, s)) << "--help lacks '" << s << "'\n" << help.out;
    }
}

// ---- --attention-layer ----------------------------------------------------------------------------
// The runs need a GPU (tests/test_gpu_attention_bench.cpp runs the mode on CUDA); here: clean failures.

TEST_F(Bench, AttentionLayerFailsCleanlyOnTheCpu) {
    ASSERT_TRUE(fs::exists(kSeaModel)) << kSeaModel << " is missing: build tiny_sea_model";
    // Valid flags (T beyond the model's 2048 positions included): refused for the device, before any output.
    for (const char *fmt : {"md", "json"}) {
        const Result r = run({"-m", kSeaModel, "--attention-layer", "64,4096", "--layer", "1", "--sea-k", "2", "-r",
                              "2", "-o", fmt, "--device", "cpu"});
        expect_clean_failure(r, "--attention-layer T = 64 (dense attention): ");
        EXPECT_TRUE(contains(r.err, "loaded on the CPU")) << describe(r);
        EXPECT_TRUE(contains(r.err, "--device cuda")) << describe(r);
        EXPECT_TRUE(r.out.empty()) << "nothing on stdout before the failure\n" << describe(r);
    }
}

TEST_F(Bench, AttentionLayerBadFlagsFailCleanly) {
    expect_clean_failure(run({"-m", kSeaModel, "--attention-layer", "0", "--device", "cpu"}),
                         "--attention-layer: T = 0 is out of range: each T must be in [1, 131072]");
    expect_clean_failure(run({"-m", kSeaModel, "--attention-layer", "2048,200000", "--device", "cpu"}),
                         "T = 200000 is out of range");
    expect_clean_failure(run({"-m", kSeaModel, "--attention-layer", "2k", "--device", "cpu"}),
                         "--attention-layer takes a comma-separated list");
    expect_clean_failure(run({"-m", kSeaModel, "--attention-layer", "64", "--layer", "2", "--device", "cpu"}),
                         "--layer 2 is out of range: the model has 2 layers");
    expect_clean_failure(run({"-m", kSeaModel, "--attention-layer", "64", "--layer", "-1"}), "--layer must be >= 0, got -1");
    expect_clean_failure(run({"-m", kSeaModel, "--attention-layer", "64", "-r", "0"}), "-r/--repetitions must be >= 1");
    for (const std::vector<std::string> &extra :
         {std::vector<std::string>{"-p", "512"}, {"-n", "16"}, {"-d", "8"}, {"-c", "256"}, {"--attention", "sea"},
          {"--sea-layers", "0"}, {"--print-memory-plan"}}) {
        std::vector<std::string> args = {"-m", kSeaModel, "--attention-layer", "64", "--device", "cpu"};
        args.insert(args.end(), extra.begin(), extra.end());
        expect_clean_failure(run(args), extra[0] + " does not apply to --attention-layer");
    }
    expect_clean_failure(run({"-m", kSeaModel, "-p", "8", "--layer", "1", "--device", "cpu"}),
                         "--layer needs --attention-layer");
    // A model without an estimator: nothing to compare.
    expect_clean_failure(run({"-m", kModel, "--attention-layer", "64", "--device", "cpu"}),
                         "has no SEA estimator: convert it with seaopt-convert --sea");
}

TEST_F(Bench, HelpDescribesTheAttentionLayerMode) {
    const Result help = run({"--help"});
    ASSERT_TRUE(help.exited && help.status == 0) << describe(help);
    for (const char *s : {"--attention-layer", "--layer", "Attention layer (--attention-layer", "seaopt_bench_attention_layer",
                          "stretched", "extra"}) {
        EXPECT_TRUE(contains(help.out, s)) << "--help lacks '" << s << "'\n" << help.out;
    }
}
