// A context: the KV cache, the logits of the last batch, and the rules of seaopt_decode.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/opt_forward_cpu.h"
#include "model/opt_model.h"
#include "seaopt.h"

namespace seaopt {

struct Context {
    const OptModel *model = nullptr;
    uint32_t n_ctx = 0, n_batch = 0, n_seq_max = 0;
    seaopt_attention attention = SEAOPT_ATTENTION_DENSE;
    int n_threads = 1;
    seaopt_abort_callback abort_callback = nullptr;  // seaopt_context_params.abort_callback
    void *abort_callback_data = nullptr;

    std::vector<int32_t> seq_len;  // positions held per sequence
    KvCacheCpu kv;                                            // CPU engine
    // SEA attention (CPU engine, attention = SEA): the SEA layers, their parameters and the decode state
    // of each (sequence, SEA layer), beside the KV cache; sea.any() is false for dense attention.
    SeaCpuState sea;
    // Each sequence's tokens (seq_len[s] of them): SEA's kv_truncate replays them; saved states carry them.
    std::vector<std::vector<int32_t>> seq_tokens;
    uint64_t sea_bytes = 0;                        // SEA: planned host bytes of the states and parameters
    std::unique_ptr<OptCudaState, OptCudaStateDeleter> cuda;  // CUDA engine

    // Outputs of the last batch.
    std::vector<float> logits;        // [n_outputs, n_vocab] (unless logits_view)
    // The GPU engine's persistent decode step leaves its one row in the engine's pinned memory: read there, not
    // copied (model/opt_cuda.h opt_forward_cuda); null otherwise.
    const float *logits_view = nullptr;
    std::vector<float> next_logits;   // the forward's output buffer, swapped into `logits` on success
    std::vector<int32_t> output_row;  // batch index -> row of `logits`, or -1
    int32_t last_output_index = -1;   // batch index of the last token that asked for logits
    bool last_batch_nll = false;      // the last batch ran through seaopt_decode_nll: no logits kept
    // The GPU's greedy pick of the only logits row of the last batch (engine/argmax_key.h), or -1 (the CPU
    // engine, several rows, a NaN or only -inf among the logits): a greedy sampler takes it without a scan.
    int32_t greedy_token = -1;
};

// Validates the parameters against the model and allocates the KV cache. plan_only (seaopt_context_memory_estimate):
// validates and plans the same way but allocates nothing (no KV cache, no device memory).
void context_init(Context &ctx, const OptModel &model, const seaopt_context_params &params, bool plan_only = false);

// The CPU engine's KV cache: fp32 keys and values of every layer, sequence and position.
uint64_t context_cpu_kv_bytes(const Context &ctx);

// seaopt_decode: validates the whole batch first (so an invalid batch changes nothing), then runs it.
void context_decode(Context &ctx, const seaopt_batch &batch);

// seaopt_decode_nll: the same validation and KV rules, but for each token that asks for an output
// writes out_nll[i] = -log softmax(logits_i)[targets[i]] instead of keeping logits. Nothing is
// written to out_nll, and the cache is unchanged, if anything fails.
void context_decode_nll(Context &ctx, const seaopt_batch &batch, const seaopt_token *targets, float *out_nll);

// seaopt_generate_greedy(_until): n_predict greedy steps of sequence seq from `token` (the picks to out), stopping
// after the first pick that is stop_token (>= 0; -1: never); returns the number of picks written. Validated first;
// on an error the sequence is as it was before the call.
int32_t context_generate_greedy(Context &ctx, int32_t seq, int32_t token, int32_t n_predict, int32_t stop_token,
                                int32_t *out);

const float *context_logits_ith(const Context &ctx, int32_t i);
// Context::greedy_token where token i (-1: the last that asked for logits) has the only logits row; else -1.
// Never throws.
int32_t context_greedy_token_ith(const Context &ctx, int32_t i) noexcept;

// Empties every sequence (and resets the SEA decode states). Never throws.
void context_kv_clear(Context &ctx) noexcept;

// Keeps positions [0, n_keep) of a sequence (-1 = all). With SEA attention a sequence cut short
// (0 < n_keep < its length) is recomputed: its SEA states cannot be rewound (sea.md §2.12 keeps running
// sums and the CNN's last rows), so the model re-runs over the sequence's first n_keep tokens, which
// rebuilds them exactly as a fresh prefill would. If that fails the sequence is left empty.
void context_kv_truncate(Context &ctx, int32_t seq_id, int32_t n_keep);

// Sequence dst becomes a copy of sequence src: its tokens, keys and values, and SEA decode states (a shared prompt
// decoded once, then continued in several sequences). src == dst: nothing. If a device copy fails, dst is left empty.
void context_kv_seq_cp(Context &ctx, int32_t src, int32_t dst);

// seq_id as an index into the context's sequences; throws SEAOPT_ERR_INVALID_ARGUMENT naming it when it is outside
// [0, n_seq_max).
uint32_t context_seq_index(const Context &ctx, int32_t seq_id);

// Sequence seq holds nothing: no positions, no tokens (and, CPU engine, SEA states at length 0). What a failed
// replay, copy or restore leaves. Never throws.
void context_empty_sequence(Context &ctx, uint32_t seq) noexcept;

// A flag per layer -> "0-1,3,5-7" (for messages).
std::string layer_ranges(const std::vector<uint8_t> &on);

// "0,3,5-7" -> a flag per layer (1 = listed); NULL or "" = every layer. Throws
// SEAOPT_ERR_INVALID_ARGUMENT naming the bad item or the layer out of range.
std::vector<uint8_t> parse_layer_list(const char *list, uint32_t n_layer);

}  // namespace seaopt
