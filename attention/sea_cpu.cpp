// SEA attention, fp32 CPU reference: sea.md §2 step by step (see the header for the overview).
//
// Prefill and decode share every per-row function below, with the same arithmetic in the same order, so a
// token decoded step by step gets bit-for-bit the prefill result (the tests allow 1e-5 anyway).
// Internal layouts are token-major: a "row" is (t, h), t outer, so one token's data is contiguous and decode
// is prefill with T = 1.
#include "attention/sea_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/cpu_ops.h"
#include "engine/error.h"
#include "engine/omp_error.h"

namespace seaopt::cpu {
namespace {

constexpr float kLayerNormEps = 1e-5f;   // every SEA LayerNorm (sea.md §2.4, §2.6)
constexpr float kFeatureEps = 1e-3f;     // φ(x) = ReLU(x'Wᵀ) + 1e-3, performer's kernel_epsilon (§2.3)
constexpr float kLinearAttnEps = 1e-6f;  // added to every element of S_k in the denominator (§2.3)
constexpr size_t kVcatWidth = 2 * kSeaHeadDim;  // [E_pos row ; v] (§2.2)

// Sizes derived from the config.
struct Dims {
    size_t H, HD, m, K, W4, C, row_width;
    explicit Dims(const SeaConfig &cfg)
        : H(cfg.n_head),
          HD(cfg.n_head * kSeaHeadDim),
          m(cfg.n_features),
          K(cfg.K),
          W4(cfg.K / kSeaWidthDown),
          C(kSeaInnerChannels * cfg.n_head),
          row_width(kSeaInnerChannels * cfg.K / kSeaWidthDown) {}
    size_t image_row() const { return C * W4; }  // one time row of the decoder image, all channels
};

std::string shape_str(const std::vector<size_t> &s) {
    std::string r = "(";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + ")";
}

size_t numel(const std::vector<size_t> &s) {
    size_t n = 1;
    for (size_t d : s) n *= d;
    return n;
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// ---- estimator weights prepared once per call ---------------------------------------------------------------

// A causal conv's live weights w ⊙ weight_mask (the module multiplies them in forward), kernel rows 0..2 only.
// Rows 3..4 are dead: validation demands a zero mask there (§2.6: only rows t-4, t-2, t are read).
struct CausalConv3x3 {
    std::vector<float> w;  // [c_out, c_in, 3, 3]
    const float *b = nullptr;
    size_t c_out = 0, c_in = 0;
};

CausalConv3x3 live_conv3x3(const std::vector<float> &w, const std::vector<float> &mask, const std::vector<float> &b,
                           size_t c_out, size_t c_in) {
    CausalConv3x3 cw;
    cw.c_out = c_out;
    cw.c_in = c_in;
    cw.b = b.data();
    cw.w.resize(c_out * c_in * kSeaConvLiveRows * kSeaConvCols);
    for (size_t oc = 0; oc < c_out * c_in; ++oc) {
        for (size_t a = 0; a < kSeaConvLiveRows; ++a) {
            for (size_t x = 0; x < kSeaConvCols; ++x) {
                const size_t src = (oc * kSeaConvStoredRows + a) * kSeaConvCols + x;
                const float mk = mask.empty() ? 1.0f : mask[src];
                cw.w[(oc * kSeaConvLiveRows + a) * kSeaConvCols + x] = w[src] * mk;
            }
        }
    }
    return cw;
}

struct Conv1x1 {
    std::vector<float> w;  // [c_out, c_in]
    const float *b = nullptr;
};

Conv1x1 live_conv1x1(const std::vector<float> &w, const std::vector<float> &mask, const std::vector<float> &b) {
    Conv1x1 cw;
    cw.b = b.data();
    cw.w = w;
    if (!mask.empty()) {
        for (size_t i = 0; i < cw.w.size(); ++i) cw.w[i] *= mask[i];
    }
    return cw;
}

struct EstimatorWeights {
    CausalConv3x3 conv1, conv2;
    Conv1x1 conv4;
    EstimatorWeights(const SeaConfig &cfg, const SeaParams &p) {
        const Dims dm(cfg);
        conv1 = live_conv3x3(p.conv1_w, p.conv1_mask, p.conv1_b, dm.C, dm.C);
        conv2 = live_conv3x3(p.conv2_w, p.conv2_mask, p.conv2_b, dm.C, dm.C);
        conv4 = live_conv1x1(p.conv4_w, p.conv4_mask, p.conv4_b);
    }
};

// ---- §2.2-§2.3: V_cat and the causal Performer -------------------------------------------------------------

// sea.md §2.2: V_cat row of (t, h) = [E_pos[row(t)] ; v[t, h]] (the table row is shared by all heads).
void vcat_row(float *vcat, const SeaConfig &cfg, const SeaParams &p, size_t pos, const float *v_th) {
    std::memcpy(vcat, p.pos_table.data() + sea_positional_row_index(cfg, pos) * kSeaHeadDim, kSeaHeadDim * 4);
    std::memcpy(vcat + kSeaHeadDim, v_th, kSeaHeadDim * 4);
}

// sea.md §2.3: φ(x) = ReLU((d^-1/4 · x) Wᵀ) + 1e-3, ReLU random features (performer generalized_kernel).
// q already carries d^-1/2 from OPT; the d^-1/4 here is performer's own data_normalizer.
void performer_features(float *phi, const float *x, const float *W, size_t m) {
    const float normalizer = 0.35355339059327373f;  // 64^-0.25
    float xs[kSeaHeadDim];
    for (size_t d = 0; d < kSeaHeadDim; ++d) xs[d] = normalizer * x[d];
    for (size_t j = 0; j < m; ++j) {
        const float *wj = W + j * kSeaHeadDim;
        float acc = 0.0f;
        for (size_t d = 0; d < kSeaHeadDim; ++d) acc += xs[d] * wj[d];
        phi[j] = (acc > 0.0f ? acc : 0.0f) + kFeatureEps;
    }
}

// sea.md §2.3, one (t, h): S_k += φ(k_t); S_kv += φ(k_t) ⊗ V_cat_t; then
// C_perf = φ(q_t)ᵀ S_kv / (φ(q_t) · (S_k + 1e-6)). Running sums: nothing here depends on later tokens.
void performer_step(float *c_perf, const float *phi_q, const float *phi_k, const float *vcat, float *S_k, float *S_kv,
                    size_t m) {
    for (size_t j = 0; j < m; ++j) {
        S_k[j] += phi_k[j];
        float *row = S_kv + j * kVcatWidth;
        for (size_t e = 0; e < kVcatWidth; ++e) row[e] += phi_k[j] * vcat[e];
    }
    float denom = 0.0f;
    for (size_t j = 0; j < m; ++j) denom += phi_q[j] * (S_k[j] + kLinearAttnEps);
    const float inv = 1.0f / denom;
    for (size_t e = 0; e < kVcatWidth; ++e) c_perf[e] = 0.0f;
    for (size_t j = 0; j < m; ++j) {
        const float *row = S_kv + j * kVcatWidth;
        for (size_t e = 0; e < kVcatWidth; ++e) c_perf[e] += phi_q[j] * row[e];
    }
    for (size_t e = 0; e < kVcatWidth; ++e) c_perf[e] *= inv;
}

// ---- §2.4-§2.5: encoder MLP, gates, row decoder -------------------------------------------------------------

void gelu_inplace(float *x, size_t n) {  // exact erf form (nn.GELU default)
    for (size_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

// sea.md §2.4: Z = GELU(LayerNorm_128(X W_encᵀ + b_enc)), X = [C_perf ; v] (192), for n (t, h) rows.
void encoder_rows(float *z, const float *x, size_t n, const SeaParams &p, int n_threads) {
    linear(z, x, p.enc_w.data(), p.enc_b.data(), n, kSeaEncInput, kSeaEncHidden, n_threads);
    layer_norm(z, z, p.enc_norm_w.data(), p.enc_norm_b.data(), n, kSeaEncHidden, kLayerNormEps);
    gelu_inplace(z, n * kSeaEncHidden);
}

// sea.md §2.9: [s_prob, s_mix] = Z W_sᵀ + b_s, per (t, h) row.
void gate_rows(float *gates, const float *z, size_t n, const SeaParams &p, int n_threads) {
    linear(gates, z, p.scaler_w.data(), p.scaler_b.data(), n, kSeaEncHidden, 2, n_threads);
}

// sea.md §2.5 and §2.6 step 1: R = Z W_rowᵀ + b_row (K/2 per (t, h)); the two contiguous halves of width K/4
// become channels 2h and 2h+1. With rows (t, h) t-major, R's memory already IS the image [T][2H][K/4]
// (channel 2h+s of time t at (t·2H + 2h + s)·K/4). Then LayerNorm over the width, per (t, channel).
void decoder_image_rows(float *image, const float *z, size_t n_tokens, const SeaConfig &cfg, const SeaParams &p,
                        int n_threads) {
    const Dims dm(cfg);
    linear(image, z, p.dec_row_w.data(), p.dec_row_b.data(), n_tokens * dm.H, kSeaEncHidden, dm.row_width, n_threads);
    layer_norm(image, image, p.cnn_norm1_w.data(), p.cnn_norm1_b.data(), n_tokens * dm.C, dm.W4, kLayerNormEps);
}

// ---- §2.6: the causal CNN decoder ---------------------------------------------------------------------------

// sea.md §2.6 steps 2-5 for output row t: y[co, x] = ReLU(b[co] + Σ_ci Σ_a Σ_b w[co,ci,a,b] · in[ci, t-4+2a, x-2+2b]),
// zero outside the image. rows[a] is input row t-4+2a ([C][W4]), nullptr where that row is before position 0.
void causal_dilated_conv_row(float *y, const float *const rows[kSeaConvLiveRows], const CausalConv3x3 &cw, size_t W4) {
    for (size_t co = 0; co < cw.c_out; ++co) {
        for (size_t x = 0; x < W4; ++x) {
            float acc = cw.b[co];
            for (size_t ci = 0; ci < cw.c_in; ++ci) {
                const float *w = cw.w.data() + (co * cw.c_in + ci) * kSeaConvLiveRows * kSeaConvCols;
                for (size_t a = 0; a < kSeaConvLiveRows; ++a) {
                    if (!rows[a]) continue;
                    const float *in = rows[a] + ci * W4;
                    for (size_t b = 0; b < kSeaConvCols; ++b) {
                        const long long xx = (long long)x - 2 + 2 * (long long)b;
                        if (xx < 0 || xx >= (long long)W4) continue;
                        acc += w[a * kSeaConvCols + b] * in[xx];
                    }
                }
            }
            y[co * W4 + x] = acc > 0.0f ? acc : 0.0f;
        }
    }
}

// sea.md §2.6 steps 6-9 and the softmax, one time row: ×4 nearest upsample along the width, 1×1 conv 2H -> H
// on the width padded by one column each side (border columns = bias), "area" resize K+2 -> K (adaptive
// average pooling), LayerNorm_K, softmax over K. y: [2H][K/4]; probs: [H][K]. scratch: at least 3K+2 floats.
void cnn_output_row(float *probs, const float *y, const SeaConfig &cfg, const SeaParams &p, const Conv1x1 &conv4,
                    float *scratch) {
    const Dims dm(cfg);
    const size_t K = dm.K, padded_width = K + 2;
    float *narrow = scratch;          // [K/4]   conv4 before the upsample
    float *padded = scratch + K;      // [K+2]
    float *logits = padded + padded_width;  // [K]
    for (size_t h = 0; h < dm.H; ++h) {
        // A 1×1 conv commutes with repeating columns: convolve at width K/4, then repeat each column 4 times.
        const float *wh = conv4.w.data() + h * dm.C;
        for (size_t x = 0; x < dm.W4; ++x) {
            float acc = conv4.b[h];
            for (size_t c = 0; c < dm.C; ++c) acc += wh[c] * y[c * dm.W4 + x];
            narrow[x] = acc;
        }
        padded[0] = conv4.b[h];
        padded[padded_width - 1] = conv4.b[h];
        for (size_t x = 0; x < K; ++x) padded[x + 1] = narrow[x / kSeaWidthDown];
        // Adaptive average pooling windows: [floor(x(K+2)/K), ceil((x+1)(K+2)/K)).
        for (size_t x = 0; x < K; ++x) {
            const size_t start = x * padded_width / K;
            const size_t end = ((x + 1) * padded_width + K - 1) / K;
            float sum = 0.0f;
            for (size_t i = start; i < end; ++i) sum += padded[i];
            logits[x] = sum / (float)(end - start);
        }
        layer_norm(logits, logits, p.cnn_norm2_w.data(), p.cnn_norm2_b.data(), 1, K, kLayerNormEps);
        float max_logit = -INFINITY;
        for (size_t x = 0; x < K; ++x) max_logit = std::max(max_logit, logits[x]);
        double sum = 0.0;
        float *ph = probs + h * K;
        for (size_t x = 0; x < K; ++x) {
            ph[x] = std::exp(logits[x] - max_logit);
            sum += ph[x];
        }
        const float inv = (float)(1.0 / sum);
        for (size_t x = 0; x < K; ++x) ph[x] *= inv;
    }
}

// ---- §2.7-§2.10: selection, expansion, sparse attention, mixing ----------------------------------------------

// sea.md §2.7: keep the `budget` largest of the n = H·K values of one query row. A per-row selection
// (std::nth_element), not a sort. Order: larger value first, then smaller flat index; NaN ranks last. This
// makes the result deterministic. torch.topk / torch.sort(stable=False) leave ties unspecified, so where the
// n_t-th and the (n_t+1)-th values are equal (gap == 0) the reference may keep the other cell; tests count
// such rows instead of demanding the same cells.
void select_top_cells(const float *values, size_t n, size_t budget, std::vector<int32_t> &order,
                      std::vector<int32_t> &selected, float *threshold, float *gap) {
    auto rank_value = [values](int32_t i) {
        const float x = values[i];
        return std::isnan(x) ? -INFINITY : x;
    };
    auto before = [&](int32_t a, int32_t b) {
        const float va = rank_value(a), vb = rank_value(b);
        if (va != vb) return va > vb;
        return a < b;
    };
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    budget = std::min(budget, n);
    float next_best = -INFINITY;
    if (budget < n) {
        std::nth_element(order.begin(), order.begin() + (ptrdiff_t)(budget - 1), order.end(), before);
        for (size_t i = budget; i < n; ++i) next_best = std::max(next_best, rank_value(order[i]));
    }
    float smallest_kept = INFINITY;
    for (size_t i = 0; i < budget; ++i) smallest_kept = std::min(smallest_kept, rank_value(order[i]));
    selected.assign(order.begin(), order.begin() + (ptrdiff_t)budget);
    std::sort(selected.begin(), selected.end());  // head-major cell order, as the FlatCSR rows
    if (threshold) *threshold = smallest_kept;
    if (gap) *gap = budget < n ? smallest_kept - next_best : INFINITY;
}

// Per-thread scratch for one query row.
struct RowScratch {
    std::vector<int32_t> order, cells, keys, head_ptr;
    std::vector<float> scores;
};

// Where one query row's diagnostics go (prefill: row t of SeaDebug; nullptr: none wanted).
struct RowDebugSlot {
    int32_t *budget;
    float *threshold, *gap;
    std::vector<int32_t> *cells;
};

// sea.md §2.9-§2.10 for one query row t, given its estimate: grouped top-k, expansion, per-head softmax over
// the selected keys (q already scaled: no 1/√d here), ·σ(s_prob), Σ p·v, then
// out = σ(s_mix)·C_sparse + (1-σ(s_mix))·C_avg with C_avg = (Σ_{j≤t} v_j)/(t+1). A head with no key gets
// C_sparse = 0 (§2.9). gates_t: [H][2] (s_prob, s_mix); v_sum_t: Σ_{j≤t} v_j, [H·64].
void sparse_attention_row(float *out_t, size_t t, const SeaConfig &cfg, const float *probs_t, const float *gates_t,
                          const float *q_t, const float *k_rows, const float *v_rows, size_t kv_stride,
                          const float *v_sum_t, RowScratch &s, const RowDebugSlot *dbg) {
    const Dims dm(cfg);
    const size_t budget = sea_row_budget(cfg, t);
    float threshold = 0.0f, gap = 0.0f;
    select_top_cells(probs_t, dm.H * dm.K, budget, s.order, s.cells, &threshold, &gap);
    sea_expand_cells_to_keys(cfg, t, s.cells.data(), s.cells.size(), s.keys, s.head_ptr);
    if (dbg) {
        *dbg->budget = (int32_t)budget;
        *dbg->threshold = threshold;
        *dbg->gap = gap;
        *dbg->cells = s.cells;
    }
    const float inv_count = 1.0f / (float)(t + 1);
    for (size_t h = 0; h < dm.H; ++h) {
        const float *qh = q_t + h * kSeaHeadDim;
        const int32_t *keys = s.keys.data() + s.head_ptr[h];
        const size_t n_keys = (size_t)(s.head_ptr[h + 1] - s.head_ptr[h]);
        float c_sparse[kSeaHeadDim] = {};
        if (n_keys > 0) {
            if (s.scores.size() < n_keys) s.scores.resize(n_keys);
            float max_score = -INFINITY;
            for (size_t i = 0; i < n_keys; ++i) {
                const float *kj = k_rows + (size_t)keys[i] * kv_stride + h * kSeaHeadDim;
                float dot = 0.0f;
                for (size_t d = 0; d < kSeaHeadDim; ++d) dot += qh[d] * kj[d];
                s.scores[i] = dot;
                max_score = std::max(max_score, dot);
            }
            double sum = 0.0;  // softmax statistics in higher precision, as dense_cpu
            for (size_t i = 0; i < n_keys; ++i) {
                s.scores[i] = std::exp(s.scores[i] - max_score);
                sum += s.scores[i];
            }
            const float scale = (float)(1.0 / sum) * sigmoid(gates_t[h * 2 + 0]);
            for (size_t i = 0; i < n_keys; ++i) {
                const float pj = s.scores[i] * scale;
                const float *vj = v_rows + (size_t)keys[i] * kv_stride + h * kSeaHeadDim;
                for (size_t d = 0; d < kSeaHeadDim; ++d) c_sparse[d] += pj * vj[d];
            }
        }
        const float mix = sigmoid(gates_t[h * 2 + 1]);
        const float *vs = v_sum_t + h * kSeaHeadDim;
        float *oh = out_t + h * kSeaHeadDim;
        for (size_t d = 0; d < kSeaHeadDim; ++d) oh[d] = mix * c_sparse[d] + (1.0f - mix) * (vs[d] * inv_count);
    }
}

// ---- checks -------------------------------------------------------------------------------------------------

void check_position(const SeaConfig &cfg, size_t pos) {
    if (pos >= cfg.n_pos_ctx) {
        throw_invalid_argument("sea: position " + std::to_string(pos) + " is beyond the positional table's " +
                               std::to_string(cfg.n_pos_ctx) + " positions (SeaConfig::n_pos_ctx, sea.md §2.2)");
    }
}

void check_state(const SeaConfig &cfg, const SeaDecodeState &st) {
    const Dims dm(cfg);
    if (st.perf_k_sum.size() != dm.H * dm.m || st.perf_kv_sum.size() != dm.H * dm.m * kVcatWidth ||
        st.v_sum.size() != dm.HD || st.image_hist.size() != 4 * dm.image_row() ||
        st.conv1_hist.size() != 4 * dm.image_row()) {
        throw_invalid_argument("sea: decode state does not match the config (call SeaDecodeState::reset)");
    }
}

// Fills the debug struct's per-row arrays for n rows.
void debug_resize(SeaDebug &dbg, const SeaConfig &cfg, size_t n) {
    const Dims dm(cfg);
    dbg.n_rows = n;
    dbg.probs.assign(dm.H * n * dm.K, 0.0f);
    dbg.s_prob.assign(dm.H * n, 0.0f);
    dbg.s_mix.assign(dm.H * n, 0.0f);
    dbg.budget.assign(n, 0);
    dbg.threshold.assign(n, 0.0f);
    dbg.gap.assign(n, 0.0f);
    dbg.selected_row_ptr.assign(n + 1, 0);
    dbg.selected_cells.clear();
}

// Token-major [n][H][K] probs and [n][H][2] gates -> the debug struct's head-major arrays; per-row cells -> CSR.
void debug_fill(SeaDebug &dbg, const SeaConfig &cfg, size_t n, const float *probs, const float *gates,
                const std::vector<std::vector<int32_t>> &cells) {
    const Dims dm(cfg);
    for (size_t t = 0; t < n; ++t) {
        for (size_t h = 0; h < dm.H; ++h) {
            std::memcpy(dbg.probs.data() + (h * n + t) * dm.K, probs + (t * dm.H + h) * dm.K, dm.K * 4);
            dbg.s_prob[h * n + t] = gates[(t * dm.H + h) * 2 + 0];
            dbg.s_mix[h * n + t] = gates[(t * dm.H + h) * 2 + 1];
        }
        dbg.selected_row_ptr[t + 1] = dbg.selected_row_ptr[t] + (int32_t)cells[t].size();
        dbg.selected_cells.insert(dbg.selected_cells.end(), cells[t].begin(), cells[t].end());
    }
}

}  // namespace

// ---- public ---------------------------------------------------------------------------------------------------

std::vector<SeaTensorSpec> sea_tensor_specs(const SeaConfig &cfg) {
    const size_t H = cfg.n_head, C = kSeaInnerChannels * H, K = cfg.K;
    const std::vector<size_t> conv3{C, C, kSeaConvStoredRows, kSeaConvCols}, conv1{H, C, 1, 1};
    return {
        {"v_eye_learned_causal", {cfg.n_pos_table, kSeaHeadDim}, &SeaParams::pos_table, false},
        {"performer.projection_matrix", {cfg.n_features, kSeaHeadDim}, &SeaParams::performer_proj, false},
        {"attention_predictor_enc.0.weight", {kSeaEncHidden, kSeaEncInput}, &SeaParams::enc_w, false},
        {"attention_predictor_enc.0.bias", {kSeaEncHidden}, &SeaParams::enc_b, false},
        {"attention_predictor_enc.1.weight", {kSeaEncHidden}, &SeaParams::enc_norm_w, false},
        {"attention_predictor_enc.1.bias", {kSeaEncHidden}, &SeaParams::enc_norm_b, false},
        {"attention_predictor_dec_row.0.weight", {kSeaInnerChannels * K / kSeaWidthDown, kSeaEncHidden},
         &SeaParams::dec_row_w, false},
        {"attention_predictor_dec_row.0.bias", {kSeaInnerChannels * K / kSeaWidthDown}, &SeaParams::dec_row_b, false},
        {"attention_predictor_cnn.0.module.weight", {K / kSeaWidthDown}, &SeaParams::cnn_norm1_w, false},
        {"attention_predictor_cnn.0.module.bias", {K / kSeaWidthDown}, &SeaParams::cnn_norm1_b, false},
        {"attention_predictor_cnn.1.module.net.0.module.weight", conv3, &SeaParams::conv1_w, false},
        {"attention_predictor_cnn.1.module.net.0.module.weight_mask", conv3, &SeaParams::conv1_mask, true},
        {"attention_predictor_cnn.1.module.net.0.module.bias", {C}, &SeaParams::conv1_b, false},
        {"attention_predictor_cnn.1.module.net.2.module.weight", conv3, &SeaParams::conv2_w, false},
        {"attention_predictor_cnn.1.module.net.2.module.weight_mask", conv3, &SeaParams::conv2_mask, true},
        {"attention_predictor_cnn.1.module.net.2.module.bias", {C}, &SeaParams::conv2_b, false},
        {"attention_predictor_cnn.1.module.net.5.module.weight", conv1, &SeaParams::conv4_w, false},
        {"attention_predictor_cnn.1.module.net.5.module.weight_mask", conv1, &SeaParams::conv4_mask, true},
        {"attention_predictor_cnn.1.module.net.5.module.bias", {H}, &SeaParams::conv4_b, false},
        {"attention_predictor_cnn.2.module.weight", {K}, &SeaParams::cnn_norm2_w, false},
        {"attention_predictor_cnn.2.module.bias", {K}, &SeaParams::cnn_norm2_b, false},
        {"attention_predictor_dec_scaler.0.weight", {2, kSeaEncHidden}, &SeaParams::scaler_w, false},
        {"attention_predictor_dec_scaler.0.bias", {2}, &SeaParams::scaler_b, false},
    };
}

void sea_validate_config(const SeaConfig &cfg) {
    if (cfg.n_head == 0) throw_invalid_argument("sea: n_head must be at least 1");
    if (cfg.head_dim != kSeaHeadDim) {
        throw_invalid_argument("sea: head_dim " + std::to_string(cfg.head_dim) +
                               " is not supported (the SEA estimator's shapes are for head_dim 64, sea.md §5.1)");
    }
    if (cfg.K < kSeaWidthDown || cfg.K % kSeaWidthDown != 0) {
        throw_invalid_argument("sea: K (compressed width) " + std::to_string(cfg.K) +
                               " must be a positive multiple of 4 (the decoder image is K/4 wide, sea.md §2.5)");
    }
    if (cfg.k == 0) throw_invalid_argument("sea: k (sparsity budget) must be at least 1");
    if (cfg.n_features == 0) throw_invalid_argument("sea: n_features (m) must be at least 1");
    if (cfg.n_pos_table == 0 || cfg.n_pos_ctx == 0) {
        throw_invalid_argument("sea: the positional table needs at least one row and one position");
    }
    // Flat cell indices h·K + c and key indices are int32; k·K must be exact in fp32 for the budget (§2.7).
    constexpr size_t kMaxFlat = (size_t)1 << 30, kMaxExactF32 = (size_t)1 << 24;
    if (cfg.n_head > kMaxFlat / cfg.K || cfg.n_head > kMaxExactF32) {
        throw_invalid_argument("sea: " + std::to_string(cfg.n_head) + " heads x K = " + std::to_string(cfg.K) +
                               " cells per query is too many (the flat cell index h·K + c is 32-bit)");
    }
    if (cfg.n_pos_ctx > kMaxFlat) {
        throw_invalid_argument("sea: " + std::to_string(cfg.n_pos_ctx) + " positions is too many (at most 2^30)");
    }
    if (cfg.k > sea_max_k(cfg.K)) {
        throw_invalid_argument("sea: k = " + std::to_string(cfg.k) + " is out of range: with K = " +
                               std::to_string(cfg.K) + " it can be at most " + std::to_string(sea_max_k(cfg.K)) +
                               " (k·K <= 2^24: the budget of sea.md §2.7 is computed in fp32)");
    }
}

void sea_validate(const SeaConfig &cfg, const SeaParams &params) {
    sea_validate_config(cfg);
    for (const SeaTensorSpec &spec : sea_tensor_specs(cfg)) {
        const std::vector<float> &t = params.*spec.member;
        if (spec.optional && t.empty()) continue;
        if (t.size() != numel(spec.shape)) {
            throw_invalid_argument("sea: parameter " + spec.key + " has " + std::to_string(t.size()) +
                                   " elements, expected " + shape_str(spec.shape));
        }
    }
    // A causal conv's mask must kill kernel rows 3..4 (they would read rows t+2, t+4: the future).
    for (const std::vector<float> *mask : {&params.conv1_mask, &params.conv2_mask}) {
        if (mask->empty()) continue;
        const size_t n_kernels = mask->size() / (kSeaConvStoredRows * kSeaConvCols);
        for (size_t i = 0; i < n_kernels; ++i) {
            for (size_t a = kSeaConvLiveRows; a < kSeaConvStoredRows; ++a) {
                for (size_t x = 0; x < kSeaConvCols; ++x) {
                    if ((*mask)[(i * kSeaConvStoredRows + a) * kSeaConvCols + x] != 0.0f) {
                        throw_invalid_argument("sea: a conv weight_mask is not zero in kernel rows 3..4 (not causal)");
                    }
                }
            }
        }
    }
}

size_t sea_positional_row_index(const SeaConfig &cfg, size_t pos) {
    // PyTorch's nearest_idx (UpSample.h) for F.interpolate(E_pos, size=(n_pos_ctx, 64), mode="nearest").
    const size_t in = cfg.n_pos_table, out = cfg.n_pos_ctx;
    if (out == in) return pos;
    if (out == 2 * in) return pos >> 1;
    const float scale = (float)in / (float)out;
    const size_t idx = (size_t)std::floor((float)pos * scale);
    return std::min(idx, in - 1);
}

size_t sea_row_budget(const SeaConfig &cfg, size_t t) {
    // The authors' code (attention.py, causal_batch): per_item_top_k = H * (k * k_oversample * T_M /
    // causal_token_length) with causal_token_length = arange(1, T+1), a LongTensor; then torch.round and
    // clamp_min(1). A Python float divided by a tensor is Tensor.__rtruediv__ = reciprocal() * float, so in fp32:
    // fl(fl(fl(1/(t+1))·(k·K))·H), then half to even; the same on CPU and CUDA (IEEE reciprocal, multiplications
    // by scalars). The exact rational value can round the other way, e.g. H=3, k=5, K=20, t+1=24: 12.5 exact,
    // 12.500001 fp32 -> 13 (and H=3, k=1, K=100, t+1=24, row 23 of tests/data/sea/prefill_H3_T24_k1_K100). The
    // PyTorch reference (tests/sea/sea_reference.py, topk_budget) evaluates the same expression.
    const float inv_len = 1.0f / (float)(t + 1);
    const float per_head = inv_len * (float)(cfg.k * cfg.K);
    const float total = per_head * (float)cfg.n_head;
    const float rounded = std::nearbyint(total);  // round half to even (default rounding mode), as torch.round
    const size_t all_cells = cfg.n_head * cfg.K;
    if (!(rounded >= 1.0f)) return 1;
    if (rounded >= (float)all_cells) return all_cells;
    return (size_t)rounded;
}

void sea_expand_cells_to_keys(const SeaConfig &cfg, size_t t, const int32_t *cells, size_t n_cells,
                              std::vector<int32_t> &keys, std::vector<int32_t> &head_ptr) {
    const size_t H = cfg.n_head, K = cfg.K;
    for (size_t i = 0; i < n_cells; ++i) {
        if (cells[i] < 0 || (size_t)cells[i] >= H * K || (i > 0 && cells[i] <= cells[i - 1])) {
            throw_invalid_argument("sea: selected cells must be strictly ascending flat indices h·K + c < H·K");
        }
    }
    keys.clear();
    head_ptr.assign(H + 1, 0);
    // The interval map in the authors' arithmetic (causal_resize_m_to_t.py, scan_col METHOD 1, a CUDA-only path):
    //   scales = arange(1, T+1) / K     a CUDA LongTensor divided by a Python int. PyTorch's CUDA true division by
    //                                   a CPU scalar multiplies by its reciprocal (div_true_kernel_cuda: "compute
    //                                   a * reciprocal(b)"), so s = fl32((t+1) · fl32(1/K)), NOT fl32((t+1)/K);
    //   v_start = tl.math.round(b * scales)   fp32 product c·s, then libdevice roundf: half away from zero.
    // For power-of-two K every step is exact (= the exact rule round(c(t+1)/K)). For other K the three readings
    // differ: fp32 true division (t+1)/K, which this function used before, moves 22 of the 2,424 cell starts of
    // tests/data/sea/prefill_H3_T24_k1_K100 and e.g. cell 15 of row 41 for K = 20 (31.4999985 -> 31 instead of
    // 32); the exact rational rule differs from the authors' for K = 36, 68, 72, 100, .... The PyTorch reference
    // (tests/sea/sea_reference.py, cell_starts) computes the same fp32 expression, and the fixture's ref.cell_start
    // pins it (tests/sea/README.md, item 4). fl32(1/K) is the same whether torch forms it in fp32 or, as newer
    // versions do, in double and then rounds (checked for K <= 4096). v1 <= t+1 always holds (K·s rounds to t+1);
    // the clamp only guards fp32 for huge t.
    const float inv_K = (float)(1.0 / (double)K);
    const float s = (float)(t + 1) * inv_K;
    const long long row_len = (long long)t + 1;
    size_t i = 0;
    for (size_t h = 0; h < H; ++h) {
        for (; i < n_cells && (size_t)cells[i] / K == h; ++i) {
            const size_t c = (size_t)cells[i] % K;
            const long long v0 = std::min((long long)std::round((float)c * s), row_len);
            const long long v1 = std::min((long long)std::round((float)(c + 1) * s), row_len);
            const long long len = v1 - v0;
            if (len <= 0) continue;  // a cell with no key (t+1 < K)
            // Cap: at most k keys per cell, evenly spaced: v1 - 1 - floor(j·len/n) in exact integers, as sea.md
            // writes it. The authors' kernel computes trunc(j · (len / n)) with Triton's fp32 '/', which is PTX
            // div.full.f32 (an approximation within 2 ulp), so it has no bit-exact reading; the two agree for every
            // power-of-two k (the paper's 64, 128) and every k <= 13 (tests/sea/README.md, item 5).
            const long long n = std::min(len, (long long)cfg.k);
            for (long long j = 0; j < n; ++j) keys.push_back((int32_t)(v1 - 1 - (j * len) / n));
        }
        head_ptr[h + 1] = (int32_t)keys.size();
    }
}

void SeaDecodeState::reset(const SeaConfig &cfg) {
    sea_validate_config(cfg);
    const Dims dm(cfg);
    n_tokens = 0;
    perf_k_sum.assign(dm.H * dm.m, 0.0f);
    perf_kv_sum.assign(dm.H * dm.m * kVcatWidth, 0.0f);
    v_sum.assign(dm.HD, 0.0f);
    image_hist.assign(4 * dm.image_row(), 0.0f);
    conv1_hist.assign(4 * dm.image_row(), 0.0f);
    k_cache.clear();
    v_cache.clear();
}

namespace {

// Rows p0 .. p0+T-1 of one sequence (sea.md §2, row-parallel): q [T][H·64]; the keys and values of positions
// 0 .. p0+T-1 at k_rows + j·kv_stride, v_rows + j·kv_stride. st: with p0 > 0 the sequence's state at p0 (its
// Performer sums, Σv and conv history continue), and in any case (may be null) left at p0 + T, its own KV copy
// untouched. Per row the arithmetic is the decode's (sea_attention_decode_cpu_cached), in the same order.
void sea_rows_cpu(const SeaConfig &cfg, const SeaParams &p, const float *q, const float *k_rows, const float *v_rows,
                  size_t kv_stride, size_t p0, size_t T, float *out, SeaDebug *debug, SeaDecodeState *st,
                  int n_threads) {
    const Dims dm(cfg);
    const EstimatorWeights ew(cfg, p);
    const size_t n_rows = T * dm.H;  // (t, h) rows
    const long long T_ll = (long long)T, H_ll = (long long)dm.H;
    const bool parallel = n_threads > 1;
    const bool cont = p0 > 0;  // continuing: st holds the sums and rows of positions < p0

    // §2.2-§2.3: Performer per head (a running sum over t), writing the encoder input X = [C_perf ; v].
    std::vector<float> enc_in(n_rows * kSeaEncInput);
    OmpFirstError error;  // engine/omp_error.h: the regions below allocate per-thread scratch
#pragma omp parallel for schedule(static) num_threads(n_threads) if (parallel)
    for (long long hi = 0; hi < H_ll; ++hi) error.run([&] {
        const size_t h = (size_t)hi;
        std::vector<float> S_k(dm.m, 0.0f), S_kv(dm.m * kVcatWidth, 0.0f), phi_q(dm.m), phi_k(dm.m);
        if (cont) {
            std::copy_n(st->perf_k_sum.begin() + (ptrdiff_t)(h * dm.m), dm.m, S_k.begin());
            std::copy_n(st->perf_kv_sum.begin() + (ptrdiff_t)(h * dm.m * kVcatWidth), dm.m * kVcatWidth, S_kv.begin());
        }
        float vcat[kVcatWidth];
        for (size_t t = 0; t < T; ++t) {
            const size_t off = h * kSeaHeadDim, kv_off = (p0 + t) * kv_stride + off;
            float *x = enc_in.data() + (t * dm.H + h) * kSeaEncInput;
            performer_features(phi_q.data(), q + t * dm.HD + off, p.performer_proj.data(), dm.m);
            performer_features(phi_k.data(), k_rows + kv_off, p.performer_proj.data(), dm.m);
            vcat_row(vcat, cfg, p, p0 + t, v_rows + kv_off);
            performer_step(x, phi_q.data(), phi_k.data(), vcat, S_k.data(), S_kv.data(), dm.m);
            std::memcpy(x + kVcatWidth, v_rows + kv_off, kSeaHeadDim * 4);
        }
        if (st) {
            std::copy(S_k.begin(), S_k.end(), st->perf_k_sum.begin() + (ptrdiff_t)(h * dm.m));
            std::copy(S_kv.begin(), S_kv.end(), st->perf_kv_sum.begin() + (ptrdiff_t)(h * dm.m * kVcatWidth));
        }
    });
    error.rethrow();

    // §2.4-§2.6 step 1: encoder, gates, decoder image (row-local).
    std::vector<float> z(n_rows * kSeaEncHidden), gates(n_rows * 2), image(T * dm.image_row());
    encoder_rows(z.data(), enc_in.data(), n_rows, p, n_threads);
    enc_in = {};
    gate_rows(gates.data(), z.data(), n_rows, p, n_threads);
    decoder_image_rows(image.data(), z.data(), T, cfg, p, n_threads);
    z = {};

    // §2.6 steps 2-5: two causal dilated convs; each output row reads input rows pos, pos-2, pos-4 (rows before
    // this call's from the state's history: row r in slot r % 4, not yet overwritten).
    std::vector<float> conv1_out(T * dm.image_row()), conv2_out(T * dm.image_row());
    auto conv_layer = [&](float *y, const float *x, const std::vector<float> *hist, const CausalConv3x3 &cw) {
#pragma omp parallel for schedule(static) num_threads(n_threads) if (parallel)
        for (long long ti = 0; ti < T_ll; ++ti) {
            const size_t t = (size_t)ti, pos = p0 + t;
            auto row = [&](size_t back) -> const float * {
                if (pos < back) return nullptr;  // before position 0: the causal zero padding
                if (t >= back) return x + (t - back) * dm.image_row();
                return hist->data() + (pos - back) % 4 * dm.image_row();
            };
            const float *rows[kSeaConvLiveRows] = {row(4), row(2), x + t * dm.image_row()};
            causal_dilated_conv_row(y + t * dm.image_row(), rows, cw, dm.W4);
        }
    };
    conv_layer(conv1_out.data(), image.data(), cont ? &st->image_hist : nullptr, ew.conv1);
    conv_layer(conv2_out.data(), conv1_out.data(), cont ? &st->conv1_hist : nullptr, ew.conv2);

    // §2.6 steps 6-9 + softmax: Â, token-major [T][H][K].
    std::vector<float> probs(T * dm.H * dm.K);
#pragma omp parallel num_threads(n_threads) if (parallel)
    {
        std::vector<float> scratch;
        error.run([&] { scratch.resize(3 * dm.K + 2); });
#pragma omp for schedule(static)
        for (long long ti = 0; ti < T_ll; ++ti) {
            const size_t t = (size_t)ti;
            if (scratch.empty()) continue;  // its allocation failed: error has the exception
            cnn_output_row(probs.data() + t * dm.H * dm.K, conv2_out.data() + t * dm.image_row(), cfg, p, ew.conv4,
                           scratch.data());
        }
    }
    error.rethrow();

    // §2.10: Σ_{j≤pos} v_j as a running sum, the same additions decode makes.
    std::vector<float> v_prefix(T * dm.HD);
    {
        std::vector<float> running(dm.HD, 0.0f);
        if (cont) running = st->v_sum;
        for (size_t t = 0; t < T; ++t) {
            const float *v_t = v_rows + (p0 + t) * kv_stride;
            for (size_t i = 0; i < dm.HD; ++i) running[i] += v_t[i];
            std::memcpy(v_prefix.data() + t * dm.HD, running.data(), dm.HD * 4);
        }
    }

    // §2.7-§2.10 per query row: only the selected keys are read.
    std::vector<std::vector<int32_t>> row_cells(debug ? T : 0);
#pragma omp parallel num_threads(n_threads) if (parallel)
    {
        RowScratch scratch;
#pragma omp for schedule(dynamic, 4)
        for (long long ti = 0; ti < T_ll; ++ti) {
            error.run([&] {
                const size_t t = (size_t)ti;
                RowDebugSlot slot{};
                if (debug) slot = {&debug->budget[t], &debug->threshold[t], &debug->gap[t], &row_cells[t]};
                sparse_attention_row(out + t * dm.HD, p0 + t, cfg, probs.data() + t * dm.H * dm.K,
                                     gates.data() + t * dm.H * 2, q + t * dm.HD, k_rows, v_rows, kv_stride,
                                     v_prefix.data() + t * dm.HD, scratch, debug ? &slot : nullptr);
            });
        }
    }
    error.rethrow();

    if (debug) debug_fill(*debug, cfg, T, probs.data(), gates.data(), row_cells);
    if (st) {
        st->n_tokens = p0 + T;
        std::memcpy(st->v_sum.data(), v_prefix.data() + (T - 1) * dm.HD, dm.HD * 4);
        for (size_t back = 1; back <= 4 && back <= T; ++back) {  // this call's last rows into their ring slots
            const size_t r = T - back, slot = (p0 + r) % 4;
            std::memcpy(st->image_hist.data() + slot * dm.image_row(), image.data() + r * dm.image_row(),
                        dm.image_row() * 4);
            std::memcpy(st->conv1_hist.data() + slot * dm.image_row(), conv1_out.data() + r * dm.image_row(),
                        dm.image_row() * 4);
        }
    }
}

}  // namespace

void sea_attention_prefill_cpu(const SeaConfig &cfg, const SeaParams &p, const float *q, const float *k,
                               const float *v, size_t T, float *out, SeaDebug *debug, SeaDecodeState *state_after,
                               int n_threads) {
    sea_validate(cfg, p);
    if (T > 0) check_position(cfg, T - 1);
    if (debug) debug_resize(*debug, cfg, T);
    if (state_after) state_after->reset(cfg);
    if (T == 0) return;
    const Dims dm(cfg);
    sea_rows_cpu(cfg, p, q, k, v, dm.HD, 0, T, out, debug, state_after, n_threads);
    if (state_after) {
        state_after->k_cache.assign(k, k + T * dm.HD);
        state_after->v_cache.assign(v, v + T * dm.HD);
    }
}

void sea_attention_continue_cpu(const SeaConfig &cfg, const SeaParams &p, SeaDecodeState &st, const float *q,
                                const float *k_rows, const float *v_rows, size_t kv_stride, size_t T, float *out,
                                SeaDebug *debug, int n_threads) {
    sea_validate(cfg, p);
    check_state(cfg, st);
    const Dims dm(cfg);
    if (kv_stride < dm.HD) throw_invalid_argument("sea: kv_stride is smaller than n_head·64");
    const size_t p0 = st.n_tokens;
    if (T > 0) check_position(cfg, p0 + T - 1);
    if (debug) debug_resize(*debug, cfg, T);
    if (T == 0) return;
    // Into a copy (without the state's own KV copy, which this call neither reads nor writes): a failed call
    // leaves the state as it was.
    std::vector<float> own_k = std::move(st.k_cache), own_v = std::move(st.v_cache);
    SeaDecodeState next = st;
    try {
        sea_rows_cpu(cfg, p, q, k_rows, v_rows, kv_stride, p0, T, out, debug, &next, n_threads);
    } catch (...) {
        st.k_cache = std::move(own_k);
        st.v_cache = std::move(own_v);
        throw;
    }
    st = std::move(next);
    st.k_cache = std::move(own_k);
    st.v_cache = std::move(own_v);
}

void sea_attention_decode_cpu_cached(const SeaConfig &cfg, const SeaParams &p, SeaDecodeState &st, const float *q_t,
                                     const float *k_rows, const float *v_rows, size_t kv_stride, size_t pos,
                                     float *out_t, SeaDebug *debug, int n_threads) {
    sea_validate(cfg, p);
    check_state(cfg, st);
    if (pos != st.n_tokens) {
        throw_invalid_argument("sea: decode at position " + std::to_string(pos) + " but the state holds " +
                               std::to_string(st.n_tokens) + " tokens (positions must be consecutive)");
    }
    check_position(cfg, pos);
    const Dims dm(cfg);
    if (kv_stride < dm.HD) throw_invalid_argument("sea: kv_stride is smaller than n_head·64");
    const EstimatorWeights ew(cfg, p);
    const float *k_t = k_rows + pos * kv_stride, *v_t = v_rows + pos * kv_stride;

    // §2.2-§2.3 with the state's running sums.
    std::vector<float> enc_in(dm.H * kSeaEncInput), phi_q(dm.m), phi_k(dm.m);
    float vcat[kVcatWidth];
    for (size_t h = 0; h < dm.H; ++h) {
        const size_t off = h * kSeaHeadDim;
        float *x = enc_in.data() + h * kSeaEncInput;
        performer_features(phi_q.data(), q_t + off, p.performer_proj.data(), dm.m);
        performer_features(phi_k.data(), k_t + off, p.performer_proj.data(), dm.m);
        vcat_row(vcat, cfg, p, pos, v_t + off);
        performer_step(x, phi_q.data(), phi_k.data(), vcat, st.perf_k_sum.data() + h * dm.m,
                       st.perf_kv_sum.data() + h * dm.m * kVcatWidth, dm.m);
        std::memcpy(x + kVcatWidth, v_t + off, kSeaHeadDim * 4);
    }

    // §2.4-§2.6 step 1.
    std::vector<float> z(dm.H * kSeaEncHidden), gates(dm.H * 2), image(dm.image_row());
    encoder_rows(z.data(), enc_in.data(), dm.H, p, n_threads);
    gate_rows(gates.data(), z.data(), dm.H, p, n_threads);
    decoder_image_rows(image.data(), z.data(), 1, cfg, p, n_threads);

    // §2.6 steps 2-5 with the row history (sea.md §2.12): rows pos-2 and pos-4 from the ring (slot r % 4).
    const size_t slot_now = pos % 4, slot_back2 = (pos + 2) % 4;  // pos-4 and pos-2 share slots with pos, pos+2
    std::vector<float> y1(dm.image_row()), y2(dm.image_row());
    const float *rows1[kSeaConvLiveRows] = {
        pos >= 4 ? st.image_hist.data() + slot_now * dm.image_row() : nullptr,
        pos >= 2 ? st.image_hist.data() + slot_back2 * dm.image_row() : nullptr,
        image.data(),
    };
    causal_dilated_conv_row(y1.data(), rows1, ew.conv1, dm.W4);
    const float *rows2[kSeaConvLiveRows] = {
        pos >= 4 ? st.conv1_hist.data() + slot_now * dm.image_row() : nullptr,
        pos >= 2 ? st.conv1_hist.data() + slot_back2 * dm.image_row() : nullptr,
        y1.data(),
    };
    causal_dilated_conv_row(y2.data(), rows2, ew.conv2, dm.W4);
    // Row pos replaces row pos-4 (read above) in its slot.
    std::memcpy(st.image_hist.data() + slot_now * dm.image_row(), image.data(), dm.image_row() * 4);
    std::memcpy(st.conv1_hist.data() + slot_now * dm.image_row(), y1.data(), dm.image_row() * 4);

    // §2.6 steps 6-9 + softmax.
    std::vector<float> probs(dm.H * dm.K), scratch(3 * dm.K + 2);
    cnn_output_row(probs.data(), y2.data(), cfg, p, ew.conv4, scratch.data());

    // §2.7-§2.10.
    for (size_t i = 0; i < dm.HD; ++i) st.v_sum[i] += v_t[i];
    RowScratch rs;
    std::vector<std::vector<int32_t>> row_cells(1);
    if (debug) debug_resize(*debug, cfg, 1);
    RowDebugSlot slot{};
    if (debug) slot = {&debug->budget[0], &debug->threshold[0], &debug->gap[0], &row_cells[0]};
    sparse_attention_row(out_t, pos, cfg, probs.data(), gates.data(), q_t, k_rows, v_rows, kv_stride, st.v_sum.data(),
                         rs, debug ? &slot : nullptr);
    if (debug) debug_fill(*debug, cfg, 1, probs.data(), gates.data(), row_cells);
    st.n_tokens = pos + 1;
}

void sea_attention_decode_cpu(const SeaConfig &cfg, const SeaParams &p, SeaDecodeState &st, const float *q_t,
                              const float *k_t, const float *v_t, size_t pos, float *out_t, SeaDebug *debug,
                              int n_threads) {
    sea_validate(cfg, p);
    check_state(cfg, st);
    const Dims dm(cfg);
    if (pos != st.n_tokens || st.k_cache.size() != pos * dm.HD || st.v_cache.size() != pos * dm.HD) {
        throw_invalid_argument("sea: decode at position " + std::to_string(pos) + " but the state holds " +
                               std::to_string(st.n_tokens) + " tokens (positions must be consecutive)");
    }
    st.k_cache.insert(st.k_cache.end(), k_t, k_t + dm.HD);
    st.v_cache.insert(st.v_cache.end(), v_t, v_t + dm.HD);
    try {
        sea_attention_decode_cpu_cached(cfg, p, st, q_t, st.k_cache.data(), st.v_cache.data(), dm.HD, pos, out_t,
                                        debug, n_threads);
    } catch (...) {  // a failed step leaves the state as it was
        st.k_cache.resize(pos * dm.HD);
        st.v_cache.resize(pos * dm.HD);
        throw;
    }
}

}  // namespace seaopt::cpu
