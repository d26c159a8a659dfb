// How far one model's next-token distribution is from another's, row by row: the arithmetic of
// seaopt-perplexity --kl-divergence (dense attention as the reference p, SEA as q), kept here, away
// from the tool, so that it can be unit-tested on hand-computed rows (tests/test_kl.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace seaopt_tools {

// One position's comparison of a reference row of logits (p) with another (q), in double, natural log.
struct RowComparison {
    double kl = 0;           // KL(p||q) = sum_v p(v) (log p(v) - log q(v)), >= 0 (rounding clamped)
    double nll_p = 0;        // -log p(target)
    double nll_q = 0;        // -log q(target)
    int32_t top1_p = 0;      // argmax of p's logits: the lowest id among ties, as the greedy sampler
    int32_t top1_q = 0;      // argmax of q's logits
    bool same_top1 = false;  // top1_p == top1_q
};

// Compares two rows of n_vocab logits (log_softmax of each in double) for the position whose next
// token is `target` (0 <= target < n_vocab). Non-finite logits give non-finite kl / nll (the caller
// reports them); nothing is allocated.
RowComparison compare_logit_rows(const float *p_logits, const float *q_logits, int32_t n_vocab, int32_t target);

// compare_logit_rows for rows r = 0..n_rows-1 (p_rows[r], q_rows[r], targets[r]) into out[r], on
// n_threads std::threads (0 = all hardware threads), each taking a contiguous block of rows. The
// results do not depend on the thread count. The rows must stay valid during the call.
void compare_logit_rows_parallel(const float *const *p_rows, const float *const *q_rows, const int32_t *targets,
                                 size_t n_rows, int32_t n_vocab, int32_t n_threads, RowComparison *out);

// The fraction-quantile of ascending `sorted` values with linear interpolation between the two
// nearest ranks (numpy's default, and llama-perplexity's KLD percentiles): 0.5 = the median,
// 1 = the maximum. NAN when empty.
double quantile_sorted(const std::vector<double> &sorted, double fraction);

}  // namespace seaopt_tools
