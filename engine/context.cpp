#include "engine/context.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "engine/error.h"
#include "engine/host_memory.h"
#include "engine/log.h"
#include "engine/sampler.h"
#include "model/opt_sea.h"

namespace seaopt {

uint64_t context_cpu_kv_bytes(const Context &ctx) {
    const OptHparams &hp = ctx.model->hp;
    return 2ull * hp.n_layer * ctx.n_seq_max * ctx.n_ctx * hp.n_embd * sizeof(float);
}

std::vector<uint8_t> parse_layer_list(const char *list, uint32_t n_layer) {
    std::vector<uint8_t> on(n_layer, 0);
    if (!list || !*list) {
        std::fill(on.begin(), on.end(), 1);
        return on;
    }
    const std::string text = list;
    const std::string quoted = "sea_layers = '" + text + "'";
    const std::string help = " (layer indices and inclusive ranges, 0-based, e.g. \"2-23\" or \"0,3,5-7\")";
    // A whole number of at most 9 digits, else -1.
    auto number = [](const std::string &t) -> long {
        if (t.empty() || t.size() > 9) return -1;
        for (char c : t) {
            if (c < '0' || c > '9') return -1;
        }
        return std::stol(t);
    };
    auto trim = [](const std::string &t) {
        const size_t b = t.find_first_not_of(" \t"), e = t.find_last_not_of(" \t");
        return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
    };
    size_t start = 0;
    while (true) {
        const size_t comma = text.find(',', start);
        const size_t len = comma == std::string::npos ? std::string::npos : comma - start;
        const std::string item = trim(text.substr(start, len));
        const size_t dash = item.find('-');
        long lo = -1, hi = -1;
        if (dash == std::string::npos) {
            lo = hi = number(item);
        } else {
            lo = number(trim(item.substr(0, dash)));
            hi = number(trim(item.substr(dash + 1)));
        }
        if (lo < 0 || hi < 0) {
            throw_invalid_argument(quoted + ": '" + item + "' is not a layer index or a range" + help);
        }
        if (lo > hi) {
            throw_invalid_argument(quoted + ": the range '" + item + "' is empty (its start is after its end)");
        }
        if ((unsigned long)hi >= n_layer) {
            throw_invalid_argument(quoted + ": layer " + std::to_string(hi) + " is out of range: the model has " +
                                   std::to_string(n_layer) + " layers (0-" + std::to_string(n_layer - 1) + ")");
        }
        for (long l = lo; l <= hi; ++l) on[(size_t)l] = 1;
        if (comma == std::string::npos) return on;
        start = comma + 1;
    }
}

std::string layer_ranges(const std::vector<uint8_t> &on) {
    std::string out;
    for (size_t l = 0; l < on.size();) {
        if (!on[l]) {
            ++l;
            continue;
        }
        size_t e = l;
        while (e + 1 < on.size() && on[e + 1]) ++e;
        out += (out.empty() ? "" : ",") + std::to_string(l) + (e > l ? "-" + std::to_string(e) : "");
        l = e + 1;
    }
    return out;
}

uint32_t context_seq_index(const Context &ctx, int32_t seq_id) {
    if (seq_id < 0 || (uint32_t)seq_id >= ctx.n_seq_max) {
        throw_invalid_argument("sequence id " + std::to_string(seq_id) + " is outside [0, n_seq_max = " +
                               std::to_string(ctx.n_seq_max) + ")");
    }
    return (uint32_t)seq_id;
}

void context_empty_sequence(Context &ctx, uint32_t seq) noexcept {
    ctx.seq_len[seq] = 0;
    ctx.seq_tokens[seq].clear();
    if (!ctx.sea.states.empty()) {  // the CPU engine's SEA states (a state at length 0 is never read; reset anyway)
        for (uint32_t l = 0; l < ctx.sea.n_layer; ++l) ctx.sea.state(seq, l).n_tokens = 0;
    }
}

namespace {

// CPU threads at most: far more than any machine has, and below what libgomp's thread start-up survives (its
// per-team stack use overflows at ~100,000).
constexpr int32_t kMaxThreads = 4096;
constexpr uint32_t kMaxBatch = 1u << 20;  // tokens per call

// Starts n - 1 threads and joins them: whether the system lets this process run n CPU threads at once. libgomp,
// when it cannot create a thread of a team (a process-count limit, an address-space limit for the stacks), prints a
// message and calls exit(1) inside the first parallel region; asked here first, the context refuses instead. The
// probe's threads get the default stack size, as libgomp's do (without OMP_STACKSIZE).
void check_threads_can_start(int32_t n) {
    std::vector<std::thread> threads;
    std::mutex mutex;
    std::condition_variable go;
    bool release = false;
    std::string refused;
    try {
        threads.reserve((size_t)n);
        for (int32_t i = 1; i < n; ++i) {
            threads.emplace_back([&] {
                std::unique_lock<std::mutex> lock(mutex);
                go.wait(lock, [&] { return release; });
            });
        }
    } catch (const std::system_error &e) {
        refused = "the system refused thread " + std::to_string(threads.size() + 2) + ": " + e.what();
    } catch (const std::bad_alloc &) {
        refused = "out of memory after " + std::to_string(threads.size() + 1) + " threads";
    }
    {
        std::lock_guard<std::mutex> lock(mutex);
        release = true;
    }
    go.notify_all();
    for (std::thread &t : threads) t.join();
    if (!refused.empty()) {
        throw Error(SEAOPT_ERR_OUT_OF_MEMORY, "cannot run n_threads = " + std::to_string(n) + " CPU threads (" +
                                                  refused + "): lower n_threads (0 = one per CPU)");
    }
}

// The SEA part of the context parameters (attention = SEA): the model, the device, sea_k and sea_layers.
// Fills everything of ctx.sea but the states (allocated when a sequence starts, by the prefill).
void init_sea(Context &ctx, const OptModel &model, const seaopt_context_params &p) {
    const OptHparams &hp = model.hp;
    if (!hp.has_sea) {
        throw_unsupported("SEA attention: the model " + (model.name.empty() ? std::string() : "'" + model.name + "' ") +
                          "has no SEA estimator: convert it with seaopt-convert --sea");
    }
    if (p.sea_k < 0) {
        throw_invalid_argument("sea_k = " + std::to_string(p.sea_k) + " must be >= 0 (0 = the model's sea.k)");
    }
    // sea_cpu's rule (sea_validate_config): k >= 1 and k·K <= 2^24 (the budget of sea.md §2.7 in fp32).
    const uint64_t K = hp.sea.compressed_width, max_k = cpu::sea_max_k(K);
    if ((uint64_t)p.sea_k > max_k) {
        throw_invalid_argument("sea_k = " + std::to_string(p.sea_k) + " is out of range: at most " +
                               std::to_string(max_k) + " with this model's compressed width K = " + std::to_string(K) +
                               " (k·K <= 2^24)");
    }
    SeaCpuState &sea = ctx.sea;
    sea.cfg = sea_config_for_model(hp, (uint32_t)p.sea_k);
    sea.on = parse_layer_list(p.sea_layers, hp.n_layer);
    sea.n_layer = hp.n_layer;
    sea.n_seq = p.n_seq_max;
    sea.params.assign(hp.n_layer, cpu::SeaParams{});
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        if (sea.on[l]) sea.params[l] = sea_params_from_model(hp, model.sea[l]);
    }
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        if (sea.on[l]) cpu::sea_validate(sea.cfg, sea.params[l]);
    }
    // The CPU engine keeps the decode states here; the CUDA engine keeps them on the device (opt_cuda.h).
    if (model.device != SEAOPT_DEVICE_CUDA) sea.states.assign((size_t)p.n_seq_max * hp.n_layer, cpu::SeaDecodeState{});
    // Planned: one state per (sequence, SEA layer) (sea.md §2.12), and the parameters.
    const uint64_t n_sea = (uint64_t)std::count(sea.on.begin(), sea.on.end(), 1);
    const uint64_t H = hp.n_head, m = sea.cfg.n_features, image_row = 2 * H * (K / 4);
    const uint64_t state_floats = H * m + H * m * 2 * cpu::kSeaHeadDim + H * cpu::kSeaHeadDim + 2 * 4 * image_row;
    ctx.sea_bytes = (model.device == SEAOPT_DEVICE_CUDA ? 0 : n_sea * p.n_seq_max * state_floats * sizeof(float)) +
                    sea.params_bytes() + (uint64_t)p.n_seq_max * ctx.n_ctx * sizeof(int32_t);  // the token lists
    SEAOPT_LOG_INFO_("context: SEA attention in layers %s (%llu of %u), k %zu, K %zu, m %zu, %zu positions; "
                     "state and parameters %.1f MiB\n",
                     layer_ranges(sea.on).c_str(), (unsigned long long)n_sea, hp.n_layer, sea.cfg.k, sea.cfg.K,
                     sea.cfg.n_features, sea.cfg.n_pos_ctx, (double)ctx.sea_bytes / (1 << 20));
}

}  // namespace

void context_init(Context &ctx, const OptModel &model, const seaopt_context_params &p, bool plan_only) {
    if (model.vocab_only) throw_invalid_argument("the model was loaded with vocab_only: it has no weights to run");
    const OptHparams &hp = model.hp;
    if (p.attention != SEAOPT_ATTENTION_DENSE && p.attention != SEAOPT_ATTENTION_SEA) {
        throw_invalid_argument("unknown attention kind " + std::to_string((int)p.attention));
    }
    if (p.attention == SEAOPT_ATTENTION_DENSE && ((p.sea_layers && *p.sea_layers) || p.sea_k != 0)) {
        throw_invalid_argument(std::string(p.sea_k != 0 ? "sea_k" : "sea_layers") +
                               " is set but attention is dense (set attention = SEAOPT_ATTENTION_SEA)");
    }
    const uint32_t n_ctx = p.n_ctx == 0 ? hp.n_ctx_train : p.n_ctx;
    if (n_ctx > hp.n_ctx_train) {
        throw_invalid_argument("n_ctx = " + std::to_string(n_ctx) + " exceeds the model's " +
                               std::to_string(hp.n_ctx_train) +
                               " learned positions (OPT cannot run past its trained context)");
    }
    if (p.n_seq_max < 1 || p.n_seq_max > 1024) {
        throw_invalid_argument("n_seq_max = " + std::to_string(p.n_seq_max) + " must be in [1, 1024]");
    }
    // The default takes every sequence's whole context in one call (several prompts prefilled together), up to the
    // limit: a default must not make a context fail on a field the caller never set (n_seq_max 1,024 at n_ctx 2,048).
    const uint64_t n_batch_default = std::min<uint64_t>((uint64_t)n_ctx * p.n_seq_max, kMaxBatch);
    const uint32_t n_batch = p.n_batch == 0 ? (uint32_t)n_batch_default : p.n_batch;
    if (n_batch > kMaxBatch) {
        throw_invalid_argument("n_batch = " + std::to_string(n_batch) + " is too large (at most " +
                               std::to_string(kMaxBatch) + ")");
    }
    if (p.n_threads < 0 || p.n_threads > kMaxThreads) {
        throw_invalid_argument("n_threads = " + std::to_string(p.n_threads) + " must be in [0, " +
                               std::to_string(kMaxThreads) + "] (0 = all hardware threads)");
    }
    if (p.n_head_batch > (1u << 20)) {
        throw_invalid_argument("n_head_batch = " + std::to_string(p.n_head_batch) + " is too large");
    }

    ctx.model = &model;
    ctx.n_ctx = n_ctx;
    ctx.n_batch = n_batch;
    ctx.n_seq_max = p.n_seq_max;
    ctx.attention = p.attention;
    ctx.n_threads = p.n_threads > 0 ? p.n_threads : std::max(1, omp_get_num_procs());
    ctx.abort_callback = p.abort_callback;
    ctx.abort_callback_data = p.abort_callback_data;
    ctx.seq_len.assign(p.n_seq_max, 0);
    ctx.seq_tokens.assign(p.n_seq_max, {});

    if (p.attention == SEAOPT_ATTENTION_SEA) init_sea(ctx, model, p);

    if (model.device == SEAOPT_DEVICE_CUDA) {
        ctx.cuda = create_cuda_state(hp, *model.cuda, n_ctx, p.n_seq_max, n_batch, p.n_head_batch,
                                     ctx.sea.any() ? &ctx.sea : nullptr, plan_only);
        return;
    }
    if (plan_only) return;
    const uint64_t kv_bytes = context_cpu_kv_bytes(ctx);
    if (const uint64_t avail = available_host_memory(); avail && kv_bytes > avail) {
        throw Error(SEAOPT_ERR_OUT_OF_MEMORY, "the KV cache needs " + std::to_string(kv_bytes >> 20) + " MiB but only " +
                                                  std::to_string(avail >> 20) +
                                                  " MiB of memory is available (lower n_ctx or n_seq_max)");
    }
    if (ctx.n_threads > 1) check_threads_can_start(ctx.n_threads);
    ctx.kv.allocate(hp.n_layer, p.n_seq_max, n_ctx, hp.n_embd);
    SEAOPT_LOG_INFO_("context: n_ctx %u, n_seq_max %u, n_batch %u, %d threads, KV cache %.1f MiB (fp32, CPU)\n", n_ctx,
                     p.n_seq_max, n_batch, ctx.n_threads, (double)kv_bytes / (1 << 20));
}

namespace {

// A batch that passed validation: its tokens, the batch indices that want outputs, and the
// sequence lengths after it.
struct ValidatedBatch {
    std::vector<TokenSlot> slots;
    std::vector<int32_t> outputs;
    std::vector<int32_t> next_pos;
};

ValidatedBatch validate_batch(const Context &ctx, const seaopt_batch &b) {
    const OptModel &model = *ctx.model;
    if (b.n_tokens <= 0) throw_invalid_argument("the batch is empty (n_tokens = " + std::to_string(b.n_tokens) + ")");
    if (!b.token) throw_invalid_argument("batch.token is NULL");
    const int32_t n_vocab = (int32_t)model.hp.n_vocab;
    std::vector<int32_t> next_pos(ctx.seq_len);
    // A batch beyond n_batch is refused after the loop (so that a prompt longer than the context is reported as
    // such), and nothing is stored for it: n_tokens may be any int.
    const bool over_batch = (uint32_t)b.n_tokens > ctx.n_batch;
    std::vector<TokenSlot> slots(over_batch ? 0 : (size_t)b.n_tokens);
    std::vector<int32_t> outputs;
    for (int32_t i = 0; i < b.n_tokens; ++i) {
        TokenSlot s;
        s.token = b.token[i];
        if (s.token < 0 || s.token >= n_vocab) {
            throw_invalid_argument("token " + std::to_string(i) + " of the batch has id " + std::to_string(s.token) +
                                   ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
        }
        s.seq = b.seq_id ? b.seq_id[i] : 0;
        if (s.seq < 0 || (uint32_t)s.seq >= ctx.n_seq_max) {
            throw_invalid_argument("token " + std::to_string(i) + " has sequence id " + std::to_string(s.seq) +
                                   ", outside [0, n_seq_max = " + std::to_string(ctx.n_seq_max) + ")");
        }
        s.pos = b.pos ? b.pos[i] : next_pos[(size_t)s.seq];
        if (s.pos != next_pos[(size_t)s.seq]) {
            throw_invalid_argument("token " + std::to_string(i) + " of sequence " + std::to_string(s.seq) +
                                   " has position " + std::to_string(s.pos) + " but the sequence continues at " +
                                   std::to_string(next_pos[(size_t)s.seq]) +
                                   " (positions must be consecutive; use seaopt_kv_truncate to rewind)");
        }
        if ((uint32_t)s.pos >= ctx.n_ctx) {
            throw Error(SEAOPT_ERR_CONTEXT_FULL, "sequence " + std::to_string(s.seq) + " would reach position " +
                                                     std::to_string(s.pos) + ", beyond the context (n_ctx = " +
                                                     std::to_string(ctx.n_ctx) + ")");
        }
        next_pos[(size_t)s.seq] = s.pos + 1;
        if (over_batch) continue;
        slots[(size_t)i] = s;
        if (b.logits ? b.logits[i] != 0 : i == b.n_tokens - 1) outputs.push_back(i);
    }
    // After the position checks, so that a prompt longer than the context is reported as such.
    if (over_batch) {
        throw Error(SEAOPT_ERR_CONTEXT_FULL, "the batch has " + std::to_string(b.n_tokens) +
                                                 " tokens, more than n_batch = " + std::to_string(ctx.n_batch));
    }

    return {std::move(slots), std::move(outputs), std::move(next_pos)};
}

// -log softmax(row)[target] in double, with the max subtracted.
double row_nll(const float *row, int32_t n_vocab, int32_t target) {
    double max = row[0];
    for (int32_t j = 1; j < n_vocab; ++j) max = std::max(max, (double)row[j]);
    double sum = 0;
    for (int32_t j = 0; j < n_vocab; ++j) sum += std::exp((double)row[j] - max);
    return std::log(sum) + max - (double)row[target];
}

// Each sequence keeps its tokens (for SEA's kv_truncate replay and for saved states, engine/state.h); they grow
// by a batch's tokens once its forward has succeeded. Room is made before the forward, so that the appends
// after it cannot throw.
void reserve_tokens(Context &ctx, const ValidatedBatch &vb) {
    for (uint32_t seq = 0; seq < ctx.n_seq_max; ++seq) {
        if (vb.next_pos[seq] != ctx.seq_len[seq]) ctx.seq_tokens[seq].reserve((size_t)vb.next_pos[seq]);
    }
}
void append_tokens(Context &ctx, const ValidatedBatch &vb) noexcept {
    for (const TokenSlot &s : vb.slots) ctx.seq_tokens[(size_t)s.seq].push_back(s.token);  // reserved
}

// The abort callback as the CPU forward asks it (empty: none), and the check before a batch (both engines).
std::function<bool()> abort_check(const Context &ctx) {
    if (!ctx.abort_callback) return {};
    return [&ctx] { return ctx.abort_callback(ctx.abort_callback_data); };
}
void check_abort(const Context &ctx) {
    if (ctx.abort_callback && ctx.abort_callback(ctx.abort_callback_data)) {
        throw Error(SEAOPT_ERR_CANCELLED, "cancelled by the context's abort callback");
    }
}

// The CPU forward of a validated batch. With SEA, the decode states of the batch's sequences are backed
// up first and restored if the forward fails, so that a failed batch changes nothing (seaopt_decode's
// rule).
void forward_cpu(Context &ctx, const ValidatedBatch &vb, float *logits) {
    if (!ctx.sea.any()) {
        opt_forward_cpu(*ctx.model, ctx.kv, vb.slots, vb.outputs, logits, ctx.n_threads, nullptr, nullptr,
                        abort_check(ctx));
        return;
    }
    SeaCpuState &sea = ctx.sea;
    std::vector<std::pair<size_t, cpu::SeaDecodeState>> backup;
    for (uint32_t seq = 0; seq < sea.n_seq; ++seq) {
        if (vb.next_pos[seq] == ctx.seq_len[seq]) continue;  // not in the batch
        for (uint32_t l = 0; l < sea.n_layer; ++l) {
            if (sea.on[l]) backup.emplace_back((size_t)seq * sea.n_layer + l, sea.state(seq, l));
        }
    }
    try {
        opt_forward_cpu(*ctx.model, ctx.kv, vb.slots, vb.outputs, logits, ctx.n_threads, &sea, nullptr,
                        abort_check(ctx));
    } catch (...) {
        for (auto &b : backup) sea.states[b.first] = std::move(b.second);
        throw;
    }
}

// The SEA decode states of a sequence cannot be rewound (sea.md §2.12 keeps running sums and the CNN's last
// rows): to bring sequence `seq` back to its first n_keep tokens (the context remembers them), the model re-runs
// over them from position 0, which rebuilds the states (and rewrites the KV rows 0..n_keep-1 with the same
// values). No logits. The CUDA engine takes at most n_batch tokens per forward: the first chunk runs the SEA
// prefill, later chunks continue it from the sequence's state (sea_cuda.h start_pos). On failure the sequence is
// left empty.
void replay_sea_sequence(Context &ctx, uint32_t seq, int32_t n_keep) {
    SeaCpuState &sea = ctx.sea;
    std::vector<int32_t> &tokens = ctx.seq_tokens[seq];
    if (n_keep == 0) {
        context_empty_sequence(ctx, seq);
        return;
    }
    try {
        const int32_t chunk = ctx.cuda ? (int32_t)ctx.n_batch : n_keep;
        for (int32_t p0 = 0; p0 < n_keep; p0 += chunk) {
            const int32_t n = std::min(chunk, n_keep - p0);
            std::vector<TokenSlot> slots((size_t)n);
            for (int32_t i = 0; i < n; ++i) slots[(size_t)i] = TokenSlot{tokens[(size_t)(p0 + i)], p0 + i, (int32_t)seq};
            if (ctx.cuda) {
                opt_forward_cuda(ctx.model->hp, *ctx.model->cuda, *ctx.cuda, slots, {}, nullptr);
            } else {
                opt_forward_cpu(*ctx.model, ctx.kv, slots, {}, nullptr, ctx.n_threads, &sea);
            }
        }
    } catch (...) {
        context_empty_sequence(ctx, seq);
        throw;
    }
    ctx.seq_len[seq] = n_keep;
    tokens.resize((size_t)n_keep);
}

// The CUDA forward of a validated batch. With SEA the device updates the batch's sequences' decode states in
// place; if the forward fails they are rebuilt from the sequences' tokens (replay_sea_sequence), so that a
// failed batch changes nothing (seaopt_decode's rule) -- or, if that fails too (a broken device), the
// sequences are emptied and the error says so.
template <typename Run>
void forward_cuda(Context &ctx, const ValidatedBatch &vb, Run run) {
    if (!ctx.sea.any()) {
        run();
        return;
    }
    auto rebuild = [&] {  // the sequences whose states could not be rebuilt, "" if none
        std::string lost;
        for (uint32_t seq = 0; seq < ctx.n_seq_max; ++seq) {
            if (vb.next_pos[seq] == ctx.seq_len[seq] || ctx.seq_len[seq] == 0) continue;
            try {
                replay_sea_sequence(ctx, seq, ctx.seq_len[seq]);
            } catch (...) {
                lost += (lost.empty() ? "" : ", ") + std::to_string(seq);
            }
        }
        return lost;
    };
    try {
        run();
    } catch (const Error &e) {
        const std::string lost = rebuild();
        if (lost.empty()) throw;
        throw Error(e.code(), std::string(e.what()) + " (the SEA states of sequence(s) " + lost +
                                  " could not be rebuilt: they were emptied)");
    } catch (...) {
        rebuild();
        throw;
    }
}

// What a successful batch leaves for seaopt_get_logits_ith and the greedy sampler: the logits of `outputs` (batch
// indices; rows of ctx.next_logits, or of `view` where the forward left them in place) and the device's greedy pick.
void keep_outputs(Context &ctx, int32_t n_tokens, const std::vector<int32_t> &outputs, const float *view,
                  int32_t greedy) {
    if (!view) std::swap(ctx.logits, ctx.next_logits);
    ctx.logits_view = view;
    ctx.output_row.assign((size_t)n_tokens, -1);
    for (size_t r = 0; r < outputs.size(); ++r) ctx.output_row[(size_t)outputs[r]] = (int32_t)r;
    ctx.last_output_index = outputs.empty() ? -1 : outputs.back();
    ctx.last_batch_nll = false;
    ctx.greedy_token = greedy;  // asked for (and so possibly made) only with one output row
}

}  // namespace

void context_decode(Context &ctx, const seaopt_batch &b) {
    const OptModel &model = *ctx.model;
    const int32_t n_vocab = (int32_t)model.hp.n_vocab;
    ValidatedBatch vb = validate_batch(ctx, b);
    const std::vector<int32_t> &outputs = vb.outputs;
    check_abort(ctx);

    // Validated: from here the cache is written only past each sequence's current length, and the
    // lengths move only once the forward has succeeded.
    // The output goes to a second buffer kept across calls (no allocation per decode step), which
    // becomes ctx.logits only once the forward has succeeded.
    std::vector<float> &logits = ctx.next_logits;
    logits.resize(outputs.size() * (size_t)n_vocab);
    int32_t greedy = -1;
    const float *view = nullptr;
    reserve_tokens(ctx, vb);
    if (ctx.cuda) {
        forward_cuda(ctx, vb, [&] {
            opt_forward_cuda(model.hp, *model.cuda, *ctx.cuda, vb.slots, outputs, logits.data(),
                             outputs.size() == 1 ? &greedy : nullptr, &view);
        });
    } else {
        forward_cpu(ctx, vb, logits.data());
    }

    append_tokens(ctx, vb);
    ctx.seq_len = std::move(vb.next_pos);
    keep_outputs(ctx, b.n_tokens, outputs, view, greedy);
}

int32_t context_generate_greedy(Context &ctx, int32_t seq, int32_t token, int32_t n_predict, int32_t stop_token,
                                int32_t *out) {
    const int32_t n_vocab = (int32_t)ctx.model->hp.n_vocab;
    if (n_predict < 0) throw_invalid_argument("n_predict must be >= 0, got " + std::to_string(n_predict));
    if (n_predict > 0 && !out) throw_invalid_argument("out is NULL");
    context_seq_index(ctx, seq);
    if (token < 0 || token >= n_vocab) {
        throw_invalid_argument("token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                               std::to_string(n_vocab) + ")");
    }
    if (stop_token < -1 || stop_token >= n_vocab) {
        throw_invalid_argument("stop token " + std::to_string(stop_token) + " is neither -1 nor in the vocabulary [0, " +
                               std::to_string(n_vocab) + ")");
    }
    const int32_t pos0 = ctx.seq_len[(size_t)seq];
    if ((int64_t)pos0 + n_predict > (int64_t)ctx.n_ctx) {
        throw Error(SEAOPT_ERR_CONTEXT_FULL, "greedy generation of " + std::to_string(n_predict) +
                                                 " tokens from position " + std::to_string(pos0) + " of sequence " +
                                                 std::to_string(seq) + " would go beyond the context (n_ctx = " +
                                                 std::to_string(ctx.n_ctx) + ")");
    }
    if (n_predict == 0) return 0;

    // The GPU's persistent kernel runs the steps back to back (no host round trip per token), up to the stop token;
    // the sequence's cache positions past pos0 count only once the whole chain has succeeded.
    if (ctx.cuda && n_predict >= 2 && opt_cuda_greedy_chain(*ctx.cuda)) {
        check_abort(ctx);
        std::vector<int32_t> &tokens = ctx.seq_tokens[(size_t)seq];
        tokens.reserve((size_t)pos0 + (size_t)n_predict);
        std::vector<int32_t> picks((size_t)n_predict);
        const float *view = nullptr;
        const int32_t n_run = opt_generate_greedy_cuda(ctx.model->hp, *ctx.model->cuda, *ctx.cuda, seq, pos0, token,
                                                       n_predict, stop_token, picks.data(), &view);
        picks.resize((size_t)n_run);
        for (int32_t i = 0; i < n_run; ++i) {
            if (picks[(size_t)i] < 0) {
                // As a greedy sampler would refuse these logits; the sequence stays as it was.
                throw_invalid_argument("greedy generation: the logits at position " + std::to_string(pos0 + i) +
                                       " of sequence " + std::to_string(seq) +
                                       " hold a NaN or are all -inf: no token can be picked");
            }
        }
        // The tokens decoded: `token`, then every pick but the last.
        if (n_run > 0) {
            tokens.push_back(token);
            tokens.insert(tokens.end(), picks.begin(), picks.end() - 1);
        }
        ctx.seq_len[(size_t)seq] = pos0 + n_run;
        keep_outputs(ctx, 1, {0}, view, picks.back());  // as a seaopt_decode of the last step's token
        std::copy(picks.begin(), picks.end(), out);
        return n_run;
    }

    // Elsewhere: one seaopt_decode per token and the pick of a temperature-0 sampler (the GPU's pick where it
    // made one). On an error the sequence is cut back to where it was (for SEA by recomputation, as
    // seaopt_kv_truncate does).
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    sp.temp = 0.0f;
    sp.seed = 0;  // (unused by greedy picks; a fixed seed spares drawing a random one)
    Sampler greedy(sp);
    std::vector<int32_t> picks;
    picks.reserve((size_t)n_predict);
    try {
        while ((int32_t)picks.size() < n_predict) {
            const int8_t want = 1;
            const seaopt_batch b{1, &token, nullptr, &seq, &want};
            context_decode(ctx, b);
            const float *logits = context_logits_ith(ctx, 0);
            token = greedy.sample(logits, n_vocab, context_greedy_token_ith(ctx, 0));
            picks.push_back(token);
            if (token == stop_token) break;
        }
    } catch (...) {
        if (ctx.seq_len[(size_t)seq] != pos0) context_kv_truncate(ctx, seq, pos0);
        throw;
    }
    std::copy(picks.begin(), picks.end(), out);
    return (int32_t)picks.size();
}

void context_decode_nll(Context &ctx, const seaopt_batch &b, const seaopt_token *targets, float *out_nll) {
    const OptModel &model = *ctx.model;
    const int32_t n_vocab = (int32_t)model.hp.n_vocab;
    if (!targets) throw_invalid_argument("targets is NULL");
    if (!out_nll) throw_invalid_argument("out_nll is NULL");
    ValidatedBatch vb = validate_batch(ctx, b);
    const std::vector<int32_t> &outputs = vb.outputs;
    std::vector<int32_t> output_targets(outputs.size());
    for (size_t r = 0; r < outputs.size(); ++r) {
        const int32_t i = outputs[r], t = targets[i];
        if (t < 0 || t >= n_vocab) {
            throw_invalid_argument("target " + std::to_string(i) + " has id " + std::to_string(t) +
                                   ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
        }
        output_targets[r] = t;
    }

    check_abort(ctx);
    // Validated (as in context_decode): the cache and out_nll change only once the forward succeeded.
    std::vector<float> nll(outputs.size());
    reserve_tokens(ctx, vb);
    if (ctx.cuda) {
        forward_cuda(ctx, vb, [&] {
            opt_forward_cuda(model.hp, *model.cuda, *ctx.cuda, vb.slots, outputs, output_targets, nll.data());
        });
    } else {
        std::vector<float> logits(outputs.size() * (size_t)n_vocab);
        forward_cpu(ctx, vb, logits.data());
        const int64_t n = (int64_t)outputs.size();
#pragma omp parallel for num_threads(ctx.n_threads) schedule(static)
        for (int64_t r = 0; r < n; ++r) {
            nll[(size_t)r] = (float)row_nll(logits.data() + (size_t)r * n_vocab, n_vocab, output_targets[(size_t)r]);
        }
    }

    append_tokens(ctx, vb);
    ctx.seq_len = std::move(vb.next_pos);
    ctx.logits.clear();
    ctx.logits_view = nullptr;
    ctx.output_row.assign((size_t)b.n_tokens, -1);
    ctx.last_output_index = -1;
    ctx.last_batch_nll = true;
    ctx.greedy_token = -1;
    for (size_t r = 0; r < outputs.size(); ++r) out_nll[outputs[r]] = nll[r];
}

const float *context_logits_ith(const Context &ctx, int32_t i) {
    if (ctx.last_batch_nll) {
        throw_invalid_argument("the last batch has no logits: it was run with seaopt_decode_nll, which returns "
                               "only the requested tokens' NLLs");
    }
    if (i == -1) {
        if (ctx.last_output_index < 0) {
            throw_invalid_argument(ctx.output_row.empty()
                                       ? std::string("no logits yet: no batch has been decoded in this context")
                                       : "no logits: no token of the last batch (" +
                                             std::to_string(ctx.output_row.size()) + " tokens) asked for them");
        }
        i = ctx.last_output_index;
    }
    if (i < 0 || (size_t)i >= ctx.output_row.size()) {
        throw_invalid_argument("no logits for batch index " + std::to_string(i) + " (the last batch had " +
                               std::to_string(ctx.output_row.size()) + " tokens)");
    }
    const int32_t row = ctx.output_row[(size_t)i];
    if (row < 0) throw_invalid_argument("token " + std::to_string(i) + " of the last batch did not ask for logits");
    return (ctx.logits_view ? ctx.logits_view : ctx.logits.data()) + (size_t)row * ctx.model->hp.n_vocab;
}

int32_t context_greedy_token_ith(const Context &ctx, int32_t i) noexcept {
    if (ctx.last_batch_nll || ctx.greedy_token < 0) return -1;
    if (i == -1) i = ctx.last_output_index;
    if (i < 0 || (size_t)i >= ctx.output_row.size() || ctx.output_row[(size_t)i] != 0) return -1;
    return ctx.greedy_token;  // set only where the batch had one output row: row 0 is it
}

void context_kv_clear(Context &ctx) noexcept {
    std::fill(ctx.seq_len.begin(), ctx.seq_len.end(), 0);
    for (cpu::SeaDecodeState &st : ctx.sea.states) st.n_tokens = 0;  // the next prefill resets it
    for (std::vector<int32_t> &t : ctx.seq_tokens) t.clear();
}

namespace {

void truncate_sequence(Context &ctx, uint32_t seq, int32_t n_keep) {
    int32_t &len = ctx.seq_len[seq];
    if (n_keep >= len) return;
    if (!ctx.sea.any()) {
        len = n_keep;
        ctx.seq_tokens[seq].resize((size_t)n_keep);
        return;
    }
    // SEA: an empty sequence restarts with a prefill; a shorter one is recomputed from its tokens.
    replay_sea_sequence(ctx, seq, n_keep);
}

}  // namespace

void context_kv_seq_cp(Context &ctx, int32_t src, int32_t dst) {
    const uint32_t s = context_seq_index(ctx, src), d = context_seq_index(ctx, dst), n = (uint32_t)ctx.seq_len[s];
    if (s == d) return;
    std::vector<int32_t> &tokens = ctx.seq_tokens[d];
    tokens.reserve(n);  // the only allocation: before anything changes
    try {
        if (ctx.cuda) {
            cuda_seq_copy(ctx.model->hp, *ctx.cuda, s, d, n);
        } else {
            const size_t row = ctx.kv.n_embd;
            for (uint32_t l = 0; l < ctx.kv.n_layer; ++l) {
                std::copy_n(ctx.kv.k_rows(l, s), (size_t)n * row, ctx.kv.k_rows(l, d));
                std::copy_n(ctx.kv.v_rows(l, s), (size_t)n * row, ctx.kv.v_rows(l, d));
            }
            for (uint32_t l = 0; l < ctx.sea.n_layer && !ctx.sea.states.empty(); ++l) {
                if (ctx.sea.on[l]) ctx.sea.state(d, l) = ctx.sea.state(s, l);  // may allocate
            }
        }
    } catch (...) {
        context_empty_sequence(ctx, d);  // half copied
        throw;
    }
    tokens.assign(ctx.seq_tokens[s].begin(), ctx.seq_tokens[s].end());
    ctx.seq_len[d] = (int32_t)n;
}

void context_kv_truncate(Context &ctx, int32_t seq_id, int32_t n_keep) {
    if (n_keep < 0) throw_invalid_argument("n_keep must be >= 0");
    if (seq_id == -1) {
        for (uint32_t seq = 0; seq < ctx.n_seq_max; ++seq) truncate_sequence(ctx, seq, n_keep);
        return;
    }
    truncate_sequence(ctx, context_seq_index(ctx, seq_id), n_keep);
}

}  // namespace seaopt
