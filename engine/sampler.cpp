#include "engine/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "engine/error.h"

namespace seaopt {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// top_p arrives as a float, so 0.8 is really 0.800000011...; this slack lets a prefix whose
// probabilities add up to exactly the value the user wrote count as reaching it.
constexpr double kTopPSlack = 1e-6;

// When top-p runs without top-k, sort only as much of the vocabulary as the nucleus needs:
// first this many candidates, then 8x more each time the nucleus is not yet complete.
constexpr size_t kTopPFirstSortedPrefix = 256;

uint32_t random_seed() {
    uint32_t seed = SEAOPT_DEFAULT_SEED;
    try {
        std::random_device device;
        seed = device();
    } catch (const std::exception &) {
        // No entropy source: the clock still gives a different seed per run.
        seed = (uint32_t)std::chrono::steady_clock::now().time_since_epoch().count();
    }
    // SEAOPT_DEFAULT_SEED means "random", so it can not be reported as the seed in use: a user who
    // passes the printed seed back must get the same run.
    if (seed == SEAOPT_DEFAULT_SEED) seed = 0;
    return seed;
}

}  // namespace

void validate_sampler_params(const seaopt_sampler_params &p) {
    if (!std::isfinite(p.temp)) {
        throw_invalid_argument("sampler temp must be a finite number (<= 0 for greedy), got " + std::to_string(p.temp));
    }
    if (std::isnan(p.top_p) || p.top_p <= 0.0f) {
        throw_invalid_argument("sampler top_p must be > 0 (>= 1 = off), got " + std::to_string(p.top_p));
    }
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
        throw_invalid_argument("sampler min_p must be in [0, 1] (0 = off), got " + std::to_string(p.min_p));
    }
    if (!std::isfinite(p.presence_penalty)) {
        throw_invalid_argument("sampler presence_penalty must be a finite number (0 = off), got " +
                               std::to_string(p.presence_penalty));
    }
    if (!std::isfinite(p.frequency_penalty)) {
        throw_invalid_argument("sampler frequency_penalty must be a finite number (0 = off), got " +
                               std::to_string(p.frequency_penalty));
    }
    if (!std::isfinite(p.repeat_penalty) || p.repeat_penalty <= 0.0f) {
        throw_invalid_argument("sampler repeat_penalty must be a finite number > 0 (1 = off), got " +
                               std::to_string(p.repeat_penalty));
    }
    if (p.n_logit_bias < 0 || (p.n_logit_bias > 0 && !p.logit_bias)) {
        throw_invalid_argument("sampler logit_bias: n_logit_bias = " + std::to_string(p.n_logit_bias) +
                               (p.n_logit_bias < 0 ? " is negative" : " but logit_bias is NULL"));
    }
    for (int32_t i = 0; i < p.n_logit_bias; ++i) {
        if (std::isnan(p.logit_bias[i].bias)) {
            throw_invalid_argument("sampler logit_bias: the bias of token " + std::to_string(p.logit_bias[i].token) +
                                   " is NaN");
        }
    }
    if (p.repeat_last_n < -1) {
        throw_invalid_argument("sampler repeat_last_n must be >= -1 (0 = off, -1 = all accepted tokens), got " +
                               std::to_string(p.repeat_last_n));
    }
}

Sampler::Sampler(const seaopt_sampler_params &params) : params_(params) {
    validate_sampler_params(params);
    seed_ = params.seed == SEAOPT_DEFAULT_SEED ? random_seed() : params.seed;
    if (params.n_logit_bias > 0) biases_.assign(params.logit_bias, params.logit_bias + params.n_logit_bias);
    params_.logit_bias = nullptr;  // the copy in biases_ is what counts
    params_.n_logit_bias = 0;
    rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
    if (token < 0 || params_.repeat_last_n == 0) return;
    history_.push_back(token);
    if (params_.repeat_last_n > 0 && history_.size() > (size_t)params_.repeat_last_n) {
        history_.erase(history_.begin());
    }
}

void Sampler::reset() {
    history_.clear();
    rng_.seed(seed_);
}

double Sampler::next_uniform() {
    // The top 53 bits of one 64-bit output, scaled to [0, 1): exact in a double, portable.
    return (double)(rng_() >> 11) * 0x1.0p-53;
}

void Sampler::apply_biases(int32_t n_vocab) {
    for (const seaopt_logit_bias &b : biases_) {
        if (b.token < 0 || b.token >= n_vocab) continue;  // another vocabulary's id
        float &l = logits_[(size_t)b.token];
        // An infinite bias decides (-inf bans the token even where its logit is +inf); a finite one is added.
        l = std::isinf(b.bias) ? b.bias : l + b.bias;
    }
}

bool Sampler::penalizes() const {
    return !history_.empty() &&
           (params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f);
}

void Sampler::apply_penalties(int32_t n_vocab) {
    if (!penalizes()) return;
    penalized_.clear();
    for (int32_t t : history_) {
        if (t < n_vocab) penalized_.push_back(t);  // ids from another vocabulary can not be penalized
    }
    std::sort(penalized_.begin(), penalized_.end());
    const float penalty = params_.repeat_penalty;
    const float presence = params_.presence_penalty, frequency = params_.frequency_penalty;
    for (size_t i = 0; i < penalized_.size();) {
        const int32_t t = penalized_[i];
        size_t count = 0;
        for (; i < penalized_.size() && penalized_[i] == t; ++i) ++count;
        float &l = logits_[(size_t)t];
        // The repetition penalty once per distinct token, however often it occurs (HF / CTRL rule); then, as
        // llama.cpp's penalties sampler, the frequency penalty per occurrence and the presence penalty once. In
        // double: huge (finite) penalties overflow float, and -inf - -inf would be a NaN; the float result is at
        // worst an infinity.
        double x = l;
        if (penalty != 1.0f) x = x > 0.0 ? x / penalty : x * penalty;
        x -= (double)count * frequency + presence;
        constexpr double kMax = std::numeric_limits<float>::max();
        l = x > kMax ? kInf : x < -kMax ? -kInf : (float)x;
    }
}

namespace {

// The lowest id of the largest logit (no NaN among them): the maximum first, in 8 lanes (a > b ? a : b
// vectorises), then the first id holding it (+0 and -0 compare equal, as the strict > scan did).
int32_t argmax(const float *l, int32_t n) {
    constexpr int kLanes = 8;
    float lane_max[kLanes];
    for (int j = 0; j < kLanes; ++j) lane_max[j] = -kInf;
    int32_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        for (int j = 0; j < kLanes; ++j) lane_max[j] = l[i + j] > lane_max[j] ? l[i + j] : lane_max[j];
    }
    float m = -kInf;
    for (int j = 0; j < kLanes; ++j) m = lane_max[j] > m ? lane_max[j] : m;
    for (; i < n; ++i) m = l[i] > m ? l[i] : m;
    if (m == -kInf) throw_invalid_argument("every logit is -inf: no token can be picked");
    return (int32_t)(std::find(l, l + n, m) - l);
}

}  // namespace

int32_t Sampler::sample(const float *logits, int32_t n_vocab, int32_t device_greedy) {
    if (n_vocab <= 0) throw_invalid_argument("n_vocab must be > 0, got " + std::to_string(n_vocab));
    if (!logits) throw_invalid_argument("logits is NULL");
    const bool adjusted = penalizes() || !biases_.empty();  // the logits change before the pick
    // The GPU's pick is only ever made for logits without a NaN and not all -inf (-1 otherwise), so the
    // checks below would pass: skipping them and the scan saves ~20-40 us a generated token.
    if (params_.temp <= 0.0f && !adjusted && device_greedy >= 0 && device_greedy < n_vocab) return device_greedy;
    // Branch-free scans (they vectorise) over the 50k logits of every token: greedy with OPT's vocabulary
    // took 75 us per token with scalar loops and a copy, 19 us this way (x86-64, -O3), against a ~1.4 ms
    // GPU decode step. The copy is made only for the penalties or sampling.
    int32_t n_nan = 0;
    for (int32_t i = 0; i < n_vocab; ++i) n_nan += logits[i] != logits[i] ? 1 : 0;
    if (n_nan > 0) {
        const int32_t i = (int32_t)(std::find_if(logits, logits + n_vocab, [](float x) { return std::isnan(x); }) - logits);
        throw_invalid_argument("the logit of token " + std::to_string(i) +
                               " is NaN (NaN or Inf weights in the model file give this: the tools' --check-tensors, "
                               "seaopt_model_params.check_tensors, scan for them at load)");
    }
    if (params_.temp <= 0.0f && !adjusted) return argmax(logits, n_vocab);
    logits_.assign(logits, logits + n_vocab);
    apply_biases(n_vocab);
    apply_penalties(n_vocab);
    if (params_.temp <= 0.0f) return argmax(logits_.data(), n_vocab);
    return sample_from_candidates(n_vocab);
}

int32_t Sampler::sample_from_candidates(int32_t n_vocab) {
    const float *l = logits_.data();
    // Higher logit first, then lower id: a strict total order, so partial sorts are reproducible.
    auto comes_before = [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };

    candidates_.resize((size_t)n_vocab);
    std::iota(candidates_.begin(), candidates_.end(), 0);
    const auto first = candidates_.begin();
    size_t n_cand = (size_t)n_vocab;
    size_t n_sorted = 0;  // candidates_[0, n_sorted) are in comes_before order

    // Top-k. Dividing by a positive temperature keeps the order, so selecting on the raw logits
    // picks the same set as selecting after the temperature.
    if (params_.top_k > 0 && params_.top_k < n_vocab) {
        n_cand = (size_t)params_.top_k;
        std::partial_sort(first, first + (ptrdiff_t)n_cand, candidates_.end(), comes_before);
        n_sorted = n_cand;
    }

    float max_logit = -kInf;
    if (n_sorted > 0) {
        max_logit = l[candidates_[0]];
    } else {
        for (size_t j = 0; j < n_cand; ++j) max_logit = std::max(max_logit, l[candidates_[j]]);
    }
    if (max_logit == -kInf) throw_invalid_argument("every logit is -inf: no token can be sampled");

    // Unnormalized softmax(logit / temp) relative to the largest. (l - max) / temp in double cannot
    // overflow; a +inf logit takes all the mass, shared with the other +inf ones.
    const double temp = params_.temp;
    auto weight = [l, max_logit, temp](int32_t t) {
        if (max_logit == kInf) return l[t] == kInf ? 1.0 : 0.0;
        return std::exp(((double)l[t] - (double)max_logit) / temp);
    };

    size_t n_keep = n_cand;
    double total = 0.0;  // sum of the weights of the kept candidates
    probs_.clear();
    if (params_.top_p < 1.0f) {
        // Top-p (HF rule): the smallest prefix, in descending order, holding >= top_p of the mass.
        weights_.resize((size_t)n_vocab);
        double z = 0.0;
        for (size_t j = 0; j < n_cand; ++j) {
            const int32_t t = candidates_[j];
            z += weights_[(size_t)t] = weight(t);
        }
        const double threshold = ((double)params_.top_p - kTopPSlack) * z;
        size_t n_need_sorted = n_sorted > 0 ? n_sorted : std::min(n_cand, kTopPFirstSortedPrefix);
        size_t j = 0;
        bool reached = false;
        while (!reached) {
            if (n_sorted < n_need_sorted) {
                // Bring the next best n_need_sorted - n_sorted candidates in front of the rest, then
                // sort just those: the prefix already walked stays in place.
                const auto sorted_end = first + (ptrdiff_t)n_sorted, need_end = first + (ptrdiff_t)n_need_sorted;
                const auto cand_end = first + (ptrdiff_t)n_cand;
                if (need_end < cand_end) std::nth_element(sorted_end, need_end, cand_end, comes_before);
                std::sort(sorted_end, need_end, comes_before);
                n_sorted = n_need_sorted;
            }
            for (; j < n_sorted; ++j) {
                const double w = weights_[(size_t)candidates_[j]];
                probs_.push_back(w);
                total += w;
                if (total >= threshold) {
                    reached = true;
                    ++j;
                    break;
                }
            }
            if (!reached) {
                if (n_sorted == n_cand) break;
                n_need_sorted = std::min(n_cand, n_sorted * 8);
            }
        }
        n_keep = j;  // >= 1: the first candidate has weight 1 and the threshold is below z
    } else {
        probs_.resize(n_cand);
        for (size_t j = 0; j < n_cand; ++j) {
            probs_[j] = weight(candidates_[j]);
            total += probs_[j];
        }
    }

    // Min-p (HF's MinPLogitsWarper, after top-p): drop the kept candidates whose probability is below min_p times
    // the largest. The weights are relative to the largest kept logit, whose weight is 1 (also with +inf logits),
    // so the rule is weight < min_p; the largest always stays.
    if (params_.min_p > 0.0f) {
        const double min_weight = params_.min_p;
        total = 0.0;
        for (size_t j = 0; j < n_keep; ++j) {
            if (probs_[j] < min_weight) probs_[j] = 0.0;
            total += probs_[j];
        }
    }

    // The draw: walk the cumulative weights to u * total.
    const double u = next_uniform() * total;
    double cumulative = 0.0;
    int32_t last_possible = candidates_[0];
    for (size_t j = 0; j < n_keep; ++j) {
        if (probs_[j] <= 0.0) continue;
        cumulative += probs_[j];
        last_possible = candidates_[j];
        if (u < cumulative) return candidates_[j];
    }
    return last_possible;  // u * total rounded up to the full sum
}

}  // namespace seaopt
