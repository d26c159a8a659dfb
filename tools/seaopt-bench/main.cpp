// seaopt-bench: prompt-processing and generation throughput of an OPT model, in the style of
// llama.cpp's llama-bench. A thin program over the public C API (seaopt.h).
//
//   seaopt-bench -m MODEL [-p 512,2048] [-n 128] [-d 0,1920] [-r 5] [-o md|json|jsonl] [--device cuda|cpu|auto]
//                [--attention dense,sea [--sea-layers LIST] [--sea-k N]] ...
//   seaopt-bench -m MODEL --attention-layer 1024,2048,4096 [--layer N] [--sea-k N] [-r 5] [-o md|json|jsonl] ...
//
// Tests (also printed by --help):
//   ppN  on a cleared KV cache, ONE seaopt_decode of N tokens (BOS, then fixed pseudo-random ids in
//        [4, 50260)) with logits for the last token only; the time of that call. The call returns
//        once the logits are on the host, so on the GPU it includes all the work.
//   tgN  on a cleared KV cache, decode BOS (not timed), then N steps of greedy generation: each step
//        one seaopt_decode of one token and the argmax of its logits, fed back; the time of the N steps.
//   "tgN generate" (--tg-api generate): the same N greedy steps as ONE seaopt_generate_greedy call (on the GPU
//        at batch 1 with dense attention: the steps back to back in one kernel, no host round trip per token).
//   "ppN @ dD", "tgN @ dD" (-d D > 0, as llama-bench): the same on top of D tokens already in the KV
//        cache: the first D ids of the same stream go in with one untimed seaopt_decode, then ppN
//        decodes the next N ids, tgN starts from the argmax after the D tokens.
// Each test gets its own context (n_ctx positions, batches of the test's size: N for ppN, 1 for tgN,
// at least D with a depth), one untimed warm-up run (unless --no-warmup), then -r timed runs.
// Reported: tokens/s as the mean and sample standard deviation over the runs, ms per run, and the
// context's memory (planned, and on the GPU the device memory in use after the test). The attention the
// contexts use (--attention, --sea-layers, --sea-k) is a column of the table and fields of the JSON.
//
// --attention-layer T1,T2,... (a mode of its own; CUDA only): for each T, ONE attention layer's prefill of T tokens
// of one sequence (batch 1, fp16, the model's heads of 64) through seaopt_bench_attention_layer, dense (the flash
// prefill) and SEA (estimator + top-k + sparse attention with layer --layer's estimator), on the same random q, k,
// v: ms per run (mean ± std), SEA/dense, the extra device memory of each, and SEA's positional table (stretched
// past its rows for a T beyond them, sea.md §2.2). T may exceed the model's positions (up to 131072).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "seaopt.h"
#include "tools/common/api.h"
#include "tools/common/cli.h"
#include "tools/common/files.h"
#include "tools/common/log.h"
#include "tools/common/timing.h"

namespace {

const char *const kProgram = "seaopt-bench";

const char *const kTests =
    "Tests:\n"
    "  ppN  on a cleared KV cache, one seaopt_decode of N tokens (BOS, then fixed pseudo-random ids in\n"
    "       [4, 50260)) asking for the logits of the last token only; its time (the call returns once the\n"
    "       logits are on the host, so on the GPU it covers all the work).\n"
    "  tgN  on a cleared KV cache, decode BOS (not timed), then N greedy steps, each one seaopt_decode of\n"
    "       one token and the argmax of its logits, fed back; the time of the N steps.\n"
    "  tgN generate  (--tg-api generate) the same N greedy steps from the same token as ONE\n"
    "       seaopt_generate_greedy call (on a CUDA context with dense attention the steps run back to back\n"
    "       on the GPU, with no host round trip per token); its time. The same tokens as tgN.\n"
    "  ppN @ dD, tgN @ dD  (-d D > 0) the same test on top of D tokens already in the KV cache: the first\n"
    "       D ids of the same stream (BOS first) go in with one untimed seaopt_decode; then ppN decodes the\n"
    "       next N ids, tgN starts from the argmax after them. A test needs D + N positions.\n"
    "Each test runs in its own context (-c positions; batches of N tokens for ppN, 1 for tgN, at least D\n"
    "with a depth): one untimed warm-up run (unless --no-warmup), then -r timed runs. t/s is the mean over\n"
    "the runs of tokens/seconds +/- the sample standard deviation; ms is the mean time of one run.\n"
    "Attention: every test's context runs --attention (dense, or SEA with --sea-layers / --sea-k); a list\n"
    "(--attention dense,sea) runs every test with each, in list order, on the one loaded model; the\n"
    "'attention' column (JSON: attention, sea_layers, sea_k) says which.\n"
    "Memory: 'planned' is what the context laid out (weights + KV cache + activation arena + workspace;\n"
    "with SEA on the CPU the workspace is SEA's decode states and estimator parameters);\n"
    "'device used' is the GPU memory in use by all processes after the test (cudaMemGetInfo total - free),\n"
    "not reported on the CPU.\n"
    "Output goes to stdout (-o md: a table and memory lines; -o json: an array of objects, one per test);\n"
    "progress goes to stderr.\n"
    "\n"
    "Attention layer (--attention-layer T1,T2,...; instead of the ppN/tgN tests; CUDA only, a model with a SEA\n"
    "estimator): for each T, one attention layer's prefill of T tokens of one sequence (batch 1, fp16, the\n"
    "model's heads of 64) on fixed-seed random N(0,1) q, k, v, run as the CUDA engine runs it (C API:\n"
    "seaopt_bench_attention_layer): dense = the flash prefill over the KV cache; SEA = estimator + top-k +\n"
    "sparse attention with layer --layer's estimator and k = --sea-k. Timed: the attention kernels only, -r runs\n"
    "queued back to back after 3 warm-ups (none with --no-warmup), cudaEvents, mean +/- sample std in ms; the\n"
    "KV-cache append both paths run first is excluded (printed apart). 'extra' is the device memory beyond q, k,\n"
    "v, the KV cache (n_ctx = T) and the output: 0 for dense, SEA's prefill scratch + the decode state it\n"
    "leaves. T may exceed the model's positions (at most 131072): SEA's positional table E_pos is then stretched\n"
    "to T rows by nearest interpolation (sea.md 2.2), shown in the 'E_pos rows' column as 'P -> N'.\n"
    "-p, -n, -d, -c, --attention and --sea-layers do not apply in this mode.";

struct Options {
    std::string model_path;
    std::string prompt_sizes = "512";
    std::string gen_sizes = "128";
    std::string depths = "0";
    std::string tg_api = "decode";
    int32_t reps = 5;
    std::string output = "md";
    std::string device = seaopt_tools::default_device();
    bool check_tensors = false;  // --check-tensors: scan the weights for NaN/Inf at load (llama.cpp's flag)
    seaopt_tools::AttentionOptions attention;
    int32_t n_threads = 0;  // 0 = all hardware threads
    int32_t n_ctx = 0;      // 0 = what the tests need, rounded up to 256, at most n_ctx_train
    bool no_warmup = false;
    bool verbose = false;
    bool print_memory_plan = false;
    std::string attention_layer;  // --attention-layer: the T list ("" = the ppN/tgN tests)
    int32_t layer = 0;            // --layer
};

int fail(const std::string &message) { return seaopt_tools::fail(kProgram, message); }

using seaopt_tools::Clock;
using seaopt_tools::seconds_since;

// "512,2048" -> {512, 2048}, duplicates dropped. Every item must be a non-negative integer; 0 means
// "no test" (dropped) unless keep_zero (a depth of 0 is the empty cache).
bool parse_size_list(const std::string &text, const char *flag, bool keep_zero, std::vector<int32_t> &out,
                     std::string &error) {
    out.clear();
    size_t start = 0;
    while (true) {
        const size_t comma = text.find(',', start);
        const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        bool ok = !item.empty() && item.size() <= 9;
        for (char c : item) ok = ok && c >= '0' && c <= '9';
        if (!ok) {
            error = std::string(flag) + " takes a comma-separated list of non-negative integers" +
                    (keep_zero ? "" : " (0 = none)") + ", got '" + text + "'";
            return false;
        }
        const int32_t value = (int32_t)std::stol(item);
        if ((value > 0 || keep_zero) && std::find(out.begin(), out.end(), value) == out.end()) out.push_back(value);
        if (comma == std::string::npos) return true;
        start = comma + 1;
    }
}

// The benchmark's token ids: BOS, then ids in [4, min(50260, n_vocab)) from a fixed splitmix64
// stream, so every run and every build sees the same tokens.
std::vector<seaopt_token> bench_tokens(int32_t n, seaopt_token bos, int32_t n_vocab) {
    const int32_t lo = n_vocab > 4 ? 4 : 0;
    const int32_t hi = std::min<int32_t>(50260, n_vocab);
    uint64_t state = 0x5EA0F7BE4C4ull;
    std::vector<seaopt_token> ids((size_t)std::max(n, 0));
    for (int32_t i = 0; i < n; ++i) {
        state += 0x9E3779B97F4A7C15ull;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        ids[(size_t)i] = i == 0 ? bos : lo + (seaopt_token)(z % (uint64_t)(hi - lo));
    }
    return ids;
}

// The next token of a tg test: the greedy pick of the context's last logits through the public sampler
// (the library's vectorised argmax: the lowest id of the largest logit), so that the tool's own work per
// step stays small beside the engine's.
bool greedy_next(seaopt_sampler *greedy, seaopt_context *ctx, seaopt_token *token) {
    return seaopt_sampler_sample(greedy, ctx, -1, token) == SEAOPT_OK;
}

struct Test {
    std::string name;  // "pp512", "tg128", "tg128 @ d1920"
    int32_t n_prompt = 0, n_gen = 0;
    int32_t n_depth = 0;  // tokens in the KV cache before the timed part
    bool generate = false;  // tgN through seaopt_generate_greedy (--tg-api generate)
    int32_t n_tokens() const { return n_prompt > 0 ? n_prompt : n_gen; }
    // The untimed prefix: the depth, or for tg at depth 0 the BOS that gives the first token.
    int32_t n_prefix() const { return n_prompt > 0 ? n_depth : std::max(n_depth, 1); }
    uint32_t positions() const { return (uint32_t)(n_prefix() + n_tokens()); }  // tg at depth 0: BOS + N
    // The prefix goes in as one batch too, so the context's batches must hold it.
    uint32_t batch() const { return (uint32_t)std::max(n_prompt > 0 ? n_prompt : 1, n_depth); }
};

// llama-bench's names: "pp512", "tg128", with a depth "pp512 @ d1920".
Test make_test(int32_t n_prompt, int32_t n_gen, int32_t n_depth, bool generate = false) {
    std::string name = n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
    if (generate) name += " generate";
    if (n_depth > 0) name += " @ d" + std::to_string(n_depth);
    return Test{name, n_prompt, n_gen, n_depth, generate};
}

// What a test's positions are made of, for the error when they do not fit.
std::string positions_detail(const Test &t) {
    if (t.n_depth > 0) {
        return " (" + std::to_string(t.n_depth) + " in the KV cache + " + std::to_string(t.n_tokens()) +
               (t.n_prompt > 0 ? " prompt)" : " generated)");
    }
    return t.n_gen > 0 ? " (BOS + " + std::to_string(t.n_gen) + " generated)" : "";
}

struct Result {
    Test test;
    seaopt_tools::AttentionOptions attention;  // one item of --attention's list
    uint32_t n_ctx = 0, n_batch = 0;
    std::vector<double> samples_ts, samples_ms;
    double avg_ts = 0, stddev_ts = 0, avg_ms = 0;
    seaopt_memory_report memory{};
};

// One run of a test on a cleared cache; *seconds is the timed part. False on a library error.
// `ids` is the benchmark's token stream (BOS first), at least test.positions() long.
bool run_once(seaopt_context *ctx, const Test &test, const std::vector<seaopt_token> &ids, double *seconds) {
    seaopt_kv_clear(ctx);
    const int32_t n_prefix = test.n_prefix();
    if (n_prefix > 0) {  // untimed: the depth (or tg's BOS)
        const seaopt_batch prefix = seaopt_batch_get_one(ids.data(), n_prefix);
        if (seaopt_decode(ctx, &prefix) != SEAOPT_OK) return false;
    }
    if (test.n_prompt > 0) {
        const seaopt_batch batch = seaopt_batch_get_one(ids.data() + n_prefix, test.n_prompt);
        const Clock::time_point t0 = Clock::now();
        if (seaopt_decode(ctx, &batch) != SEAOPT_OK) return false;
        *seconds = seconds_since(t0);
        return seaopt_get_logits_ith(ctx, -1) != nullptr;
    }
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    sp.temp = 0.0f;  // greedy
    sp.seed = 0;
    seaopt_sampler *greedy = nullptr;
    if (seaopt_sampler_new(&sp, &greedy) != SEAOPT_OK) return false;
    const std::unique_ptr<seaopt_sampler, void (*)(seaopt_sampler *)> owner(greedy, seaopt_sampler_free);
    seaopt_token token = 0;
    if (!greedy_next(greedy, ctx, &token)) return false;  // after the prefix
    if (test.generate) {
        std::vector<seaopt_token> picks((size_t)test.n_gen);
        const Clock::time_point t0 = Clock::now();
        if (seaopt_generate_greedy(ctx, 0, token, test.n_gen, picks.data()) != SEAOPT_OK) return false;
        *seconds = seconds_since(t0);
        return true;
    }
    const Clock::time_point t0 = Clock::now();
    for (int32_t i = 0; i < test.n_gen; ++i) {
        const seaopt_batch batch = seaopt_batch_get_one(&token, 1);
        if (seaopt_decode(ctx, &batch) != SEAOPT_OK) return false;
        if (!greedy_next(greedy, ctx, &token)) return false;
    }
    *seconds = seconds_since(t0);
    return true;
}

void summarize(Result &r) {
    const size_t n = r.samples_ts.size();
    double sum_ts = 0, sum_ms = 0;
    for (size_t i = 0; i < n; ++i) sum_ts += r.samples_ts[i], sum_ms += r.samples_ms[i];
    r.avg_ts = n ? sum_ts / n : 0;
    r.avg_ms = n ? sum_ms / n : 0;
    double ss = 0;
    for (double x : r.samples_ts) ss += (x - r.avg_ts) * (x - r.avg_ts);
    r.stddev_ts = n > 1 ? std::sqrt(ss / (double)(n - 1)) : 0.0;
}

// ---- formatting ----------------------------------------------------------------------------------

std::string format_bytes(uint64_t bytes) {
    char buf[32];
    if (bytes >= (1ull << 30)) {
        std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
    } else {
        std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
    }
    return buf;
}

std::string format_params(uint64_t n) {
    char buf[32];
    if (n >= 1000000000ull) {
        std::snprintf(buf, sizeof buf, "%.2f B", n / 1e9);
    } else {
        std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
    }
    return buf;
}

std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += (char)c;
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += (char)c;
        }
    }
    return out + "\"";
}

std::string json_number(double x) {
    if (!std::isfinite(x)) return "null";
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.6f", x);
    return buf;
}

std::string json_array(const std::vector<double> &v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + json_number(v[i]);
    return out + "]";
}

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

struct ModelInfo {
    std::string path, desc, backend, build, device;  // device: seaopt_model_device_desc
    uint64_t n_params = 0, file_size = 0;
    int32_t n_threads = 0;
    bool gpu = false;
    int test_width = 13;  // the md "test" column: wider when a name with a depth needs it
    int attention_width = 9;  // the md "attention" column
};

// Loads the model the options name; fills what both modes report of it (path, description, parameters, build, file
// size) and the load time. Null on failure, the reason in seaopt_last_error().
seaopt_tools::ModelPtr load_bench_model(const Options &opt, ModelInfo &info, double &load_s) {
    seaopt_model_params mparams = seaopt_model_default_params();
    mparams.device = seaopt_tools::device_from_string(opt.device);
    mparams.check_tensors = opt.check_tensors;
    const Clock::time_point t_load = Clock::now();
    seaopt_tools::ModelPtr model = seaopt_tools::load_model(opt.model_path, mparams);
    load_s = seconds_since(t_load);
    if (!model) return model;
    info.path = opt.model_path;
    char desc[128];
    seaopt_model_desc(model.get(), desc, sizeof desc);
    info.desc = desc;
    info.n_params = seaopt_model_n_params(model.get());
    info.build = seaopt_build_info();
    char device[320];
    seaopt_model_device_desc(model.get(), device, sizeof device);
    info.device = device;
    std::error_code ec;
    const uintmax_t file_size = std::filesystem::file_size(opt.model_path, ec);
    info.file_size = ec ? 0 : (uint64_t)file_size;
    return model;
}

void print_md_header(const ModelInfo &m) {
    std::printf("| model                          |       size |     params | backend     | %-*s | %*s |"
                "                  t/s |       ms |\n",
                m.attention_width, "attention", m.test_width, "test");
    std::printf("| ------------------------------ | ---------: | ---------: | ----------- | %s | %s: |"
                " -------------------: | -------: |\n",
                std::string((size_t)m.attention_width, '-').c_str(),
                std::string((size_t)m.test_width - 1, '-').c_str());
}

void print_md_row(const ModelInfo &m, const Result &r) {
    char ts[64];
    std::snprintf(ts, sizeof ts, "%.2f ± %.2f", r.avg_ts, r.stddev_ts);
    // "±" is two bytes in UTF-8: one more byte of width keeps the column aligned on screen.
    std::printf("| %-30s | %10s | %10s | %-11s | %-*s | %*s | %21s | %8.2f |\n", m.desc.c_str(),
                format_bytes(m.file_size).c_str(), format_params(m.n_params).c_str(), m.backend.c_str(),
                m.attention_width, seaopt_tools::attention_label(r.attention).c_str(), m.test_width, r.test.name.c_str(), ts, r.avg_ms);
    std::fflush(stdout);
}

void print_md_memory(const ModelInfo &m, const std::vector<Result> &results) {
    std::printf("\nmemory (planned = weights + KV cache + arena + workspace%s):\n",
                m.gpu ? "; device used = GPU memory in use by all processes after the test" : "");
    size_t name_width = 8;
    for (const Result &r : results) name_width = std::max(name_width, r.test.name.size());
    for (const Result &r : results) {
        const seaopt_memory_report &mem = r.memory;
        std::printf("  %-*s %-*s n_ctx %5u, n_batch %5u: planned %s = weights %s + KV cache %s + arena %s + workspace %s",
                    (int)name_width, r.test.name.c_str(), m.attention_width,
                    seaopt_tools::attention_label(r.attention).c_str(), r.n_ctx,
                    r.n_batch, format_bytes(mem.total_bytes).c_str(),
                    format_bytes(mem.weights_bytes).c_str(), format_bytes(mem.kv_cache_bytes).c_str(),
                    format_bytes(mem.arena_bytes).c_str(), format_bytes(mem.workspace_bytes).c_str());
        if (m.gpu) std::printf("; device used %s", format_bytes(mem.device_used_bytes).c_str());
        std::printf("\n");
    }
    std::printf("\nbuild: %s\ndevice: %s\n", m.build.c_str(), m.device.c_str());
}

// jsonl: one object per line, no enclosing array (llama-bench's -o jsonl).
void print_json(const ModelInfo &m, const std::vector<Result> &results, bool jsonl) {
    const std::string time = utc_now();
    if (!jsonl) std::printf("[\n");
    for (size_t i = 0; i < results.size(); ++i) {
        const Result &r = results[i];
        const seaopt_memory_report &mem = r.memory;
        std::printf("%s{\"model\": %s, \"model_filename\": %s, \"model_size\": %llu, \"n_params\": %llu, "
                    "\"backend\": %s, \"build_info\": %s, \"device_info\": %s, \"attention\": %s, \"sea_layers\": %s, \"sea_k\": %d, "
                    "\"n_threads\": %d, \"n_ctx\": %u, \"n_batch\": %u, "
                    "\"test\": %s, \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, \"tg_api\": %s, \"reps\": %zu, "
                    "\"avg_ts\": %s, \"stddev_ts\": %s, \"avg_ms\": %s, \"samples_ts\": %s, \"samples_ms\": %s, "
                    "\"planned_bytes\": %llu, \"weights_bytes\": %llu, \"kv_cache_bytes\": %llu, "
                    "\"arena_bytes\": %llu, \"workspace_bytes\": %llu, \"device_used_bytes\": %llu, "
                    "\"test_time\": %s}%s\n",
                    jsonl ? "" : "  ", json_string(m.desc).c_str(), json_string(m.path).c_str(),
                    (unsigned long long)m.file_size,
                    (unsigned long long)m.n_params, json_string(m.backend).c_str(), json_string(m.build).c_str(),
                    json_string(m.device).c_str(),
                    json_string(r.attention.attention).c_str(), json_string(r.attention.sea_layers).c_str(),
                    r.attention.sea_k, m.n_threads, r.n_ctx, r.n_batch, json_string(r.test.name).c_str(),
                    r.test.n_prompt, r.test.n_gen, r.test.n_depth,
                    json_string(r.test.n_gen > 0 ? (r.test.generate ? "generate" : "decode") : "").c_str(),
                    r.samples_ts.size(), json_number(r.avg_ts).c_str(),
                    json_number(r.stddev_ts).c_str(), json_number(r.avg_ms).c_str(),
                    json_array(r.samples_ts).c_str(), json_array(r.samples_ms).c_str(),
                    (unsigned long long)mem.total_bytes, (unsigned long long)mem.weights_bytes,
                    (unsigned long long)mem.kv_cache_bytes, (unsigned long long)mem.arena_bytes,
                    (unsigned long long)mem.workspace_bytes, (unsigned long long)mem.device_used_bytes,
                    json_string(time).c_str(), jsonl || i + 1 == results.size() ? "" : ",");
    }
    if (!jsonl) std::printf("]\n");
    std::fflush(stdout);
}

// ---- the benchmark -------------------------------------------------------------------------------

int run(const Options &opt, const std::vector<Test> &tests, const std::vector<seaopt_tools::AttentionOptions> &attentions) {
    seaopt_tools::install_log(opt.verbose);

    ModelInfo info;
    double load_s = 0;
    const seaopt_tools::ModelPtr model = load_bench_model(opt, info, load_s);
    if (!model) return fail(std::string("cannot load ") + opt.model_path + ": " + seaopt_last_error());
    info.n_threads = opt.n_threads;
    for (const seaopt_tools::AttentionOptions &a : attentions) {
        info.attention_width = std::max(info.attention_width, (int)seaopt_tools::attention_label(a).size());
    }
    for (const Test &t : tests) info.test_width = std::max(info.test_width, (int)t.name.size());

    // Context size: what the largest test needs, rounded up to 256, within the model's positions.
    const int32_t n_ctx_train = seaopt_model_n_ctx_train(model.get());
    uint32_t need = 0;
    const Test *largest = nullptr;
    for (const Test &t : tests) {
        if (t.positions() > need) need = t.positions(), largest = &t;
    }
    if (need > (uint32_t)n_ctx_train) {
        return fail(largest->name + " needs " + std::to_string(need) + " positions" + positions_detail(*largest) +
                    ", more than the model's " + std::to_string(n_ctx_train) + " (n_ctx_train)");
    }
    uint32_t n_ctx = (uint32_t)opt.n_ctx;
    if (n_ctx == 0) {
        n_ctx = std::min<uint32_t>((need + 255) / 256 * 256, (uint32_t)n_ctx_train);
    } else if (n_ctx > (uint32_t)n_ctx_train) {
        return fail("-c " + std::to_string(n_ctx) + " is larger than the model's " + std::to_string(n_ctx_train) +
                    " positions (n_ctx_train)");
    } else if (n_ctx < need) {
        return fail(largest->name + " needs " + std::to_string(need) + " positions, more than -c " +
                    std::to_string(n_ctx) + " holds");
    }

    // One stream for every test: each takes its prefix and its prompt from the start of it.
    const std::vector<seaopt_token> ids =
        bench_tokens((int32_t)need, seaopt_token_bos(model.get()), seaopt_model_n_vocab(model.get()));

    std::fprintf(stderr, "%s: %s\n", kProgram, info.build.c_str());
    std::fprintf(stderr, "%s: model %s (%s, %llu params, %s) loaded in %.2f s; n_ctx = %u, %d timed run%s%s\n",
                 kProgram, opt.model_path.c_str(), info.desc.c_str(), (unsigned long long)info.n_params,
                 format_bytes(info.file_size).c_str(), load_s, n_ctx, opt.reps, opt.reps == 1 ? "" : "s",
                 opt.no_warmup ? ", no warm-up" : " after one warm-up run");

    const bool md = opt.output == "md";
    std::vector<Result> results;
    // As llama-bench: every test with each value of a list parameter (here --attention), in list order.
    std::vector<std::pair<const seaopt_tools::AttentionOptions *, const Test *>> runs;
    for (const seaopt_tools::AttentionOptions &a : attentions) {
        for (const Test &test : tests) runs.emplace_back(&a, &test);
        // Each attention setting checked against the model before any test runs (a memory estimate makes nothing):
        // a bad --sea-layers must not end the run after the dense rows, with half a table printed.
        seaopt_context_params check = seaopt_context_default_params();
        check.n_ctx = n_ctx;
        check.n_batch = 1;
        check.n_threads = opt.n_threads;
        seaopt_tools::apply_attention_options(a, check);
        seaopt_memory_report unused{};
        if (seaopt_context_memory_estimate(model.get(), &check, &unused) != SEAOPT_OK) {
            return fail("cannot plan a context for --attention " + seaopt_tools::attention_label(a) + ": " +
                        seaopt_last_error());
        }
    }
    for (const auto &[attention, test_ptr] : runs) {
        const Test &test = *test_ptr;
        Result r;
        r.test = test;
        r.attention = *attention;
        r.n_ctx = n_ctx;
        r.n_batch = test.batch();
        seaopt_context_params cparams = seaopt_context_default_params();
        cparams.n_ctx = n_ctx;
        cparams.n_batch = r.n_batch;
        cparams.n_seq_max = 1;
        cparams.n_threads = opt.n_threads;
        seaopt_tools::apply_attention_options(*attention, cparams);
        const seaopt_tools::ContextPtr ctx = seaopt_tools::new_context(model.get(), cparams);
        if (!ctx) {
            return fail(test.name + ": cannot create a context (n_ctx " + std::to_string(n_ctx) + ", n_batch " +
                        std::to_string(r.n_batch) + "): " + seaopt_last_error());
        }
        if (opt.print_memory_plan) seaopt_tools::print_memory_plan(ctx.get());

        if (results.empty()) {
            // The public API has no device query: a context on the GPU plans an arena and sees the
            // device's memory in use; the CPU engine reports neither.
            seaopt_memory_report mem{};
            if (seaopt_context_memory(ctx.get(), &mem) != SEAOPT_OK) {
                return fail(test.name + ": cannot read the context's memory: " + seaopt_last_error());
            }
            info.gpu = opt.device == "cuda" || (opt.device == "auto" && (mem.arena_bytes > 0 || mem.device_used_bytes > 0));
            info.backend = info.gpu ? "seaopt-cuda" : "seaopt-cpu";
            if (md) print_md_header(info);
        }

        std::fprintf(stderr, "%s: %s on %s, %s attention ...\n", kProgram, test.name.c_str(), info.gpu ? "cuda" : "cpu",
                     seaopt_tools::attention_label(*attention).c_str());
        double seconds = 0;
        if (!opt.no_warmup && !run_once(ctx.get(), test, ids, &seconds)) {
            return fail(test.name + " (warm-up): " + seaopt_last_error());
        }
        for (int32_t rep = 0; rep < opt.reps; ++rep) {
            if (!run_once(ctx.get(), test, ids, &seconds)) {
                return fail(test.name + " (run " + std::to_string(rep + 1) + "): " + seaopt_last_error());
            }
            seconds = std::max(seconds, 1e-9);
            r.samples_ts.push_back(test.n_tokens() / seconds);
            r.samples_ms.push_back(1e3 * seconds);
        }
        summarize(r);
        if (seaopt_context_memory(ctx.get(), &r.memory) != SEAOPT_OK) {
            return fail(test.name + ": cannot read the context's memory: " + seaopt_last_error());
        }
        if (md) print_md_row(info, r);
        results.push_back(r);
    }

    if (md) {
        print_md_memory(info, results);
    } else {
        print_json(info, results, opt.output == "jsonl");
    }
    return 0;
}

// ---- --attention-layer ---------------------------------------------------------------------------

// The dense and the SEA run at one T.
struct LayerResult {
    seaopt_attention_layer_bench_result dense{}, sea{};
    double ratio() const { return dense.mean_ms > 0 ? sea.mean_ms / dense.mean_ms : NAN; }
};

std::string ms_pm(const seaopt_attention_layer_bench_result &r) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f ± %.3f", r.mean_ms, r.std_ms);
    return buf;
}

double to_mib(uint64_t bytes) { return bytes / 1048576.0; }

// "2048" (the table as stored, or already stretched for the model's positions: "1024 -> 2048"), "2048 -> 4096".
std::string pos_rows(const seaopt_attention_layer_bench_result &r) {
    if (!r.pos_stretched) return std::to_string(r.n_pos_table);
    return std::to_string(r.n_pos_table) + " -> " + std::to_string(r.n_pos_ctx);
}

void print_layer_md_header() {
    std::printf("| model                          | backend     | layer |      T |          dense ms |            SEA ms"
                " | SEA/dense | extra MiB dense | extra MiB SEA |   k | E_pos rows      |\n");
    std::printf("| ------------------------------ | ----------- | ----: | -----: | ----------------: | ----------------:"
                " | --------: | --------------: | ------------: | --: | --------------- |\n");
}

void print_layer_md_row(const ModelInfo &m, const LayerResult &r) {
    // "±" is two bytes in UTF-8: one more byte of width keeps the columns aligned on screen.
    std::printf("| %-30s | %-11s | %5d | %6d | %19s | %19s | %9.2f | %15.2f | %13.2f | %3d | %-15s |\n", m.desc.c_str(),
                m.backend.c_str(), r.dense.layer, r.dense.n_tokens, ms_pm(r.dense).c_str(), ms_pm(r.sea).c_str(),
                r.ratio(), to_mib(r.dense.extra_bytes), to_mib(r.sea.extra_bytes), r.sea.sea_k, pos_rows(r.sea).c_str());
    std::fflush(stdout);
}

void print_layer_md_notes(const ModelInfo &m, const std::vector<LayerResult> &results) {
    const seaopt_attention_layer_bench_result &a = results.front().dense;
    std::printf("\ntimed: one attention layer's prefill of T tokens of one sequence (batch 1, fp16, %d heads x %d), "
                "the attention kernels only: mean ± sample std of %d run%s after %d warm-up%s (cudaEvents, runs queued "
                "back to back); the KV-cache append both paths run first is not included.\n",
                a.n_head, a.head_dim, a.n_reps, a.n_reps == 1 ? "" : "s", a.n_warmup, a.n_warmup == 1 ? "" : "s");
    std::printf("extra: device memory beyond q, k, v [T, 3C], the KV cache (n_ctx = T) and the output [T, C]: dense "
                "none (the flash prefill has no scratch); SEA its prefill scratch + the decode state it leaves (the "
                "layer's estimator parameters are weights, not counted).\n");
    for (const LayerResult &r : results) {
        std::printf("  T %6d: KV append %.3f ms; SEA extra %.2f MiB = scratch %.2f + decode state %.2f (parameters "
                    "%.2f MiB); inputs: qkv %.2f MiB, KV cache %.2f MiB, output %.2f MiB\n",
                    r.dense.n_tokens, r.dense.kv_append_ms, to_mib(r.sea.extra_bytes), to_mib(r.sea.scratch_bytes),
                    to_mib(r.sea.state_bytes), to_mib(r.sea.sea_params_bytes), to_mib(r.dense.qkv_bytes),
                    to_mib(r.dense.kv_cache_bytes), to_mib(r.dense.out_bytes));
    }
    std::printf("E_pos rows: SEA's learned positional table (sea.md 2.2), 'P -> N' when stretched by nearest "
                "interpolation to N positions (T beyond its P rows).\n");
    std::printf("\nbuild: %s\ndevice: %s\n", m.build.c_str(), m.device.c_str());
}

void print_layer_json(const ModelInfo &m, const std::vector<LayerResult> &results, bool jsonl) {
    const std::string time = utc_now();
    if (!jsonl) std::printf("[\n");
    for (size_t i = 0; i < results.size(); ++i) {
        const seaopt_attention_layer_bench_result &d = results[i].dense, &e = results[i].sea;
        std::printf("%s{\"model\": %s, \"model_filename\": %s, \"model_size\": %llu, \"n_params\": %llu, "
                    "\"backend\": %s, \"build_info\": %s, \"device_info\": %s, \"test\": \"attention-layer\", \"layer\": %d, "
                    "\"n_tokens\": %d, \"n_head\": %d, \"head_dim\": %d, \"reps\": %d, \"warmup\": %d, "
                    "\"sea_k\": %d, \"sea_K\": %d, \"n_pos_table\": %d, \"n_pos_ctx\": %d, \"pos_stretched\": %s, "
                    "\"dense_avg_ms\": %s, \"dense_stddev_ms\": %s, \"dense_min_ms\": %s, \"dense_max_ms\": %s, "
                    "\"sea_avg_ms\": %s, \"sea_stddev_ms\": %s, \"sea_min_ms\": %s, \"sea_max_ms\": %s, "
                    "\"sea_dense_ratio\": %s, \"kv_append_ms\": %s, "
                    "\"dense_extra_bytes\": %llu, \"sea_extra_bytes\": %llu, \"sea_scratch_bytes\": %llu, "
                    "\"sea_state_bytes\": %llu, \"sea_params_bytes\": %llu, "
                    "\"qkv_bytes\": %llu, \"kv_cache_bytes\": %llu, \"out_bytes\": %llu, "
                    "\"dense_output_mean_abs\": %s, \"sea_output_mean_abs\": %s, \"test_time\": %s}%s\n",
                    jsonl ? "" : "  ", json_string(m.desc).c_str(), json_string(m.path).c_str(),
                    (unsigned long long)m.file_size,
                    (unsigned long long)m.n_params, json_string(m.backend).c_str(), json_string(m.build).c_str(),
                    json_string(m.device).c_str(),
                    d.layer, d.n_tokens, d.n_head, d.head_dim, d.n_reps, d.n_warmup, e.sea_k, e.sea_K, e.n_pos_table,
                    e.n_pos_ctx, e.pos_stretched ? "true" : "false", json_number(d.mean_ms).c_str(),
                    json_number(d.std_ms).c_str(), json_number(d.min_ms).c_str(), json_number(d.max_ms).c_str(),
                    json_number(e.mean_ms).c_str(), json_number(e.std_ms).c_str(), json_number(e.min_ms).c_str(),
                    json_number(e.max_ms).c_str(), json_number(results[i].ratio()).c_str(),
                    json_number(d.kv_append_ms).c_str(), (unsigned long long)d.extra_bytes,
                    (unsigned long long)e.extra_bytes, (unsigned long long)e.scratch_bytes,
                    (unsigned long long)e.state_bytes, (unsigned long long)e.sea_params_bytes,
                    (unsigned long long)d.qkv_bytes, (unsigned long long)d.kv_cache_bytes,
                    (unsigned long long)d.out_bytes, json_number(d.output_mean_abs).c_str(),
                    json_number(e.output_mean_abs).c_str(), json_string(time).c_str(),
                    jsonl || i + 1 == results.size() ? "" : ",");
    }
    if (!jsonl) std::printf("]\n");
    std::fflush(stdout);
}

int run_attention_layer(const Options &opt, const std::vector<int32_t> &sizes) {
    seaopt_tools::install_log(opt.verbose);

    ModelInfo info;
    double load_s = 0;
    const seaopt_tools::ModelPtr model = load_bench_model(opt, info, load_s);
    if (!model) return fail(std::string("cannot load ") + opt.model_path + ": " + seaopt_last_error());
    if (!seaopt_model_has_sea(model.get())) {
        return fail("--attention-layer compares SEA with dense attention, and the model " + opt.model_path +
                    " has no SEA estimator: convert it with seaopt-convert --sea");
    }
    const int32_t n_layer = seaopt_model_n_layer(model.get());
    if (opt.layer >= n_layer) {
        return fail("--layer " + std::to_string(opt.layer) + " is out of range: the model has " +
                    std::to_string(n_layer) + " layers (0.." + std::to_string(n_layer - 1) + ")");
    }

    info.gpu = true;  // the benchmark runs CUDA kernels only: every result comes from the GPU
    info.backend = "seaopt-cuda";

    std::fprintf(stderr, "%s: %s\n", kProgram, info.build.c_str());
    std::fprintf(stderr, "%s: model %s (%s, %llu params, %s) loaded in %.2f s; attention layer %d, %d timed run%s%s\n",
                 kProgram, opt.model_path.c_str(), info.desc.c_str(), (unsigned long long)info.n_params,
                 format_bytes(info.file_size).c_str(), load_s, opt.layer, opt.reps, opt.reps == 1 ? "" : "s",
                 opt.no_warmup ? ", no warm-up" : " after 3 warm-up runs");

    const bool md = opt.output == "md";
    std::vector<LayerResult> results;
    for (int32_t T : sizes) {
        LayerResult r;
        for (const bool sea : {false, true}) {
            seaopt_attention_layer_bench_params p = seaopt_attention_layer_bench_default_params();
            p.attention = sea ? SEAOPT_ATTENTION_SEA : SEAOPT_ATTENTION_DENSE;
            p.layer = opt.layer;
            p.n_tokens = T;
            p.sea_k = sea ? opt.attention.sea_k : 0;
            p.n_reps = opt.reps;
            p.n_warmup = opt.no_warmup ? 0 : 3;
            const char *kind = sea ? "SEA" : "dense";
            std::fprintf(stderr, "%s: attention layer %d, T = %d, %s ...\n", kProgram, opt.layer, T, kind);
            if (seaopt_bench_attention_layer(model.get(), &p, sea ? &r.sea : &r.dense) != SEAOPT_OK) {
                return fail("--attention-layer T = " + std::to_string(T) + " (" + kind + " attention): " +
                            seaopt_last_error());
            }
        }
        if (md) {
            if (results.empty()) print_layer_md_header();
            print_layer_md_row(info, r);
        }
        results.push_back(r);
    }
    if (md) {
        print_layer_md_notes(info, results);
    } else {
        print_layer_json(info, results, opt.output == "jsonl");
    }
    return 0;
}

}  // namespace

static int tool_main(int argc, char **argv) {
    Options opt;
    CLI::App app{"Throughput of an OPT model: prompt processing (ppN) and greedy generation (tgN), as llama-bench.",
                 kProgram};
    app.option_defaults()->always_capture_default();
    app.footer(kTests);
    app.add_option("-m,--model", opt.model_path, "model file (seaopt GGUF)")->required();
    app.add_option("-p,--n-prompt", opt.prompt_sizes, "prompt sizes, a comma-separated list (0 = no ppN test)");
    app.add_option("-n,--n-gen", opt.gen_sizes, "generation lengths, a comma-separated list (0 = no tgN test)");
    app.add_option("-d,--n-depth", opt.depths,
                   "tokens already in the KV cache before each test, a comma-separated list (0 = an empty cache)");
    app.add_option("--tg-api", opt.tg_api,
                   "how tgN generates, a comma-separated list: decode (a seaopt_decode and a greedy pick per token) "
                   "and/or generate (one seaopt_generate_greedy call: tests named \"tgN generate\")");
    app.add_option("-r,--repetitions", opt.reps, "timed runs of each test");
    app.add_option("-o,--output", opt.output,
                   "output format: md (a table), json (an array of objects) or jsonl (one object per line)")
        ->check(CLI::IsMember({"md", "json", "jsonl"}));
    seaopt_tools::add_device_option(app, opt.device);
    seaopt_tools::add_check_tensors_option(app, opt.check_tensors);
    seaopt_tools::add_attention_options(app, opt.attention, /*allow_list=*/true);
    app.add_option("-t,--threads", opt.n_threads, "CPU threads (0 = all)");
    app.add_option("-c,--ctx-size", opt.n_ctx,
                   "context size of every test (0 = what the largest test needs, rounded up to 256, at most the "
                   "model's positions)");
    app.add_flag("--no-warmup", opt.no_warmup, "skip the untimed warm-up run of each test");
    app.add_flag("-v,--verbose", opt.verbose, "print the library's log to stderr");
    app.add_flag("--print-memory-plan", opt.print_memory_plan, "print each test context's memory plan to stderr");
    app.add_option("--attention-layer", opt.attention_layer,
                   "instead of the ppN/tgN tests: time ONE attention layer's prefill, dense and SEA, at each T of "
                   "this comma-separated list (e.g. 1024,2048,4096,8192,16384; T may exceed the model's positions, "
                   "at most 131072; CUDA only, a model with a SEA estimator; see below)");
    app.add_option("--layer", opt.layer, "with --attention-layer: the layer whose SEA estimator runs (0-based)");
    int exit_status = 0;
    if (!seaopt_tools::parse_command_line(app, argc, argv, &exit_status)) return exit_status;

    std::vector<int32_t> prompt_sizes, gen_sizes, depths;
    std::string error;
    if (app.count("--attention-layer")) {
        for (const char *flag : {"-p", "-n", "-d", "-c", "--tg-api", "--attention", "--sea-layers", "--print-memory-plan"}) {
            if (app.count(flag)) {
                return fail(std::string(flag) + " does not apply to --attention-layer (it times one attention layer, "
                                                "dense and SEA, on random q, k, v)");
            }
        }
        std::vector<int32_t> sizes;
        if (!parse_size_list(opt.attention_layer, "--attention-layer", true, sizes, error)) return fail(error);
        for (int32_t T : sizes) {
            if (T < 1 || T > SEAOPT_ATTENTION_BENCH_MAX_TOKENS) {
                return fail("--attention-layer: T = " + std::to_string(T) + " is out of range: each T must be in [1, " +
                            std::to_string(SEAOPT_ATTENTION_BENCH_MAX_TOKENS) + "]");
            }
        }
        if (opt.reps < 1) return fail("-r/--repetitions must be >= 1, got " + std::to_string(opt.reps));
        if (opt.layer < 0) return fail("--layer must be >= 0, got " + std::to_string(opt.layer));
        return run_attention_layer(opt, sizes);
    }
    if (app.count("--layer")) return fail("--layer needs --attention-layer");
    if (!parse_size_list(opt.prompt_sizes, "-p/--n-prompt", false, prompt_sizes, error)) return fail(error);
    if (!parse_size_list(opt.gen_sizes, "-n/--n-gen", false, gen_sizes, error)) return fail(error);
    if (!parse_size_list(opt.depths, "-d/--n-depth", true, depths, error)) return fail(error);
    bool tg_decode = false, tg_generate = false;
    for (const std::string &item : seaopt_tools::split_list(opt.tg_api)) {
        if (item == "decode") {
            tg_decode = true;
        } else if (item == "generate") {
            tg_generate = true;
        } else {
            return fail("--tg-api: '" + item + "' is not decode or generate");
        }
    }
    if (!tg_decode && !tg_generate) return fail("--tg-api: empty list (decode, generate or decode,generate)");
    if (opt.reps < 1) return fail("-r/--repetitions must be >= 1, got " + std::to_string(opt.reps));
    if (opt.n_ctx < 0) return fail("-c/--ctx-size must be >= 0, got " + std::to_string(opt.n_ctx));
    if (opt.n_threads < 0) return fail("-t/--threads must be >= 0, got " + std::to_string(opt.n_threads));
    if (const std::string e = seaopt_tools::check_attention_options(opt.attention); !e.empty()) return fail(e);
    std::vector<seaopt_tools::AttentionOptions> attentions;
    if (const std::string e = seaopt_tools::attention_list(opt.attention, attentions); !e.empty()) return fail(e);

    std::vector<Test> tests;  // as llama-bench: for each depth, the pp tests then the tg tests
    for (int32_t d : depths) {
        for (int32_t n : prompt_sizes) tests.push_back(make_test(n, 0, d));
        for (int32_t n : gen_sizes) {
            if (tg_decode) tests.push_back(make_test(0, n, d));
            if (tg_generate) tests.push_back(make_test(0, n, d, true));
        }
    }
    if (tests.empty()) return fail("nothing to run: -p and -n are both 0");
    return run(opt, tests, attentions);
}

int main(int argc, char **argv) { return seaopt_tools::guarded_main(kProgram, argc, argv, tool_main); }
