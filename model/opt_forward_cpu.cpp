// The OPT decoder forward (Hugging Face modeling_opt.py, OPTDecoder / OPTDecoderLayer) in plain fp32:
//   x = embed_tokens(ids) [-> project_in] + embed_positions(pos + 2)
//   per layer:  pre-LN:  x = x + Attn(LN1(x));      x = x + FC2(ReLU(FC1(LN2(x))))
//               post-LN: x = LN1(x + Attn(x));      x = LN2(x + FC2(ReLU(FC1(x))))
//   [final LN (pre-LN models)] [-> project_out] -> logits = x · embed_tokensᵀ (tied lm_head)
// Attention: q = (x Wqᵀ + bq) · head_dim^-0.5, softmax(q kᵀ) v over the sequence's positions ≤ p;
// in the layers a SeaCpuState selects, SEA attention on the same q, k, v (sea.md §2.1) instead.
#include "model/opt_forward_cpu.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "attention/dense_cpu.h"
#include "engine/cpu_ops.h"
#include "engine/error.h"
#include "engine/omp_error.h"

namespace seaopt {

void KvCacheCpu::allocate(uint32_t layers, uint32_t seqs, uint32_t ctx, uint32_t embd) {
    n_layer = layers;
    n_seq = seqs;
    n_ctx = ctx;
    n_embd = embd;
    const size_t n = (size_t)layers * seqs * ctx * embd;
    k.assign(n, 0.0f);
    v.assign(n, 0.0f);
}

bool SeaCpuState::any() const { return std::find(on.begin(), on.end(), 1) != on.end(); }

uint64_t SeaCpuState::params_bytes() const {
    uint64_t n = 0;
    for (const cpu::SeaParams &p : params) {
        for (const cpu::SeaTensorSpec &spec : cpu::sea_tensor_specs(cfg)) n += (p.*spec.member).size();
    }
    return n * sizeof(float);
}

namespace {

// SEA attention of one layer for the whole batch (see opt_forward_cpu.h). q: the batch's scaled queries
// [n, C]; the batch's keys and values are already in the KV cache. attn: [n, C] output.
void sea_attention_layer(SeaCpuState &sea, uint32_t l, KvCacheCpu &kv, const std::vector<TokenSlot> &tokens,
                         const float *q, float *attn, size_t C, int n_threads) {
    const cpu::SeaParams &params = sea.params[l];
    // The batch's tokens per sequence, in batch order (= position order: the context validated it).
    std::vector<std::vector<size_t>> by_seq(sea.n_seq);
    for (size_t i = 0; i < tokens.size(); ++i) by_seq[(size_t)tokens[i].seq].push_back(i);
    std::vector<float> q_seq, out_seq;
    for (uint32_t seq = 0; seq < sea.n_seq; ++seq) {
        const std::vector<size_t> &idx = by_seq[seq];
        if (idx.empty()) continue;
        cpu::SeaDecodeState &st = sea.state(seq, l);
        const float *k_rows = kv.k_rows(l, seq), *v_rows = kv.v_rows(l, seq);
        if (tokens[idx[0]].pos == 0) {
            // A fresh sequence: prefill from position 0; the KV cache rows 0..T-1 are [T, C] contiguous.
            const size_t T = idx.size();
            q_seq.resize(T * C);
            out_seq.resize(T * C);
            for (size_t t = 0; t < T; ++t) std::copy_n(q + idx[t] * C, C, q_seq.data() + t * C);
            cpu::sea_attention_prefill_cpu(sea.cfg, params, q_seq.data(), k_rows, v_rows, T, out_seq.data(), nullptr,
                                           &st, n_threads);
            // The engine reads past keys from its own KV cache (decode_cpu_cached): drop the state's copy.
            std::vector<float>().swap(st.k_cache);
            std::vector<float>().swap(st.v_cache);
            for (size_t t = 0; t < T; ++t) std::copy_n(out_seq.data() + t * C, C, attn + idx[t] * C);
        } else if (idx.size() >= 2) {
            // A later chunk of a prompt: the rows continue the sequence from its state, row-parallel (the decode's
            // arithmetic, sea_cpu.h).
            const size_t T = idx.size();
            q_seq.resize(T * C);
            out_seq.resize(T * C);
            for (size_t t = 0; t < T; ++t) std::copy_n(q + idx[t] * C, C, q_seq.data() + t * C);
            cpu::sea_attention_continue_cpu(sea.cfg, params, st, q_seq.data(), k_rows, v_rows, C, T, out_seq.data(),
                                            nullptr, n_threads);
            for (size_t t = 0; t < T; ++t) std::copy_n(out_seq.data() + t * C, C, attn + idx[t] * C);
        } else {
            // The next token of a sequence (sea.md §2.12).
            cpu::sea_attention_decode_cpu_cached(sea.cfg, params, st, q + idx[0] * C, k_rows, v_rows, C,
                                                 (size_t)tokens[idx[0]].pos, attn + idx[0] * C, nullptr, n_threads);
        }
    }
}

}  // namespace

void opt_forward_cpu(const OptModel &model, KvCacheCpu &kv, const std::vector<TokenSlot> &tokens,
                     const std::vector<int32_t> &output_tokens, float *logits, int n_threads, SeaCpuState *sea,
                     CpuForwardCapture *capture, const std::function<bool()> &should_abort) {
    auto check_abort = [&should_abort] {
        if (should_abort && should_abort()) {
            throw Error(SEAOPT_ERR_CANCELLED, "the forward was cancelled by the context's abort callback");
        }
    };
    const OptHparams &hp = model.hp;
    const OptWeightsCpu &w = model.cpu;
    const size_t n = tokens.size();
    const size_t C = hp.n_embd, D = hp.n_embd_proj, F = hp.n_ff, H = hp.n_head, hd = hp.head_dim();
    const float eps = hp.ln_eps;

    std::vector<int32_t> ids(n), pos_rows(n);
    for (size_t i = 0; i < n; ++i) {
        ids[i] = tokens[i].token;
        pos_rows[i] = tokens[i].pos + (int32_t)hp.pos_offset;
    }

    // Embeddings.
    std::vector<float> x(n * C), h(n * C), q(n * C), k(n * C), v(n * C), attn(n * C), ff(n * F);
    if (hp.has_proj()) {
        std::vector<float> e(n * D);
        cpu::embedding_rows(e.data(), w.tok_embd.data(), ids.data(), n, D);
        cpu::linear(x.data(), e.data(), w.proj_in.data(), nullptr, n, D, C, n_threads);
    } else {
        cpu::embedding_rows(x.data(), w.tok_embd.data(), ids.data(), n, C);
    }
    cpu::embedding_rows(h.data(), w.pos_embd.data(), pos_rows.data(), n, C);
    cpu::add_inplace(x.data(), h.data(), n * C);

    const float q_scale = 1.0f / std::sqrt((float)hd);
    std::vector<float> scratch;
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        check_abort();
        const OptLayerWeightsCpu &L = w.layers[l];

        // Self-attention block.
        const float *attn_in = x.data();
        if (hp.pre_ln) {
            cpu::layer_norm(h.data(), x.data(), L.attn_norm_w.data(), L.attn_norm_b.data(), n, C, eps);
            attn_in = h.data();
        }
        cpu::linear(q.data(), attn_in, L.q_w.data(), L.q_b.data(), n, C, C, n_threads);
        cpu::linear(k.data(), attn_in, L.k_w.data(), L.k_b.data(), n, C, C, n_threads);
        cpu::linear(v.data(), attn_in, L.v_w.data(), L.v_b.data(), n, C, C, n_threads);
        cpu::scale_inplace(q.data(), q_scale, n * C);
        for (size_t i = 0; i < n; ++i) {  // append to the cache first: later tokens of the batch see earlier ones
            const size_t row = (size_t)tokens[i].pos * C;
            std::copy_n(k.data() + i * C, C, kv.k_rows(l, tokens[i].seq) + row);
            std::copy_n(v.data() + i * C, C, kv.v_rows(l, tokens[i].seq) + row);
        }
        if (capture && capture->layer == l) {  // inspection only (opt_attention_maps): stop here
            capture->q = std::move(q);
            capture->k = std::move(k);
            capture->v = std::move(v);
            return;
        }
        if (sea && sea->on[l]) {
            sea_attention_layer(*sea, l, kv, tokens, q.data(), attn.data(), C, n_threads);
        } else {
            const long long n_ll = (long long)n;
            OmpFirstError error;
#pragma omp parallel num_threads(n_threads) if (n > 1)
            {
                std::vector<float> s;
#pragma omp for schedule(dynamic, 4)
                for (long long ii = 0; ii < n_ll; ++ii) {
                    error.run([&] {
                        const size_t i = (size_t)ii;
                        const size_t n_kv = (size_t)tokens[i].pos + 1;
                        if (s.size() < n_kv) s.resize(n_kv);
                        cpu::dense_attention_one_query(attn.data() + i * C, q.data() + i * C,
                                                       kv.k_rows(l, tokens[i].seq), kv.v_rows(l, tokens[i].seq), C,
                                                       n_kv, H, hd, s.data());
                    });
                }
            }
            error.rethrow();
        }
        cpu::linear(h.data(), attn.data(), L.o_w.data(), L.o_b.data(), n, C, C, n_threads);
        cpu::add_inplace(x.data(), h.data(), n * C);
        if (!hp.pre_ln) cpu::layer_norm(x.data(), x.data(), L.attn_norm_w.data(), L.attn_norm_b.data(), n, C, eps);

        // Feed-forward block.
        const float *ffn_in = x.data();
        if (hp.pre_ln) {
            cpu::layer_norm(h.data(), x.data(), L.ffn_norm_w.data(), L.ffn_norm_b.data(), n, C, eps);
            ffn_in = h.data();
        }
        cpu::linear(ff.data(), ffn_in, L.up_w.data(), L.up_b.data(), n, C, F, n_threads);
        cpu::relu_inplace(ff.data(), n * F);
        cpu::linear(h.data(), ff.data(), L.down_w.data(), L.down_b.data(), n, F, C, n_threads);
        cpu::add_inplace(x.data(), h.data(), n * C);
        if (!hp.pre_ln) cpu::layer_norm(x.data(), x.data(), L.ffn_norm_w.data(), L.ffn_norm_b.data(), n, C, eps);
    }

    // Head: only the rows whose logits were asked for.
    const size_t n_out = output_tokens.size();
    if (n_out > 0) check_abort();
    if (n_out == 0) return;
    std::vector<float> xo(n_out * C);
    for (size_t r = 0; r < n_out; ++r) std::copy_n(x.data() + (size_t)output_tokens[r] * C, C, xo.data() + r * C);
    if (hp.has_output_norm()) {
        cpu::layer_norm(xo.data(), xo.data(), w.out_norm_w.data(), w.out_norm_b.data(), n_out, C, eps);
    }
    const float *head_in = xo.data();
    std::vector<float> xp;
    if (hp.has_proj()) {
        xp.resize(n_out * D);
        cpu::linear(xp.data(), xo.data(), w.proj_out.data(), nullptr, n_out, C, D, n_threads);
        head_in = xp.data();
    }
    cpu::linear(logits, head_in, w.lm_head(), nullptr, n_out, D, hp.n_vocab, n_threads);
}

}  // namespace seaopt
