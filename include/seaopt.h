/*
 * seaopt — inference engine for Meta's OPT language models, with SEA sparse attention.
 *
 * Public C API. Shape and conventions follow llama.h:
 *   - opaque handles (seaopt_model, seaopt_context, seaopt_sampler);
 *   - plain parameter structs with *_default_params() factories;
 *   - every fallible call returns a seaopt_status (0 = SEAOPT_OK, negative = error) and, on error,
 *     seaopt_last_error() returns a plain-words message for the calling thread;
 *   - the library never calls exit() or abort() on input-reachable conditions.
 *
 * Thread safety: a model may be shared by several contexts on different threads; one context
 * (and one sampler) must be used by one thread at a time.
 */
#ifndef SEAOPT_H
#define SEAOPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef SEAOPT_SHARED
#if defined(_WIN32)
#ifdef SEAOPT_BUILD
#define SEAOPT_API __declspec(dllexport)
#else
#define SEAOPT_API __declspec(dllimport)
#endif
#else
#define SEAOPT_API __attribute__((visibility("default")))
#endif
#else
#define SEAOPT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SEAOPT_VERSION_MAJOR 0
#define SEAOPT_VERSION_MINOR 1
#define SEAOPT_VERSION_PATCH 0

typedef int32_t seaopt_token;
typedef int32_t seaopt_pos;
typedef int32_t seaopt_seq_id;

struct seaopt_model;
struct seaopt_context;
struct seaopt_sampler;

/* ---------------------------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------------------------- */
typedef enum seaopt_status {
    SEAOPT_OK = 0,
    SEAOPT_ERR_INVALID_ARGUMENT = -1, /* a NULL handle, an impossible option, a bad token id, ... */
    SEAOPT_ERR_IO = -2,               /* a file could not be opened, read or written */
    SEAOPT_ERR_MODEL_FORMAT = -3,     /* malformed, truncated or inconsistent model file (or saved state) */
    SEAOPT_ERR_UNSUPPORTED = -4,      /* valid input that this build does not support */
    SEAOPT_ERR_OUT_OF_MEMORY = -5,    /* host or device memory exhausted, or a plan that does not fit */
    SEAOPT_ERR_CONTEXT_FULL = -6,     /* the batch does not fit in the context (n_ctx) */
    SEAOPT_ERR_INVALID_UTF8 = -7,     /* text that is not valid UTF-8 */
    SEAOPT_ERR_CANCELLED = -8,        /* a progress callback returned false */
    SEAOPT_ERR_BUFFER_TOO_SMALL = -9, /* an output buffer is too small; the required size is returned */
    SEAOPT_ERR_DEVICE = -10,          /* a CUDA / cuBLAS error, or no usable GPU */
    SEAOPT_ERR_INTERNAL = -11         /* a bug in seaopt: please report it */
} seaopt_status;

/* The message of the last error on the calling thread ("" if none). Valid until the next call. */
SEAOPT_API const char *seaopt_last_error(void);
/* A short fixed name for a status code, e.g. "SEAOPT_ERR_MODEL_FORMAT". */
SEAOPT_API const char *seaopt_status_name(seaopt_status status);

/* ---------------------------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------------------------- */
typedef enum seaopt_log_level {
    SEAOPT_LOG_DEBUG = 0,
    SEAOPT_LOG_INFO = 1,
    SEAOPT_LOG_WARN = 2,
    SEAOPT_LOG_ERROR = 3
} seaopt_log_level;

typedef void (*seaopt_log_callback)(seaopt_log_level level, const char *text, void *user_data);

/* Route the library's log lines to `callback` (NULL restores the default: WARN and above to stderr). Calls of the
 * callback are serialised (one at a time, from any thread); it may call the library itself, seaopt_log_set
 * included (a nested log line reaches the callback set at that moment). */
SEAOPT_API void seaopt_log_set(seaopt_log_callback callback, void *user_data);

SEAOPT_API const char *seaopt_version(void);
/* A one-line description of the build: version, CUDA on/off, compiled architectures. */
SEAOPT_API const char *seaopt_build_info(void);
/* Whether this build has the CUDA engine (a usable GPU may still be absent: loading with SEAOPT_DEVICE_CUDA says). */
SEAOPT_API bool seaopt_supports_cuda(void);

/* ---------------------------------------------------------------------------------------------
 * Model
 * ------------------------------------------------------------------------------------------- */
typedef enum seaopt_device {
    SEAOPT_DEVICE_AUTO = 0, /* the GPU if this build has CUDA and one is present, else the CPU */
    SEAOPT_DEVICE_CPU = 1,  /* the fp32 CPU reference engine */
    SEAOPT_DEVICE_CUDA = 2  /* an NVIDIA GPU; an error if none is usable */
} seaopt_device;

/* Called during loading with progress in [0, 1]; return false to cancel (load returns
 * SEAOPT_ERR_CANCELLED). */
typedef bool (*seaopt_progress_callback)(float progress, void *user_data);

typedef struct seaopt_model_params {
    seaopt_device device;
    int32_t gpu_index;       /* CUDA device ordinal when device is CUDA/AUTO */
    bool vocab_only;         /* load only hyperparameters and the tokenizer, no weights */
    bool check_tensors;      /* scan all weights for NaN/Inf while loading */
    seaopt_progress_callback progress_callback;
    void *progress_callback_user_data;
} seaopt_model_params;

SEAOPT_API seaopt_model_params seaopt_model_default_params(void);

/* Load a seaopt GGUF model file. On success *out_model is a new handle; on error it is NULL. */
SEAOPT_API seaopt_status seaopt_model_load(const char *path, const seaopt_model_params *params,
                                           struct seaopt_model **out_model);
SEAOPT_API void seaopt_model_free(struct seaopt_model *model);

SEAOPT_API int32_t seaopt_model_n_vocab(const struct seaopt_model *model);     /* rows of the embedding (50272) */
SEAOPT_API int32_t seaopt_model_n_ctx_train(const struct seaopt_model *model); /* max positions (2048) */
SEAOPT_API int32_t seaopt_model_n_embd(const struct seaopt_model *model);
SEAOPT_API int32_t seaopt_model_n_layer(const struct seaopt_model *model);
SEAOPT_API int32_t seaopt_model_n_head(const struct seaopt_model *model);
SEAOPT_API uint64_t seaopt_model_n_params(const struct seaopt_model *model);
/* Whether the model file carries a SEA estimator (converted with `seaopt-convert --sea`). */
SEAOPT_API bool seaopt_model_has_sea(const struct seaopt_model *model);
/* Writes a short description such as "opt 1.3B f16" (the weight type: f32, f16, bf16 or q8_0; NUL-terminated,
 * truncated to buf_size).
 * Returns the full length it needed, without the NUL. */
SEAOPT_API int32_t seaopt_model_desc(const struct seaopt_model *model, char *buf, size_t buf_size);
/* Writes what the model runs on, for reports (llama-bench's gpu_info): on the GPU its name, compute capability and
 * memory, e.g. "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.1 GiB"; on the CPU "CPU", followed by the
 * processor's name in parentheses where the system reports it; for a vocab_only model "none (vocabulary only)".
 * The same buffer and return conventions as seaopt_model_desc. */
SEAOPT_API int32_t seaopt_model_device_desc(const struct seaopt_model *model, char *buf, size_t buf_size);

/* ---------------------------------------------------------------------------------------------
 * Tokenizer (GPT-2 byte-level BPE, identical to Hugging Face's GPT2Tokenizer for OPT)
 * ------------------------------------------------------------------------------------------- */
SEAOPT_API seaopt_token seaopt_token_bos(const struct seaopt_model *model); /* OPT: 2, "</s>" (the converted config.json's) */
SEAOPT_API seaopt_token seaopt_token_eos(const struct seaopt_model *model); /* OPT: 2, "</s>" (the converted config.json's) */
SEAOPT_API seaopt_token seaopt_token_pad(const struct seaopt_model *model); /* OPT: 1, "<pad>" (the converted config.json's) */

/* Whether the model's tokenizer prepends BOS to a text, as Hugging Face's tokenizer(text) does for the converted
 * checkpoint (GGUF tokenizer.ggml.add_bos_token): true for OPT's hub tokenizer; a fine-tune may turn it off. */
SEAOPT_API bool seaopt_model_add_bos(const struct seaopt_model *model);

/* Tokenize `text_len` bytes of UTF-8. add_bos prepends BOS where the model's tokenizer does (seaopt_model_add_bos:
 * OPT's does), as Hugging Face's tokenizer(text); false never prepends it.
 * parse_special maps literal special-token strings to their ids, as Hugging Face does; which tokens are
 * special comes from the converted checkpoint's tokenizer files (OPT: "</s>" and "<pad>"; "<s>", "<unk>" and
 * "<mask>" are text to Hugging Face and here). Without it they are tokenized as plain text (Hugging Face's
 * split_special_tokens=True). A fine-tune's other added tokens are split out either way, with their
 * AddedToken options (single_word, lstrip, rstrip), as Hugging Face's tokenizer does.
 * On success *n_tokens_out is the token count. If n_tokens_max is too small the call returns
 * SEAOPT_ERR_BUFFER_TOO_SMALL and *n_tokens_out is the number needed. Invalid UTF-8 gives
 * SEAOPT_ERR_INVALID_UTF8 with the byte offset in the message. */
SEAOPT_API seaopt_status seaopt_tokenize(const struct seaopt_model *model, const char *text, size_t text_len,
                                         bool add_bos, bool parse_special, seaopt_token *tokens,
                                         int32_t n_tokens_max, int32_t *n_tokens_out);

/* Whether `token` is a special token (OPT: "</s>", "<pad>"; a fine-tune's added special tokens such as
 * "<|im_end|>"): what seaopt_detokenize's remove_special and Hugging Face's skip_special_tokens drop, and what a
 * program streaming generated text usually leaves out. False for an id out of range or a NULL model. */
SEAOPT_API bool seaopt_token_is_special(const struct seaopt_model *model, seaopt_token token);

/* The bytes of one token (special tokens give their text, e.g. "</s>"). A token's bytes need not
 * be valid UTF-8 on their own: byte-level BPE can split a character across tokens.
 * Writes at most buf_size bytes, no NUL; *n_out is the length. SEAOPT_ERR_BUFFER_TOO_SMALL if
 * buf_size is short (then *n_out is the length needed). */
SEAOPT_API seaopt_status seaopt_token_to_piece(const struct seaopt_model *model, seaopt_token token,
                                               char *buf, size_t buf_size, size_t *n_out);

/* Decode a token sequence to text. remove_special drops BOS/EOS/PAD and the other special tokens (not a
 * fine-tune's non-special added tokens: Hugging Face's skip_special_tokens keeps those too).
 * Same buffer convention as seaopt_token_to_piece; the output is not NUL-terminated. */
SEAOPT_API seaopt_status seaopt_detokenize(const struct seaopt_model *model, const seaopt_token *tokens,
                                           int32_t n_tokens, bool remove_special, char *buf, size_t buf_size,
                                           size_t *n_out);

/* ---------------------------------------------------------------------------------------------
 * Context: KV cache + activations for running the model
 * ------------------------------------------------------------------------------------------- */
typedef enum seaopt_attention {
    SEAOPT_ATTENTION_DENSE = 0, /* exact causal attention */
    SEAOPT_ATTENTION_SEA = 1    /* SEA sparse attention (needs a model with a SEA estimator, see
                                   seaopt_model_has_sea; both engines) */
} seaopt_attention;

/* SEA attention (seaopt_context_params.attention = SEAOPT_ATTENTION_SEA): each SEA layer keeps a small
 * decode state per sequence beside the KV cache. A batch that starts a sequence (position 0) runs the
 * SEA prefill; tokens that continue a sequence (generation, or a later chunk of a prompt) run through
 * the incremental decode one at a time -- the same result, slower for long chunks. seaopt_kv_clear
 * resets the states. seaopt_kv_truncate of a sequence to 0 < n_keep < its length cannot rewind a
 * state: it re-runs the model over the sequence's first n_keep tokens (the context remembers them),
 * which costs a prefill of n_keep tokens; if that fails the sequence is left empty. */

/* Asked during long work; return true to stop it (seaopt_context_params.abort_callback). */
typedef bool (*seaopt_abort_callback)(void *user_data);

typedef struct seaopt_context_params {
    uint32_t n_ctx;     /* positions per sequence; 0 = the model's n_ctx_train */
    uint32_t n_batch;   /* largest number of tokens in one seaopt_decode, at most 1,048,576; 0 = n_ctx x n_seq_max
                           (every sequence's whole context in one call; capped at that limit). On the GPU it sizes
                           the activation arena: set it lower to save memory with many sequences */
    uint32_t n_seq_max; /* number of independent sequences (each has its own KV cache), 1 to 1,024 */
    seaopt_attention attention;
    /* SEA only (attention = SEAOPT_ATTENTION_SEA; with DENSE they must be NULL / 0): */
    const char *sea_layers; /* the layers that run SEA, a list of layer indices and inclusive ranges
                               such as "2-23" or "0,3,5-7" (0-based); NULL or "" = every layer. The
                               other layers run dense attention. Read during seaopt_context_new only. */
    int32_t sea_k;      /* SEA's sparsity budget k (about k keys per query per head, sea.md §2.7);
                           0 = the model's sea.k (set by seaopt-convert --sea-k) */
    int32_t n_threads;  /* CPU threads for the CPU engine; 0 = all hardware threads; at most 4096 */
    uint32_t n_head_batch; /* CUDA engine: logits rows the output head computes per GEMM; 0 = 128.
                              Larger is faster when many tokens want logits (perplexity: 512 saves
                              ~5% of the run) and costs n_head_batch x n_vocab x 4 bytes of the
                              activation arena (26 MB per 128 rows for OPT); capped at n_batch. */
    /* Cancelling a long seaopt_decode / seaopt_decode_nll / seaopt_generate_greedy (llama.cpp's abort_callback):
       NULL = never. The CPU engine asks it before each layer and before the output head; the GPU engine before each
       batch (a GPU forward takes milliseconds). When it returns true the call fails with SEAOPT_ERR_CANCELLED and
       leaves the sequences as they were, as any failed call does. */
    seaopt_abort_callback abort_callback;
    void *abort_callback_data;
} seaopt_context_params;

SEAOPT_API seaopt_context_params seaopt_context_default_params(void);

SEAOPT_API seaopt_status seaopt_context_new(struct seaopt_model *model, const seaopt_context_params *params,
                                            struct seaopt_context **out_ctx);
SEAOPT_API void seaopt_context_free(struct seaopt_context *ctx);

SEAOPT_API uint32_t seaopt_n_ctx(const struct seaopt_context *ctx);
SEAOPT_API uint32_t seaopt_n_batch(const struct seaopt_context *ctx);
SEAOPT_API uint32_t seaopt_n_seq_max(const struct seaopt_context *ctx);

/* A batch of tokens to run through the model.
 *   token[i]  : the token ids (required);
 *   pos[i]    : the position of each token in its sequence; NULL = each sequence continues from
 *               its current length. Within one sequence, positions must be consecutive and start
 *               at the sequence's current length (see seaopt_kv_seq_len);
 *   seq_id[i] : the sequence each token belongs to, in [0, n_seq_max); NULL = all in sequence 0;
 *   logits[i] : nonzero to return the logits of token i; NULL = only the last token's.
 * Tokens of one sequence attend to that sequence only. */
typedef struct seaopt_batch {
    int32_t n_tokens;
    const seaopt_token *token;
    const seaopt_pos *pos;
    const seaopt_seq_id *seq_id;
    const int8_t *logits;
} seaopt_batch;

/* A batch of n tokens of sequence 0 that continues from its current length, logits for the last. */
SEAOPT_API seaopt_batch seaopt_batch_get_one(const seaopt_token *tokens, int32_t n_tokens);

/* Run the model over a batch: appends the tokens' keys and values to the KV cache and computes the
 * requested logits. On error the KV cache is left as it was before the call. Returns
 * SEAOPT_ERR_CONTEXT_FULL if a sequence would exceed n_ctx or the batch exceeds n_batch. */
SEAOPT_API seaopt_status seaopt_decode(struct seaopt_context *ctx, const seaopt_batch *batch);

/* The fused loss: seaopt_decode (same validation, same KV cache rules; on error the cache is left as
 * it was and out_nll is not written), but instead of keeping logits, for every token i of the batch
 * that asks for an output (batch->logits[i] != 0; NULL = the last token only) it writes
 *     out_nll[i] = -log softmax(logits_i)[targets[i]]     (natural log)
 * computed inside the engine (on the GPU in fp32 with the max subtracted, so only these floats leave
 * the device; on the CPU in double). targets and out_nll have batch->n_tokens entries; targets[i]
 * must be a valid token id for every requested token (else SEAOPT_ERR_INVALID_ARGUMENT), other
 * entries are not read, and other entries of out_nll are left untouched. The batch makes no logits
 * available: seaopt_get_logits_ith then returns NULL. For perplexity: targets[i] = the token after i. */
SEAOPT_API seaopt_status seaopt_decode_nll(struct seaopt_context *ctx, const seaopt_batch *batch,
                                           const seaopt_token *targets, float *out_nll);

/* Greedy generation: decodes `token` at the next position of sequence seq_id, then n_predict - 1 more tokens,
 * each the greedy pick of the step before, and writes the n_predict picks to out_tokens (out_tokens[i] = the
 * greedy pick of step i's logits: the lowest id of the largest logit, as a sampler with temp = 0). The same as
 * a loop of seaopt_decode (one token, its logits) and seaopt_sampler_sample with a greedy sampler, and the same
 * tokens; afterwards the logits of the last step are available as after seaopt_decode. Where a CUDA context
 * decodes with the persistent kernel (sm_90 GPUs, pre-LayerNorm OPT models, dense attention, fp16 or Q8_0 weights)
 * the steps run back to back on the GPU in one launch, with no host round trip per token; elsewhere it is that loop.
 * It does not stop at an end-of-sequence token (seaopt_generate_greedy_until below does). Validated first (a
 * sequence id outside [0, n_seq_max), a token outside the vocabulary, n_predict < 0: SEAOPT_ERR_INVALID_ARGUMENT;
 * positions past n_ctx: SEAOPT_ERR_CONTEXT_FULL); on any error the sequence is left as it was before the call (with SEA
 * attention by recomputation, as seaopt_kv_truncate); out_tokens is written only on success. */
SEAOPT_API seaopt_status seaopt_generate_greedy(struct seaopt_context *ctx, seaopt_seq_id seq_id, seaopt_token token,
                                                int32_t n_predict, seaopt_token *out_tokens);
/* As seaopt_generate_greedy, stopping at stop_token (for example seaopt_token_eos): after the first step whose pick
 * is stop_token, which is written to out_tokens and counted but not decoded. *n_out receives the number of picks
 * written (n_predict if none was stop_token); the sequence grows by *n_out positions (the tokens decoded: `token`
 * and the picks before the last) and the logits are those of the last step run. On the GPU's one-launch path the
 * steps after the stop are not run at all. stop_token -1 never stops; any other value outside the vocabulary, or a
 * NULL n_out: SEAOPT_ERR_INVALID_ARGUMENT. Other errors as seaopt_generate_greedy (the context check is for all
 * n_predict steps). */
SEAOPT_API seaopt_status seaopt_generate_greedy_until(struct seaopt_context *ctx, seaopt_seq_id seq_id,
                                                      seaopt_token token, int32_t n_predict, seaopt_token stop_token,
                                                      seaopt_token *out_tokens, int32_t *n_out);

/* Logits (n_vocab floats) of the i-th token of the last batch; i = -1 is the last token that asked
 * for logits. Returns NULL (and sets the last error) if token i did not ask for logits.
 * Valid until the next seaopt_decode. */
SEAOPT_API const float *seaopt_get_logits_ith(struct seaopt_context *ctx, int32_t i);
/* The number of logits per token (the model's n_vocab) of a context; 0 for NULL. */
SEAOPT_API int32_t seaopt_context_n_vocab(const struct seaopt_context *ctx);

/* Memory of a context: what the planner laid out, and what the device reports now. */
typedef struct seaopt_memory_report {
    uint64_t weights_bytes;      /* the model's weights on the context's device */
    uint64_t kv_cache_bytes;     /* the KV cache (fp16 on the GPU, fp32 on the CPU) */
    uint64_t arena_bytes;        /* the one activation arena (GPU; 0 for the CPU engine) */
    uint64_t workspace_bytes;    /* GEMM workspace and other fixed buffers */
    uint64_t total_bytes;        /* the sum of the above: the planned footprint */
    uint64_t device_used_bytes;  /* GPU memory in use now by every process (cudaMemGetInfo); 0 on the CPU */
    uint64_t device_free_bytes;  /* memory free now where the context lives: the GPU's (cudaMemGetInfo), or the
                                    host's MemAvailable for the CPU engine (0 where unknown) */
} seaopt_memory_report;

SEAOPT_API seaopt_status seaopt_context_memory(const struct seaopt_context *ctx, seaopt_memory_report *out);
/* The memory a context with these parameters would take, without making it: the same parameter checks and the
 * same plan as seaopt_context_new (the same error for a bad parameter), nothing allocated and no fit check. The
 * report is what seaopt_context_memory would say of that context (GPU figures rounded up to the 2 MiB allocation
 * granularity); what the context adds to the model is about total_bytes - weights_bytes, which must fit in
 * device_free_bytes (seaopt_context_new compares the unrounded plan on the GPU, and the KV cache alone with the
 * host's free memory on the CPU). For choosing n_ctx, n_seq_max or n_batch before committing memory (llama.cpp's
 * llama_params_fit). */
SEAOPT_API seaopt_status seaopt_context_memory_estimate(const struct seaopt_model *model,
                                                        const seaopt_context_params *params,
                                                        seaopt_memory_report *out);
/* The memory plan as text: the totals, then the largest activation buffers with their offsets and
 * lifetimes. Same buffer convention as seaopt_token_to_piece (not NUL-terminated). */
SEAOPT_API seaopt_status seaopt_context_memory_plan(const struct seaopt_context *ctx, char *buf, size_t buf_size,
                                                    size_t *n_out);

/* KV cache (and, with SEA attention, the SEA decode states). */
SEAOPT_API void seaopt_kv_clear(struct seaopt_context *ctx);
/* Keep positions [0, n_keep) of sequence seq_id and forget the rest (seq_id -1 = all sequences).
 * With SEA attention a sequence cut short is recomputed over its first n_keep tokens (see above). */
SEAOPT_API seaopt_status seaopt_kv_truncate(struct seaopt_context *ctx, seaopt_seq_id seq_id, seaopt_pos n_keep);
/* Sequence dst becomes a copy of sequence src (its tokens, keys and values, and SEA decode states), replacing what
 * dst held: a prompt decoded once and continued in several sequences (parallel sampling). src == dst does nothing;
 * an id outside [0, n_seq_max): SEAOPT_ERR_INVALID_ARGUMENT (nothing changes); a device or memory error during the
 * copy leaves dst empty. */
SEAOPT_API seaopt_status seaopt_kv_seq_cp(struct seaopt_context *ctx, seaopt_seq_id src, seaopt_seq_id dst);
/* Number of positions held for a sequence (the next position it will take); -1 for a bad seq_id. */
SEAOPT_API seaopt_pos seaopt_kv_seq_len(const struct seaopt_context *ctx, seaopt_seq_id seq_id);
/* The tokens a sequence holds (seaopt_kv_seq_len of them, in position order): copies up to `capacity` of them to
 * out (which may be NULL when capacity is 0) and returns how many the sequence holds; -1 for a bad seq_id. */
SEAOPT_API int32_t seaopt_kv_seq_tokens(const struct seaopt_context *ctx, seaopt_seq_id seq_id, seaopt_token *out,
                                        int32_t capacity);

/* ---------------------------------------------------------------------------------------------
 * Sequence state: save a sequence -- its tokens, its keys and values and, with SEA attention, its SEA decode
 * states -- and restore it later into a sequence of this or another context (a prompt cache: a restored
 * sequence continues exactly where the saved one was, without running its tokens again). The state is
 * self-describing and checked before anything is restored: it must come from the same model file (a
 * fingerprint of its weights) and a context with the same attention settings (kind, SEA layers, k); it may
 * come from the other engine (the GPU's keys and values are fp16, the CPU's fp32, and either reads either).
 * The logits of the last batch are not part of it. Layout: engine/state.h.
 * ------------------------------------------------------------------------------------------- */
/* Bytes of sequence seq_id's state now. */
SEAOPT_API seaopt_status seaopt_state_seq_get_size(struct seaopt_context *ctx, seaopt_seq_id seq_id, size_t *out_size);
/* Writes the state into dst; SEAOPT_ERR_BUFFER_TOO_SMALL (and *n_written = the size needed) if dst_size is
 * smaller than seaopt_state_seq_get_size's. */
SEAOPT_API seaopt_status seaopt_state_seq_get_data(struct seaopt_context *ctx, seaopt_seq_id seq_id, uint8_t *dst,
                                                   size_t dst_size, size_t *n_written);
/* Replaces sequence seq_id with a saved state. A state that fails a check leaves the sequence as it was: not a
 * state, truncated or corrupt (SEAOPT_ERR_MODEL_FORMAT; the checksum is checked before the compatibility, so a
 * damaged shape, fingerprint or attention field reads as corrupt), another model or other attention settings
 * (SEAOPT_ERR_INVALID_ARGUMENT), another format version
 * (SEAOPT_ERR_UNSUPPORTED), more tokens than n_ctx (SEAOPT_ERR_CONTEXT_FULL). A device or memory error while
 * restoring leaves it empty. */
SEAOPT_API seaopt_status seaopt_state_seq_set_data(struct seaopt_context *ctx, seaopt_seq_id seq_id,
                                                   const uint8_t *src, size_t src_size);
/* The same through a file: written to "<path>.tmp" and renamed onto path (no half-written file is left). */
SEAOPT_API seaopt_status seaopt_state_seq_save_file(struct seaopt_context *ctx, seaopt_seq_id seq_id, const char *path);
SEAOPT_API seaopt_status seaopt_state_seq_load_file(struct seaopt_context *ctx, seaopt_seq_id seq_id, const char *path);

/* ---------------------------------------------------------------------------------------------
 * SEA's interpretable attention matrix (inspection; CPU engine only)
 * ------------------------------------------------------------------------------------------- */
/* The maps of one layer and head for a prompt (positions 0..T-1 of one sequence). Arrays are row-major
 * and allocated by the library: free them with seaopt_attention_maps_free. */
typedef struct seaopt_attention_maps_out {
    int32_t T;          /* tokens (query and key positions) */
    int32_t K;          /* SEA's compressed width */
    int32_t sea_k;      /* the sparsity budget k used (the model's sea.k when 0 was asked) */
    int64_t n_selected; /* keys the sparse attention of this head reads, summed over the T queries */
    int64_t n_causal;   /* T·(T+1)/2: the keys dense causal attention reads */
    float *estimated;   /* [T, K] the estimator's compressed probabilities of this head (each row sums to 1) */
    float *mask;        /* [T, T] 1 where the sparse attention of (query t, this head) reads key j (the
                           selected cells expanded to keys), else 0; causal: 0 for j > t */
    float *dense;       /* [T, T] causal softmax(q·kᵀ) of this head (each row sums to 1; 0 for j > t) */
} seaopt_attention_maps_out;

/* Runs the CPU forward over the tokens with dense attention up to `layer`, takes that layer's q, k, v,
 * and fills *out with SEA's estimated compressed attention, its selected mask expanded to T×T (SEA's
 * prefill on those q, k, v with budget sea_k, 0 = the model's sea.k) and the dense attention of `head`.
 * 1 <= n_tokens <= min(2048, n_ctx_train). Errors: SEAOPT_ERR_UNSUPPORTED for a model without a SEA
 * estimator or loaded on CUDA; SEAOPT_ERR_INVALID_ARGUMENT for a vocab-only model, a layer, head,
 * sea_k, token count or token id out of range (named in the message). On error *out is zeroed. */
SEAOPT_API seaopt_status seaopt_attention_maps(const struct seaopt_model *model, const seaopt_token *tokens,
                                               int32_t n_tokens, int32_t layer, int32_t head, int32_t sea_k,
                                               seaopt_attention_maps_out *out);
/* Frees the arrays of *out and zeroes it (NULL, or an already freed / zeroed one, is fine). */
SEAOPT_API void seaopt_attention_maps_free(seaopt_attention_maps_out *out);

/* ---------------------------------------------------------------------------------------------
 * Attention-layer benchmark (CUDA engine only): ONE attention layer's prefill of one sequence
 * ------------------------------------------------------------------------------------------- */
/* The largest n_tokens seaopt_bench_attention_layer accepts (2^17). */
#define SEAOPT_ATTENTION_BENCH_MAX_TOKENS 131072

typedef struct seaopt_attention_layer_bench_params {
    seaopt_attention attention; /* DENSE: the engine's flash prefill; SEA: estimator + top-k + sparse attention */
    int32_t layer;              /* the layer whose SEA estimator parameters SEA uses, in [0, n_layer) (checked for
                                   dense too; dense attention has no parameters); default 0 */
    int32_t n_tokens;           /* T, the sequence length, in [1, SEAOPT_ATTENTION_BENCH_MAX_TOKENS]; it may exceed
                                   the model's n_ctx_train (see below); default 2048 */
    int32_t sea_k;              /* SEA's sparsity budget k; 0 = the model's sea.k (must be 0 for DENSE); default 0 */
    int32_t n_reps;             /* timed runs, in [1, 100000]; default 10 */
    int32_t n_warmup;           /* untimed runs before them, in [0, 1000]; default 3 */
} seaopt_attention_layer_bench_params;

SEAOPT_API seaopt_attention_layer_bench_params seaopt_attention_layer_bench_default_params(void);

typedef struct seaopt_attention_layer_bench_result {
    seaopt_attention attention;
    int32_t layer, n_tokens, n_reps, n_warmup;
    int32_t n_head, head_dim;   /* the model's attention shape */
    /* Time of one run of the attention kernels (cudaEvents around each run on one stream), in ms:
     * the mean, the sample standard deviation (0 for one run), the fastest and the slowest run. */
    double mean_ms, std_ms, min_ms, max_ms;
    /* Mean time of the KV-cache append of the T rows (kv_cache_append), which the engine runs before
     * the attention in both paths: measured the same way, NOT included in mean_ms. */
    double kv_append_ms;
    /* Device memory. "Extra" is what the layer needs beyond its inputs and output -- q, k, v (the
     * fused [T, 3C] qkv buffer), the KV cache (n_ctx = T) and the output [T, C] -- counted as the
     * bytes the kernels are given (not cudaMalloc's 2 MiB pages):
     *   DENSE: 0 (the flash prefill reads q from qkv and K/V from the cache and keeps its softmax
     *          state on chip: no scratch);
     *   SEA:   scratch_bytes (sea_prefill_scratch_bytes(cfg, T): estimator, selection and sparse
     *          attention buffers) + state_bytes (the decode state the prefill leaves for the
     *          sequence, as the engine does). The layer's fp32 estimator parameters (sea_params_bytes)
     *          are weights, reported but not counted as extra. */
    uint64_t extra_bytes, scratch_bytes, state_bytes, sea_params_bytes;
    uint64_t qkv_bytes, kv_cache_bytes, out_bytes; /* the inputs and output, for reference */
    /* SEA only (0 for DENSE): k and K used, and the positional table E_pos (sea.md §2.2): its rows and
     * the positions it is stretched to by "nearest" interpolation, max(the model's, T);
     * pos_stretched = n_pos_ctx > n_pos_table. */
    int32_t sea_k, sea_K, n_pos_table, n_pos_ctx;
    bool pos_stretched;
    /* Mean |out| of the last run's output (fp16 -> fp32). The output is filled with NaN before the
     * runs, so a finite value says every output element was written. */
    double output_mean_abs;
} seaopt_attention_layer_bench_result;

/* Runs one attention layer's prefill of positions 0..T-1 of one sequence (batch 1, fp16) on the
 * model's GPU, as the CUDA engine runs it, on fixed-seed random N(0,1) q, k, v of the model's shape
 * (the fused [T, 3C] qkv buffer, C = n_head * 64; the same data for both kinds at a given T),
 * uploaded once: kv_cache_append of the T rows into a KV cache of n_ctx = T (timed separately),
 * then n_warmup untimed and n_reps timed runs of the attention:
 *   DENSE: the flash prefill attention_forward over the cache (attention tiles of positions 0..T-1;
 *          at T = 1 the engine's decode kernel, as the engine runs a one-token prompt);
 *   SEA:   sea_attention_prefill_cuda with layer `layer`'s estimator (fp32 on the device), k = sea_k,
 *          q scaled by 1/8, writing the decode state as the engine does; T may exceed the model's
 *          positions: the positional table is stretched to max(its positions, T) (sea.md §2.2).
 * Memory is checked against the free device memory before anything is allocated, and freed on return.
 * Errors (*out zeroed, message in seaopt_last_error()): SEAOPT_ERR_INVALID_ARGUMENT for a NULL
 * argument, a vocab-only model, or a parameter out of range (named in the message);
 * SEAOPT_ERR_UNSUPPORTED for SEA on a model without an estimator, a model loaded on the CPU (the
 * benchmark runs CUDA kernels only) or a build without CUDA; SEAOPT_ERR_OUT_OF_MEMORY when the
 * buffers do not fit the GPU; SEAOPT_ERR_DEVICE for a CUDA failure. */
SEAOPT_API seaopt_status seaopt_bench_attention_layer(const struct seaopt_model *model,
                                                      const seaopt_attention_layer_bench_params *params,
                                                      seaopt_attention_layer_bench_result *out);

/* ---------------------------------------------------------------------------------------------
 * Sampler
 * Order of operations (as Hugging Face's generate): the logit biases, the penalties over the last repeat_last_n
 * accepted tokens (the repetition penalty, then llama.cpp's presence and frequency penalties), then
 * temperature, then top-k, then top-p, then min-p, then a draw from the seeded generator.
 * temp <= 0 means greedy (argmax after the penalties).
 * ------------------------------------------------------------------------------------------- */
#define SEAOPT_DEFAULT_SEED 0xFFFFFFFFu /* = pick a random seed */

/* A constant added to one token's logit before anything else (-INFINITY bans the token). */
typedef struct seaopt_logit_bias {
    seaopt_token token;
    float bias;
} seaopt_logit_bias;

typedef struct seaopt_sampler_params {
    float temp;             /* 0.8; <= 0 = greedy */
    int32_t top_k;          /* 40; <= 0 = off */
    float top_p;            /* 0.95; >= 1 = off */
    float min_p;            /* 0 = off; in [0, 1]: drop tokens whose probability (after temperature) is below
                               min_p times the most likely token's (HF's MinPLogitsWarper; llama.cpp's default
                               chain applies its min-p before the temperature, so at temp != 1 it keeps another set) */
    float repeat_penalty;   /* 1.0 = off; > 1 discourages repeats (CTRL / HF rule) */
    int32_t repeat_last_n;  /* 64; the window of all three penalties: 0 = off, -1 = every accepted token */
    float presence_penalty;  /* 0 = off; subtracted once from the logit of every token in the window */
    float frequency_penalty; /* 0 = off; subtracted from a token's logit once per occurrence in the window
                                (OpenAI's and llama.cpp's rule, applied after the repetition penalty) */
    uint32_t seed;          /* SEAOPT_DEFAULT_SEED = random */
    const seaopt_logit_bias *logit_bias; /* n_logit_bias entries (copied by seaopt_sampler_new), added to the logits
                                            first (llama.cpp's -l); a token outside the vocabulary is ignored */
    int32_t n_logit_bias;
} seaopt_sampler_params;

SEAOPT_API seaopt_sampler_params seaopt_sampler_default_params(void);
SEAOPT_API seaopt_status seaopt_sampler_new(const seaopt_sampler_params *params, struct seaopt_sampler **out);
SEAOPT_API void seaopt_sampler_free(struct seaopt_sampler *smpl);
/* The seed actually in use (the random one if SEAOPT_DEFAULT_SEED was asked for). */
SEAOPT_API uint32_t seaopt_sampler_seed(const struct seaopt_sampler *smpl);
/* Pick a token from n_vocab logits. Does not accept it: call seaopt_sampler_accept. */
SEAOPT_API seaopt_status seaopt_sampler_sample_logits(struct seaopt_sampler *smpl, const float *logits,
                                                      int32_t n_vocab, seaopt_token *out_token);
/* Pick a token from the logits of token i of the context's last batch (see seaopt_get_logits_ith). On the GPU
 * engine, when the batch asked for one token's logits, their greedy pick was already made on the device: a greedy
 * sampler (temp <= 0) without a repetition penalty returns it (the same id as its own scan) without reading them. */
SEAOPT_API seaopt_status seaopt_sampler_sample(struct seaopt_sampler *smpl, struct seaopt_context *ctx, int32_t i,
                                               seaopt_token *out_token);
/* Record a token as part of the history (prompt tokens too) for the repetition penalty. */
SEAOPT_API void seaopt_sampler_accept(struct seaopt_sampler *smpl, seaopt_token token);
/* Forget the history and re-seed with the original seed. */
SEAOPT_API void seaopt_sampler_reset(struct seaopt_sampler *smpl);

#ifdef __cplusplus
}
#endif

#endif /* SEAOPT_H */
