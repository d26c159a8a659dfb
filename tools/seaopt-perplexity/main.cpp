// seaopt-perplexity: perplexity of a text under an OPT model, with the standard GPTQ / SparseGPT
// protocol (IST-DASLab/gptq datautils.py get_wikitext2 + opt.py opt_eval), and output in the style
// of llama.cpp's llama-perplexity. A thin program over the public C API (seaopt.h).
//
//   seaopt-perplexity -m MODEL (-f FILE | --wikitext2-test DIR) [-c N] [-b K] [--chunks K] [-t N] [--no-warmup]
//                     [--attention dense|sea [--sea-layers LIST] [--sea-k N]]
//                     [--kl-divergence [--sea-layers LIST] [--sea-k N] | --kl-divergence --kl-base-model BASE]
//
// Protocol (also printed by --help):
//   1. text: FILE's bytes as they are, or WikiText-2's test split rebuilt as Hugging Face `datasets`
//      rows from DIR/wiki.test.raw (each line with its "\n" is a row, a whitespace-only row becomes
//      "") and joined with "\n\n" -- the text GPTQ tokenizes;
//   2. tokens: the whole text, ONE BOS at the very start (where the model's tokenizer adds one: OPT's does),
//      special-token strings not parsed;
//   3. windows: non-overlapping, N = -c tokens each (default: the model's positions, 2048 for OPT),
//      nsamples = n_tokens / N (the tail is dropped), no BOS per window, no KV cache carried over;
//   4. per window: the NLL of tokens 1..N-1 given their prefix (seaopt_decode_nll: the log-softmax
//      inside the engine, fp32 on the GPU, double on the CPU; sums in double);
//      nll_i = mean over the N-1 predictions x N (GPTQ's `loss * seqlen`);
//   5. ppl = exp(sum_i nll_i / (nsamples * N)); +/- = ppl x the standard error of the mean per-token
//      NLL (llama.cpp's estimate).
//
// --kl-divergence (llama-perplexity's name; no base-logits file, both run in this process): how far
// SEA moves the model. Two contexts on the same model, one dense and one SEA (--sea-layers, --sea-k),
// run every window; per scored position the logits of both give, in double (tools/common/kl.h),
// KL(dense||SEA) of the next-token distributions, whether the greedy tokens agree, and each side's NLL
// of the target. stdout: a running row per window, then PPL (dense), PPL (SEA), their ratio, the mean
// KL with its standard error, KL percentiles and the top-1 agreement (no "Final estimate" line).
// --kl-base-model BASE: the same comparison between two model files instead (BASE as p, -m as q; both with the
// --attention options): how far quantizing (seaopt-quantize) moves the model.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "seaopt.h"
#include "tools/common/api.h"
#include "tools/common/cli.h"
#include "tools/common/files.h"
#include "tools/common/kl.h"
#include "tools/common/log.h"
#include "tools/common/timing.h"

namespace {

const char *const kProgram = "seaopt-perplexity";
// Every position wants logits here: the GPU head computes 512 rows per GEMM instead of the default
// 128 (H100, OPT-1.3B, WikiText-2: 1.86 -> 1.77 s; 1024 or 2048 rows gain no more), for 77 MiB more
// activation memory.
constexpr uint32_t kHeadBatch = 512;

const char *const kProtocol =
    "Protocol (GPTQ / SparseGPT, IST-DASLab/gptq opt_eval; comparable to the published OPT WikiText-2 numbers):\n"
    "  text     -f FILE: its bytes as they are (UTF-8). --wikitext2-test DIR: the Hugging Face rows of\n"
    "           wikitext-2-raw-v1 'test' rebuilt from DIR/wiki.test.raw (each line with its \"\\n\" is a row,\n"
    "           a whitespace-only line becomes \"\") and joined with \"\\n\\n\".\n"
    "  tokens   the whole text at once, ONE BOS (</s>) at the very start (where the model's tokenizer adds\n"
    "           one, as OPT's does); special-token strings such as \"</s>\" in the text are plain text.\n"
    "  windows  non-overlapping windows of N = -c tokens (default: the model's positions, 2048 for OPT);\n"
    "           nsamples = n_tokens / N, the tail is dropped; no BOS per window; the KV cache is cleared\n"
    "           for every window. -b B (llama.cpp's batch size, tokens per decode; default N) runs B / N\n"
    "           windows in one batch as independent sequences, or, below N, each window in decodes of B\n"
    "           tokens; --batch-windows K asks for K windows per decode directly.\n"
    "  score    per window, the NLL of tokens 1..N-1 given their prefix (log-softmax inside the\n"
    "           engine: fp32 on the GPU, double on the CPU; sums in double);\n"
    "           nll_i = mean over the N-1 predictions x N (GPTQ's loss * seqlen);\n"
    "           PPL = exp(sum_i nll_i / (nsamples x N)).\n"
    "  +/-      PPL x the standard error of the mean per-token NLL (as llama-perplexity).\n"
    "Output: progress on stderr; the running PPL after each window ([1]x,[2]y,...) and the line\n"
    "\"Final estimate: PPL = x +/- e\" on stdout. Before the timed pass the first window group runs once,\n"
    "untimed (a warm-up, as llama-perplexity's; --no-warmup skips it); the time printed at the end is the\n"
    "timed pass's.\n"
    "Not llama-perplexity's protocol, which --score-second-half selects instead: the same windows, but the\n"
    "first token of each replaced by BOS (where the tokenizer adds one) and only its second half scored\n"
    "(the NLL of tokens N/2+1 .. N-1, each given its window's prefix); PPL = exp(mean NLL over the scored\n"
    "tokens). The numbers differ from the GPTQ protocol's (each scored token has at least N/2 tokens of\n"
    "context) and are not comparable with published OPT WikiText-2 figures.\n"
    "\n"
    "--kl-divergence: how far SEA moves the model. Every window runs through two contexts of the same\n"
    "model, dense attention and SEA (--sea-layers, --sea-k; --attention may be left out or be sea; the\n"
    "model needs a SEA estimator), with the logits of positions 0..N-2 (host memory: 2 x K x N x n_vocab\n"
    "floats). Per position, in double: p = softmax(dense logits), q = softmax(SEA logits),\n"
    "KL(dense||SEA) = sum_v p(v) (log p(v) - log q(v)) in nats; top-1 = the argmax of each row (the lowest\n"
    "id among ties, as greedy sampling); each side's NLL of the next token, for its PPL as above.\n"
    "Output: after each window the running values (window, PPL(dense), PPL(SEA), mean KL, same top-1 %);\n"
    "then \"PPL (dense) = x +/- e\", \"PPL (SEA) = x +/- e\", \"PPL ratio SEA/dense = r +/- e\" (the error\n"
    "from the per-token NLL differences), \"Mean KL(dense||SEA) = m +/- e\" (standard error of the mean),\n"
    "\"KL percentiles: median = a, 99% = b, max = c\" and \"Same top-1 = s %  (n of m)\".\n"
    "--kl-divergence --kl-base-model BASE: the same between two models instead of two attentions: BASE (p,\n"
    "\"base\") and -m (q, \"model\"), for example the f16 file of a q8_0 model; both run the --attention\n"
    "options (default dense) and must tokenize the text alike. The lines then read PPL (base), PPL (model),\n"
    "PPL ratio model/base, Mean KL(base||model).";

struct Options {
    std::string model_path;
    std::string file;
    std::string wikitext_dir;
    int32_t n_ctx = 0;          // 0 = the model's n_ctx_train
    int32_t batch_size = 0;     // -b: tokens per seaopt_decode (llama.cpp's n_batch); 0 = the window size
    int32_t batch_windows = 0;  // --batch-windows: windows per seaopt_decode; 0 = from -b
    bool second_half = false;   // --score-second-half: llama-perplexity's protocol
    int32_t chunks = -1;        // cap on the number of windows; -1 or 0 = all
    int32_t n_threads = 0;      // 0 = all hardware threads
    std::string device = seaopt_tools::default_device();
    bool check_tensors = false;  // --check-tensors: scan the weights for NaN/Inf at load (llama.cpp's flag)
    seaopt_tools::AttentionOptions attention;
    bool kl_divergence = false;  // dense and SEA side by side (attention.attention is then "sea")
    std::string kl_base_model;   // --kl-base-model: instead, this model (p) against -m (q), same attention
    bool no_warmup = false;      // skip the untimed first run of the first window group
    bool verbose = false;
    bool print_memory_plan = false;
};

int fail(const std::string &message) { return seaopt_tools::fail(kProgram, message); }

int fail_with_last_error() { return fail(seaopt_last_error()); }

using seaopt_tools::Clock;
using seaopt_tools::seconds_since;

// ---- WikiText-2 as Hugging Face `datasets` rows --------------------------------------------------

// Python's str.isspace() for one code point (what `row.strip()` removes).
bool python_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// True when the UTF-8 bytes are only whitespace (Python's `not row.strip()`). Invalid UTF-8 counts as
// text: it is kept, and the tokenizer reports it.
bool whitespace_only(const std::string &s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char b = (unsigned char)s[i];
        uint32_t cp;
        size_t len;
        if (b < 0x80) {
            cp = b, len = 1;
        } else if ((b & 0xE0) == 0xC0) {
            cp = b & 0x1F, len = 2;
        } else if ((b & 0xF0) == 0xE0) {
            cp = b & 0x0F, len = 3;
        } else if ((b & 0xF8) == 0xF0) {
            cp = b & 0x07, len = 4;
        } else {
            return false;
        }
        if (i + len > s.size()) return false;
        for (size_t k = 1; k < len; ++k) {
            const unsigned char c = (unsigned char)s[i + k];
            if ((c & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (c & 0x3F);
        }
        if (!python_isspace(cp)) return false;
        i += len;
    }
    return true;
}

// The GPTQ evaluation text from wiki.test.raw, as huggingface/datasets' legacy wikitext.py builds the
// rows (`for row in open(path, encoding="utf-8"): yield row if row.strip() else ""`, text mode with
// universal newlines) and GPTQ joins them: "\n\n".join(rows).
std::string wikitext_hf_join(const std::string &raw, size_t *n_rows) {
    std::string text;  // universal newlines: "\r\n" and "\r" read as "\n"
    text.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '\r') {
            text.push_back('\n');
            if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
        } else {
            text.push_back(raw[i]);
        }
    }
    std::string joined;
    joined.reserve(text.size() + text.size() / 16);
    size_t rows = 0, start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        end = end == std::string::npos ? text.size() : end + 1;  // the row keeps its "\n"
        const std::string row = text.substr(start, end - start);
        if (rows > 0) joined += "\n\n";
        if (!whitespace_only(row)) joined += row;
        ++rows;
        start = end;
    }
    *n_rows = rows;
    return joined;
}

// ---- scoring ---------------------------------------------------------------------------------------

std::string eta_text(double seconds) {
    const long long total = (long long)std::llround(std::max(0.0, seconds));
    const long long h = total / 3600, m = total % 3600 / 60, s = total % 60;
    std::string out;
    if (h > 0) out += std::to_string(h) + " hours ";
    return out + std::to_string(m) + " minutes " + std::to_string(s) + " seconds";
}

// --kl-divergence: the windows of the normal protocol through a dense and a SEA context of the same
// model. Both contexts keep the logits of a whole batch (the API has no per-row streaming), and rows
// are read in place through seaopt_get_logits_ith: nothing is copied.
// The batch of k windows w0 .. w0+k-1 of N tokens, window s as sequence s at positions 0..N-1, logits for positions
// 0..N-2 (the last token predicts nothing inside its window), targets = the next token.
struct WindowBatch {
    std::vector<seaopt_token> tok, tgt;
    std::vector<seaopt_pos> pos;
    std::vector<seaopt_seq_id> seq;
    std::vector<int8_t> logits;
    WindowBatch(int32_t K, int32_t N)
        : tok((size_t)K * N), tgt((size_t)K * N), pos((size_t)K * N), seq((size_t)K * N), logits((size_t)K * N) {}
    // Rows i0 .. i1-1 of windows w0 .. w0+k-1 (window s is sequence s; row (s, i) is batch row s·(i1-i0) + i-i0);
    // bos >= 0 replaces each window's token 0 (--score-second-half); logits and a target for rows first .. N-2.
    seaopt_batch fill(const std::vector<seaopt_token> &tokens, int32_t w0, int32_t k, int32_t N, int32_t i0 = 0,
                      int32_t i1 = -1, seaopt_token bos = -1, int32_t first = 0) {
        if (i1 < 0) i1 = N;
        const int32_t n = i1 - i0;
        for (int32_t s = 0; s < k; ++s) {
            const size_t w = (size_t)(w0 + s) * N;
            for (int32_t i = i0; i < i1; ++i) {
                const size_t r = (size_t)s * n + (i - i0);
                tok[r] = i == 0 && bos >= 0 ? bos : tokens[w + i];
                pos[r] = i;
                seq[r] = s;
                logits[r] = i >= first && i < N - 1;
                tgt[r] = i < N - 1 ? tokens[w + i + 1] : 0;
            }
        }
        return {k * n, tok.data(), pos.data(), seq.data(), logits.data()};
    }
};

// The warm-up: the first window group once, untimed, before the timed pass (as llama-perplexity's
// start-up run): the first decode of a context pays one-off costs (CUDA's lazy kernel loading, cuBLASLt's
// algorithm choice per GEMM shape; ~0.15 s on the GPU) that are not the protocol's.
void print_warmup(double seconds) {
    std::fprintf(stderr, "perplexity: warm-up run of the first window group: %.2f s (not counted below; --no-warmup "
                         "skips it)\n",
                 seconds);
}

// A context for K windows of N tokens, each window its own sequence, `rows` rows of each per decode (N, or fewer
// where -b is below the window: then K = 1), logits for every position.
seaopt_context_params window_context_params(const Options &opt, int32_t N, int32_t K, int32_t rows) {
    seaopt_context_params cparams = seaopt_context_default_params();
    cparams.n_ctx = (uint32_t)N;
    cparams.n_seq_max = (uint32_t)K;
    cparams.n_batch = (uint32_t)K * (uint32_t)rows;
    cparams.n_threads = opt.n_threads;
    cparams.n_head_batch = kHeadBatch;
    return cparams;
}

// p_model: the reference side (p of KL(p||q)): the model itself with dense attention, or --kl-base-model's model with
// the --attention options; q: the model with the --attention options. The labels name the two sides in the output.
int run_kl_divergence(const Options &opt, seaopt_model *p_model, seaopt_model *model,
                      const std::vector<seaopt_token> &tokens, int32_t N, int32_t n_windows, int32_t K) {
    const bool two_models = !opt.kl_base_model.empty();
    const std::string P = two_models ? "base" : "dense", Q = two_models ? "model" : "SEA";
    const int32_t n_vocab = seaopt_model_n_vocab(model);
    seaopt_context_params cparams = window_context_params(opt, N, K, N);
    cparams.attention = SEAOPT_ATTENTION_DENSE;
    if (two_models) seaopt_tools::apply_attention_options(opt.attention, cparams);
    const seaopt_tools::ContextPtr dense = seaopt_tools::new_context(p_model, cparams);
    if (!dense) return fail_with_last_error();
    seaopt_tools::apply_attention_options(opt.attention, cparams);
    const seaopt_tools::ContextPtr sea = seaopt_tools::new_context(model, cparams);
    if (!sea) return fail_with_last_error();
    if (opt.print_memory_plan) {
        std::fprintf(stderr, "perplexity: the %s context:\n", P.c_str());
        seaopt_tools::print_memory_plan(dense.get());
        std::fprintf(stderr, "perplexity: the %s context:\n", Q.c_str());
        seaopt_tools::print_memory_plan(sea.get());
    }
    const std::string sea_label = seaopt_tools::attention_label(opt.attention);
    if (two_models) {
        std::fprintf(stderr,
                     "perplexity: calculating KL(base||model) over %d windows, n_ctx=%d, batch_size=%d, n_seq=%d, "
                     "base %s vs model %s, attention=%s\n",
                     n_windows, N, K * N, K, opt.kl_base_model.c_str(), opt.model_path.c_str(), sea_label.c_str());
    } else {
        std::fprintf(stderr,
                     "perplexity: calculating KL(dense||SEA) over %d windows, n_ctx=%d, batch_size=%d, n_seq=%d, "
                     "attention=dense vs %s\n",
                     n_windows, N, K * N, K, sea_label.c_str());
    }

    const size_t n_rows_max = (size_t)K * (N - 1);
    WindowBatch wb(K, N);
    std::vector<const float *> p_rows(n_rows_max), q_rows(n_rows_max);  // dense, SEA logits per scored row
    std::vector<int32_t> targets(n_rows_max);
    std::vector<seaopt_tools::RowComparison> rows(n_rows_max);

    // Moments in double: the NLLs of each side (PPL and its error), their difference (the ratio's
    // error: the two sides are paired per token), the KL; every KL value for the percentiles.
    double sum_window_dense = 0, sum_window_sea = 0;  // sum_i nll_i (GPTQ), per side
    double s_dense = 0, s2_dense = 0, s_sea = 0, s2_sea = 0, s_diff = 0, s2_diff = 0, s_kl = 0, s2_kl = 0;
    uint64_t n_scored = 0, n_same = 0;
    std::vector<double> kl_values;
    kl_values.reserve((size_t)n_windows * (N - 1));
    if (!opt.no_warmup) {
        const Clock::time_point t_warm = Clock::now();
        seaopt_batch batch = wb.fill(tokens, 0, std::min(K, n_windows), N);
        for (seaopt_context *ctx : {dense.get(), sea.get()}) {
            seaopt_kv_clear(ctx);
            if (seaopt_decode(ctx, &batch) != SEAOPT_OK) return fail_with_last_error();
        }
        print_warmup(seconds_since(t_warm));
    }
    if (two_models) {
        std::printf("window      PPL(base)     PPL(model) mean KL(base||model)  same top-1\n");
    } else {
        std::printf("window     PPL(dense)       PPL(SEA)  mean KL(dense||SEA)  same top-1\n");
    }
    const Clock::time_point t_start = Clock::now();
    for (int32_t w0 = 0; w0 < n_windows; w0 += K) {
        const int32_t k = std::min(K, n_windows - w0);
        const Clock::time_point t_group = Clock::now();
        seaopt_batch batch = wb.fill(tokens, w0, k, N);
        for (seaopt_context *ctx : {dense.get(), sea.get()}) {
            seaopt_kv_clear(ctx);
            if (seaopt_decode(ctx, &batch) != SEAOPT_OK) return fail_with_last_error();
        }
        const size_t n_rows = (size_t)k * (N - 1);
        for (int32_t s = 0; s < k; ++s) {
            for (int32_t i = 0; i < N - 1; ++i) {
                const size_t row = (size_t)s * (N - 1) + i;
                const int32_t r = s * N + i;
                p_rows[row] = seaopt_get_logits_ith(dense.get(), r);
                q_rows[row] = seaopt_get_logits_ith(sea.get(), r);
                if (!p_rows[row] || !q_rows[row]) return fail_with_last_error();
                targets[row] = tokens[(size_t)(w0 + s) * N + i + 1];
            }
        }
        // 2 x n_rows x n_vocab exp()s: on all the threads -t allows.
        seaopt_tools::compare_logit_rows_parallel(p_rows.data(), q_rows.data(), targets.data(), n_rows, n_vocab,
                                                  opt.n_threads, rows.data());
        if (w0 == 0) {  // before the first values, as llama-perplexity
            const double per_window = seconds_since(t_group) / k;
            std::fprintf(stderr, "perplexity: %.2f seconds per window - ETA %s\n", per_window,
                         eta_text(per_window * (n_windows - k)).c_str());
        }

        for (int32_t s = 0; s < k; ++s) {
            double window_dense = 0, window_sea = 0;
            for (int32_t i = 0; i < N - 1; ++i) {
                const seaopt_tools::RowComparison &c = rows[(size_t)s * (N - 1) + i];
                if (!std::isfinite(c.nll_p) || !std::isfinite(c.nll_q) || !std::isfinite(c.kl)) {
                    const std::string side = !std::isfinite(c.nll_p) ? P : Q;
                    return fail("the model gave non-finite logits (" + side + (two_models ? "" : " attention") + ") in window " +
                                std::to_string(w0 + s + 1) + " at position " + std::to_string(i));
                }
                window_dense += c.nll_p;
                window_sea += c.nll_q;
                s_dense += c.nll_p, s2_dense += c.nll_p * c.nll_p;
                s_sea += c.nll_q, s2_sea += c.nll_q * c.nll_q;
                const double d = c.nll_q - c.nll_p;
                s_diff += d, s2_diff += d * d;
                s_kl += c.kl, s2_kl += c.kl * c.kl;
                kl_values.push_back(c.kl);
                n_same += c.same_top1;
            }
            n_scored += (uint64_t)(N - 1);
            sum_window_dense += window_dense / (N - 1) * N;  // nll_i = loss * seqlen, as the normal mode
            sum_window_sea += window_sea / (N - 1) * N;
            const int32_t done = w0 + s + 1;
            std::printf("%6d %14.4f %14.4f %20.6f %10.3f %%\n", done, std::exp(sum_window_dense / ((double)done * N)),
                        std::exp(sum_window_sea / ((double)done * N)), s_kl / (double)n_scored,
                        100.0 * (double)n_same / (double)n_scored);
        }
        std::fflush(stdout);
    }

    const double n = (double)n_scored;
    // The standard error of a mean from its moments (0 for a single value).
    auto std_error = [&](double s, double s2) {
        const double mean = s / n, var = s2 / n - mean * mean;
        return n_scored > 1 && var > 0 ? std::sqrt(var / (n - 1)) : 0.0;
    };
    const double ppl_dense = std::exp(sum_window_dense / ((double)n_windows * N));
    const double ppl_sea = std::exp(sum_window_sea / ((double)n_windows * N));
    const double ratio = ppl_sea / ppl_dense;
    std::sort(kl_values.begin(), kl_values.end());
    // The names padded to one width (19 for dense/SEA, as before there were two models).
    const std::string names[5] = {"PPL (" + P + ")", "PPL (" + Q + ")", "PPL ratio " + Q + "/" + P,
                                  "Mean KL(" + P + "||" + Q + ")", "Same top-1"};
    size_t width = 0;
    for (const std::string &name : names) width = std::max(width, name.size());
    const int w = (int)width;
    std::printf("%-*s = %.4f +/- %.5f\n", w, names[0].c_str(), ppl_dense, ppl_dense * std_error(s_dense, s2_dense));
    std::printf("%-*s = %.4f +/- %.5f\n", w, names[1].c_str(), ppl_sea, ppl_sea * std_error(s_sea, s2_sea));
    std::printf("%-*s = %.6f +/- %.6f\n", w, names[2].c_str(), ratio, ratio * std_error(s_diff, s2_diff));
    std::printf("%-*s = %.6f +/- %.6f nats\n", w, names[3].c_str(), s_kl / n, std_error(s_kl, s2_kl));
    std::printf("KL percentiles: median = %.6f, 99%% = %.6f, max = %.6f nats\n",
                seaopt_tools::quantile_sorted(kl_values, 0.5), seaopt_tools::quantile_sorted(kl_values, 0.99),
                seaopt_tools::quantile_sorted(kl_values, 1.0));
    std::printf("%-*s = %.3f %%  (%llu of %llu)\n", w, names[4].c_str(), 100.0 * (double)n_same / n,
                (unsigned long long)n_same, (unsigned long long)n_scored);
    std::fflush(stdout);
    std::fprintf(stderr,
                 "perplexity: %d windows of %d tokens, %llu predictions compared, mean NLL %s %.6f, %s %.6f, "
                 "%.2f s\n",
                 n_windows, N, (unsigned long long)n_scored, P.c_str(), s_dense / n, Q.c_str(), s_sea / n,
                 seconds_since(t_start));
    return 0;
}

int run(const Options &opt) {
    // Input text.
    std::string text, source;
    if (!opt.file.empty()) {
        source = opt.file;
        std::string error;
        if (!seaopt_tools::read_file_bytes(opt.file, text, error)) return fail(error);
    } else {
        source = opt.wikitext_dir + "/wiki.test.raw";
        std::string raw, error;
        if (!seaopt_tools::read_file_bytes(source, raw, error)) return fail(error);
        size_t n_rows = 0;
        text = wikitext_hf_join(raw, &n_rows);
        std::fprintf(
            stderr,
            "perplexity: %s: %zu rows joined with \"\\n\\n\" (Hugging Face wikitext-2-raw-v1 test): %zu bytes\n",
            source.c_str(), n_rows, text.size());
    }

    seaopt_tools::install_log(opt.verbose);
    spdlog::debug("{}", seaopt_build_info());

    // Model.
    seaopt_model_params mparams = seaopt_model_default_params();
    mparams.device = seaopt_tools::device_from_string(opt.device);
    mparams.check_tensors = opt.check_tensors;
    const Clock::time_point t_load = Clock::now();
    const seaopt_tools::ModelPtr model = seaopt_tools::load_model(opt.model_path, mparams);
    if (!model) return fail_with_last_error();
    const int32_t n_ctx_train = seaopt_model_n_ctx_train(model.get());
    const int32_t n_vocab = seaopt_model_n_vocab(model.get());
    char desc[128];
    seaopt_model_desc(model.get(), desc, sizeof desc);
    char device[320];
    seaopt_model_device_desc(model.get(), device, sizeof device);
    std::fprintf(stderr, "perplexity: model %s (%s), n_vocab = %d, n_ctx_train = %d, loaded in %.2f s on %s\n",
                 opt.model_path.c_str(), desc, n_vocab, n_ctx_train, seconds_since(t_load), device);
    // --kl-base-model: the reference model, loaded like the model; it must read the text as the same tokens.
    seaopt_tools::ModelPtr base_model;
    if (!opt.kl_base_model.empty()) {
        base_model = seaopt_tools::load_model(opt.kl_base_model, mparams);
        if (!base_model) return fail_with_last_error();
        char base_desc[128];
        seaopt_model_desc(base_model.get(), base_desc, sizeof base_desc);
        std::fprintf(stderr, "perplexity: base model %s (%s)\n", opt.kl_base_model.c_str(), base_desc);
        if (seaopt_model_n_vocab(base_model.get()) != n_vocab) {
            return fail("--kl-base-model " + opt.kl_base_model + " has " +
                        std::to_string(seaopt_model_n_vocab(base_model.get())) + " tokens in its vocabulary, the model " +
                        std::to_string(n_vocab) + ": the two must share one vocabulary");
        }
    } else if (opt.kl_divergence && !seaopt_model_has_sea(model.get())) {
        return fail("--kl-divergence compares dense attention with SEA, but the model " + opt.model_path +
                    " has no SEA estimator: convert it with seaopt-convert --sea");
    }

    const int32_t N = opt.n_ctx > 0 ? opt.n_ctx : n_ctx_train;
    if (N > n_ctx_train) {
        return fail("-c " + std::to_string(N) + " is larger than the model's " + std::to_string(n_ctx_train) +
                    " positions (n_ctx_train): a window must fit the model's context");
    }
    if (N < 2) return fail("a window of " + std::to_string(N) + " tokens predicts nothing: -c must be at least 2");
    if (opt.second_half && N < 3) {
        return fail("--score-second-half needs windows of at least 3 tokens (-c " + std::to_string(N) +
                    " leaves nothing in the second half to score)");
    }

    // Tokens: one BOS for the whole text, special-token strings as plain text.
    std::fprintf(stderr, "perplexity: tokenizing the input ..\n");
    const Clock::time_point t_tok = Clock::now();
    std::vector<seaopt_token> tokens;
    if (!seaopt_tools::tokenize(model.get(), text, true, false, tokens)) {
        const std::string what = opt.file.empty() ? "the WikiText-2 text rebuilt from " + source : source;
        return fail("cannot tokenize " + what + ": " + seaopt_last_error());
    }
    const int32_t n_tokens = (int32_t)tokens.size();
    std::fprintf(stderr, "perplexity: tokenization took %.3f ms\n", 1e3 * seconds_since(t_tok));
    if (base_model) {
        std::vector<seaopt_token> base_tokens;
        if (!seaopt_tools::tokenize(base_model.get(), text, true, false, base_tokens)) {
            return fail("cannot tokenize the text with --kl-base-model " + opt.kl_base_model + ": " + seaopt_last_error());
        }
        if (base_tokens != tokens) {
            return fail("--kl-base-model " + opt.kl_base_model + " tokenizes the text differently from the model " +
                        opt.model_path + ": their predictions cannot be compared position by position");
        }
    }

    const int32_t n_samples = n_tokens / N;
    if (n_samples < 1) {
        return fail(source + " is " + std::to_string(n_tokens) +
                    " tokens (with the BOS, if the tokenizer adds one), fewer than one window of " + std::to_string(N) +
                    " tokens: give a longer text or a smaller -c");
    }
    std::fprintf(stderr, "perplexity: %d tokens, nsamples = %d windows of %d (the last %d tokens are dropped)\n",
                 n_tokens, n_samples, N, n_tokens - n_samples * N);
    const int32_t n_windows = opt.chunks > 0 ? std::min(opt.chunks, n_samples) : n_samples;
    if (n_windows < n_samples) {
        std::fprintf(stderr, "perplexity: --chunks %d: scoring the first %d of the %d windows\n", opt.chunks, n_windows,
                     n_samples);
    }
    // Windows per decode (K) and rows of each per decode: --batch-windows K, or -b B tokens (llama.cpp's n_batch:
    // B / N windows, or a window in decodes of B rows where B < N), or one whole window.
    int32_t K = 1, rows = N;
    if (opt.batch_windows > 0) {
        K = opt.batch_windows;
    } else if (opt.batch_size > 0 && opt.batch_size < N) {
        rows = opt.batch_size;
    } else if (opt.batch_size > 0) {
        K = opt.batch_size / N;
    }
    K = std::min(K, n_windows);
    if (opt.kl_divergence) {
        if (rows < N) {
            return fail("--kl-divergence runs whole windows per decode: -b " + std::to_string(opt.batch_size) +
                        " is below the window size " + std::to_string(N) + " (give -b >= -c)");
        }
        return run_kl_divergence(opt, base_model ? base_model.get() : model.get(), model.get(), tokens, N, n_windows,
                                 K);
    }

    // Context: K sequences of N positions; one decode runs K windows (or a part of one).
    seaopt_context_params cparams = window_context_params(opt, N, K, rows);
    seaopt_tools::apply_attention_options(opt.attention, cparams);
    const seaopt_tools::ContextPtr ctx = seaopt_tools::new_context(model.get(), cparams);
    if (!ctx) return fail_with_last_error();
    if (opt.print_memory_plan) seaopt_tools::print_memory_plan(ctx.get());
    // The scored rows: 0 .. N-2 (GPTQ), or N/2 .. N-2 with a BOS as every window's first token (llama.cpp).
    const int32_t first = opt.second_half ? N / 2 : 0;
    // (llama-perplexity puts the BOS there only where the vocabulary adds one; so does this.)
    const seaopt_token bos = opt.second_half && seaopt_model_add_bos(model.get()) ? seaopt_token_bos(model.get()) : -1;
    std::fprintf(stderr,
                 "perplexity: calculating perplexity over %d windows, n_ctx=%d, batch_size=%d, n_seq=%d, "
                 "attention=%s, scoring %s\n",
                 n_windows, N, K * rows, K, seaopt_tools::attention_label(opt.attention).c_str(),
                 opt.second_half ? "the second half of each window (llama.cpp)" : "every prediction (GPTQ)");

    WindowBatch wb(K, rows);
    std::vector<float> b_nll((size_t)K * rows);  // the engine's fused loss, per batch row
    std::vector<float> nll((size_t)K * N);       // per window and position
    // Windows w0 .. w0+k-1 from an empty cache, rows decode by decode; nll[s·N + i] for the scored rows.
    auto score_group = [&](int32_t w0, int32_t k) {
        seaopt_kv_clear(ctx.get());
        for (int32_t i0 = 0; i0 < N; i0 += rows) {
            const int32_t i1 = std::min(N, i0 + rows), n = i1 - i0;
            seaopt_batch batch = wb.fill(tokens, w0, k, N, i0, i1, bos, first);
            // The engine computes -log softmax(logits_i)[token i + 1] itself (on the GPU: one float per position
            // leaves the device instead of n_vocab logits).
            if (seaopt_decode_nll(ctx.get(), &batch, wb.tgt.data(), b_nll.data()) != SEAOPT_OK) return false;
            for (int32_t s = 0; s < k; ++s) {
                for (int32_t i = std::max(i0, first); i < std::min(i1, N - 1); ++i) {
                    nll[(size_t)s * N + i] = b_nll[(size_t)s * n + (i - i0)];
                }
            }
        }
        return true;
    };

    double sum_window_nll = 0;         // sum_i nll_i (GPTQ)
    double sum_tok = 0, sum_tok2 = 0;  // per-token NLL moments, for the error (and llama.cpp's PPL)
    uint64_t n_scored = 0;
    if (!opt.no_warmup) {
        const Clock::time_point t_warm = Clock::now();
        if (!score_group(0, std::min(K, n_windows))) return fail_with_last_error();
        print_warmup(seconds_since(t_warm));
    }
    const Clock::time_point t_start = Clock::now();
    for (int32_t w0 = 0; w0 < n_windows; w0 += K) {
        const int32_t k = std::min(K, n_windows - w0);
        const Clock::time_point t_group = Clock::now();
        if (!score_group(w0, k)) return fail_with_last_error();
        if (w0 == 0) {  // before the first values, as llama-perplexity
            const double per_window = seconds_since(t_group) / k;
            std::fprintf(stderr, "perplexity: %.2f seconds per window - ETA %s\n", per_window,
                         eta_text(per_window * (n_windows - k)).c_str());
        }

        for (int32_t s = 0; s < k; ++s) {
            double window_sum = 0;
            for (int32_t i = first; i < N - 1; ++i) {
                const double x = nll[(size_t)s * N + i];  // summed in double
                if (!std::isfinite(x)) {
                    return fail("the model gave non-finite logits in window " + std::to_string(w0 + s + 1) +
                                " at position " + std::to_string(i));
                }
                window_sum += x;
                sum_tok += x;
                sum_tok2 += x * x;
            }
            n_scored += (uint64_t)(N - 1 - first);
            sum_window_nll += window_sum / (N - 1) * N;  // nll_i = loss * seqlen (GPTQ)
            const int32_t done = w0 + s + 1;
            const double running =
                opt.second_half ? std::exp(sum_tok / (double)n_scored) : std::exp(sum_window_nll / ((double)done * N));
            std::printf("[%d]%.4f,", done, running);
        }
        std::fflush(stdout);
    }
    std::printf("\n");

    const double mean = sum_tok / (double)n_scored;
    const double ppl = opt.second_half ? std::exp(mean) : std::exp(sum_window_nll / ((double)n_windows * N));
    const double var = sum_tok2 / (double)n_scored - mean * mean;
    const double err = n_scored > 1 && var > 0 ? ppl * std::sqrt(var / (double)(n_scored - 1)) : 0.0;
    std::printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, err);
    std::fflush(stdout);
    std::fprintf(stderr, "perplexity: %d windows of %d tokens, %llu predictions scored, mean NLL %.6f, %.2f s\n",
                 n_windows, N, (unsigned long long)n_scored, mean, seconds_since(t_start));
    return 0;
}

}  // namespace

static int tool_main(int argc, char **argv) {
    Options opt;
    CLI::App app{"Perplexity of a text under an OPT model (the GPTQ / SparseGPT WikiText-2 protocol).", kProgram};
    app.option_defaults()->always_capture_default();
    app.footer(kProtocol);
    app.add_option("-m,--model", opt.model_path, "model file (seaopt GGUF)")->required();
    CLI::Option *file_opt = app.add_option("-f,--file", opt.file, "text file to score (raw UTF-8 bytes)");
    CLI::Option *wiki_opt = app.add_option("--wikitext2-test", opt.wikitext_dir,
                                           "directory holding wiki.test.raw: score WikiText-2 test as GPTQ does "
                                           "(Hugging Face rows joined with \"\\n\\n\")");
    file_opt->excludes(wiki_opt);
    app.add_option("-c,--ctx-size", opt.n_ctx, "tokens per window (0 = the model's positions, 2048 for OPT)");
    CLI::Option *batch_opt = app.add_option(
        "-b,--batch-size", opt.batch_size,
        "tokens per decode call, as llama-perplexity's: B / N windows at once, each its own sequence, or below the "
        "window size N each window in decodes of B tokens (0 = N: one window per call)");
    app.add_option("--batch-windows", opt.batch_windows,
                   "windows per decode call, each in its own sequence (more memory, fewer calls; instead of -b)")
        ->excludes(batch_opt);
    app.add_flag("--score-second-half", opt.second_half,
                 "llama-perplexity's protocol instead of GPTQ's: a BOS as every window's first token, only the second "
                 "half of each window scored, PPL = exp(mean NLL of those tokens); not comparable with GPTQ figures");
    app.add_option("--chunks", opt.chunks, "score at most this many windows (-1 or 0 = all)");
    app.add_option("-t,--threads", opt.n_threads, "CPU threads (0 = all)");
    seaopt_tools::add_device_option(app, opt.device);
    seaopt_tools::add_check_tensors_option(app, opt.check_tensors);
    seaopt_tools::add_attention_options(app, opt.attention);
    app.add_flag("--kl-divergence", opt.kl_divergence,
                 "run every window with dense attention and with SEA (--sea-layers, --sea-k) in one process and "
                 "report both PPLs, the mean KL(dense||SEA) and the top-1 agreement (needs a SEA model)");
    CLI::Option *base_opt = app.add_option(
        "--kl-base-model", opt.kl_base_model,
        "with --kl-divergence: compare the model with this one (for example its f16 file for a q8_0 model) instead "
        "of dense with SEA: both run the --attention options (default dense)");
    app.add_flag("--no-warmup", opt.no_warmup,
                 "skip the untimed warm-up run of the first window group (the timed pass then includes the first "
                 "decode's one-off start-up costs)");
    app.add_flag("-v,--verbose", opt.verbose, "print the library's log to stderr");
    app.add_flag("--print-memory-plan", opt.print_memory_plan, "print the planned memory (weights, KV cache, activation arena) to stderr");
    int exit_status = 0;
    if (!seaopt_tools::parse_command_line(app, argc, argv, &exit_status)) return exit_status;

    if (!*file_opt && !*wiki_opt) return fail("give the text with -f FILE or --wikitext2-test DIR");
    if (opt.n_ctx < 0) return fail("-c/--ctx-size must be >= 0, got " + std::to_string(opt.n_ctx));
    if (opt.batch_size < 0) return fail("-b/--batch-size must be >= 0, got " + std::to_string(opt.batch_size));
    if (opt.batch_windows < 0 || (app.count("--batch-windows") > 0 && opt.batch_windows < 1)) {
        return fail("--batch-windows must be >= 1, got " + std::to_string(opt.batch_windows));
    }
    if (opt.second_half && opt.kl_divergence) {
        return fail("--score-second-half applies to the normal mode; --kl-divergence compares every prediction");
    }
    if (opt.chunks < -1) return fail("--chunks must be -1 (all) or >= 0, got " + std::to_string(opt.chunks));
    if (opt.n_threads < 0) return fail("-t/--threads must be >= 0, got " + std::to_string(opt.n_threads));
    if (*base_opt && !opt.kl_divergence) return fail("--kl-base-model goes with --kl-divergence");
    if (opt.kl_divergence && *base_opt) {
        if (opt.kl_base_model.empty()) return fail("--kl-base-model needs a model file");
    } else if (opt.kl_divergence) {
        // The dense side is implied; --attention may only confirm the other side.
        if (app.count("--attention") > 0 && opt.attention.attention != "sea") {
            return fail("--kl-divergence compares dense attention with SEA: --attention " + opt.attention.attention +
                        " contradicts it (leave --attention out, or give sea)");
        }
        opt.attention.attention = "sea";
    }
    if (const std::string e = seaopt_tools::check_attention_options(opt.attention); !e.empty()) return fail(e);
    return run(opt);
}

int main(int argc, char **argv) { return seaopt_tools::guarded_main(kProgram, argc, argv, tool_main); }
