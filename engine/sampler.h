// The token sampler behind seaopt_sampler_*: the logit biases, the penalties (repetition, presence, frequency), then
// greedy or
// temperature -> top-k -> top-p -> min-p -> a seeded draw (the order Hugging Face's generate uses).
//
// Determinism: the generator is std::mt19937_64, whose output sequence the C++ standard fixes, and
// the uniform double is built from its top 53 bits here (std::uniform_real_distribution is
// implementation-defined). Ties are broken by the lower token id everywhere, so a seed gives the
// same tokens on every standard library.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "seaopt.h"

namespace seaopt {

// Throws seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT) naming the first bad field.
void validate_sampler_params(const seaopt_sampler_params &params);

class Sampler {
public:
    // Validates `params`; SEAOPT_DEFAULT_SEED picks a random seed (see seed()).
    explicit Sampler(const seaopt_sampler_params &params);

    // Picks a token from n_vocab logits without accepting it. Throws seaopt::Error
    // (SEAOPT_ERR_INVALID_ARGUMENT) for n_vocab <= 0, a NaN logit, or logits that are all -inf.
    // device_greedy: the greedy pick of these logits made by the GPU engine (engine/argmax_key.h), or -1;
    // a greedy sampler without a penalty or bias returns it instead of scanning the logits (the same id:
    // tests/test_gpu_engine.cpp checks it against this class's own scan).
    int32_t sample(const float *logits, int32_t n_vocab, int32_t device_greedy = -1);

    // Adds a token to the repetition-penalty history (ids < 0 are ignored).
    void accept(int32_t token);

    // Forgets the history and restarts the generator from the seed in use.
    void reset();

    uint32_t seed() const { return seed_; }
    const seaopt_sampler_params &params() const { return params_; }

private:
    seaopt_sampler_params params_;
    uint32_t seed_;
    std::mt19937_64 rng_;
    std::vector<int32_t> history_;  // accepted tokens, oldest first, at most the penalty window
    std::vector<seaopt_logit_bias> biases_;  // params.logit_bias, copied (params_ keeps no pointer to the caller's)

    // Scratch reused across calls so sampling a token does not allocate.
    std::vector<float> logits_;
    std::vector<int32_t> candidates_;
    std::vector<int32_t> penalized_;
    std::vector<double> probs_;    // weights of candidates_, in candidates_ order
    std::vector<double> weights_;  // weights by token id (top-p)

    bool penalizes() const;  // some penalty is on and the history is not empty
    void apply_biases(int32_t n_vocab);
    void apply_penalties(int32_t n_vocab);
    int32_t sample_from_candidates(int32_t n_vocab);
    double next_uniform();  // in [0, 1)
};

}  // namespace seaopt
