// The OPT forward on the CPU, fp32: the reference every other backend is tested against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "attention/sea_cpu.h"
#include "model/opt_model.h"

namespace seaopt {

// KV cache of the CPU engine: per (layer, sequence) n_ctx rows of n_embd floats for K and for V.
struct KvCacheCpu {
    uint32_t n_layer = 0, n_seq = 0, n_ctx = 0, n_embd = 0;
    std::vector<float> k, v;  // [n_layer][n_seq][n_ctx][n_embd]

    void allocate(uint32_t layers, uint32_t seqs, uint32_t ctx, uint32_t embd);
    float *k_rows(uint32_t layer, uint32_t seq) { return k.data() + offset(layer, seq); }
    float *v_rows(uint32_t layer, uint32_t seq) { return v.data() + offset(layer, seq); }
    size_t offset(uint32_t layer, uint32_t seq) const {
        return ((size_t)layer * n_seq + seq) * (size_t)n_ctx * n_embd;
    }
};

// One token of a batch, already validated by the caller (ids, sequences and positions in range;
// each token's position p has keys 0..p-1 of its sequence either in the cache or earlier in the batch).
struct TokenSlot {
    int32_t token;
    int32_t pos;
    int32_t seq;
};

// SEA attention in the CPU engine (sea.md §2, §2.12): which layers run it, their parameters, and the
// decode state of each (sequence, SEA layer), kept beside the KV cache. Invariant kept by the context:
// state(seq, l).n_tokens == the sequence's length for every SEA layer l.
struct SeaCpuState {
    cpu::SeaConfig cfg;
    uint32_t n_layer = 0, n_seq = 0;
    std::vector<uint8_t> on;                  // [n_layer]: 1 = the layer runs SEA, 0 = dense
    std::vector<cpu::SeaParams> params;       // [n_layer]; empty for dense layers
    std::vector<cpu::SeaDecodeState> states;  // [n_seq][n_layer]; reset only for SEA layers

    bool any() const;
    cpu::SeaDecodeState &state(uint32_t seq, uint32_t layer) { return states[(size_t)seq * n_layer + layer]; }
    uint64_t params_bytes() const;  // host bytes of `params`
};

// An internal hook for inspection (model/opt_attention_maps.h): when passed to opt_forward_cpu, the forward
// copies layer `layer`'s attention inputs of the batch -- q (already scaled by head_dim^-1/2), k, v, each
// [n, n_embd] -- into it after computing them and returns right there: later layers, the head and the logits
// are not computed (the KV cache needs only layers 0..layer).
struct CpuForwardCapture {
    uint32_t layer = 0;
    std::vector<float> q, k, v;
};

// Runs the tokens through the model, writing their keys and values into `kv`, and fills
// logits[r * n_vocab ...] for each batch index output_tokens[r].
// sea (optional): its SEA layers run SEA instead of dense attention. For each sequence of the batch, a
// fresh one (its first token at position 0) goes through sea_attention_prefill_cpu, which sets the
// state; several tokens continuing a sequence (a chunk of a prompt after the first) through
// sea_attention_continue_cpu, one through sea_attention_decode_cpu_cached. The states of the batch's
// sequences are updated in place: the caller restores them if this throws.
// should_abort (optional; seaopt_context_params.abort_callback): asked before each layer and before the output head;
// true stops the forward with SEAOPT_ERR_CANCELLED (what it wrote past the sequences' lengths is never read; the
// caller restores the SEA states as for any failure).
void opt_forward_cpu(const OptModel &model, KvCacheCpu &kv, const std::vector<TokenSlot> &tokens,
                     const std::vector<int32_t> &output_tokens, float *logits, int n_threads,
                     SeaCpuState *sea = nullptr, CpuForwardCapture *capture = nullptr,
                     const std::function<bool()> &should_abort = {});

}  // namespace seaopt
