#include "tools/common/kl.h"

#include <algorithm>
#include <cmath>
#include <system_error>
#include <thread>

namespace seaopt_tools {

namespace {

struct RowSoftmax {
    double log_sum = 0;  // log sum_v exp(x_v): log softmax(x)_v = x_v - log_sum
    int32_t top1 = 0;
};

RowSoftmax row_softmax(const float *x, int32_t n_vocab) {
    RowSoftmax r;
    for (int32_t v = 1; v < n_vocab; ++v) {
        if (x[v] > x[r.top1]) r.top1 = v;  // strict >: the lowest id among ties, as the greedy sampler
    }
    // A NaN or +-inf logit makes the max or the sum non-finite, and so every result of the row.
    const double max = x[r.top1];
    double sum = 0;
    for (int32_t v = 0; v < n_vocab; ++v) sum += std::exp((double)x[v] - max);
    r.log_sum = max + std::log(sum);
    return r;
}

}  // namespace

RowComparison compare_logit_rows(const float *p_logits, const float *q_logits, int32_t n_vocab, int32_t target) {
    const RowSoftmax p = row_softmax(p_logits, n_vocab), q = row_softmax(q_logits, n_vocab);
    double kl = 0;
    for (int32_t v = 0; v < n_vocab; ++v) {
        const double log_p = (double)p_logits[v] - p.log_sum, log_q = (double)q_logits[v] - q.log_sum;
        const double prob_p = std::exp(log_p);
        if (prob_p != 0) kl += prob_p * (log_p - log_q);  // 0 log 0 = 0 where p(v) underflows; NaN passes
    }
    // Mathematically >= 0; rounding can leave -1e-17 for two nearly equal rows.
    if (kl < 0) kl = 0;
    RowComparison out;
    out.kl = kl;
    out.nll_p = p.log_sum - (double)p_logits[target];
    out.nll_q = q.log_sum - (double)q_logits[target];
    out.top1_p = p.top1;
    out.top1_q = q.top1;
    out.same_top1 = p.top1 == q.top1;
    return out;
}

void compare_logit_rows_parallel(const float *const *p_rows, const float *const *q_rows, const int32_t *targets,
                                 size_t n_rows, int32_t n_vocab, int32_t n_threads, RowComparison *out) {
    auto work = [=](size_t begin, size_t end) {
        for (size_t r = begin; r < end; ++r) out[r] = compare_logit_rows(p_rows[r], q_rows[r], n_vocab, targets[r]);
    };
    size_t n_blocks = n_threads > 0 ? (size_t)n_threads : std::max(1u, std::thread::hardware_concurrency());
    n_blocks = std::max<size_t>(1, std::min(n_blocks, n_rows));
    const size_t per_block = (n_rows + n_blocks - 1) / std::max<size_t>(1, n_blocks);
    // Block 0 runs here; so does any block whose thread could not be started.
    std::vector<std::thread> threads;
    size_t started = 1;
    for (; started < n_blocks; ++started) {
        const size_t begin = std::min(n_rows, started * per_block), end = std::min(n_rows, begin + per_block);
        try {
            threads.emplace_back(work, begin, end);
        } catch (const std::system_error &) {
            break;
        }
    }
    work(0, std::min(n_rows, per_block));
    work(std::min(n_rows, started * per_block), n_rows);
    for (std::thread &t : threads) t.join();
}

double quantile_sorted(const std::vector<double> &sorted, double fraction) {
    if (sorted.empty()) return NAN;
    if (fraction <= 0) return sorted.front();
    if (fraction >= 1) return sorted.back();
    const double at = fraction * (double)(sorted.size() - 1);
    const size_t lo = (size_t)at, hi = std::min(lo + 1, sorted.size() - 1);
    const double w = at - (double)lo;
    return (1 - w) * sorted[lo] + w * sorted[hi];
}

}  // namespace seaopt_tools
