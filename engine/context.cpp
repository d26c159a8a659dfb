#include "engine/context.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

#include "engine/error.h"
#include "engine/log.h"

namespace seaopt {

void context_init(Context &ctx, const OptModel &model, const seaopt_context_params &p) {
    if (model.vocab_only) throw_invalid_argument("the model was loaded with vocab_only: it has no weights to run");
    const OptHparams &hp = model.hp;
    if (p.attention == SEAOPT_ATTENTION_SEA) {
        throw_unsupported("SEA attention is not available in this version of seaopt (use dense attention)");
    }
    if (p.attention != SEAOPT_ATTENTION_DENSE) throw_invalid_argument("unknown attention kind " + std::to_string((int)p.attention));
    const uint32_t n_ctx = p.n_ctx == 0 ? hp.n_ctx_train : p.n_ctx;
    if (n_ctx > hp.n_ctx_train) {
        throw_invalid_argument("n_ctx = " + std::to_string(n_ctx) + " exceeds the model's " +
                               std::to_string(hp.n_ctx_train) +
                               " learned positions (OPT cannot run past its trained context)");
    }
    if (p.n_seq_max < 1 || p.n_seq_max > 1024) {
        throw_invalid_argument("n_seq_max = " + std::to_string(p.n_seq_max) + " must be in [1, 1024]");
    }
    const uint32_t n_batch = p.n_batch == 0 ? n_ctx * p.n_seq_max : p.n_batch;
    if (n_batch > (1u << 20)) throw_invalid_argument("n_batch = " + std::to_string(n_batch) + " is too large");
    if (p.n_threads < 0) throw_invalid_argument("n_threads must be >= 0");

    ctx.model = &model;
    ctx.n_ctx = n_ctx;
    ctx.n_batch = n_batch;
    ctx.n_seq_max = p.n_seq_max;
    ctx.attention = p.attention;
    ctx.n_threads = p.n_threads > 0 ? p.n_threads : std::max(1, omp_get_num_procs());
    ctx.seq_len.assign(p.n_seq_max, 0);

    if (model.device == SEAOPT_DEVICE_CUDA) {
        ctx.cuda = create_cuda_state(hp, *model.cuda, n_ctx, p.n_seq_max, n_batch);
        return;
    }
    const uint64_t kv_bytes = 2ull * hp.n_layer * p.n_seq_max * n_ctx * hp.n_embd * sizeof(float);
    std::ifstream meminfo("/proc/meminfo");
    std::string key, unit;
    uint64_t kb = 0;
    while (meminfo >> key >> kb >> unit) {
        if (key == "MemAvailable:" && kv_bytes > kb * 1024) {
            throw Error(SEAOPT_ERR_OUT_OF_MEMORY, "the KV cache needs " + std::to_string(kv_bytes >> 20) +
                                                      " MiB but only " + std::to_string(kb >> 10) +
                                                      " MiB of memory is available (lower n_ctx or n_seq_max)");
        }
    }
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
    std::vector<TokenSlot> slots((size_t)b.n_tokens);
    std::vector<int32_t> outputs;
    for (int32_t i = 0; i < b.n_tokens; ++i) {
        TokenSlot &s = slots[(size_t)i];
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
        const bool want = b.logits ? b.logits[i] != 0 : i == b.n_tokens - 1;
        if (want) outputs.push_back(i);
    }
    // After the position checks, so that a prompt longer than the context is reported as such.
    if ((uint32_t)b.n_tokens > ctx.n_batch) {
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

}  // namespace

void context_decode(Context &ctx, const seaopt_batch &b) {
    const OptModel &model = *ctx.model;
    const int32_t n_vocab = (int32_t)model.hp.n_vocab;
    ValidatedBatch vb = validate_batch(ctx, b);
    const std::vector<int32_t> &outputs = vb.outputs;

    // Validated: from here the cache is written only past each sequence's current length, and the
    // lengths move only once the forward has succeeded.
    // The output goes to a second buffer kept across calls (no allocation per decode step), which
    // becomes ctx.logits only once the forward has succeeded.
    std::vector<float> &logits = ctx.next_logits;
    logits.resize(outputs.size() * (size_t)n_vocab);
    if (ctx.cuda) {
        opt_forward_cuda(model.hp, *model.cuda, *ctx.cuda, vb.slots, outputs, logits.data());
    } else {
        opt_forward_cpu(model, ctx.kv, vb.slots, outputs, logits.data(), ctx.n_threads);
    }

    ctx.seq_len = std::move(vb.next_pos);
    std::swap(ctx.logits, ctx.next_logits);
    ctx.output_row.assign((size_t)b.n_tokens, -1);
    for (size_t r = 0; r < outputs.size(); ++r) ctx.output_row[(size_t)outputs[r]] = (int32_t)r;
    ctx.last_output_index = outputs.empty() ? -1 : outputs.back();
    ctx.last_batch_nll = false;
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

    // Validated (as in context_decode): the cache and out_nll change only once the forward succeeded.
    std::vector<float> nll(outputs.size());
    if (ctx.cuda) {
        opt_forward_cuda(model.hp, *model.cuda, *ctx.cuda, vb.slots, outputs, output_targets, nll.data());
    } else {
        std::vector<float> logits(outputs.size() * (size_t)n_vocab);
        opt_forward_cpu(model, ctx.kv, vb.slots, outputs, logits.data(), ctx.n_threads);
        const int64_t n = (int64_t)outputs.size();
#pragma omp parallel for num_threads(ctx.n_threads) schedule(static)
        for (int64_t r = 0; r < n; ++r) {
            nll[(size_t)r] = (float)row_nll(logits.data() + (size_t)r * n_vocab, n_vocab, output_targets[(size_t)r]);
        }
    }

    ctx.seq_len = std::move(vb.next_pos);
    ctx.logits.clear();
    ctx.output_row.assign((size_t)b.n_tokens, -1);
    ctx.last_output_index = -1;
    ctx.last_batch_nll = true;
    for (size_t r = 0; r < outputs.size(); ++r) out_nll[outputs[r]] = nll[r];
}

const float *context_logits_ith(const Context &ctx, int32_t i) {
    if (ctx.last_batch_nll) {
        throw_invalid_argument("the last batch has no logits: it was run with seaopt_decode_nll, which returns "
                               "only the requested tokens' NLLs");
    }
    if (i == -1) i = ctx.last_output_index;
    if (i < 0 || (size_t)i >= ctx.output_row.size()) {
        throw_invalid_argument("no logits for batch index " + std::to_string(i) + " (the last batch had " +
                               std::to_string(ctx.output_row.size()) + " tokens)");
    }
    const int32_t row = ctx.output_row[(size_t)i];
    if (row < 0) throw_invalid_argument("token " + std::to_string(i) + " of the last batch did not ask for logits");
    return ctx.logits.data() + (size_t)row * ctx.model->hp.n_vocab;
}

void context_kv_truncate(Context &ctx, int32_t seq_id, int32_t n_keep) {
    if (n_keep < 0) throw_invalid_argument("n_keep must be >= 0");
    if (seq_id == -1) {
        for (int32_t &len : ctx.seq_len) len = std::min(len, n_keep);
        return;
    }
    if (seq_id < 0 || (uint32_t)seq_id >= ctx.n_seq_max) {
        throw_invalid_argument("sequence id " + std::to_string(seq_id) + " is outside [0, " +
                               std::to_string(ctx.n_seq_max) + ")");
    }
    ctx.seq_len[(size_t)seq_id] = std::min(ctx.seq_len[(size_t)seq_id], n_keep);
}

}  // namespace seaopt
