// The C API boundary: every call catches every exception and turns it into a status code plus a
// thread-local message. Nothing here exits or aborts.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <string>

#include "engine/api_internal.h"
#include "engine/context.h"
#include "engine/cuda/device.h"
#include "engine/error.h"
#include "engine/host_memory.h"
#include "engine/log.h"
#include "engine/state.h"
#include "model/opt_attention_bench.h"
#include "model/opt_attention_maps.h"
#include "model/opt_cuda.h"
#include "model/opt_model.h"
#include "seaopt.h"

struct seaopt_model {
    std::unique_ptr<seaopt::OptModel> impl;
};

struct seaopt_context {
    seaopt::Context impl;
};

namespace seaopt {
namespace {

thread_local std::string t_last_error;

// Copies bytes to a caller's buffer with the *_BUFFER_TOO_SMALL convention.
seaopt_status copy_out(const std::string &bytes, char *buf, size_t buf_size, size_t *n_out) {
    if (n_out) *n_out = bytes.size();
    if (bytes.size() > buf_size) {
        set_last_error(SEAOPT_ERR_BUFFER_TOO_SMALL, "the output needs " + std::to_string(bytes.size()) +
                                                        " bytes but the buffer has " + std::to_string(buf_size));
        return SEAOPT_ERR_BUFFER_TOO_SMALL;
    }
    if (!bytes.empty()) std::memcpy(buf, bytes.data(), bytes.size());
    return SEAOPT_OK;
}

void require(const void *p, const char *what) {
    if (!p) throw_invalid_argument(std::string(what) + " is NULL");
}

}  // namespace

void set_last_error(seaopt_status code, const std::string &message) {
    (void)code;
    t_last_error = message;
}

void clear_last_error() { t_last_error.clear(); }

seaopt_status status_from_current_exception() {
    try {
        throw;
    } catch (const Error &e) {
        set_last_error(e.code(), e.what());
        return e.code();
    } catch (const std::bad_alloc &) {
        set_last_error(SEAOPT_ERR_OUT_OF_MEMORY, "out of host memory");
        return SEAOPT_ERR_OUT_OF_MEMORY;
    } catch (const std::length_error &e) {
        set_last_error(SEAOPT_ERR_OUT_OF_MEMORY, std::string("allocation too large: ") + e.what());
        return SEAOPT_ERR_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        set_last_error(SEAOPT_ERR_INTERNAL, std::string("internal error: ") + e.what());
        return SEAOPT_ERR_INTERNAL;
    } catch (...) {
        set_last_error(SEAOPT_ERR_INTERNAL, "internal error: unknown exception");
        return SEAOPT_ERR_INTERNAL;
    }
}

int32_t context_device_greedy(const seaopt_context *ctx, int32_t i) {
    return ctx ? context_greedy_token_ith(ctx->impl, i) : -1;
}

}  // namespace seaopt

using namespace seaopt;

extern "C" {

const char *seaopt_last_error(void) { return t_last_error.c_str(); }

const char *seaopt_status_name(seaopt_status s) {
    switch (s) {
    case SEAOPT_OK: return "SEAOPT_OK";
    case SEAOPT_ERR_INVALID_ARGUMENT: return "SEAOPT_ERR_INVALID_ARGUMENT";
    case SEAOPT_ERR_IO: return "SEAOPT_ERR_IO";
    case SEAOPT_ERR_MODEL_FORMAT: return "SEAOPT_ERR_MODEL_FORMAT";
    case SEAOPT_ERR_UNSUPPORTED: return "SEAOPT_ERR_UNSUPPORTED";
    case SEAOPT_ERR_OUT_OF_MEMORY: return "SEAOPT_ERR_OUT_OF_MEMORY";
    case SEAOPT_ERR_CONTEXT_FULL: return "SEAOPT_ERR_CONTEXT_FULL";
    case SEAOPT_ERR_INVALID_UTF8: return "SEAOPT_ERR_INVALID_UTF8";
    case SEAOPT_ERR_CANCELLED: return "SEAOPT_ERR_CANCELLED";
    case SEAOPT_ERR_BUFFER_TOO_SMALL: return "SEAOPT_ERR_BUFFER_TOO_SMALL";
    case SEAOPT_ERR_DEVICE: return "SEAOPT_ERR_DEVICE";
    case SEAOPT_ERR_INTERNAL: return "SEAOPT_ERR_INTERNAL";
    }
    return "SEAOPT_ERR_UNKNOWN";
}

const char *seaopt_version(void) { return "0.1.0"; }

bool seaopt_supports_cuda(void) { return seaopt::cuda_engine_built(); }

const char *seaopt_build_info(void) {
    static const std::string info = std::string("seaopt 0.1.0, ") + cuda_build_description();
    return info.c_str();
}

/* ---- model ---------------------------------------------------------------------------------- */

seaopt_model_params seaopt_model_default_params(void) {
    seaopt_model_params p;
    std::memset(&p, 0, sizeof p);
    p.device = SEAOPT_DEVICE_AUTO;
    p.gpu_index = 0;
    p.vocab_only = false;
    p.check_tensors = false;
    return p;
}

seaopt_status seaopt_model_load(const char *path, const seaopt_model_params *params, seaopt_model **out_model) {
    if (out_model) *out_model = nullptr;
    SEAOPT_API_TRY
    require(path, "path");
    require(out_model, "out_model");
    const seaopt_model_params p = params ? *params : seaopt_model_default_params();
    if (p.device != SEAOPT_DEVICE_AUTO && p.device != SEAOPT_DEVICE_CPU && p.device != SEAOPT_DEVICE_CUDA) {
        throw_invalid_argument("unknown device " + std::to_string((int)p.device));
    }
    auto model = std::make_unique<seaopt_model>();
    model->impl = load_opt_model(path, p);
    *out_model = model.release();
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

void seaopt_model_free(seaopt_model *model) { delete model; }

int32_t seaopt_model_n_vocab(const seaopt_model *m) { return m ? (int32_t)m->impl->hp.n_vocab : 0; }
int32_t seaopt_model_n_ctx_train(const seaopt_model *m) { return m ? (int32_t)m->impl->hp.n_ctx_train : 0; }
int32_t seaopt_model_n_embd(const seaopt_model *m) { return m ? (int32_t)m->impl->hp.n_embd : 0; }
int32_t seaopt_model_n_layer(const seaopt_model *m) { return m ? (int32_t)m->impl->hp.n_layer : 0; }
int32_t seaopt_model_n_head(const seaopt_model *m) { return m ? (int32_t)m->impl->hp.n_head : 0; }
uint64_t seaopt_model_n_params(const seaopt_model *m) { return m ? m->impl->n_params : 0; }
bool seaopt_model_has_sea(const seaopt_model *m) { return m && m->impl->hp.has_sea; }

namespace {
// Copies `text` into buf as the *_desc calls do: NUL-terminated, truncated to buf_size; returns the full length.
int32_t copy_desc(const std::string &text, char *buf, size_t buf_size) {
    if (buf && buf_size) {
        const size_t n = std::min(text.size(), buf_size - 1);
        std::memcpy(buf, text.data(), n);
        buf[n] = '\0';
    }
    return (int32_t)text.size();
}

// The CPU's name as Linux reports it ("model name" in /proc/cpuinfo); "" elsewhere.
std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (in && std::getline(in, line)) {
        if (line.rfind("model name", 0) != 0) continue;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) return "";
        const size_t start = line.find_first_not_of(" \t", colon + 1);
        return start == std::string::npos ? "" : line.substr(start, 200);
    }
    return "";
}
}  // namespace

int32_t seaopt_model_device_desc(const seaopt_model *m, char *buf, size_t buf_size) {
    std::string desc = "invalid model";
    if (m) {
        const OptModel &om = *m->impl;
        if (om.vocab_only) {
            desc = "none (vocabulary only)";
        } else if (om.device == SEAOPT_DEVICE_CUDA && om.cuda) {
            const int device = cuda_weights_device(*om.cuda);
            desc = cuda_device_description(device);
            if (desc.empty()) desc = "CUDA device " + std::to_string(device);
        } else {
            desc = "CPU";
            const std::string name = cpu_model_name();
            if (!name.empty()) desc += " (" + name + ")";
        }
    }
    return copy_desc(desc, buf, buf_size);
}

int32_t seaopt_model_desc(const seaopt_model *m, char *buf, size_t buf_size) {
    std::string desc = "invalid model";
    if (m) {
        const OptModel &om = *m->impl;
        const double params = (double)om.n_params;
        char size[32];
        if (params >= 1e9) {
            std::snprintf(size, sizeof size, "%.1fB", params / 1e9);
        } else {
            std::snprintf(size, sizeof size, "%.0fM", params / 1e6);
        }
        desc = std::string("opt ") + size + " " + om.file_type;
    }
    return copy_desc(desc, buf, buf_size);
}

/* ---- tokenizer ------------------------------------------------------------------------------ */

seaopt_token seaopt_token_bos(const seaopt_model *m) { return m ? m->impl->tokenizer->bos_id() : -1; }
seaopt_token seaopt_token_eos(const seaopt_model *m) { return m ? m->impl->tokenizer->eos_id() : -1; }
seaopt_token seaopt_token_pad(const seaopt_model *m) { return m ? m->impl->tokenizer->pad_id() : -1; }
bool seaopt_model_add_bos(const seaopt_model *m) { return m && m->impl->tokenizer->data().add_bos; }
bool seaopt_token_is_special(const seaopt_model *m, seaopt_token token) {
    return m && m->impl->tokenizer->is_control(token);
}

seaopt_status seaopt_tokenize(const seaopt_model *model, const char *text, size_t text_len, bool add_bos,
                              bool parse_special, seaopt_token *tokens, int32_t n_tokens_max, int32_t *n_tokens_out) {
    if (n_tokens_out) *n_tokens_out = 0;
    SEAOPT_API_TRY
    require(model, "model");
    require(n_tokens_out, "n_tokens_out");
    if (text_len && !text) throw_invalid_argument("text is NULL");
    if (n_tokens_max < 0) throw_invalid_argument("n_tokens_max must be >= 0");
    const std::vector<int32_t> ids =
        model->impl->tokenizer->encode(std::string_view(text ? text : "", text_len), add_bos, parse_special);
    if (ids.size() > (size_t)INT32_MAX) throw_invalid_argument("the text gives more than 2^31 tokens");
    *n_tokens_out = (int32_t)ids.size();
    if ((int64_t)ids.size() > n_tokens_max) {
        set_last_error(SEAOPT_ERR_BUFFER_TOO_SMALL, "the text has " + std::to_string(ids.size()) +
                                                        " tokens but the buffer holds " + std::to_string(n_tokens_max));
        return SEAOPT_ERR_BUFFER_TOO_SMALL;
    }
    if (!ids.empty()) {
        require(tokens, "tokens");
        std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
    }
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_token_to_piece(const seaopt_model *model, seaopt_token token, char *buf, size_t buf_size,
                                    size_t *n_out) {
    if (n_out) *n_out = 0;
    SEAOPT_API_TRY
    require(model, "model");
    if (buf_size) require(buf, "buf");
    return copy_out(model->impl->tokenizer->token_to_piece(token), buf, buf_size, n_out);
    SEAOPT_API_CATCH
}

seaopt_status seaopt_detokenize(const seaopt_model *model, const seaopt_token *tokens, int32_t n_tokens,
                                bool remove_special, char *buf, size_t buf_size, size_t *n_out) {
    if (n_out) *n_out = 0;
    SEAOPT_API_TRY
    require(model, "model");
    if (n_tokens < 0) throw_invalid_argument("n_tokens must be >= 0");
    if (n_tokens) require(tokens, "tokens");
    if (buf_size) require(buf, "buf");
    const std::vector<int32_t> ids(tokens, tokens + n_tokens);
    return copy_out(model->impl->tokenizer->decode(ids, remove_special), buf, buf_size, n_out);
    SEAOPT_API_CATCH
}

/* ---- context -------------------------------------------------------------------------------- */

seaopt_context_params seaopt_context_default_params(void) {
    seaopt_context_params p;
    std::memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_batch = 0;
    p.n_seq_max = 1;
    p.attention = SEAOPT_ATTENTION_DENSE;
    p.n_threads = 0;
    p.n_head_batch = 0;
    p.abort_callback = nullptr;
    p.abort_callback_data = nullptr;
    return p;
}

seaopt_status seaopt_context_new(seaopt_model *model, const seaopt_context_params *params, seaopt_context **out_ctx) {
    if (out_ctx) *out_ctx = nullptr;
    SEAOPT_API_TRY
    require(model, "model");
    require(out_ctx, "out_ctx");
    const seaopt_context_params p = params ? *params : seaopt_context_default_params();
    auto ctx = std::make_unique<seaopt_context>();
    context_init(ctx->impl, *model->impl, p);
    *out_ctx = ctx.release();
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

void seaopt_context_free(seaopt_context *ctx) { delete ctx; }

uint32_t seaopt_n_ctx(const seaopt_context *ctx) { return ctx ? ctx->impl.n_ctx : 0; }
uint32_t seaopt_n_batch(const seaopt_context *ctx) { return ctx ? ctx->impl.n_batch : 0; }
uint32_t seaopt_n_seq_max(const seaopt_context *ctx) { return ctx ? ctx->impl.n_seq_max : 0; }
int32_t seaopt_context_n_vocab(const seaopt_context *ctx) { return ctx ? (int32_t)ctx->impl.model->hp.n_vocab : 0; }

seaopt_batch seaopt_batch_get_one(const seaopt_token *tokens, int32_t n_tokens) {
    seaopt_batch b;
    std::memset(&b, 0, sizeof b);
    b.n_tokens = n_tokens;
    b.token = tokens;
    return b;
}

seaopt_status seaopt_decode(seaopt_context *ctx, const seaopt_batch *batch) {
    SEAOPT_API_TRY
    require(ctx, "ctx");
    require(batch, "batch");
    context_decode(ctx->impl, *batch);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_generate_greedy(seaopt_context *ctx, seaopt_seq_id seq_id, seaopt_token token, int32_t n_predict,
                                     seaopt_token *out_tokens) {
    SEAOPT_API_TRY
    require(ctx, "ctx");
    context_generate_greedy(ctx->impl, seq_id, token, n_predict, -1, out_tokens);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_generate_greedy_until(seaopt_context *ctx, seaopt_seq_id seq_id, seaopt_token token,
                                           int32_t n_predict, seaopt_token stop_token, seaopt_token *out_tokens,
                                           int32_t *n_out) {
    SEAOPT_API_TRY
    require(ctx, "ctx");
    require(n_out, "n_out");
    *n_out = context_generate_greedy(ctx->impl, seq_id, token, n_predict, stop_token, out_tokens);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_decode_nll(seaopt_context *ctx, const seaopt_batch *batch, const seaopt_token *targets,
                                float *out_nll) {
    SEAOPT_API_TRY
    require(ctx, "ctx");
    require(batch, "batch");
    require(targets, "targets");
    require(out_nll, "out_nll");
    context_decode_nll(ctx->impl, *batch, targets, out_nll);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

const float *seaopt_get_logits_ith(seaopt_context *ctx, int32_t i) {
    clear_last_error();
    try {
        require(ctx, "ctx");
        return context_logits_ith(ctx->impl, i);
    } catch (...) {
        status_from_current_exception();
        return nullptr;
    }
}

namespace {

// seaopt_context_memory's report of a context, made or only planned (context_init's plan_only).
void fill_memory_report(const Context &c, seaopt_memory_report *out) {
    std::memset(out, 0, sizeof *out);
    if (c.cuda) {
        const CudaMemoryNumbers m = cuda_memory_numbers(*c.cuda);
        out->weights_bytes = m.weights;
        out->kv_cache_bytes = m.kv_cache;
        out->arena_bytes = m.arena;
        out->workspace_bytes = m.workspace;
        out->device_used_bytes = m.device_used;
        out->device_free_bytes = m.device_free;
    } else {
        out->weights_bytes = c.model->n_params * sizeof(float);
        out->kv_cache_bytes = seaopt::context_cpu_kv_bytes(c);
        out->workspace_bytes = c.sea_bytes;  // SEA: decode states and estimator parameters (0 for dense)
        out->device_free_bytes = seaopt::available_host_memory();
    }
    out->total_bytes = out->weights_bytes + out->kv_cache_bytes + out->arena_bytes + out->workspace_bytes;
}

}  // namespace

seaopt_status seaopt_context_memory(const seaopt_context *ctx, seaopt_memory_report *out) {
    SEAOPT_API_TRY
    require(ctx, "ctx");
    require(out, "out");
    fill_memory_report(ctx->impl, out);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_context_memory_estimate(const seaopt_model *model, const seaopt_context_params *params,
                                             seaopt_memory_report *out) {
    SEAOPT_API_TRY
    require(model, "model");
    require(out, "out");
    const seaopt_context_params p = params ? *params : seaopt_context_default_params();
    Context planned;
    context_init(planned, *model->impl, p, /*plan_only=*/true);
    fill_memory_report(planned, out);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_context_memory_plan(const seaopt_context *ctx, char *buf, size_t buf_size, size_t *n_out) {
    if (n_out) *n_out = 0;
    SEAOPT_API_TRY
    require(ctx, "ctx");
    if (buf_size) require(buf, "buf");
    const Context &c = ctx->impl;
    std::string text;
    if (c.cuda) {
        text = cuda_memory_report(*c.cuda);
    } else {
        char line[256];
        std::snprintf(line, sizeof line, "CPU memory: weights %.1f MiB (fp32), KV cache %.1f MiB (fp32); no arena\n",
                      c.model->n_params * 4 / 1048576.0, (c.kv.k.size() + c.kv.v.size()) * 4 / 1048576.0);
        text = line;
        if (c.sea.any()) {
            std::snprintf(line, sizeof line, "SEA attention: decode states and estimator parameters %.1f MiB (fp32)\n",
                          c.sea_bytes / 1048576.0);
            text += line;
        }
    }
    return copy_out(text, buf, buf_size, n_out);
    SEAOPT_API_CATCH
}

/* ---- attention maps ------------------------------------------------------------------------- */

seaopt_status seaopt_attention_maps(const seaopt_model *model, const seaopt_token *tokens, int32_t n_tokens,
                                    int32_t layer, int32_t head, int32_t sea_k, seaopt_attention_maps_out *out) {
    if (out) std::memset(out, 0, sizeof *out);
    SEAOPT_API_TRY
    require(model, "model");
    require(out, "out");
    if (n_tokens > 0) require(tokens, "tokens");
    const AttentionMaps m = compute_attention_maps(*model->impl, tokens, n_tokens, layer, head, sea_k,
                                                   std::max(1, omp_get_num_procs()));
    const auto copy = [](const std::vector<float> &v) {
        float *p = static_cast<float *>(std::malloc(v.size() * sizeof(float)));
        if (!p) throw std::bad_alloc();
        std::memcpy(p, v.data(), v.size() * sizeof(float));
        return p;
    };
    seaopt_attention_maps_out r;
    std::memset(&r, 0, sizeof r);
    r.T = m.T;
    r.K = m.K;
    r.sea_k = m.k;
    r.n_selected = m.n_selected;
    r.n_causal = (int64_t)m.T * (m.T + 1) / 2;
    try {
        r.estimated = copy(m.estimated);
        r.mask = copy(m.mask);
        r.dense = copy(m.dense);
    } catch (...) {
        seaopt_attention_maps_free(&r);
        throw;
    }
    *out = r;
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

void seaopt_attention_maps_free(seaopt_attention_maps_out *out) {
    if (!out) return;
    std::free(out->estimated);
    std::free(out->mask);
    std::free(out->dense);
    std::memset(out, 0, sizeof *out);
}

/* ---- attention-layer benchmark ------------------------------------------------------------- */

seaopt_attention_layer_bench_params seaopt_attention_layer_bench_default_params(void) {
    seaopt_attention_layer_bench_params p;
    std::memset(&p, 0, sizeof p);
    p.attention = SEAOPT_ATTENTION_DENSE;
    p.layer = 0;
    p.n_tokens = 2048;
    p.sea_k = 0;
    p.n_reps = 10;
    p.n_warmup = 3;
    return p;
}

seaopt_status seaopt_bench_attention_layer(const seaopt_model *model, const seaopt_attention_layer_bench_params *params,
                                           seaopt_attention_layer_bench_result *out) {
    if (out) std::memset(out, 0, sizeof *out);
    SEAOPT_API_TRY
    require(model, "model");
    require(out, "out");
    const seaopt_attention_layer_bench_params p = params ? *params : seaopt_attention_layer_bench_default_params();
    seaopt_attention_layer_bench_result r;
    std::memset(&r, 0, sizeof r);
    bench_attention_layer(*model->impl, p, r);
    *out = r;
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

void seaopt_kv_clear(seaopt_context *ctx) {
    if (ctx) context_kv_clear(ctx->impl);
}

seaopt_status seaopt_kv_truncate(seaopt_context *ctx, seaopt_seq_id seq_id, seaopt_pos n_keep) {
    SEAOPT_API_TRY
    require(ctx, "ctx");
    context_kv_truncate(ctx->impl, seq_id, n_keep);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_kv_seq_cp(seaopt_context *ctx, seaopt_seq_id src, seaopt_seq_id dst) {
    SEAOPT_API_TRY
    require(ctx, "ctx");
    context_kv_seq_cp(ctx->impl, src, dst);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_pos seaopt_kv_seq_len(const seaopt_context *ctx, seaopt_seq_id seq_id) {
    if (!ctx || seq_id < 0 || (uint32_t)seq_id >= ctx->impl.n_seq_max) return -1;
    return ctx->impl.seq_len[(size_t)seq_id];
}

int32_t seaopt_kv_seq_tokens(const seaopt_context *ctx, seaopt_seq_id seq_id, seaopt_token *out, int32_t capacity) {
    if (!ctx || seq_id < 0 || (uint32_t)seq_id >= ctx->impl.n_seq_max) return -1;
    const std::vector<int32_t> &tokens = ctx->impl.seq_tokens[(size_t)seq_id];
    if (out && capacity > 0) std::copy_n(tokens.begin(), std::min<size_t>(tokens.size(), (size_t)capacity), out);
    return (int32_t)tokens.size();
}

namespace {

uint32_t checked_seq(const seaopt_context *ctx, seaopt_seq_id seq_id) {
    require(ctx, "ctx");
    return seaopt::context_seq_index(ctx->impl, seq_id);
}

}  // namespace

seaopt_status seaopt_state_seq_get_size(seaopt_context *ctx, seaopt_seq_id seq_id, size_t *out_size) {
    SEAOPT_API_TRY
    const uint32_t seq = checked_seq(ctx, seq_id);
    require(out_size, "out_size");
    *out_size = seaopt::state_seq_size(ctx->impl, seq);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_state_seq_get_data(seaopt_context *ctx, seaopt_seq_id seq_id, uint8_t *dst, size_t dst_size,
                                        size_t *n_written) {
    SEAOPT_API_TRY
    const uint32_t seq = checked_seq(ctx, seq_id);
    require(n_written, "n_written");
    *n_written = seaopt::state_seq_size(ctx->impl, seq);
    if (dst_size >= *n_written) require(dst, "dst");
    seaopt::state_seq_write(ctx->impl, seq, dst, dst_size);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_state_seq_set_data(seaopt_context *ctx, seaopt_seq_id seq_id, const uint8_t *src,
                                        size_t src_size) {
    SEAOPT_API_TRY
    const uint32_t seq = checked_seq(ctx, seq_id);
    seaopt::state_seq_read(ctx->impl, seq, src, src_size, "the sequence state");
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_state_seq_save_file(seaopt_context *ctx, seaopt_seq_id seq_id, const char *path) {
    SEAOPT_API_TRY
    const uint32_t seq = checked_seq(ctx, seq_id);
    require(path, "path");
    seaopt::state_seq_save_file(ctx->impl, seq, path);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_state_seq_load_file(seaopt_context *ctx, seaopt_seq_id seq_id, const char *path) {
    SEAOPT_API_TRY
    const uint32_t seq = checked_seq(ctx, seq_id);
    require(path, "path");
    seaopt::state_seq_load_file(ctx->impl, seq, path);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

}  // extern "C"
