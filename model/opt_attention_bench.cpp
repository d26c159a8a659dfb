// See opt_attention_bench.h: parameter checks, SEA's config and parameters, and the memory the layer takes.
#include "model/opt_attention_bench.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "attention/sea_layout.h"
#include "engine/error.h"
#include "model/opt_sea.h"

namespace seaopt {

float attention_bench_normal(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i >> 1) * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    // Two uniforms: u1 in (0, 1] (never 0: log), u2 in [0, 1).
    const double u1 = ((double)(uint32_t)(z >> 32) + 1.0) * (1.0 / 4294967296.0);
    const double u2 = (double)(uint32_t)z * (1.0 / 4294967296.0);
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 6.283185307179586 * u2;
    return (float)(r * ((i & 1) ? std::sin(a) : std::cos(a)));
}

void bench_attention_layer(const OptModel &model, const seaopt_attention_layer_bench_params &p,
                           seaopt_attention_layer_bench_result &out) {
    const OptHparams &hp = model.hp;
    const std::string who = "attention-layer benchmark: ";
    if (model.vocab_only) throw_invalid_argument(who + "the model was loaded with vocab_only: it has no weights to run");
    if (p.attention != SEAOPT_ATTENTION_DENSE && p.attention != SEAOPT_ATTENTION_SEA) {
        throw_invalid_argument(who + "unknown attention kind " + std::to_string((int)p.attention));
    }
    const bool sea = p.attention == SEAOPT_ATTENTION_SEA;
    if (p.n_tokens < 1 || p.n_tokens > SEAOPT_ATTENTION_BENCH_MAX_TOKENS) {
        throw_invalid_argument(who + "n_tokens = " + std::to_string(p.n_tokens) + " is out of range: it must be in [1, " +
                               std::to_string(SEAOPT_ATTENTION_BENCH_MAX_TOKENS) + "]");
    }
    if (p.layer < 0 || (uint32_t)p.layer >= hp.n_layer) {
        throw_invalid_argument(who + "layer " + std::to_string(p.layer) + " is out of range: the model has " +
                               std::to_string(hp.n_layer) + " layers (0.." + std::to_string(hp.n_layer - 1) + ")");
    }
    if (p.n_reps < 1 || p.n_reps > 100000) {
        throw_invalid_argument(who + "n_reps = " + std::to_string(p.n_reps) + " must be in [1, 100000]");
    }
    if (p.n_warmup < 0 || p.n_warmup > 1000) {
        throw_invalid_argument(who + "n_warmup = " + std::to_string(p.n_warmup) + " must be in [0, 1000]");
    }
    if (!sea && p.sea_k != 0) {
        throw_invalid_argument(who + "sea_k = " + std::to_string(p.sea_k) +
                               " is set but attention is dense (set attention = SEAOPT_ATTENTION_SEA)");
    }
    if (p.sea_k < 0) throw_invalid_argument(who + "sea_k = " + std::to_string(p.sea_k) + " must be >= 0 (0 = the model's sea.k)");

    AttentionBenchJob job;
    job.sea = sea;
    job.T = p.n_tokens;
    job.n_reps = p.n_reps;
    job.n_warmup = p.n_warmup;
    job.n_head = (int32_t)hp.n_head;
    if (sea) {
        if (!hp.has_sea) {
            throw_unsupported(who + "SEA attention: the model " + (model.name.empty() ? std::string() : "'" + model.name + "' ") +
                              "has no SEA estimator: convert it with seaopt-convert --sea");
        }
        // The context's rule (engine/context.cpp): k·K <= 2^24, the budget of sea.md §2.7 in fp32.
        const uint64_t K = hp.sea.compressed_width, max_k = K ? ((uint64_t)1 << 24) / K : 0;
        if ((uint64_t)p.sea_k > max_k) {
            throw_invalid_argument(who + "sea_k = " + std::to_string(p.sea_k) + " is out of range: at most " +
                                   std::to_string(max_k) + " with this model's compressed width K = " + std::to_string(K) +
                                   " (k·K <= 2^24)");
        }
        if (model.sea.size() != hp.n_layer) throw Error(SEAOPT_ERR_INTERNAL, "the model's SEA weights are missing");
        job.cfg = sea_config_for_model(hp, (uint32_t)p.sea_k);
        // The stretch of sea.md §2.2: a table shorter than T covers T positions by "nearest" interpolation.
        job.cfg.n_pos_ctx = std::max<size_t>(job.cfg.n_pos_ctx, (size_t)p.n_tokens);
        std::vector<cpu::SeaParams> params(1, sea_params_from_model(hp, model.sea[(size_t)p.layer]));
        cpu::sea_validate(job.cfg, params[0]);
        job.params = pack_sea_params(job.cfg, params, {1});
    }

    // Everything but the timings, so that a refusal below still leaves nothing half-filled (the caller zeroes *out
    // on a throw anyway).
    seaopt_attention_layer_bench_result r;
    std::memset(&r, 0, sizeof r);
    r.attention = p.attention;
    r.layer = p.layer;
    r.n_tokens = p.n_tokens;
    r.n_reps = p.n_reps;
    r.n_warmup = p.n_warmup;
    r.n_head = (int32_t)hp.n_head;
    r.head_dim = (int32_t)hp.head_dim();
    const uint64_t T = (uint64_t)p.n_tokens, C = hp.n_embd;
    r.qkv_bytes = T * 3 * C * 2;
    r.kv_cache_bytes = 2 * T * C * 2;  // K and V, [head][pos][head_dim] fp16, n_ctx = T
    r.out_bytes = T * C * 2;
    if (sea) {
        r.scratch_bytes = cuda::sea_prefill_scratch_bytes(job.cfg, (size_t)T);
        r.state_bytes = cuda::sea_decode_state_layout(job.cfg).total;
        r.sea_params_bytes = job.params.image.size();
        r.sea_k = (int32_t)job.cfg.k;
        r.sea_K = (int32_t)job.cfg.K;
        r.n_pos_table = (int32_t)job.cfg.n_pos_table;
        r.n_pos_ctx = (int32_t)job.cfg.n_pos_ctx;
        r.pos_stretched = job.cfg.n_pos_ctx > job.cfg.n_pos_table;
    }
    r.extra_bytes = r.scratch_bytes + r.state_bytes;  // dense: 0 (no scratch, see seaopt.h)
    r.output_mean_abs = NAN;

    if (model.device != SEAOPT_DEVICE_CUDA || !model.cuda) {
        throw_unsupported(who + "it times the CUDA kernels, and this model is loaded on the CPU (load it on the GPU: "
                                "--device cuda, SEAOPT_DEVICE_CUDA in the C API)");
    }
    bench_attention_layer_cuda(*model.cuda, job, r);
    out = r;
}

}  // namespace seaopt
