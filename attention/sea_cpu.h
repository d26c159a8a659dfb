// SEA attention (Sparse linear attention with an Estimated Attention mask, ICLR 2024), CPU reference in
// fp32, one layer. It follows ../shared/docs/sea.md ("sea.md" below), which describes the authors' code
// (code name "perlin"), causal / OPT path:
//   estimator  (§2.2-§2.6): Performer linear attention on (q, k, [E_pos ; v]) -> encoder MLP -> row decoder
//                            -> causal dilated CNN -> Â = softmax over K compressed cells, per (head, query);
//   selection  (§2.7):       one top-k per query over all H·K cells, budget n_t = round(H·k·K/(t+1));
//   expansion  (§2.8):       each selected cell c of row t -> keys [round(c·s), round((c+1)·s)), s = (t+1)/K;
//   attention  (§2.9-§2.10): exact softmax over the selected keys per head, gated by σ(s_prob), mixed with the
//                            cumulative mean of v through σ(s_mix).
// Nothing here is O(T²): the estimator is O(T·H·K) and the sparse attention reads ≈ H·k keys per query.
//
// Layouts: q, k, v and out are [T, H·64] row-major (the engine's per-token layout, heads contiguous); q is
// already multiplied by head_dim^-1/2 = 1/8 as OPT does after q_proj (sea.md §1, §2.9: SEA never rescales).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace seaopt::cpu {

// Fixed architecture constants of the OPT/causal SEA module (sea.md §1, §2.4-§2.6, §5.1).
constexpr size_t kSeaHeadDim = 64;       // d: the only head size the §5.1 shapes describe
constexpr size_t kSeaEncHidden = 128;    // d' = 2d: encoder width (Z)
constexpr size_t kSeaEncInput = 192;     // 3d: encoder input [C_perf (2d) ; v (d)]
constexpr size_t kSeaInnerChannels = 2;  // c_h: image channels per head (PERLIN_HOTFIX_OPT_INNER_CH default)
constexpr size_t kSeaWidthDown = 4;      // c_s: the image is K/4 wide before the ×4 upsample
constexpr size_t kSeaConvStoredRows = 5; // stored causal kernel height (2·3-1); rows 0..2 live (§2.6)
constexpr size_t kSeaConvLiveRows = 3;
constexpr size_t kSeaConvCols = 3;

// The largest sparsity budget k for a compressed width K: the per-query budget H·k·K/(t+1) of sea.md §2.7 is
// computed in fp32, so k·K must be exact there (<= 2^24). The one rule the config check, the model-file check and the
// context's sea_k check apply.
inline size_t sea_max_k(size_t K) { return ((size_t)1 << 24) / K; }

struct SeaConfig {
    size_t n_head = 0;                // H
    size_t head_dim = kSeaHeadDim;    // d; must be 64
    size_t k = 64;                    // sparsity budget ≈ keys per query per head (§2.7), also the cap per cell (§2.8)
    size_t K = 64;                    // compressed width ("attention_predictor_length"); a multiple of 4
    size_t n_features = 33;           // m: Performer random features (nbf = 8 -> 33)
    size_t n_pos_table = 2048;        // rows of the learned positional table E_pos (§2.2)
    // Positions the table covers. Equal to n_pos_table: position p uses row p. Larger: the table is stretched
    // by PyTorch's "nearest" interpolation to n_pos_ctx rows (§2.2, the authors' long-context runs), once for
    // the model, so that prefill and decode agree; see sea_positional_row_index.
    size_t n_pos_ctx = 2048;
};

// Learned tensors of ONE layer, fp32, row-major, PyTorch shapes. Names in brackets are the state_dict keys
// after "model.decoder.layers.{i}.self_attn.perlin_self_attention.attention." (sea.md §5.1).
struct SeaParams {
    std::vector<float> pos_table;       // [n_pos_table, 64]     [v_eye_learned_causal] (1,1,2048,64): E_pos
    std::vector<float> performer_proj;  // [m, 64]               [performer.projection_matrix]: W
    std::vector<float> enc_w;           // [128, 192]            [attention_predictor_enc.0.weight]
    std::vector<float> enc_b;           // [128]                 [attention_predictor_enc.0.bias]
    std::vector<float> enc_norm_w;      // [128]                 [attention_predictor_enc.1.weight]
    std::vector<float> enc_norm_b;      // [128]                 [attention_predictor_enc.1.bias]
    std::vector<float> dec_row_w;       // [K/2, 128]            [attention_predictor_dec_row.0.weight]
    std::vector<float> dec_row_b;       // [K/2]                 [attention_predictor_dec_row.0.bias]
    std::vector<float> cnn_norm1_w;     // [K/4]                 [attention_predictor_cnn.0.module.weight]
    std::vector<float> cnn_norm1_b;     // [K/4]                 [attention_predictor_cnn.0.module.bias]
    // The causal convs, [attention_predictor_cnn.1.module.net.{0,2,5}.module.{weight,weight_mask,bias}]. A mask
    // may be left empty: it then means the stored one (ones in kernel rows 0..2, zeros in rows 3..4; all ones
    // for conv4). The effective kernel is weight ⊙ mask, as the module computes it.
    std::vector<float> conv1_w;         // [2H, 2H, 5, 3]        net.0 weight
    std::vector<float> conv1_mask;      // [2H, 2H, 5, 3] or {}  net.0 weight_mask
    std::vector<float> conv1_b;         // [2H]                  net.0 bias
    std::vector<float> conv2_w;         // [2H, 2H, 5, 3]        net.2 weight
    std::vector<float> conv2_mask;      // [2H, 2H, 5, 3] or {}  net.2 weight_mask
    std::vector<float> conv2_b;         // [2H]                  net.2 bias
    std::vector<float> conv4_w;         // [H, 2H, 1, 1]         net.5 weight
    std::vector<float> conv4_mask;      // [H, 2H, 1, 1] or {}   net.5 weight_mask
    std::vector<float> conv4_b;         // [H]                   net.5 bias
    std::vector<float> cnn_norm2_w;     // [K]                   [attention_predictor_cnn.2.module.weight]
    std::vector<float> cnn_norm2_b;     // [K]                   [attention_predictor_cnn.2.module.bias]
    std::vector<float> scaler_w;        // [2, 128]              [attention_predictor_dec_scaler.0.weight] s_prob; s_mix
    std::vector<float> scaler_b;        // [2]                   [attention_predictor_dec_scaler.0.bias]
};

// One tensor of SeaParams: its §5.1 key (after the prefix above), shape, and where it lives in the struct.
struct SeaTensorSpec {
    std::string key;
    std::vector<size_t> shape;
    std::vector<float> SeaParams::*member;
    bool optional;  // the weight masks: may be left empty
};
std::vector<SeaTensorSpec> sea_tensor_specs(const SeaConfig &cfg);

// Throws seaopt::Error (SEAOPT_ERR_INVALID_ARGUMENT) for a config the reference does not run, or params
// whose sizes do not match it, or a weight mask that is not zero in kernel rows 3..4 (it would read the future).
void sea_validate_config(const SeaConfig &cfg);
void sea_validate(const SeaConfig &cfg, const SeaParams &params);

// Row of E_pos used at position pos (sea.md §2.2), PyTorch "nearest" from n_pos_table to n_pos_ctx rows.
size_t sea_positional_row_index(const SeaConfig &cfg, size_t pos);

// Cells kept for query row t (sea.md §2.7): clamp(round(H·k·K/(t+1)), 1, H·K), evaluated as the authors' PyTorch
// code does (fp32: (1/(t+1))·(k·K), then ·H, then round half to even).
size_t sea_row_budget(const SeaConfig &cfg, size_t t);

// Keys of query row t for a set of selected cells (flat index h·K + c, ascending), sea.md §2.8 FlatCSR rule:
// cell c -> [v0, v1), v0 = round(c·s), v1 = round((c+1)·s), s = (t+1)/K, round half away from zero, at most k
// keys per cell (uniformly spaced when capped). s and the products are the authors' fp32 values:
// s = fl32((t+1)·fl32(1/K)), v0 = roundf(fl32(c·s)) (exact for power-of-two K; see the .cpp). keys: grouped by
// head (head_ptr, H+1 entries), cell order inside a head, descending inside a cell (the authors' FlatCSR order).
// Every key is in [0, t].
void sea_expand_cells_to_keys(const SeaConfig &cfg, size_t t, const int32_t *cells, size_t n_cells,
                              std::vector<int32_t> &keys, std::vector<int32_t> &head_ptr);

// Optional intermediate results, for tests and debugging. Prefill fills T rows; decode fills one (T = 1).
struct SeaDebug {
    size_t n_rows = 0;
    std::vector<float> probs;               // [H, T, K] estimated compressed probabilities Â (§2.6)
    std::vector<float> s_prob, s_mix;       // [H, T] gate logits before σ (§2.9, §2.10)
    std::vector<int32_t> budget;            // [T] n_t (§2.7)
    std::vector<int32_t> selected_row_ptr;  // [T+1] row t's cells are selected_cells[ptr[t] .. ptr[t+1])
    std::vector<int32_t> selected_cells;    // flat h·K + c, ascending within a row
    std::vector<float> threshold;           // [T] Â of the n_t-th largest cell (the smallest kept)
    // [T] threshold minus the largest Â left out; +inf when every cell is kept. 0 is a tie at the boundary:
    // there the selection depends on tie-breaking (torch.topk / torch.sort are unspecified), count such rows.
    std::vector<float> gap;
};

// State carried between decode steps of one sequence, for one layer (sea.md §2.12).
struct SeaDecodeState {
    size_t n_tokens = 0;                // tokens seen; the next position
    std::vector<float> perf_k_sum;      // [H, m]        S_k (§2.3)
    std::vector<float> perf_kv_sum;     // [H, m, 128]   S_kv
    std::vector<float> v_sum;           // [H·64]        Σ v, for the cumulative mean (§2.10)
    std::vector<float> image_hist;      // [4, 2H, K/4]  LayerNormed decoder image rows, row r in slot r % 4 (§2.6)
    std::vector<float> conv1_hist;      // [4, 2H, K/4]  ReLU(conv1) rows, row r in slot r % 4
    std::vector<float> k_cache, v_cache;  // [n_tokens, H·64] past keys/values (sea_attention_decode_cpu only)

    void reset(const SeaConfig &cfg);   // empty sequence
};

// Full causal sequence from position 0. out: [T, H·64]. state_after (optional): set to continue decoding at
// position T (its KV copy included). n_threads: OpenMP threads.
void sea_attention_prefill_cpu(const SeaConfig &cfg, const SeaParams &params, const float *q, const float *k,
                               const float *v, size_t T, float *out, SeaDebug *debug = nullptr,
                               SeaDecodeState *state_after = nullptr, int n_threads = 1);

// One token at position pos == state.n_tokens; q_t, k_t, v_t, out_t: [H·64]. Appends k_t, v_t to the
// state's own KV copy and reads the past from it.
void sea_attention_decode_cpu(const SeaConfig &cfg, const SeaParams &params, SeaDecodeState &state,
                              const float *q_t, const float *k_t, const float *v_t, size_t pos, float *out_t,
                              SeaDebug *debug = nullptr, int n_threads = 1);

// The same with the keys/values read from the caller's KV cache: rows 0..pos (the new token's included) at
// k_rows + j·kv_stride, v_rows + j·kv_stride. The state's k_cache / v_cache are neither read nor written.
void sea_attention_decode_cpu_cached(const SeaConfig &cfg, const SeaParams &params, SeaDecodeState &state,
                                     const float *q_t, const float *k_rows, const float *v_rows, size_t kv_stride,
                                     size_t pos, float *out_t, SeaDebug *debug = nullptr, int n_threads = 1);

// Continues the sequence of `state` (state.n_tokens = p0 tokens so far) with T more tokens at positions
// p0 .. p0+T-1, row-parallel: what T calls of sea_attention_decode_cpu_cached give, bit for bit (per row the same
// arithmetic in the same order). q, out: [T, H·64]; the keys and values of positions 0 .. p0+T-1 (the T new ones
// included) at k_rows + j·kv_stride, v_rows + j·kv_stride. The state's k_cache / v_cache are neither read nor
// written. On an exception the state is unchanged.
void sea_attention_continue_cpu(const SeaConfig &cfg, const SeaParams &params, SeaDecodeState &state, const float *q,
                                const float *k_rows, const float *v_rows, size_t kv_stride, size_t T, float *out,
                                SeaDebug *debug = nullptr, int n_threads = 1);

}  // namespace seaopt::cpu
