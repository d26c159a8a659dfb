// The sampler through the public C API. Distributions are checked with fixed seeds, so every
// statistical check is deterministic; the bounds (5 standard deviations, chi-square at p = 1e-4)
// are what a correct sampler passes for any seed with overwhelming probability.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/argmax_key.h"
#include "engine/sampler.h"
#include "seaopt.h"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct SamplerDeleter {
    void operator()(seaopt_sampler *s) const { seaopt_sampler_free(s); }
};
using SamplerPtr = std::unique_ptr<seaopt_sampler, SamplerDeleter>;

seaopt_sampler_params params(float temp, int32_t top_k, float top_p, uint32_t seed = 1234) {
    seaopt_sampler_params p = seaopt_sampler_default_params();
    p.temp = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed = seed;
    return p;
}

seaopt_sampler_params greedy() { return params(0.0f, 0, 1.0f); }
seaopt_sampler_params pure_temperature(float temp, uint32_t seed = 1234) { return params(temp, 0, 1.0f, seed); }

SamplerPtr make(const seaopt_sampler_params &p) {
    seaopt_sampler *s = nullptr;
    const seaopt_status st = seaopt_sampler_new(&p, &s);
    EXPECT_EQ(st, SEAOPT_OK) << seaopt_last_error();
    return SamplerPtr(s);
}

seaopt_token sample(seaopt_sampler *s, const std::vector<float> &logits) {
    seaopt_token t = -1;
    const seaopt_status st = seaopt_sampler_sample_logits(s, logits.data(), (int32_t)logits.size(), &t);
    EXPECT_EQ(st, SEAOPT_OK) << seaopt_last_error();
    return t;
}

std::vector<int> draw_counts(seaopt_sampler *s, const std::vector<float> &logits, int n_draws) {
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < n_draws; ++i) {
        const seaopt_token t = sample(s, logits);
        if (t < 0 || (size_t)t >= logits.size()) {
            ADD_FAILURE() << "token " << t << " out of range";
            return counts;
        }
        counts[(size_t)t]++;
    }
    return counts;
}

std::vector<double> softmax(const std::vector<float> &logits, double temp) {
    const double max = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(logits.size());
    double z = 0;
    for (size_t i = 0; i < logits.size(); ++i) z += p[i] = std::exp(((double)logits[i] - max) / temp);
    for (double &x : p) x /= z;
    return p;
}

// Tokens with expected probability 0 must never appear; the others within 5 standard deviations;
// and Pearson's chi-square below the p = 1e-4 critical value for its degrees of freedom.
void expect_matches_distribution(const std::vector<int> &counts, const std::vector<double> &expected, int n_draws) {
    ASSERT_EQ(counts.size(), expected.size());
    double chi2 = 0;
    int dof = -1;
    for (size_t i = 0; i < counts.size(); ++i) {
        const double p = expected[i];
        const double f = (double)counts[i] / n_draws;
        if (p == 0) {
            EXPECT_EQ(counts[i], 0) << "token " << i << " must never be drawn";
            continue;
        }
        const double sigma = std::sqrt(p * (1 - p) / n_draws);
        EXPECT_NEAR(f, p, 5 * sigma + 1e-12) << "token " << i;
        chi2 += (counts[i] - n_draws * p) * (counts[i] - n_draws * p) / (n_draws * p);
        dof++;
    }
    // Chi-square critical values at p = 1e-4 for 1..9 degrees of freedom.
    const double critical[] = {0, 15.14, 18.42, 21.11, 23.51, 25.74, 27.86, 29.88, 31.83, 33.72};
    ASSERT_GE(dof, 0);
    if (dof >= 1 && dof <= 9) {
        EXPECT_LT(chi2, critical[dof]) << "chi-square with " << dof << " dof";
    }
}

}  // namespace

TEST(Sampler, DefaultParamsMatchTheHeader) {
    const seaopt_sampler_params p = seaopt_sampler_default_params();
    EXPECT_FLOAT_EQ(p.temp, 0.8f);
    EXPECT_EQ(p.top_k, 40);
    EXPECT_FLOAT_EQ(p.top_p, 0.95f);
    EXPECT_FLOAT_EQ(p.min_p, 0.0f);
    EXPECT_FLOAT_EQ(p.repeat_penalty, 1.0f);
    EXPECT_EQ(p.repeat_last_n, 64);
    EXPECT_FLOAT_EQ(p.presence_penalty, 0.0f);
    EXPECT_FLOAT_EQ(p.frequency_penalty, 0.0f);
    EXPECT_EQ(p.logit_bias, nullptr);
    EXPECT_EQ(p.n_logit_bias, 0);
    EXPECT_EQ(p.seed, SEAOPT_DEFAULT_SEED);
}

TEST(Sampler, GreedyPicksTheArgmax) {
    SamplerPtr s = make(greedy());
    EXPECT_EQ(sample(s.get(), {1.0f, 3.0f, 2.0f, -kInf}), 1);
    EXPECT_EQ(sample(s.get(), {-5.0f, -4.0f, -7.0f}), 1);
    EXPECT_EQ(sample(s.get(), {0.0f}), 0);
    // A negative temperature is greedy too.
    SamplerPtr neg = make(params(-1.0f, 40, 0.95f));
    EXPECT_EQ(sample(neg.get(), {1.0f, 3.0f, 2.0f}), 1);
}

TEST(Sampler, GreedyBreaksTiesWithTheLowestId) {
    SamplerPtr s = make(greedy());
    EXPECT_EQ(sample(s.get(), {5.0f, 1.0f, 5.0f}), 0);
    EXPECT_EQ(sample(s.get(), {1.0f, 5.0f, 5.0f, 5.0f}), 1);
    EXPECT_EQ(sample(s.get(), {kInf, 1.0f, kInf}), 0);
}

// OPT's 50,272 logits (the vectorised scans' main loops, not only their tails): greedy equals a plain first-max
// scan wherever the maximum sits, including ties across lanes, +0 against -0 and a maximum in the tail; a NaN anywhere
// is named by its id.
// The rows of the large-vocabulary greedy tests: 40 rows of OPT's 50,272 logits, every fourth with a tie for the
// maximum, with +0 against -0 as the maximum, or with the maximum in the tail past the last lane block.
template <typename Check>
void for_each_large_vocabulary_row(Check check) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 4.0f);
    std::vector<float> l(50272);
    for (int trial = 0; trial < 40; ++trial) {
        for (float &x : l) x = normal(rng);
        if (trial % 4 == 1) l[(size_t)(rng() % l.size())] = l[(size_t)(rng() % l.size())] = 100.0f;  // a tie
        if (trial % 4 == 2) {
            for (float &x : l) x = -std::fabs(x) - 1.0f;
            l[(size_t)(rng() % l.size())] = -0.0f;
            l[(size_t)(rng() % l.size())] = 0.0f;  // +0 == -0: the lower id wins
        }
        if (trial % 4 == 3) l[l.size() - 1 - (size_t)(rng() % 7)] = 99.0f;  // in the tail past the last lane block
        check(l, trial);
    }
}

TEST(Sampler, GreedyOverALargeVocabularyMatchesAScan) {
    SamplerPtr s = make(greedy());
    const auto scan = [](const std::vector<float> &l) {
        size_t best = 0;
        for (size_t i = 1; i < l.size(); ++i) {
            if (l[i] > l[best]) best = i;
        }
        return (seaopt_token)best;
    };
    for_each_large_vocabulary_row([&](const std::vector<float> &l, int trial) {
        EXPECT_EQ(sample(s.get(), l), scan(l)) << "trial " << trial;
    });
    std::vector<float> l(50272, -kInf);
    seaopt_token t = -1;
    EXPECT_EQ(seaopt_sampler_sample_logits(s.get(), l.data(), (int32_t)l.size(), &t), SEAOPT_ERR_INVALID_ARGUMENT);
    l[40000] = kNaN;
    EXPECT_EQ(seaopt_sampler_sample_logits(s.get(), l.data(), (int32_t)l.size(), &t), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(seaopt_last_error()).find("token 40000 is NaN"), std::string::npos) << seaopt_last_error();
}

// The device's greedy pick (engine/argmax_key.h: the GPU reduces the logits to keys, the host takes their max):
// the max key's token is the sampler's own pick over the same rows as above (ties, +0 against -0), rows with
// infinities, and -1 where the sampler must decide itself (a NaN, only -inf).
TEST(Sampler, ArgmaxKeysGiveTheGreedyPick) {
    SamplerPtr s = make(greedy());
    const auto key_pick = [](const std::vector<float> &l) {
        uint64_t best = seaopt::kArgmaxKeyNone;
        for (size_t i = 0; i < l.size(); ++i) best = std::max(best, seaopt::argmax_key(l[i], (uint32_t)i));
        return seaopt::argmax_key_token(best);
    };
    for_each_large_vocabulary_row([&](const std::vector<float> &l, int trial) {
        EXPECT_EQ(key_pick(l), sample(s.get(), l)) << "trial " << trial;
    });
    std::vector<float> l(50272);
    for (size_t i = 0; i < l.size(); ++i) l[i] = -1.0f - 0.01f * (float)(i % 97);  // all negative, the max repeated
    l[5] = -kInf;  // one -inf among them
    EXPECT_EQ(key_pick(l), sample(s.get(), l));
    l[31000] = kInf;
    EXPECT_EQ(key_pick(l), sample(s.get(), l));
    EXPECT_EQ(key_pick(l), 31000);
    EXPECT_EQ(key_pick({-0.0f, 0.0f}), 0);
    EXPECT_EQ(key_pick({0.0f, -0.0f}), 0);
    EXPECT_EQ(key_pick({-kInf, -3.0f, -3.0f}), 1);
    EXPECT_EQ(key_pick({-kInf, -kInf}), -1);  // only -inf: the sampler says why
    EXPECT_EQ(key_pick({1.0f, kNaN, 2.0f}), -1);  // a NaN: likewise
    EXPECT_EQ(key_pick({kInf, kNaN}), -1);
    EXPECT_EQ(seaopt::argmax_key_token(seaopt::kArgmaxKeyNone), -1);
    // Larger values give larger keys across signs and magnitudes; equal values order by falling id.
    const float v[] = {-kInf, -1e30f, -2.0f, -1e-30f, 0.0f, 1e-30f, 2.0f, 1e30f, kInf};
    for (size_t i = 0; i + 1 < sizeof v / sizeof v[0]; ++i) {
        EXPECT_LT(seaopt::argmax_key(v[i], 0), seaopt::argmax_key(v[i + 1], 7)) << v[i];
        EXPECT_GT(seaopt::argmax_key(v[i], 3), seaopt::argmax_key(v[i], 4)) << v[i];
    }
}

// The sampler takes the device's pick only where it would pick greedily itself: greedy without a penalty.
TEST(Sampler, DeviceGreedyIsTakenOnlyForGreedy) {
    const std::vector<float> l = {1.0f, 3.0f, 2.0f};
    seaopt::Sampler g(greedy());
    EXPECT_EQ(g.sample(l.data(), 3, 1), 1);
    EXPECT_EQ(g.sample(l.data(), 3, -1), 1);  // none made: the sampler's scan
    EXPECT_EQ(g.sample(l.data(), 3, 7), 1);   // out of range: ignored
    // With a repetition penalty the pick can move (3 / 2 < 2): the device's pick of the raw logits is ignored.
    seaopt_sampler_params pen = greedy();
    pen.repeat_penalty = 2.0f;
    seaopt::Sampler p(pen);
    p.accept(1);
    EXPECT_EQ(p.sample(l.data(), 3, 1), 2);
    // Likewise with a presence penalty (3 - 1.5 < 2) or a frequency penalty (3 - 2 x 0.75 < 2).
    seaopt_sampler_params presence = greedy();
    presence.presence_penalty = 1.5f;
    seaopt::Sampler pr(presence);
    pr.accept(1);
    EXPECT_EQ(pr.sample(l.data(), 3, 1), 2);
    seaopt_sampler_params frequency = greedy();
    frequency.frequency_penalty = 0.75f;
    seaopt::Sampler fr(frequency);
    fr.accept(1);
    fr.accept(1);
    EXPECT_EQ(fr.sample(l.data(), 3, 1), 2);
    // Sampling: a draw, not the hint (temperature ~0.01 gives the argmax 1 every time; the hint says 0).
    seaopt::Sampler t(pure_temperature(0.01f));
    for (int i = 0; i < 20; ++i) EXPECT_EQ(t.sample(l.data(), 3, 0), 1);
}

// Top-k over OPT's 50,272 logits (the sampler bounds the k-th largest by block maxima before it sorts): a very high
// temperature makes the kept k near-uniform, so many draws show the kept set, which must be the k largest by
// (value, then lower id) — with a tie across the k-th place and the largest values in the last, partial block.
TEST(Sampler, TopKOverALargeVocabularyKeepsTheKLargest) {
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> l(50272);
    for (float &x : l) x = normal(rng);
    for (size_t i : {7u, 9000u, 9001u, 33333u, 50000u}) l[i] = 20.0f;  // five tied at the 3rd..7th places
    l[50270] = 30.0f;
    l[50271] = 25.0f;  // the partial last block holds the two largest
    for (int32_t k : {1, 3, 5, 40}) {
        std::vector<int32_t> order(l.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
        const std::set<int32_t> want(order.begin(), order.begin() + k);
        SamplerPtr s = make(params(1e6f, k, 1.0f, 99));
        std::set<int32_t> seen;
        for (int i = 0; i < 60 * k; ++i) seen.insert(sample(s.get(), l));
        EXPECT_EQ(seen, want) << "k = " << k;
    }
}

TEST(Sampler, RepetitionPenaltyDividesPositiveLogits) {
    // {3, 2}: token 0 penalized by 2 -> 1.5 < 2 (pick 1); by 1.4 -> 2.143 > 2 (still pick 0).
    seaopt_sampler_params p = greedy();
    p.repeat_penalty = 2.0f;
    SamplerPtr s = make(p);
    seaopt_sampler_accept(s.get(), 0);
    EXPECT_EQ(sample(s.get(), {3.0f, 2.0f}), 1);

    p.repeat_penalty = 1.4f;
    SamplerPtr mild = make(p);
    seaopt_sampler_accept(mild.get(), 0);
    EXPECT_EQ(sample(mild.get(), {3.0f, 2.0f}), 0);
}

TEST(Sampler, RepetitionPenaltyMultipliesNegativeLogits) {
    // {-1, -1.5}: token 0 penalized by 2 -> -2 < -1.5 (pick 1); by 1.4 -> -1.4 > -1.5 (pick 0).
    seaopt_sampler_params p = greedy();
    p.repeat_penalty = 2.0f;
    SamplerPtr s = make(p);
    seaopt_sampler_accept(s.get(), 0);
    EXPECT_EQ(sample(s.get(), {-1.0f, -1.5f}), 1);

    p.repeat_penalty = 1.4f;
    SamplerPtr mild = make(p);
    seaopt_sampler_accept(mild.get(), 0);
    EXPECT_EQ(sample(mild.get(), {-1.0f, -1.5f}), 0);
}

TEST(Sampler, RepetitionPenaltyAppliesOncePerDistinctToken) {
    // Three occurrences of token 0 still give 3 / 1.4 = 2.143 > 2, not 3 / 1.4^3 = 1.09.
    seaopt_sampler_params p = greedy();
    p.repeat_penalty = 1.4f;
    SamplerPtr s = make(p);
    for (int i = 0; i < 3; ++i) seaopt_sampler_accept(s.get(), 0);
    EXPECT_EQ(sample(s.get(), {3.0f, 2.0f}), 0);
}

TEST(Sampler, RepetitionPenaltyShapesTheDistribution) {
    // {2, 0} with token 0 penalized by 2 -> {1, 0}: P(0) = e / (1 + e).
    // {-1, 0} with token 0 penalized by 2 -> {-2, 0}: P(0) = 1 / (1 + e^2).
    const int n = 20000;
    seaopt_sampler_params p = pure_temperature(1.0f, 7);
    p.repeat_penalty = 2.0f;
    SamplerPtr s = make(p);
    seaopt_sampler_accept(s.get(), 0);
    const double e = std::exp(1.0);
    expect_matches_distribution(draw_counts(s.get(), {2.0f, 0.0f}, n), {e / (1 + e), 1 / (1 + e)}, n);
    expect_matches_distribution(draw_counts(s.get(), {-1.0f, 0.0f}, n), {1 / (1 + e * e), e * e / (1 + e * e)}, n);
}

TEST(Sampler, PresencePenaltySubtractsOncePerDistinctToken) {
    // Token 0 occurs three times: 3 - 0.6 = 2.4 < 2.5 either way (once, not three times: 3 - 0.4 = 2.6 > 2.5).
    for (float presence : {0.6f, 0.4f}) {
        seaopt_sampler_params p = greedy();
        p.presence_penalty = presence;
        SamplerPtr s = make(p);
        for (int i = 0; i < 3; ++i) seaopt_sampler_accept(s.get(), 0);
        EXPECT_EQ(sample(s.get(), {3.0f, 2.5f}), presence > 0.5f ? 1 : 0) << presence;
    }
    // A negative presence penalty encourages: 1 + 1.5 > 2.
    seaopt_sampler_params p = greedy();
    p.presence_penalty = -1.5f;
    SamplerPtr s = make(p);
    seaopt_sampler_accept(s.get(), 0);
    EXPECT_EQ(sample(s.get(), {1.0f, 2.0f}), 0);
}

TEST(Sampler, FrequencyPenaltySubtractsPerOccurrenceInTheWindow) {
    // Token 0 three times with 0.2 each: 3 - 0.6 = 2.4 < 2.5; twice: 2.6 > 2.5.
    seaopt_sampler_params p = greedy();
    p.frequency_penalty = 0.2f;
    SamplerPtr thrice = make(p);
    for (int i = 0; i < 3; ++i) seaopt_sampler_accept(thrice.get(), 0);
    EXPECT_EQ(sample(thrice.get(), {3.0f, 2.5f}), 1);
    SamplerPtr twice = make(p);
    for (int i = 0; i < 2; ++i) seaopt_sampler_accept(twice.get(), 0);
    EXPECT_EQ(sample(twice.get(), {3.0f, 2.5f}), 0);
    // Only occurrences inside the window count: with repeat_last_n = 3, two of the four 0s have left it.
    p.repeat_last_n = 3;
    SamplerPtr windowed = make(p);
    for (seaopt_token t : {0, 0, 0, 0, 1}) seaopt_sampler_accept(windowed.get(), t);
    // 3 - 2 x 0.2 = 2.6 against 2.5 - 0.2 = 2.3.
    EXPECT_EQ(sample(windowed.get(), {3.0f, 2.5f}), 0);
}

TEST(Sampler, PenaltiesComposeInLlamaCppsOrder) {
    // Repetition penalty first, then frequency and presence (llama.cpp's penalties sampler):
    // token 0: 3 / 1.5 - 2 x 0.1 - 0.2 = 1.6; token 1 (unseen): 1.7 -> 1 wins. Subtracting first would give
    // (3 - 0.4) / 1.5 = 1.73 > 1.7 -> 0.
    seaopt_sampler_params p = greedy();
    p.repeat_penalty = 1.5f;
    p.frequency_penalty = 0.1f;
    p.presence_penalty = 0.2f;
    SamplerPtr s = make(p);
    seaopt_sampler_accept(s.get(), 0);
    seaopt_sampler_accept(s.get(), 0);
    EXPECT_EQ(sample(s.get(), {3.0f, 1.7f}), 1);
    // And they shape the sampled distribution: {2, 0} with token 0 seen twice, frequency 0.5 -> {1, 0}.
    const int n = 20000;
    seaopt_sampler_params q = pure_temperature(1.0f, 11);
    q.frequency_penalty = 0.5f;
    SamplerPtr d = make(q);
    seaopt_sampler_accept(d.get(), 0);
    seaopt_sampler_accept(d.get(), 0);
    const double e = std::exp(1.0);
    expect_matches_distribution(draw_counts(d.get(), {2.0f, 0.0f}, n), {e / (1 + e), 1 / (1 + e)}, n);
}

TEST(Sampler, LogitBiasShiftsAndBans) {
    // Greedy: a ban moves the pick to the next best; a positive bias can make a token the best.
    std::vector<seaopt_logit_bias> biases = {{0, -kInf}};
    seaopt_sampler_params p = greedy();
    p.logit_bias = biases.data();
    p.n_logit_bias = 1;
    SamplerPtr ban = make(p);
    biases[0] = {1, 100.0f};  // the sampler copied the array: changing it now changes nothing
    EXPECT_EQ(sample(ban.get(), {3.0f, 2.0f, 1.0f}), 1);
    EXPECT_EQ(sample(ban.get(), {kInf, 2.0f, 1.0f}), 1);  // -inf bans even a +inf logit (no NaN)
    std::vector<seaopt_logit_bias> lift = {{2, 5.0f}, {70000, 1.0f}};  // the second id is outside: ignored
    p.logit_bias = lift.data();
    p.n_logit_bias = 2;
    SamplerPtr up = make(p);
    EXPECT_EQ(sample(up.get(), {3.0f, 2.0f, 1.0f}), 2);
    // The device's greedy pick of the raw logits is not taken when a bias changes them.
    seaopt::Sampler dev(p);
    const std::vector<float> l = {3.0f, 2.0f, 1.0f};
    EXPECT_EQ(dev.sample(l.data(), 3, 0), 2);
    // Sampling: {0, 0} with token 0 biased by ln 3 -> P(0) = 3/4.
    std::vector<seaopt_logit_bias> third = {{0, (float)std::log(3.0)}};
    seaopt_sampler_params q = pure_temperature(1.0f, 17);
    q.logit_bias = third.data();
    q.n_logit_bias = 1;
    SamplerPtr d = make(q);
    const int n = 20000;
    expect_matches_distribution(draw_counts(d.get(), {0.0f, 0.0f}, n), {0.75, 0.25}, n);
}

TEST(Sampler, HugePenaltiesMakeNoNaN) {
    // Token 0 seen twice, logit -2: -2 x 3e38 and 2 x -3e38 each overflow a float (-inf - -inf would be a NaN);
    // in exact arithmetic they cancel: token 0's logit becomes 0, below token 1's 0.5.
    seaopt_sampler_params p = greedy();
    p.repeat_penalty = 3e38f;
    p.frequency_penalty = -3e38f;
    SamplerPtr s = make(p);
    seaopt_sampler_accept(s.get(), 0);
    seaopt_sampler_accept(s.get(), 0);
    EXPECT_EQ(sample(s.get(), {-2.0f, 0.5f}), 1);
    p.temp = 1.0f;
    SamplerPtr t = make(p);
    seaopt_sampler_accept(t.get(), 0);
    for (int i = 0; i < 50; ++i) EXPECT_GE(sample(t.get(), {-2.0f, 0.5f, kInf}), 0);  // the +inf logit: always 2
    EXPECT_EQ(sample(t.get(), {-2.0f, 0.5f, kInf}), 2);
}

TEST(Sampler, RepetitionPenaltyWindow) {
    seaopt_sampler_params p = greedy();
    p.repeat_penalty = 2.0f;
    const std::vector<float> logits = {3.0f, 2.0f, 0.0f, 0.0f};

    p.repeat_last_n = 2;  // token 0 falls out of the window after two more tokens
    SamplerPtr windowed = make(p);
    for (seaopt_token t : {0, 2, 3}) seaopt_sampler_accept(windowed.get(), t);
    EXPECT_EQ(sample(windowed.get(), logits), 0);

    p.repeat_last_n = -1;  // every accepted token counts
    SamplerPtr all = make(p);
    seaopt_sampler_accept(all.get(), 0);
    for (int i = 0; i < 1000; ++i) seaopt_sampler_accept(all.get(), 3);
    EXPECT_EQ(sample(all.get(), logits), 1);

    p.repeat_last_n = 0;  // off
    SamplerPtr off = make(p);
    seaopt_sampler_accept(off.get(), 0);
    EXPECT_EQ(sample(off.get(), logits), 0);

    // reset() forgets the history.
    p.repeat_last_n = 64;
    SamplerPtr s = make(p);
    seaopt_sampler_accept(s.get(), 0);
    EXPECT_EQ(sample(s.get(), logits), 1);
    seaopt_sampler_reset(s.get());
    EXPECT_EQ(sample(s.get(), logits), 0);
}

TEST(Sampler, TopKOneEqualsGreedy) {
    std::mt19937 gen(99);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    SamplerPtr top1 = make(params(1.5f, 1, 1.0f, 5));
    SamplerPtr top1_with_p = make(params(1.5f, 1, 0.5f, 6));
    SamplerPtr argmax = make(greedy());
    for (int round = 0; round < 50; ++round) {
        std::vector<float> logits(1000);
        for (float &x : logits) x = normal(gen);
        const seaopt_token expected = sample(argmax.get(), logits);
        for (int i = 0; i < 20; ++i) {
            ASSERT_EQ(sample(top1.get(), logits), expected);
            ASSERT_EQ(sample(top1_with_p.get(), logits), expected);
        }
    }
}

TEST(Sampler, TopKKeepsTheKLargest) {
    // Probabilities {0.1, 0.4, 0.05, 0.3, 0.15}; top-3 keeps tokens 1, 3, 4, renormalized by 0.85.
    const std::vector<float> logits = {std::log(0.1f), std::log(0.4f), std::log(0.05f), std::log(0.3f),
                                       std::log(0.15f)};
    const int n = 20000;
    SamplerPtr s = make(params(1.0f, 3, 1.0f, 11));
    expect_matches_distribution(draw_counts(s.get(), logits, n), {0, 0.4 / 0.85, 0, 0.3 / 0.85, 0.15 / 0.85}, n);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
    // Probabilities by token: 0:0.25 1:0.10 2:0.05 3:0.40 4:0.20. Descending: 3, 0, 4, 1, 2 with
    // cumulative 0.40, 0.65, 0.85, 0.95, 1.00.
    const std::vector<float> logits = {std::log(0.25f), std::log(0.10f), std::log(0.05f), std::log(0.40f),
                                       std::log(0.20f)};
    const int n = 20000;
    {
        SCOPED_TRACE("top_p 0.8 -> {3, 0, 4}");
        SamplerPtr s = make(params(1.0f, 0, 0.8f, 21));
        expect_matches_distribution(draw_counts(s.get(), logits, n), {0.25 / 0.85, 0, 0, 0.40 / 0.85, 0.20 / 0.85}, n);
    }
    {
        SCOPED_TRACE("top_p 0.65 (reached exactly) -> {3, 0}");
        SamplerPtr s = make(params(1.0f, 0, 0.65f, 22));
        expect_matches_distribution(draw_counts(s.get(), logits, n), {0.25 / 0.65, 0, 0, 0.40 / 0.65, 0}, n);
    }
    {
        SCOPED_TRACE("top_p 0.1 -> always at least the top token");
        SamplerPtr s = make(params(1.0f, 0, 0.1f, 23));
        expect_matches_distribution(draw_counts(s.get(), logits, n), {0, 0, 0, 1, 0}, n);
    }
    {
        SCOPED_TRACE("top_p 1 is off");
        SamplerPtr s = make(params(1.0f, 0, 1.0f, 24));
        expect_matches_distribution(draw_counts(s.get(), logits, n), {0.25, 0.10, 0.05, 0.40, 0.20}, n);
    }
    {
        // Top-k 4 drops token 2; cumulative over {3, 0, 4, 1} renormalized by 0.95 is 0.421, 0.684,
        // 0.895, 1, so top_p 0.9 needs all four.
        SCOPED_TRACE("top-k 4 then top-p 0.9 -> {3, 0, 4, 1}");
        SamplerPtr s = make(params(1.0f, 4, 0.9f, 25));
        expect_matches_distribution(draw_counts(s.get(), logits, n),
                                    {0.25 / 0.95, 0.10 / 0.95, 0, 0.40 / 0.95, 0.20 / 0.95}, n);
    }
}

TEST(Sampler, TopPOverALargeVocabularyKeepsExactlyTheNucleus) {
    // Without top-k the nucleus here holds more than a thousand tokens, so the partial sort must
    // grow several times; the allowed set is computed here by sorting everything.
    const int n_vocab = 50272;
    std::mt19937 gen(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> logits((size_t)n_vocab);
    for (float &x : logits) x = normal(gen);
    const float top_p = 0.9f;
    const double temp = 0.7;

    const std::vector<double> p = softmax(logits, temp);
    std::vector<int32_t> order((size_t)n_vocab);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    std::set<int32_t> nucleus;
    double cum = 0;
    for (int32_t t : order) {
        nucleus.insert(t);
        cum += p[t];
        if (cum >= top_p) break;
    }
    ASSERT_GT(nucleus.size(), 1000u);

    SamplerPtr s = make(params((float)temp, 0, top_p, 31));
    for (int i = 0; i < 500; ++i) {
        const seaopt_token t = sample(s.get(), logits);
        ASSERT_TRUE(nucleus.count(t)) << "token " << t << " is outside the top-p nucleus";
    }
}

TEST(Sampler, TemperatureMatchesSoftmaxOfScaledLogits) {
    const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 2.0f};
    const int n = 20000;
    for (float temp : {0.5f, 1.0f, 2.0f}) {
        SCOPED_TRACE(testing::Message() << "temp " << temp);
        SamplerPtr s = make(pure_temperature(temp, 40));
        const std::vector<int> counts = draw_counts(s.get(), logits, n);
        const std::vector<double> expected = softmax(logits, temp);
        expect_matches_distribution(counts, expected, n);
        double max_abs = 0;
        for (size_t i = 0; i < logits.size(); ++i) max_abs = std::max(max_abs, std::abs((double)counts[i] / n - expected[i]));
        EXPECT_LT(max_abs, 0.015);
    }
}

// Min-p as HF's MinPLogitsWarper: after temperature, top-k and top-p, tokens whose probability is below min_p times
// the largest are dropped and the rest renormalized. The expected distributions are computed here from the softmax.
std::vector<double> min_p_reference(const std::vector<float> &logits, double temp, double min_p) {
    std::vector<double> p = softmax(logits, temp);
    const double top = *std::max_element(p.begin(), p.end());
    double z = 0;
    for (double &x : p) {
        if (x < min_p * top) x = 0;
        z += x;
    }
    for (double &x : p) x /= z;
    return p;
}

TEST(Sampler, MinPDropsTokensBelowMinPTimesTheTopProbability) {
    const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f, -3.0f, 1.5f};
    const int n = 20000;
    // temp 1: probabilities relative to the top are e^-1 = 0.37, e^-2 = 0.14, e^-3 = 0.05, e^-5, e^-0.5 = 0.61.
    // min_p 0.1 keeps 0, 1, 2, 5; 0.5 keeps 0 and 5; at temp 2 min_p 0.5 keeps 0, 1, 5 (e^-0.5 = 0.61).
    struct Case {
        float temp, min_p;
        size_t n_kept;
    };
    for (const Case c : {Case{1.0f, 0.1f, 4}, Case{1.0f, 0.5f, 2}, Case{2.0f, 0.5f, 3}, Case{1.0f, 1.0f, 1}}) {
        SCOPED_TRACE(testing::Message() << "temp " << c.temp << " min_p " << c.min_p);
        seaopt_sampler_params p = pure_temperature(c.temp, 50);
        p.min_p = c.min_p;
        SamplerPtr s = make(p);
        const std::vector<double> expected = min_p_reference(logits, c.temp, c.min_p);
        EXPECT_EQ((size_t)std::count_if(expected.begin(), expected.end(), [](double x) { return x > 0; }), c.n_kept);
        expect_matches_distribution(draw_counts(s.get(), logits, n), expected, n);
    }
}

TEST(Sampler, MinPAfterTopPAndTopK) {
    // top_k 3 keeps {0, 5, 1}; min_p 0.5 of those keeps {0, 5} (relative probabilities 1, 0.61, 0.37): the set
    // min-p alone keeps here, renormalized over it.
    const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f, -3.0f, 1.5f};
    const int n = 20000;
    seaopt_sampler_params p = params(1.0f, 3, 1.0f, 51);
    p.min_p = 0.5f;
    SamplerPtr s = make(p);
    expect_matches_distribution(draw_counts(s.get(), logits, n), min_p_reference(logits, 1.0, 0.5), n);
    // Top-p 0.3 keeps only token 0 (its probability is 0.46); min-p then has nothing to drop.
    seaopt_sampler_params q = params(1.0f, 0, 0.3f, 52);
    q.min_p = 0.1f;
    SamplerPtr one = make(q);
    const std::vector<int> counts = draw_counts(one.get(), logits, 500);
    EXPECT_EQ(counts[0], 500);
}

TEST(Sampler, MinPOverALargeVocabularyKeepsExactlyTheTokensAboveTheThreshold) {
    // 50,272 random logits at a high temperature: the kept set must be exactly those within temp * ln(1 / min_p)
    // of the largest logit.
    std::mt19937 rng(9);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(50272);
    for (float &x : logits) x = normal(rng);
    const float temp = 4.0f, min_p = 0.2f;
    const double max = *std::max_element(logits.begin(), logits.end());
    std::set<int> allowed;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (std::exp(((double)logits[i] - max) / temp) >= min_p) allowed.insert((int)i);
    }
    ASSERT_GT(allowed.size(), 20u);
    seaopt_sampler_params p = params(temp, 0, 1.0f, 53);
    p.min_p = min_p;
    SamplerPtr s = make(p);
    std::set<int> seen;
    for (int i = 0; i < 20000; ++i) {
        const int t = sample(s.get(), logits);
        ASSERT_TRUE(allowed.count(t)) << "token " << t << " is below the min-p threshold";
        seen.insert(t);
    }
    EXPECT_EQ(seen.size(), allowed.size());
}

TEST(Sampler, MinusInfinityLogitsAreNeverDrawn) {
    SamplerPtr s = make(pure_temperature(1.0f, 41));
    const std::vector<int> counts = draw_counts(s.get(), {-kInf, 0.0f, -kInf, 0.0f}, 2000);
    EXPECT_EQ(counts[0], 0);
    EXPECT_EQ(counts[2], 0);
    EXPECT_EQ(counts[1] + counts[3], 2000);
}

TEST(Sampler, TheGeneratorIsMt19937_64WithTheTop53Bits) {
    // Two equal logits: token 0 iff the uniform draw is < 0.5, i.e. iff the top bit of the next
    // mt19937_64 output is 0. This pins the generator and the draw on every standard library.
    const uint32_t seed = 2024;
    SamplerPtr s = make(pure_temperature(1.0f, seed));
    std::mt19937_64 reference(seed);
    for (int i = 0; i < 256; ++i) {
        const seaopt_token expected = (reference() >> 63) ? 1 : 0;
        ASSERT_EQ(sample(s.get(), {0.0f, 0.0f}), expected) << "draw " << i;
    }
}

TEST(Sampler, SameSeedGivesTheSameSequenceAndResetReplaysIt) {
    std::mt19937 gen(8);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<std::vector<float>> steps(200, std::vector<float>(500));
    for (auto &logits : steps) {
        for (float &x : logits) x = normal(gen);
    }
    seaopt_sampler_params p = seaopt_sampler_default_params();
    p.seed = 77;
    p.repeat_penalty = 1.3f;
    auto run = [&](seaopt_sampler *s) {
        std::vector<seaopt_token> out;
        for (const auto &logits : steps) {
            const seaopt_token t = sample(s, logits);
            seaopt_sampler_accept(s, t);
            out.push_back(t);
        }
        return out;
    };
    SamplerPtr a = make(p), b = make(p);
    EXPECT_EQ(seaopt_sampler_seed(a.get()), 77u);
    const std::vector<seaopt_token> first = run(a.get());
    EXPECT_EQ(run(b.get()), first);
    seaopt_sampler_reset(a.get());
    EXPECT_EQ(run(a.get()), first);

    p.seed = 78;
    SamplerPtr c = make(p);
    EXPECT_NE(run(c.get()), first);
}

TEST(Sampler, DefaultSeedPicksARandomSeedAndReportsIt) {
    SamplerPtr s = make(params(0.8f, 40, 0.95f, SEAOPT_DEFAULT_SEED));
    const uint32_t seed = seaopt_sampler_seed(s.get());
    EXPECT_NE(seed, SEAOPT_DEFAULT_SEED);
    // The reported seed reproduces the run.
    SamplerPtr again = make(params(0.8f, 40, 0.95f, seed));
    const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.0f, -0.3f};
    for (int i = 0; i < 100; ++i) ASSERT_EQ(sample(s.get(), logits), sample(again.get(), logits));
}

TEST(Sampler, InvalidParamsAreRejected) {
    struct Case {
        const char *what;
        seaopt_sampler_params p;
    };
    std::vector<Case> cases;
    auto add = [&](const char *what, auto change) {
        seaopt_sampler_params p = seaopt_sampler_default_params();
        change(p);
        cases.push_back({what, p});
    };
    add("temp NaN", [](seaopt_sampler_params &p) { p.temp = kNaN; });
    add("temp +inf", [](seaopt_sampler_params &p) { p.temp = kInf; });
    add("top_p 0", [](seaopt_sampler_params &p) { p.top_p = 0.0f; });
    add("top_p -0.5", [](seaopt_sampler_params &p) { p.top_p = -0.5f; });
    add("top_p NaN", [](seaopt_sampler_params &p) { p.top_p = kNaN; });
    add("repeat_penalty 0", [](seaopt_sampler_params &p) { p.repeat_penalty = 0.0f; });
    add("repeat_penalty -1", [](seaopt_sampler_params &p) { p.repeat_penalty = -1.0f; });
    add("repeat_penalty NaN", [](seaopt_sampler_params &p) { p.repeat_penalty = kNaN; });
    add("repeat_last_n -2", [](seaopt_sampler_params &p) { p.repeat_last_n = -2; });
    add("min_p -0.1", [](seaopt_sampler_params &p) { p.min_p = -0.1f; });
    add("min_p 1.5", [](seaopt_sampler_params &p) { p.min_p = 1.5f; });
    add("min_p NaN", [](seaopt_sampler_params &p) { p.min_p = kNaN; });
    add("presence_penalty NaN", [](seaopt_sampler_params &p) { p.presence_penalty = kNaN; });
    add("presence_penalty inf", [](seaopt_sampler_params &p) { p.presence_penalty = kInf; });
    add("frequency_penalty -inf", [](seaopt_sampler_params &p) { p.frequency_penalty = -kInf; });
    static const seaopt_logit_bias nan_bias[1] = {{5, kNaN}};
    add("logit_bias NaN", [](seaopt_sampler_params &p) {
        p.logit_bias = nan_bias;
        p.n_logit_bias = 1;
    });
    add("logit_bias NULL with n 2", [](seaopt_sampler_params &p) { p.n_logit_bias = 2; });
    add("n_logit_bias -1", [](seaopt_sampler_params &p) { p.n_logit_bias = -1; });
    for (const Case &c : cases) {
        SCOPED_TRACE(c.what);
        seaopt_sampler *s = reinterpret_cast<seaopt_sampler *>(0x1);
        EXPECT_EQ(seaopt_sampler_new(&c.p, &s), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(s, nullptr);
        EXPECT_GT(std::strlen(seaopt_last_error()), 0u);
    }
    EXPECT_EQ(seaopt_sampler_new(nullptr, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_GT(std::strlen(seaopt_last_error()), 0u);
}

TEST(Sampler, EdgeParamsAreAccepted) {
    // top_p above 1 and top_k at or above n_vocab are "off", not errors; NULL params = defaults.
    seaopt_sampler *s = nullptr;
    seaopt_sampler_params p = params(1.0f, 100, 1.5f);
    ASSERT_EQ(seaopt_sampler_new(&p, &s), SEAOPT_OK) << seaopt_last_error();
    EXPECT_GE(sample(s, {0.0f, 1.0f, 2.0f}), 0);
    seaopt_sampler_free(s);
    ASSERT_EQ(seaopt_sampler_new(nullptr, &s), SEAOPT_OK) << seaopt_last_error();
    EXPECT_NE(seaopt_sampler_seed(s), SEAOPT_DEFAULT_SEED);
    seaopt_sampler_free(s);
    seaopt_sampler_free(nullptr);
    seaopt_sampler_accept(nullptr, 1);
    seaopt_sampler_reset(nullptr);
}

TEST(Sampler, BadLogitsAreRejectedThroughTheCApi) {
    for (const seaopt_sampler_params &p : {greedy(), seaopt_sampler_default_params()}) {
        SamplerPtr s = make(p);
        seaopt_token t = -1;
        const std::vector<float> with_nan = {0.0f, kNaN, 1.0f};
        EXPECT_EQ(seaopt_sampler_sample_logits(s.get(), with_nan.data(), 3, &t), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_NE(std::string(seaopt_last_error()).find("NaN"), std::string::npos) << seaopt_last_error();
        const std::vector<float> all_minus_inf = {-kInf, -kInf};
        EXPECT_EQ(seaopt_sampler_sample_logits(s.get(), all_minus_inf.data(), 2, &t), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_GT(std::strlen(seaopt_last_error()), 0u);
        EXPECT_EQ(seaopt_sampler_sample_logits(s.get(), with_nan.data(), 0, &t), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(seaopt_sampler_sample_logits(s.get(), nullptr, 3, &t), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(seaopt_sampler_sample_logits(s.get(), with_nan.data(), 3, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(seaopt_sampler_sample_logits(nullptr, with_nan.data(), 3, &t), SEAOPT_ERR_INVALID_ARGUMENT);
        // A context-less call fails cleanly too.
        EXPECT_EQ(seaopt_sampler_sample(s.get(), nullptr, -1, &t), SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_GT(std::strlen(seaopt_last_error()), 0u);
    }
}

TEST(Sampler, ASuccessfulCallClearsTheLastError) {
    SamplerPtr s = make(greedy());
    seaopt_token t = -1;
    const float nan_logit = kNaN;
    ASSERT_NE(seaopt_sampler_sample_logits(s.get(), &nan_logit, 1, &t), SEAOPT_OK);
    ASSERT_GT(std::strlen(seaopt_last_error()), 0u);
    EXPECT_EQ(sample(s.get(), {1.0f, 2.0f}), 1);
    EXPECT_STREQ(seaopt_last_error(), "");
}
