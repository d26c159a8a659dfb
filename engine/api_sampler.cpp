// The sampler part of the C API: thin wrappers over seaopt::Sampler that turn exceptions into a
// status code plus seaopt_last_error() (SEAOPT_API_TRY / SEAOPT_API_CATCH).
#include <memory>
#include <string>

#include "engine/api_internal.h"
#include "engine/error.h"
#include "engine/sampler.h"
#include "seaopt.h"

struct seaopt_sampler {
    seaopt::Sampler impl;
};

extern "C" {

seaopt_sampler_params seaopt_sampler_default_params(void) {
    seaopt_sampler_params p;
    p.temp = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.seed = SEAOPT_DEFAULT_SEED;
    p.logit_bias = nullptr;
    p.n_logit_bias = 0;
    return p;
}

seaopt_status seaopt_sampler_new(const seaopt_sampler_params *params, seaopt_sampler **out) {
    if (out) *out = nullptr;
    SEAOPT_API_TRY
    if (!out) seaopt::throw_invalid_argument("out is NULL");
    const seaopt_sampler_params p = params ? *params : seaopt_sampler_default_params();
    *out = new seaopt_sampler{seaopt::Sampler(p)};
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

void seaopt_sampler_free(seaopt_sampler *smpl) { delete smpl; }

uint32_t seaopt_sampler_seed(const seaopt_sampler *smpl) { return smpl ? smpl->impl.seed() : 0; }

seaopt_status seaopt_sampler_sample_logits(seaopt_sampler *smpl, const float *logits, int32_t n_vocab,
                                           seaopt_token *out_token) {
    SEAOPT_API_TRY
    if (!smpl) seaopt::throw_invalid_argument("sampler is NULL");
    if (!out_token) seaopt::throw_invalid_argument("out_token is NULL");
    *out_token = smpl->impl.sample(logits, n_vocab);
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

seaopt_status seaopt_sampler_sample(seaopt_sampler *smpl, seaopt_context *ctx, int32_t i, seaopt_token *out_token) {
    SEAOPT_API_TRY
    if (!smpl) seaopt::throw_invalid_argument("sampler is NULL");
    if (!out_token) seaopt::throw_invalid_argument("out_token is NULL");
    const float *logits = seaopt_get_logits_ith(ctx, i);
    // seaopt_get_logits_ith has already recorded why (no context, or token i has no logits).
    if (!logits) return SEAOPT_ERR_INVALID_ARGUMENT;
    *out_token = smpl->impl.sample(logits, seaopt_context_n_vocab(ctx), seaopt::context_device_greedy(ctx, i));
    return SEAOPT_OK;
    SEAOPT_API_CATCH
}

void seaopt_sampler_accept(seaopt_sampler *smpl, seaopt_token token) {
    if (smpl) smpl->impl.accept(token);
}

void seaopt_sampler_reset(seaopt_sampler *smpl) {
    if (smpl) smpl->impl.reset();
}

}  // extern "C"
