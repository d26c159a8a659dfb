// The command-line tools as a user runs them: seaopt-generate and seaopt-tokenize are started as
// child processes on the demo model (made at build time by the tiny_model target), and their exit
// status, stdout and stderr checked.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/gguf.h"
#include "seaopt.h"
#include "test_util.h"
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <stdexcept>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const std::string kGenerate = SEAOPT_BINARY_DIR "/bin/seaopt-generate";
const std::string kTokenize = SEAOPT_BINARY_DIR "/bin/seaopt-tokenize";
const std::string kModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";  // with a SEA estimator
const std::string kPrompt = "Hello, my name is";


using seaopt_test::describe;
using seaopt_test::Result;
using seaopt_test::run;
using seaopt_test::temp_dir;
using seaopt_test::write_temp_file;
using seaopt_test::read_file;


std::vector<std::string> generate_args(std::vector<std::string> extra) {
    std::vector<std::string> args = {kGenerate, "-m", kModel};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}


bool contains(const std::string &haystack, const std::string &needle) { return haystack.find(needle) != std::string::npos; }

// A run that must succeed and print one JSON object (--json); `result` gets the run where asked.
nlohmann::json run_json(const std::vector<std::string> &args, Result *result = nullptr) {
    const Result r = run(args);
    EXPECT_EQ(r.status, 0) << describe(r);
    nlohmann::json j;
    EXPECT_NO_THROW(j = nlohmann::json::parse(r.out)) << describe(r);
    if (result) *result = r;
    return j;
}

// A failed run: a plain nonzero exit (no crash), a "<tool>: error: ..." line mentioning `what`.
void expect_clean_failure(const Result &r, const std::string &tool, const std::string &what) {
    EXPECT_TRUE(r.exited) << "killed by signal " << r.signal << "\n" << describe(r);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.err, tool + ": error: ")) << describe(r);
    EXPECT_TRUE(contains(r.err, what)) << "expected '" << what << "' in stderr\n" << describe(r);
}

class Tools : public testing::Test {
protected:
    void SetUp() override {
        for (const std::string &path : {kGenerate, kTokenize, kModel}) {
            ASSERT_TRUE(fs::exists(path)) << path << " is missing: build the seaopt-generate, seaopt-tokenize and "
                                                     "tiny_model targets";
        }
    }
};

}  // namespace

TEST_F(Tools, GenerateGreedyPrintsThePromptAndThePerfSummary) {
    const Result r = run(generate_args({"-p", kPrompt, "-n", "8", "--temp", "0", "-s", "1"}));
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    EXPECT_EQ(r.out.rfind(kPrompt, 0), 0u) << "stdout must start with the prompt\n" << describe(r);
    EXPECT_TRUE(contains(r.err, "seed = 1\n")) << describe(r);
    const std::string num = "[0-9]+\\.[0-9]+";
    const std::vector<std::string> perf_lines = {
        "seaopt_perf: +load time = +" + num + " ms\n",
        // BOS + "Hello" "," " my" " name" " is" = 6 tokens
        "seaopt_perf: prompt eval time = +" + num + " ms / +6 tokens \\( *" + num + " ms per token, +" + num +
            " tokens per second\\)\n",
        "seaopt_perf: +eval time = +" + num + " ms / +[0-7] runs +\\( *" + num + " ms per token, +" + num +
            " tokens per second\\)\n",
        "seaopt_perf: +total time = +" + num + " ms / +[0-9]+ tokens\n",
    };
    for (const std::string &line : perf_lines) {
        EXPECT_TRUE(std::regex_search(r.err, std::regex(line))) << "no line matching " << line << "\n" << describe(r);
    }
}

TEST_F(Tools, GenerateGreedyIsReproducible) {
    const std::vector<std::string> args = generate_args({"-p", kPrompt, "-n", "8", "--temp", "0", "-s", "1"});
    const Result a = run(args), b = run(args);
    ASSERT_TRUE(a.exited && a.status == 0) << describe(a);
    ASSERT_TRUE(b.exited && b.status == 0) << describe(b);
    EXPECT_EQ(a.out, b.out);
    EXPECT_GT(a.out.size(), kPrompt.size()) << "nothing was generated\n" << describe(a);
}

// Greedy decoding goes through seaopt_generate_greedy (here in calls of 16 tokens, the GPU's default); a near-zero
// temperature takes the token-by-token sampler path, which picks the same tokens. Their outputs and step counts
// agree, for a length that ends inside a call and for a context that fills inside one.
TEST_F(Tools, GenerateGreedyChainEqualsTheTokenLoop) {
    for (const std::vector<std::string> &extra : {std::vector<std::string>{"-n", "37"},
                                                  std::vector<std::string>{"-n", "-1", "-c", "27"}}) {
        std::vector<std::string> chain = {"-p", kPrompt, "--temp", "0", "--greedy-chunk", "16"},
                                 loop = {"-p", kPrompt, "--temp", "1e-9", "-s", "1"};
        chain.insert(chain.end(), extra.begin(), extra.end());
        loop.insert(loop.end(), extra.begin(), extra.end());
        const Result a = run(generate_args(chain)), b = run(generate_args(loop));
        ASSERT_TRUE(a.exited && a.status == 0) << describe(a);
        ASSERT_TRUE(b.exited && b.status == 0) << describe(b);
        EXPECT_EQ(a.out, b.out);
        EXPECT_GT(a.out.size(), kPrompt.size()) << describe(a);
        const std::regex runs("eval time = +[0-9.]+ ms / +([0-9]+) runs");
        std::smatch ma, mb;
        ASSERT_TRUE(std::regex_search(a.err, ma, runs)) << describe(a);
        ASSERT_TRUE(std::regex_search(b.err, mb, runs)) << describe(b);
        EXPECT_EQ(ma[1].str(), mb[1].str());
        EXPECT_EQ(contains(a.err, "context is full"), contains(b.err, "context is full")) << describe(a) << describe(b);
    }
    const Result bad = run(generate_args({"-p", kPrompt, "--greedy-chunk", "-1"}));
    EXPECT_EQ(bad.status, 1) << describe(bad);
    EXPECT_TRUE(contains(bad.err, "--greedy-chunk must be >= 0")) << describe(bad);
}

TEST_F(Tools, GenerateWithASeedIsReproducible) {
    const std::vector<std::string> args = generate_args({"-p", kPrompt, "-n", "16", "--temp", "0.8", "-s", "42"});
    const Result a = run(args), b = run(args);
    ASSERT_TRUE(a.exited && a.status == 0) << describe(a);
    ASSERT_TRUE(b.exited && b.status == 0) << describe(b);
    EXPECT_EQ(a.out, b.out);
    EXPECT_TRUE(contains(a.err, "seed = 42\n")) << describe(a);
}

TEST_F(Tools, GenerateNoDisplayPromptPrintsOnlyTheContinuation) {
    const Result with = run(generate_args({"-p", kPrompt, "-n", "8", "--temp", "0"}));
    const Result without = run(generate_args({"-p", kPrompt, "-n", "8", "--temp", "0", "--no-display-prompt"}));
    ASSERT_TRUE(with.exited && with.status == 0) << describe(with);
    ASSERT_TRUE(without.exited && without.status == 0) << describe(without);
    EXPECT_EQ(kPrompt + without.out, with.out);
}

TEST_F(Tools, GenerateZeroTokensPrintsJustThePrompt) {
    const Result r = run(generate_args({"-p", kPrompt, "-n", "0"}));
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    EXPECT_EQ(r.out, kPrompt);
}

TEST_F(Tools, GenerateStopsWhenTheContextIsFull) {
    // BOS + "Hi" = 2 tokens in an 8-token context: 6 more fit in the cache, and the logits of the
    // last one give a 7th token that is printed but not run.
    const Result r = run(generate_args({"-p", "Hi", "-n", "-1", "-c", "8", "--ignore-eos", "--temp", "0"}));
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    EXPECT_TRUE(contains(r.err, "context is full")) << describe(r);
    EXPECT_TRUE(std::regex_search(r.err, std::regex("eval time = +[0-9.]+ ms / +6 runs"))) << describe(r);
}

TEST_F(Tools, GeneratePromptFromFileEqualsPromptFromFlag) {
    const std::string file = write_temp_file("prompt.txt", kPrompt);
    const Result from_file = run(generate_args({"-f", file, "-n", "8", "--temp", "0"}));
    const Result from_flag = run(generate_args({"-p", kPrompt, "-n", "8", "--temp", "0"}));
    ASSERT_TRUE(from_file.exited && from_file.status == 0) << describe(from_file);
    EXPECT_EQ(from_file.out, from_flag.out);
}

TEST_F(Tools, TokenizeIdsMatchHuggingFace) {
    const Result with_bos = run({kTokenize, "-m", kModel, "-p", "Hello", "--ids"});
    ASSERT_TRUE(with_bos.exited && with_bos.status == 0) << describe(with_bos);
    EXPECT_EQ(with_bos.out, "2\n31414\n");
    const Result no_bos = run({kTokenize, "-m", kModel, "-p", "Hello", "--ids", "--no-bos"});
    ASSERT_TRUE(no_bos.exited && no_bos.status == 0) << describe(no_bos);
    EXPECT_EQ(no_bos.out, "31414\n");
}

TEST_F(Tools, TokenizePrintsIdsAndEscapedPieces) {
    const Result r = run({kTokenize, "-m", kModel, "-p", "Hello world\n"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    EXPECT_TRUE(contains(r.out, "     2 -> '</s>'\n")) << describe(r);
    EXPECT_TRUE(contains(r.out, " 31414 -> 'Hello'\n")) << describe(r);
    EXPECT_TRUE(contains(r.out, "   232 -> ' world'\n")) << describe(r);
    EXPECT_TRUE(contains(r.out, "\\n'\n")) << "the newline must be escaped\n" << describe(r);
}

TEST_F(Tools, TokenizeParseSpecialIsOnByDefault) {
    const Result special = run({kTokenize, "-m", kModel, "-p", "</s>", "--ids", "--no-bos"});
    ASSERT_TRUE(special.exited && special.status == 0) << describe(special);
    EXPECT_EQ(special.out, "2\n");
    const Result plain = run({kTokenize, "-m", kModel, "-p", "</s>", "--ids", "--no-bos", "--no-parse-special"});
    ASSERT_TRUE(plain.exited && plain.status == 0) << describe(plain);
    EXPECT_NE(plain.out, "2\n");
}

TEST_F(Tools, MissingModelFileFailsCleanly) {
    const std::string missing = temp_dir() + "/no-such-model.gguf";
    expect_clean_failure(run({kGenerate, "-m", missing, "-p", "Hi"}), "seaopt-generate", "no-such-model.gguf");
    expect_clean_failure(run({kTokenize, "-m", missing, "-p", "Hi"}), "seaopt-tokenize", "no-such-model.gguf");
}

TEST_F(Tools, InvalidUtf8PromptFileFailsCleanly) {
    const std::string file = write_temp_file("bad-utf8.txt", std::string("ab\xff\xfe", 4) + "cd");
    expect_clean_failure(run(generate_args({"-f", file})), "seaopt-generate", "UTF-8");
    expect_clean_failure(run({kTokenize, "-m", kModel, "-f", file}), "seaopt-tokenize", "UTF-8");
}

TEST_F(Tools, PromptAndFileTogetherFailCleanly) {
    const std::string file = write_temp_file("prompt2.txt", "Hello");
    expect_clean_failure(run(generate_args({"-p", "Hi", "-f", file})), "seaopt-generate", "excludes");
    expect_clean_failure(run({kTokenize, "-m", kModel, "-p", "Hi", "-f", file}), "seaopt-tokenize", "excludes");
}

TEST_F(Tools, NoPromptFailsCleanly) {
    expect_clean_failure(run(generate_args({})), "seaopt-generate", "-p");
    expect_clean_failure(run({kTokenize, "-m", kModel}), "seaopt-tokenize", "-p");
}

TEST_F(Tools, PromptLongerThanTheContextFailsCleanly) {
    const Result r = run(generate_args({"-p", "one two three four five six seven eight nine ten", "-c", "8"}));
    expect_clean_failure(r, "seaopt-generate", "longer than the context (n_ctx = 8)");
    EXPECT_TRUE(r.out.empty()) << describe(r);
}

TEST_F(Tools, BadSamplingOptionsFailCleanly) {
    expect_clean_failure(run(generate_args({"-p", "Hi", "--top-p", "0"})), "seaopt-generate", "top_p");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--repeat-penalty", "-1"})), "seaopt-generate",
                         "repeat_penalty");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--repeat-last-n", "-2"})), "seaopt-generate",
                         "repeat_last_n");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--min-p", "1.5"})), "seaopt-generate", "min_p");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--presence-penalty", "inf"})), "seaopt-generate",
                         "presence_penalty");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--frequency-penalty", "nan"})), "seaopt-generate",
                         "frequency_penalty");
    expect_clean_failure(run(generate_args({"-p", "Hi", "-l", "12x"})), "seaopt-generate", "--logit-bias");
    expect_clean_failure(run(generate_args({"-p", "Hi", "-l", "+3"})), "seaopt-generate", "--logit-bias");
    expect_clean_failure(run(generate_args({"-p", "Hi", "-s", "-2"})), "seaopt-generate", "seed");
    // Past int64: the message used to name 9223372036854775807, the value CLI11 had clamped it to.
    expect_clean_failure(run(generate_args({"-p", "Hi", "-s", "99999999999999999999"})), "seaopt-generate",
                         "--seed: must be an integer in [-1, 4294967295], got '99999999999999999999'");
    expect_clean_failure(run(generate_args({"-p", "Hi", "-s", "4294967296"})), "seaopt-generate",
                         "got '4294967296'");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--device", "gpu"})), "seaopt-generate", "--device");
}

// ---- --attention sea ------------------------------------------------------------------------------

// Whether the CUDA engine can take the demo model here (a usable GPU in a CUDA build).
bool gpu_usable() {
    if (!seaopt_supports_cuda()) return false;
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *model = nullptr;
    if (seaopt_model_load(kModel.c_str(), &mp, &model) != SEAOPT_OK) return false;
    seaopt_model_free(model);
    return true;
}

// Issue 3: the tools run on the GPU by default; where a CUDA build finds none usable, that is an error naming
// --device cpu, not a silent run on the CPU engine. --device auto falls back, saying so on stderr.
TEST_F(Tools, DefaultDeviceIsTheGpuOrAClearError) {
    const std::vector<std::string> args = generate_args({"-p", kPrompt, "-n", "2", "--temp", "0"});
    const Result by_default = run(args, /*tool_default_device=*/true);
    std::vector<std::string> auto_args = args;
    auto_args.insert(auto_args.end(), {"--device", "auto"});
    const Result with_auto = run(auto_args, /*tool_default_device=*/true);
    EXPECT_EQ(with_auto.status, 0) << describe(with_auto);
    // The env mirror is --device where the flag is absent.
    setenv("SEAOPT_ARG_DEVICE", "gpu", 1);
    const Result bad_env = run(args);
    unsetenv("SEAOPT_ARG_DEVICE");
    expect_clean_failure(bad_env, "seaopt-generate", "--device");
    if (!seaopt_supports_cuda() || gpu_usable()) {
        EXPECT_EQ(by_default.status, 0) << describe(by_default);  // on the CPU (no CUDA build) or the GPU
        EXPECT_FALSE(contains(with_auto.err, "using the CPU engine")) << describe(with_auto);
        return;
    }
    expect_clean_failure(by_default, "seaopt-generate", "device cuda: ");
    EXPECT_TRUE(contains(by_default.err, "--device cpu")) << describe(by_default);
    EXPECT_TRUE(contains(with_auto.err, "using the CPU engine (the fp32 reference, slow)")) << describe(with_auto);
}

// -r/--reverse-prompt (llama-cli's stop strings): generation ends with the token that completes the string, on the
// token loop and inside a greedy chain call alike; later -r strings count too; an empty one is refused.
TEST_F(Tools, GenerateStopsAtAReversePrompt) {
    const std::vector<std::string> base = {"-p", kPrompt, "-n", "24", "--temp", "0", "--no-display-prompt"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = base;
        a.insert(a.end(), extra.begin(), extra.end());
        return run(generate_args(a));
    };
    const Result full = with({"--greedy-chunk", "1"});
    ASSERT_EQ(full.status, 0) << describe(full);
    // A stop string from the greedy text itself: its first occurrence ends inside some token; the output must end
    // exactly with the piece of that token, i.e. be the shortest token-aligned prefix of the full text containing it.
    const std::string stop = full.out.substr(full.out.size() / 3, 5);
    const size_t hit_end = full.out.find(stop) + stop.size();
    for (const char *chunk : {"1", "8"}) {
        const Result r = with({"--greedy-chunk", chunk, "-r", "no such text", "-r", stop});
        ASSERT_EQ(r.status, 0) << describe(r);
        EXPECT_EQ(full.out.compare(0, r.out.size(), r.out), 0) << "not a prefix of the full text\n" << describe(r);
        EXPECT_GE(r.out.size(), hit_end) << describe(r);
        EXPECT_LT(r.out.size(), full.out.size()) << describe(r);
        // One token fewer would not contain it: the output stops at the token that completes the string.
        EXPECT_EQ(r.out.find(stop) + stop.size(), hit_end) << describe(r);
    }
    expect_clean_failure(with({"-r", ""}), "seaopt-generate", "--reverse-prompt must not be empty");
}

// -b/--batch-size: the prompt in batches of at most N tokens gives the same greedy text; -n -2 (llama.cpp's "until
// the context is full") is accepted.
TEST_F(Tools, GeneratePromptInBatches) {
    const std::string prompt = "The quick brown fox jumps over the lazy dog, then it runs away into the forest.";
    const std::vector<std::string> args = generate_args({"-p", prompt, "-n", "6", "--temp", "0"});
    const Result one = run(args);
    ASSERT_EQ(one.status, 0) << describe(one);
    for (const char *b : {"1", "5"}) {
        std::vector<std::string> a = args;
        a.insert(a.end(), {"-b", b});
        const Result r = run(a);
        EXPECT_EQ(r.status, 0) << describe(r);
        EXPECT_EQ(r.out, one.out) << "-b " << b;
    }
    std::vector<std::string> until_full = generate_args({"-p", kPrompt, "-n", "-2", "--temp", "0", "-c", "16"});
    const Result r = run(until_full);
    EXPECT_EQ(r.status, 0) << describe(r);
    EXPECT_TRUE(contains(r.err, "the context is full")) << describe(r);
    expect_clean_failure(run(generate_args({"-p", "Hi", "-b", "-1"})), "seaopt-generate", "-b/--batch-size");
    expect_clean_failure(run(generate_args({"-p", "Hi", "-n", "-3"})), "seaopt-generate", "-n/--predict");
}

// --json (anchors B1's cheap extra): one object at the end, its text the streamed text of the same run, and the
// stop reason.
TEST_F(Tools, GenerateJsonHasTheTextTokensAndStopReason) {
    const std::vector<std::string> base = {"-p", kPrompt, "-n", "6", "--temp", "0"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = base;
        a.insert(a.end(), extra.begin(), extra.end());
        return run(generate_args(a));
    };
    const Result text = with({"--no-display-prompt"});
    const Result json = with({"--json"});
    ASSERT_EQ(text.status, 0) << describe(text);
    ASSERT_EQ(json.status, 0) << describe(json);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(json.out)) << describe(json);
    EXPECT_EQ(j.at("text").get<std::string>(), text.out);
    EXPECT_EQ(j.at("prompt"), kPrompt);
    EXPECT_EQ(j.at("tokens").size(), 6u);
    EXPECT_EQ(j.at("n_tokens"), 6);
    EXPECT_EQ(j.at("stop"), "n_predict");
    EXPECT_GT(j.at("n_prompt_tokens").get<int>(), 1);
    EXPECT_TRUE(j.at("timings").contains("eval_tokens_per_second"));
    EXPECT_TRUE(contains(json.err, "seaopt_perf:")) << describe(json);  // the summary stays on stderr

    nlohmann::json full;
    ASSERT_NO_THROW(
        full = nlohmann::json::parse(run(generate_args({"-p", kPrompt, "-n", "-1", "--temp", "0", "-c", "12", "--json"})).out));
    EXPECT_EQ(full.at("stop"), "context_full");
    const std::string stop = text.out.substr(0, 4);
    nlohmann::json rp;
    ASSERT_NO_THROW(rp = nlohmann::json::parse(with({"--json", "-r", stop}).out));
    EXPECT_EQ(rp.at("stop"), "reverse_prompt");
    EXPECT_LT(rp.at("n_tokens").get<int>(), 6);
}

// The penalties reach the sampler: greedy decoding of the demo model repeats tokens; with a presence penalty far
// above the logits' spread no token of the prompt or of the output comes back within the window.
TEST_F(Tools, GeneratePresencePenaltyStopsRepeats) {
    auto tokens_of = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = {"-p", kPrompt, "-n", "24", "--ignore-eos", "--json"};
        a.insert(a.end(), extra.begin(), extra.end());
        return run_json(generate_args(a)).value("tokens", std::vector<int>{});
    };
    auto has_repeat = [](const std::vector<int> &t) { return std::set<int>(t.begin(), t.end()).size() < t.size(); };
    const std::vector<int> plain = tokens_of({"--temp", "0"});
    ASSERT_EQ(plain.size(), 24u);
    ASSERT_TRUE(has_repeat(plain)) << "the demo model no longer repeats itself: pick another check";
    const std::vector<int> penalized = tokens_of({"--temp", "0", "--presence-penalty", "1000"});
    ASSERT_EQ(penalized.size(), 24u);
    EXPECT_FALSE(has_repeat(penalized));
    // A banned token (-l ID-inf) never comes, whichever token the greedy text repeated.
    const int repeated = plain.back();
    const std::vector<int> banned = tokens_of({"--temp", "0", "-l", std::to_string(repeated) + "-inf"});
    ASSERT_EQ(banned.size(), 24u);
    EXPECT_EQ(std::count(banned.begin(), banned.end(), repeated), 0);
    // The same with the frequency penalty, and with min-p 1 (the argmax alone: greedy's tokens at any temperature).
    EXPECT_FALSE(has_repeat(tokens_of({"--temp", "0", "--frequency-penalty", "1000"})));
    EXPECT_EQ(tokens_of({"--temp", "1.5", "--min-p", "1", "-s", "3"}), plain);
}

// Generated special tokens ('<pad>' here, forced by a logit bias) are left out of the text unless --special, as
// llama.cpp's --special and Hugging Face's decode(skip_special_tokens=True); -r matches them either way; --parallel
// too. (seaopt_token_is_special is what the tool asks.)
TEST_F(Tools, GenerateSpecialTokensAreHiddenUnlessAsked) {
    auto gen = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = {"-p", kPrompt, "-n", "3", "--temp", "0", "-l", "1+1000", "--json"};
        a.insert(a.end(), extra.begin(), extra.end());
        return run_json(generate_args(a));
    };
    const nlohmann::json hidden = gen({}), shown = gen({"--special"});
    EXPECT_EQ(hidden.value("tokens", std::vector<int>{}), std::vector<int>({1, 1, 1}));
    EXPECT_EQ(hidden.value("text", std::string("?")), "");
    EXPECT_EQ(shown.value("text", std::string("?")), "<pad><pad><pad>");
    const nlohmann::json stopped = gen({"-r", "<pad>"});
    EXPECT_EQ(stopped.value("stop", std::string()), "reverse_prompt");
    EXPECT_EQ(stopped.value("n_tokens", 0), 1);
    const nlohmann::json par = gen({"--parallel", "2", "--special"});
    ASSERT_EQ(par["sequences"].size(), 2u);
    EXPECT_EQ(par["sequences"][1].value("text", std::string("?")), "<pad><pad><pad>");
    EXPECT_EQ(gen({"--parallel", "2"})["sequences"][0].value("text", std::string("?")), "");
    // The streamed text (no --json) leaves them out too.
    const Result plain = run(generate_args({"-p", "Hi", "-n", "3", "--temp", "0", "-l", "1+1000", "--no-display-prompt"}));
    EXPECT_EQ(plain.status, 0) << describe(plain);
    EXPECT_FALSE(contains(plain.out, "<pad>")) << plain.out;
}

// --prompt-cache: the first run writes the prompt's state, the next runs reuse what their prompt shares with it and
// print the same text as runs without a cache; a cache of another model is reported and replaced.
TEST_F(Tools, GeneratePromptCacheReusesTheSharedPrompt) {
    const std::string cache = seaopt_test::temp_dir() + "/prompt-cache-tools.bin";
    fs::remove(cache);
    const std::string longer = std::string(kPrompt) + " Alice and I like to walk";
    auto gen = [&](const std::string &model, const std::string &prompt, std::vector<std::string> extra) {
        // Sampled (temperature 4, a fixed seed): greedy text of the untrained demo models repeats one token, which
        // would hide a cache that changed the logits a little.
        std::vector<std::string> a = {kGenerate, "-m", model, "-p", prompt, "-n", "8", "--temp", "4", "-s", "11",
                                      "--top-k", "0", "--top-p", "1", "--ignore-eos", "--json"};
        a.insert(a.end(), extra.begin(), extra.end());
        Result r;
        nlohmann::json j = run_json(a, &r);
        return std::pair<nlohmann::json, Result>(j, r);
    };
    const auto plain = gen(kModel, kPrompt, {}), plain_longer = gen(kModel, longer, {});
    const int n_prompt = plain.first.at("n_prompt_tokens").get<int>();
    const std::vector<int> plain_tokens = plain.first.at("tokens").get<std::vector<int>>();
    ASSERT_GT(std::set<int>(plain_tokens.begin(), plain_tokens.end()).size(), 2u) << "the sampled text is too uniform";

    const auto first = gen(kModel, kPrompt, {"--prompt-cache", cache});
    EXPECT_TRUE(fs::exists(cache));
    EXPECT_EQ(first.first.at("n_prompt_tokens_cached"), 0);
    EXPECT_EQ(first.first.at("text"), plain.first.at("text"));

    const auto again = gen(kModel, kPrompt, {"--prompt-cache", cache});
    EXPECT_EQ(again.first.at("n_prompt_tokens_cached"), n_prompt - 1);  // all but the last, whose logits are needed
    EXPECT_TRUE(contains(again.second.err, std::to_string(n_prompt - 1) + " of the prompt's " + std::to_string(n_prompt) +
                                               " tokens reused"))
        << describe(again.second);
    EXPECT_EQ(again.first.at("text"), plain.first.at("text"));

    const auto extended = gen(kModel, longer, {"--prompt-cache", cache, "--prompt-cache-ro"});
    EXPECT_GT(extended.first.at("n_prompt_tokens_cached").get<int>(), 1);
    EXPECT_EQ(extended.first.at("text"), plain_longer.first.at("text"));

    // Another model (the SEA demo model, dense attention): the cache is refused, the text is that model's own, and the
    // cache is replaced by this model's.
    const auto sea_plain = gen(kSeaModel, kPrompt, {});
    const auto other = gen(kSeaModel, kPrompt, {"--prompt-cache", cache});
    EXPECT_TRUE(contains(other.second.err, "cannot use the prompt cache")) << describe(other.second);
    EXPECT_EQ(other.first.at("n_prompt_tokens_cached"), 0);
    EXPECT_EQ(other.first.at("text"), sea_plain.first.at("text"));
    EXPECT_EQ(gen(kSeaModel, kPrompt, {"--prompt-cache", cache}).first.at("n_prompt_tokens_cached"), n_prompt - 1);

    // Read-only with no file: nothing is written.
    const std::string none = seaopt_test::temp_dir() + "/prompt-cache-none.bin";
    fs::remove(none);
    gen(kModel, kPrompt, {"--prompt-cache", none, "--prompt-cache-ro"});
    EXPECT_FALSE(fs::exists(none));
}

// --parallel N: sequence i is what a single run with seed -s + i prints (the prompt decoded once and copied; each
// step one batch of all the sequences), with dense and with SEA attention.
TEST_F(Tools, GenerateParallelSequencesAreTheSingleRunsOfTheirSeeds) {
    for (const std::vector<std::string> &model : {std::vector<std::string>{"-m", kModel},
                                                  std::vector<std::string>{"-m", kSeaModel, "--attention", "sea"}}) {
        SCOPED_TRACE(model[1]);
        auto gen = [&](std::vector<std::string> extra) {
            // On the CPU engine, whose rows of a batch are bit for bit those of single-token batches (the GPU's batch
            // and batch-1 kernels round differently: test_gpu_engine checks the GPU's copies).
            std::vector<std::string> a = {kGenerate, "-p", kPrompt, "-n", "10", "--temp", "4", "--top-k", "0", "--top-p",
                                          "1", "--ignore-eos", "--json", "--device", "cpu"};
            a.insert(a.end(), model.begin(), model.end());
            a.insert(a.end(), extra.begin(), extra.end());
            return run_json(a);
        };
        const nlohmann::json par = gen({"-s", "21", "--parallel", "3"});
        ASSERT_EQ(par.at("sequences").size(), 3u);
        EXPECT_EQ(par.at("n_parallel"), 3);
        std::set<std::vector<int>> distinct;
        for (int i = 0; i < 3; ++i) {
            const nlohmann::json &q = par.at("sequences")[(size_t)i];
            const nlohmann::json single = gen({"-s", std::to_string(21 + i)});
            EXPECT_EQ(q.at("seed"), 21 + i);
            EXPECT_EQ(q.at("tokens"), single.at("tokens")) << "sequence " << i;
            EXPECT_EQ(q.at("text"), single.at("text")) << "sequence " << i;
            EXPECT_EQ(q.at("stop"), "n_predict");
            distinct.insert(q.at("tokens").get<std::vector<int>>());
        }
        EXPECT_EQ(distinct.size(), 3u);
    }
    // -n 0 generates nothing in any sequence; seeds go on modulo 2^32 - 1 (0xFFFFFFFF would mean "random").
    auto gen_json = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = {"-p", kPrompt, "--json", "--device", "cpu"};
        a.insert(a.end(), extra.begin(), extra.end());
        return run_json(generate_args(a));
    };
    const nlohmann::json none = gen_json({"-n", "0", "--parallel", "2"});
    for (const nlohmann::json &q : none.at("sequences")) EXPECT_EQ(q.at("n_tokens"), 0);
    const nlohmann::json wrap = gen_json({"-n", "1", "--parallel", "3", "-s", "4294967294"});
    std::vector<uint32_t> seeds;
    for (const nlohmann::json &q : wrap.at("sequences")) seeds.push_back(q.at("seed").get<uint32_t>());
    EXPECT_EQ(seeds, (std::vector<uint32_t>{4294967294u, 0u, 1u}));
    expect_clean_failure(run(generate_args({"-p", "Hi", "--parallel", "4", "-b", "2"})), "seaopt-generate",
                         "smaller than --parallel");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--parallel", "0"})), "seaopt-generate", "--parallel");
}

TEST_F(Tools, GenerateWithSeaAttention) {
    ASSERT_TRUE(fs::exists(kSeaModel)) << kSeaModel << " is missing: build tiny_sea_model";
    auto gen = [](std::vector<std::string> extra) {
        std::vector<std::string> args = {kGenerate, "-m", kSeaModel, "-p", kPrompt, "-n", "12", "--temp", "0",
                                         "--ignore-eos", "--device", "cpu", "-t", "2"};
        args.insert(args.end(), extra.begin(), extra.end());
        return run(args);
    };
    const Result sea = gen({"--attention", "sea", "-v"});
    ASSERT_TRUE(sea.exited && sea.status == 0) << describe(sea);
    EXPECT_EQ(sea.out.rfind(kPrompt, 0), 0u) << describe(sea);
    EXPECT_GT(sea.out.size(), kPrompt.size()) << "nothing was generated\n" << describe(sea);
    EXPECT_TRUE(contains(sea.err, "attention = sea,")) << describe(sea);
    EXPECT_TRUE(contains(sea.err, "SEA attention in layers 0-1 (2 of 2), k 4, K 16")) << describe(sea);
    // Reproducible, and the flags reach the engine.
    const Result again = gen({"--attention", "sea"});
    ASSERT_TRUE(again.exited && again.status == 0) << describe(again);
    EXPECT_EQ(again.out, sea.out);
    const Result some = gen({"--attention", "sea", "--sea-layers", "1", "--sea-k", "2", "-v"});
    ASSERT_TRUE(some.exited && some.status == 0) << describe(some);
    EXPECT_TRUE(contains(some.err, "attention = sea (layers 1, k 2)")) << describe(some);
    EXPECT_TRUE(contains(some.err, "SEA attention in layers 1 (1 of 2), k 2, K 16")) << describe(some);
    const Result dense = gen({"--attention", "dense", "-v"});
    ASSERT_TRUE(dense.exited && dense.status == 0) << describe(dense);
    EXPECT_TRUE(contains(dense.err, "attention = dense,")) << describe(dense);
}

// From an audit of the tools: flags that were silently ignored or meant something else.
TEST_F(Tools, EmptySeaLayersAndGreedyChunkWhileSamplingAreRefused) {
    // An empty --sea-layers meant "every layer" (the library's NULL / "").
    expect_clean_failure(run({kGenerate, "-m", kSeaModel, "-p", "Hi", "--attention", "sea", "--sea-layers", "",
                              "--device", "cpu"}),
                         "seaopt-generate", "--sea-layers: an empty list");
    // --greedy-chunk only shapes the greedy calls: with sampling it did nothing.
    expect_clean_failure(run(generate_args({"-p", "Hi", "-n", "2", "--greedy-chunk", "4", "--temp", "0.8"})),
                         "seaopt-generate", "--greedy-chunk applies to greedy decoding only");
    expect_clean_failure(
        run(generate_args({"-p", "Hi", "-n", "2", "--greedy-chunk", "4", "--temp", "0", "--repeat-penalty", "1.2"})),
        "seaopt-generate", "--greedy-chunk applies to greedy decoding only");
    const Result ok =
        run(generate_args({"-p", "Hi", "-n", "2", "--greedy-chunk", "4", "--temp", "0", "--device", "cpu"}));
    EXPECT_TRUE(ok.exited && ok.status == 0) << describe(ok);
}

// From an audit of the C API: more threads than the system lets the process start made libgomp print a message and
// call exit(1) inside the first decode. The context now starts them once when it is made and refuses clearly.
TEST_F(Tools, ThreadsTheSystemRefusesAreAnErrorNotAnExit) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "an address-space limit and AddressSanitizer's shadow memory do not mix";
#endif
    // 4,096 stacks of 8 MiB need 32 GiB of address space; the limit is 4 GiB.
    const std::string cmd = "ulimit -s 8192 && ulimit -v 4194304 && exec " + kGenerate + " -m " + kModel +
                            " -p Hi -n 2 --device cpu -t 4096";
    const Result r = run({"/bin/sh", "-c", cmd});
    expect_clean_failure(r, "seaopt-generate", "cannot run n_threads = 4096 CPU threads");
    EXPECT_FALSE(contains(r.err, "libgomp")) << describe(r);
}

TEST_F(Tools, SeaAttentionFlagsFailCleanly) {
    expect_clean_failure(run(generate_args({"-p", "Hi", "--attention", "sea", "--device", "cpu"})), "seaopt-generate",
                         "has no SEA estimator: convert it with seaopt-convert --sea");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--attention", "sparse"})), "seaopt-generate", "--attention");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--sea-layers", "0"})), "seaopt-generate",
                         "--sea-layers needs --attention sea");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--sea-k", "8"})), "seaopt-generate",
                         "--sea-k needs --attention sea");
    expect_clean_failure(run(generate_args({"-p", "Hi", "--attention", "sea", "--sea-k", "-1"})), "seaopt-generate",
                         "--sea-k");
    expect_clean_failure(run({kGenerate, "-m", kSeaModel, "-p", "Hi", "--attention", "sea", "--sea-layers", "0-3",
                              "--device", "cpu"}),
                         "seaopt-generate", "sea_layers = '0-3': layer 3 is out of range: the model has 2 layers");
    expect_clean_failure(run({kGenerate, "-m", kSeaModel, "-p", "Hi", "--attention", "sea", "--sea-layers", "a",
                              "--device", "cpu"}),
                         "seaopt-generate", "'a' is not a layer index or a range");
}

TEST_F(Tools, GenerateHelpDescribesTheAttentionOptions) {
    const Result r = run({kGenerate, "--help"});
    ASSERT_TRUE(r.exited && r.status == 0) << describe(r);
    for (const char *s : {"--attention", "SEA sparse attention", "seaopt-convert --sea", "--sea-layers", "2-23",
                          "0,3,5-7", "--sea-k", "keys per query per head"}) {
        EXPECT_TRUE(contains(r.out, s)) << "--help lacks '" << s << "'\n" << r.out;
    }
}

// ---- from an audit of the tools' bad-input handling ------------------------------------------------

TEST_F(Tools, DirectoryAsPromptFileFailsCleanly) {  // it aborted with an uncaught std::ios_base::failure
    expect_clean_failure(run(generate_args({"-f", temp_dir()})), "seaopt-generate", "is a directory");
    expect_clean_failure(run({kTokenize, "-m", kModel, "-f", temp_dir()}), "seaopt-tokenize", "is a directory");
}

TEST_F(Tools, FailedWriteOfTheOutputIsAnError) {  // generate --json > /dev/full exited 0
    if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full here";
    const std::string cmd = "'" + kGenerate + "' -m '" + kModel + "' --device cpu -p Hi -n 2 --json > /dev/full";
    expect_clean_failure(run({"/bin/sh", "-c", cmd}), "seaopt-generate", "cannot write the output");
}

TEST_F(Tools, PromptCacheNeverReplacesAFileThatIsNotACache) {  // -m X --prompt-cache X replaced the model
    const std::string model = temp_dir() + "/cache-victim.gguf";
    fs::copy_file(kModel, model, fs::copy_options::overwrite_existing);
    const std::string before = read_file(model);
    expect_clean_failure(run({kGenerate, "-m", model, "--device", "cpu", "-p", "Hello there", "-n", "2",
                              "--prompt-cache", model}),
                         "seaopt-generate", "is not a prompt cache");
    EXPECT_EQ(read_file(model), before);
    const std::string notes = write_temp_file("cache-notes.txt", "my notes\n");
    expect_clean_failure(run(generate_args({"--device", "cpu", "-p", "Hi", "-n", "1", "--prompt-cache", notes})),
                         "seaopt-generate", "is not a prompt cache");
    EXPECT_EQ(read_file(notes), "my notes\n");
    expect_clean_failure(run(generate_args({"--device", "cpu", "-p", "Hi", "-n", "1", "--prompt-cache-ro"})),
                         "seaopt-generate", "--prompt-cache-ro needs --prompt-cache");
}

TEST_F(Tools, LogitBiasOutsideTheVocabularyFailsCleanly) {  // it was skipped silently
    expect_clean_failure(run(generate_args({"--device", "cpu", "-p", "Hi", "-n", "1", "-l", "999999999-inf"})),
                         "seaopt-generate", "outside the vocabulary");
    expect_clean_failure(run(generate_args({"--device", "cpu", "-p", "Hi", "-n", "1", "-l", "5+1e40"})),
                         "seaopt-generate", "--logit-bias");  // overflowed to +inf, forcing the token
}

TEST_F(Tools, AttnvizRefusesToOverwriteItsInput) {  // -o MODEL replaced the model with a PNG
    const std::string attnviz = SEAOPT_BINARY_DIR "/bin/seaopt-attnviz";
    const std::string model = temp_dir() + "/attnviz-victim.gguf";
    fs::copy_file(kSeaModel, model, fs::copy_options::overwrite_existing);
    const std::string before = read_file(model);
    expect_clean_failure(run({attnviz, "-m", model, "-p", "Hi", "-o", model}), "seaopt-attnviz",
                         "is the same file as the input");
    EXPECT_EQ(read_file(model), before);
}

TEST_F(Tools, BenchChecksTheSeaLayersBeforeAnyTest) {  // the dense rows ran and half a table was printed first
    const std::string bench = SEAOPT_BINARY_DIR "/bin/seaopt-bench";
    const Result r = run({bench, "-m", kSeaModel, "--device", "cpu", "-p", "8", "-n", "2", "-r", "1", "--attention",
                          "dense,sea", "--sea-layers", "0-9"});
    expect_clean_failure(r, "seaopt-bench", "out of range");
    EXPECT_TRUE(r.out.empty()) << describe(r);
}

// NaN weights: --check-tensors names the tensor at load; without it the run stops at the NaN logits with a message
// that points at the flag (the audit found neither the file nor the tensor named).
TEST_F(Tools, CheckTensorsNamesANaNWeight) {
    std::string bytes = read_file(kModel);
    const seaopt::gguf::File f = seaopt::gguf::parse(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
    const seaopt::gguf::TensorInfo *t = f.find_tensor("blk.0.attn_norm.weight");
    ASSERT_NE(t, nullptr);
    const size_t at = f.data_offset + t->offset + 2 * (t->type == seaopt::gguf::TensorType::F32 ? 4 : 2);
    if (t->type == seaopt::gguf::TensorType::F32) {
        const float nan = NAN;
        std::memcpy(&bytes[at], &nan, 4);
    } else {
        ASSERT_EQ(t->type, seaopt::gguf::TensorType::F16);
        const uint16_t nan = 0x7E00;
        std::memcpy(&bytes[at], &nan, 2);
    }
    const std::string model = write_temp_file("nan-weight.gguf", bytes);
    expect_clean_failure(run({kGenerate, "-m", model, "--device", "cpu", "-p", "Hi", "-n", "1", "--check-tensors"}),
                         "seaopt-generate", "'blk.0.attn_norm.weight' has a non-finite value at element 2");
    expect_clean_failure(run({kGenerate, "-m", model, "--device", "cpu", "-p", "Hi", "-n", "1"}), "seaopt-generate",
                         "--check-tensors");
}
