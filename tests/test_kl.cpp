// The row arithmetic of seaopt-perplexity --kl-divergence (tools/common/kl.h) against hand-computed
// values: identical rows, a 3-token KL in closed form (and its invariance to a constant shift),
// rows whose argmax differs, ties resolved as the library's greedy sampler resolves them, p(v)
// underflowing to 0, non-finite logits, a vocabulary-sized row against a long-double loop, the
// threaded version against the serial one, and the percentile rule.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "seaopt.h"
#include "tools/common/kl.h"

using seaopt_tools::compare_logit_rows;
using seaopt_tools::compare_logit_rows_parallel;
using seaopt_tools::quantile_sorted;
using seaopt_tools::RowComparison;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The greedy token of the library's sampler (temp 0) for a row.
int32_t greedy_token(const std::vector<float> &logits) {
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    sp.temp = 0.0f;
    sp.seed = 1;
    seaopt_sampler *smpl = nullptr;
    EXPECT_EQ(seaopt_sampler_new(&sp, &smpl), SEAOPT_OK) << seaopt_last_error();
    seaopt_token token = -1;
    EXPECT_EQ(seaopt_sampler_sample_logits(smpl, logits.data(), (int32_t)logits.size(), &token), SEAOPT_OK);
    seaopt_sampler_free(smpl);
    return token;
}

}  // namespace

TEST(KlDivergence, IdenticalRowsGiveZero) {
    const std::vector<float> row = {0.5f, -1.25f, 3.0f, 2.0f, -7.0f};
    const RowComparison c = compare_logit_rows(row.data(), row.data(), 5, 3);
    EXPECT_EQ(c.kl, 0.0);  // every term is p(v) * 0 exactly
    EXPECT_TRUE(c.same_top1);
    EXPECT_EQ(c.top1_p, 2);
    EXPECT_EQ(c.top1_q, 2);
    double sum = 0;
    for (float x : row) sum += std::exp((double)x);
    EXPECT_NEAR(c.nll_p, std::log(sum) - 2.0, 1e-14);
    EXPECT_EQ(c.nll_p, c.nll_q);
}

// p = (1/2, 1/4, 1/4), q = (1/3, 1/3, 1/3): KL(p||q) = 1/2 ln(3/2) + 2 * 1/4 ln(3/4) = 1/2 ln(9/8).
TEST(KlDivergence, ThreeTokensClosedForm) {
    const std::vector<float> p = {(float)std::log(2.0), 0.0f, 0.0f};
    for (float shift : {0.0f, 7.0f, -40.0f}) {  // softmax ignores a constant added to every logit
        const std::vector<float> q = {shift, shift, shift};
        const RowComparison c = compare_logit_rows(p.data(), q.data(), 3, 1);
        EXPECT_NEAR(c.kl, 0.5 * std::log(9.0 / 8.0), 1e-8) << "shift " << shift;  // log(2) is rounded to float
        EXPECT_NEAR(c.nll_p, std::log(4.0), 1e-7);
        EXPECT_NEAR(c.nll_q, std::log(3.0), 1e-14);
        EXPECT_EQ(c.top1_p, 0);
        EXPECT_EQ(c.top1_q, 0);  // a three-way tie: the lowest id
        EXPECT_TRUE(c.same_top1);
    }
    // The other direction: KL(q||p) = sum_v 1/3 ln((1/3) / p(v)) = 1/3 ln(2/3) + 2/3 ln(4/3).
    const std::vector<float> q = {0.0f, 0.0f, 0.0f};
    const RowComparison r = compare_logit_rows(q.data(), p.data(), 3, 0);
    EXPECT_NEAR(r.kl, std::log(2.0 / 3.0) / 3 + 2 * std::log(4.0 / 3.0) / 3, 1e-8);
}

// x = (1, 3, 2), y = (3, 1, 2): the same log-sum-exp, so KL = sum_v p(v) (x_v - y_v) = 2 (p(1) - p(0)).
TEST(KlDivergence, ArgmaxDiffers) {
    const std::vector<float> x = {1.0f, 3.0f, 2.0f}, y = {3.0f, 1.0f, 2.0f};
    const RowComparison c = compare_logit_rows(x.data(), y.data(), 3, 2);
    const double e = std::exp(1.0), s = e + std::exp(3.0) + std::exp(2.0);
    EXPECT_NEAR(c.kl, 2 * (std::exp(3.0) - e) / s, 1e-14);
    EXPECT_EQ(c.top1_p, 1);
    EXPECT_EQ(c.top1_q, 0);
    EXPECT_FALSE(c.same_top1);
    EXPECT_NEAR(c.nll_p, std::log(s) - 2.0, 1e-14);
    EXPECT_NEAR(c.nll_q, std::log(s) - 2.0, 1e-14);
}

TEST(KlDivergence, TiesResolveAsTheGreedySampler) {
    const std::vector<std::vector<float>> rows = {
        {0.0f, 5.0f, 1.0f, 5.0f, 5.0f},       // tie at 1, 3, 4
        {-kInf, 2.0f, 2.0f, -kInf, 1.0f},     // tie after -inf
        {9.0f, 9.0f, 9.0f, 9.0f, 9.0f},       // all equal
        {-1.0f, -2.0f, -1.0f, -0.5f, -0.5f},  // tie at the end
    };
    for (const std::vector<float> &row : rows) {
        const RowComparison c = compare_logit_rows(row.data(), row.data(), (int32_t)row.size(), 0);
        EXPECT_EQ(c.top1_p, greedy_token(row));
    }
    // Two rows that tie differently: p's top tokens {1, 3}, q's {3}: not the same.
    const std::vector<float> p = {0.0f, 5.0f, 1.0f, 5.0f}, q = {0.0f, 4.0f, 1.0f, 5.0f};
    const RowComparison c = compare_logit_rows(p.data(), q.data(), 4, 0);
    EXPECT_EQ(c.top1_p, 1);
    EXPECT_EQ(c.top1_q, 3);
    EXPECT_FALSE(c.same_top1);
}

// Where p(v) underflows to 0 (or p's logit is -inf) the term is 0 log 0 = 0; where q(v) = 0 but
// p(v) > 0 the KL is infinite; NaN logits give NaN (the tool reports any non-finite value).
TEST(KlDivergence, ZerosAndNonFiniteLogits) {
    const std::vector<float> p = {0.0f, -2000.0f, -kInf, 1.0f}, q = {0.5f, 0.0f, 0.0f, 0.0f};
    const RowComparison c = compare_logit_rows(p.data(), q.data(), 4, 0);
    const double lse_p = std::log(1.0 + std::exp(1.0));
    const double lse_q = std::log(std::exp(0.5) + 3.0);
    const double p0 = std::exp(-lse_p), p3 = std::exp(1.0 - lse_p);
    EXPECT_NEAR(c.kl, p0 * ((0.0 - lse_p) - (0.5 - lse_q)) + p3 * ((1.0 - lse_p) - (0.0 - lse_q)), 1e-14);
    EXPECT_TRUE(std::isfinite(c.kl));

    const std::vector<float> q_zero = {0.0f, 0.0f, 0.0f, -kInf};
    EXPECT_EQ(compare_logit_rows(p.data(), q_zero.data(), 4, 0).kl, INFINITY);

    std::vector<float> nan_row = {0.0f, 1.0f, NAN, 2.0f};
    const RowComparison n1 = compare_logit_rows(nan_row.data(), q.data(), 4, 0);
    EXPECT_TRUE(std::isnan(n1.kl));
    EXPECT_TRUE(std::isnan(n1.nll_p));
    const RowComparison n2 = compare_logit_rows(q.data(), nan_row.data(), 4, 0);
    EXPECT_TRUE(std::isnan(n2.kl));
    EXPECT_TRUE(std::isnan(n2.nll_q));
    nan_row[0] = NAN;  // NaN first: no logit compares greater
    EXPECT_TRUE(std::isnan(compare_logit_rows(nan_row.data(), q.data(), 4, 0).nll_p));
    const std::vector<float> plus_inf = {0.0f, kInf, 1.0f, 2.0f};
    EXPECT_FALSE(std::isfinite(compare_logit_rows(plus_inf.data(), q.data(), 4, 0).nll_p));
}

// An OPT-sized row (50272 logits, spread like a model's) against a plain long-double loop.
TEST(KlDivergence, VocabularySizedRowMatchesLongDouble) {
    const int32_t V = 50272;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> p((size_t)V), q((size_t)V);
    for (int32_t v = 0; v < V; ++v) {
        p[(size_t)v] = normal(rng);
        q[(size_t)v] = p[(size_t)v] + 0.3f * normal(rng);
    }
    auto lse = [&](const std::vector<float> &x) {
        long double m = x[0], s = 0;
        for (float f : x) m = std::max(m, (long double)f);
        for (float f : x) s += std::exp((long double)f - m);
        return m + std::log(s);
    };
    const long double lp = lse(p), lq = lse(q);
    long double kl = 0;
    for (int32_t v = 0; v < V; ++v) {
        const long double a = p[(size_t)v] - lp, b = q[(size_t)v] - lq;
        kl += std::exp(a) * (a - b);
    }
    const int32_t target = 12345;
    const RowComparison c = compare_logit_rows(p.data(), q.data(), V, target);
    EXPECT_NEAR(c.kl, (double)kl, 1e-12 + 1e-10 * (double)kl);
    EXPECT_GT(c.kl, 0.01);
    EXPECT_NEAR(c.nll_p, (double)(lp - p[(size_t)target]), 1e-11);
    EXPECT_NEAR(c.nll_q, (double)(lq - q[(size_t)target]), 1e-11);
    EXPECT_EQ(c.top1_p, greedy_token(p));
    EXPECT_EQ(c.top1_q, greedy_token(q));
}

// The threaded version gives exactly the serial results, for any thread count, including more
// threads than rows and no rows at all.
TEST(KlDivergence, ParallelEqualsSerial) {
    const int32_t V = 257;
    const size_t n_rows = 37;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> a(n_rows * V), b(n_rows * V);
    for (size_t i = 0; i < a.size(); ++i) a[i] = normal(rng), b[i] = a[i] + normal(rng);
    std::vector<const float *> pa(n_rows), pb(n_rows);
    std::vector<int32_t> targets(n_rows);
    for (size_t r = 0; r < n_rows; ++r) {
        pa[r] = a.data() + r * V;
        pb[r] = b.data() + r * V;
        targets[r] = (int32_t)((r * 31) % V);
    }
    std::vector<RowComparison> serial(n_rows);
    for (size_t r = 0; r < n_rows; ++r) serial[r] = compare_logit_rows(pa[r], pb[r], V, targets[r]);
    for (int32_t threads : {1, 2, 3, 8, 64, 0}) {
        std::vector<RowComparison> out(n_rows);
        compare_logit_rows_parallel(pa.data(), pb.data(), targets.data(), n_rows, V, threads, out.data());
        for (size_t r = 0; r < n_rows; ++r) {
            ASSERT_EQ(out[r].kl, serial[r].kl) << "row " << r << ", " << threads << " threads";
            ASSERT_EQ(out[r].nll_p, serial[r].nll_p);
            ASSERT_EQ(out[r].nll_q, serial[r].nll_q);
            ASSERT_EQ(out[r].top1_p, serial[r].top1_p);
            ASSERT_EQ(out[r].top1_q, serial[r].top1_q);
            ASSERT_EQ(out[r].same_top1, serial[r].same_top1);
        }
        compare_logit_rows_parallel(pa.data(), pb.data(), targets.data(), 0, V, threads, out.data());  // no rows
    }
}

TEST(KlDivergence, QuantilesInterpolateBetweenRanks) {
    const std::vector<double> v = {1, 2, 3, 4};
    EXPECT_DOUBLE_EQ(quantile_sorted(v, 0.5), 2.5);
    EXPECT_DOUBLE_EQ(quantile_sorted(v, 0.99), 3.97);  // (n - 1) * 0.99 = 2.97
    EXPECT_DOUBLE_EQ(quantile_sorted(v, 1.0), 4.0);
    EXPECT_DOUBLE_EQ(quantile_sorted(v, 0.0), 1.0);
    EXPECT_DOUBLE_EQ(quantile_sorted({1, 2, 3}, 0.5), 2.0);
    EXPECT_DOUBLE_EQ(quantile_sorted({5}, 0.99), 5.0);
    EXPECT_TRUE(std::isnan(quantile_sorted({}, 0.5)));
}
