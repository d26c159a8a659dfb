// log_softmax_nll (engine/cuda/loss.cu), the fused loss of seaopt_decode_nll, against
// -log softmax(logits)[target] computed on the CPU in double from the same fp32 logits.
// Shapes: rows 1, 7, 300 at OPT's V = 50272 (and a few odd V), with rows of ordinary logits, rows
// offset by +1e4 and -1e4 (overflow / cancellation without the max subtraction), wide rows
// (σ = 30: NLLs in the hundreds), rows whose target is the argmax or the argmin, and masked rows (-inf
// logits, whole threads' shares of the row among them: the one-pass kernel's empty partial sums).
// Tolerance: |Δ| ≤ 1e-4 · max(1, |ref|). fp32 sums of 50272 terms err by ~1e-6 relative, and
// m - l[target] is exact (Sterbenz) where the target is near the max, so 1e-4 is a wide margin that
// a missing max subtraction (inf/NaN) or a wrong target/row (errors of order 1) cannot pass.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cuda/ops.h"
#include "engine/error.h"

namespace {

void cuda_ok(cudaError_t err, const char *what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

template <typename T>
struct DeviceArray {
    T *p = nullptr;
    explicit DeviceArray(size_t n) { cuda_ok(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc"); }
    ~DeviceArray() { cudaFree(p); }
    DeviceArray(const DeviceArray &) = delete;
    DeviceArray &operator=(const DeviceArray &) = delete;
};

double ref_nll(const float *l, int V, int32_t t) {
    double m = l[0];
    for (int j = 1; j < V; ++j) m = std::max(m, (double)l[j]);
    double s = 0;
    for (int j = 0; j < V; ++j) s += std::exp((double)l[j] - m);
    return std::log(s) + m - (double)l[t];
}

// Rows of several kinds (by r % 6) and their targets; returns the max |Δ| / max(1, |ref|).
double check(int rows, int V, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int32_t> any(0, V - 1);
    std::vector<float> logits((size_t)rows * V);
    std::vector<int32_t> targets((size_t)rows);
    for (int r = 0; r < rows; ++r) {
        float *l = logits.data() + (size_t)r * V;
        const int kind = r % 6;
        const float scale = kind == 3 ? 30.0f : 3.0f;
        const float offset = kind == 1 ? 1e4f : kind == 2 ? -1e4f : kind == 5 ? 1e4f : 0.0f;
        for (int j = 0; j < V; ++j) l[j] = offset + scale * normal(rng);
        if (kind == 0 && r % 12 == 0 && V >= 8) {  // masked logits (-inf): a third, and the first half up to 2048
            for (int j = 0; j < V; j += 3) l[j] = -INFINITY;  // (so that at V = 50272 whole threads' shares are -inf)
            for (int j = 0; j < std::min(V / 2, 2048); ++j) l[j] = -INFINITY;
        }
        int32_t t = any(rng);
        if (kind == 4) t = (int32_t)(std::max_element(l, l + V) - l);  // the argmax: a small NLL
        if (kind == 5) t = (int32_t)(std::min_element(l, l + V) - l);  // the argmin at +1e4
        if (l[t] == -INFINITY) t = (int32_t)(std::max_element(l, l + V) - l);  // a masked row: a finite target
        targets[(size_t)r] = t;
    }
    DeviceArray<float> d_logits(logits.size()), d_nll((size_t)rows);
    DeviceArray<int32_t> d_targets((size_t)rows);
    cuda_ok(cudaMemcpy(d_logits.p, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice), "upload logits");
    cuda_ok(cudaMemcpy(d_targets.p, targets.data(), targets.size() * 4, cudaMemcpyHostToDevice), "upload targets");
    cudaStream_t st = nullptr;
    cuda_ok(cudaStreamCreate(&st), "cudaStreamCreate");
    seaopt::cuda::log_softmax_nll(d_nll.p, d_logits.p, d_targets.p, rows, V, st);
    cuda_ok(cudaStreamSynchronize(st), "log_softmax_nll");
    cudaStreamDestroy(st);
    std::vector<float> nll((size_t)rows);
    cuda_ok(cudaMemcpy(nll.data(), d_nll.p, nll.size() * 4, cudaMemcpyDeviceToHost), "download nll");

    double worst = 0;
    for (int r = 0; r < rows; ++r) {
        const double ref = ref_nll(logits.data() + (size_t)r * V, V, targets[(size_t)r]);
        const double err = std::fabs((double)nll[(size_t)r] - ref);
        const double tol = 1e-4 * std::max(1.0, std::fabs(ref));
        EXPECT_TRUE(std::isfinite(nll[(size_t)r])) << "row " << r << " of " << rows << " (kind " << r % 6 << ")";
        EXPECT_LE(err, tol) << "row " << r << " of " << rows << " (kind " << r % 6 << "), V " << V << ": got "
                            << nll[(size_t)r] << ", want " << ref;
        worst = std::max(worst, err / std::max(1.0, std::fabs(ref)));
    }
    std::printf("log_softmax_nll rows %d V %d: max |Δ|/max(1,|ref|) = %.3g (tolerance 1e-4)\n", rows, V, worst);
    return worst;
}

}  // namespace

TEST(GpuLoss, MatchesDoubleReferenceAtOptVocab) {
    for (int rows : {1, 7, 300}) check(rows, 50272, 1234u + (uint32_t)rows);
}

TEST(GpuLoss, OddVocabSizes) {
    // V smaller than the block, not a multiple of 32, and one element.
    for (int V : {1, 31, 513, 50257}) check(13, V, 99u + (uint32_t)V);
}

// A NaN logit gives a NaN loss wherever it sits: first in a thread's share of the row (where the running max is
// still -inf) or later; the perplexity tool reports non-finite losses instead of averaging them.
TEST(GpuLoss, NanLogitGivesNan) {
    constexpr int V = 50272, rows = 3;
    std::vector<float> logits((size_t)rows * V, 0.5f);
    logits[7] = NAN;                         // row 0: thread 7's first value
    logits[(size_t)V + 40000] = NAN;         // row 1: deep in the row
    for (int j = 0; j < V; ++j) logits[(size_t)2 * V + j] = j % 2 ? -INFINITY : 1.0f;  // row 2: finite
    const std::vector<int32_t> targets = {1, 2, 4};
    DeviceArray<float> d_logits(logits.size()), d_nll(rows);
    DeviceArray<int32_t> d_targets(rows);
    cuda_ok(cudaMemcpy(d_logits.p, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice), "upload logits");
    cuda_ok(cudaMemcpy(d_targets.p, targets.data(), rows * 4, cudaMemcpyHostToDevice), "upload targets");
    seaopt::cuda::log_softmax_nll(d_nll.p, d_logits.p, d_targets.p, rows, V, nullptr);
    std::vector<float> nll(rows);
    cuda_ok(cudaMemcpy(nll.data(), d_nll.p, rows * 4, cudaMemcpyDeviceToHost), "download nll");
    EXPECT_TRUE(std::isnan(nll[0])) << nll[0];
    EXPECT_TRUE(std::isnan(nll[1])) << nll[1];
    EXPECT_NEAR(nll[2], std::log((double)(V / 2)), 1e-4 * std::log((double)(V / 2)));  // uniform over V/2 values
}

TEST(GpuLoss, ArgumentsAndNoOp) {
    // rows == 0 launches nothing (null pointers are fine then); bad sizes are refused.
    EXPECT_NO_THROW(seaopt::cuda::log_softmax_nll(nullptr, nullptr, nullptr, 0, 50272, nullptr));
    try {
        seaopt::cuda::log_softmax_nll(nullptr, nullptr, nullptr, -1, 50272, nullptr);
        ADD_FAILURE() << "rows = -1 was accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_INVALID_ARGUMENT);
    }
    try {
        seaopt::cuda::log_softmax_nll(nullptr, nullptr, nullptr, 3, 50272, nullptr);
        ADD_FAILURE() << "null pointers were accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_INVALID_ARGUMENT);
    }
}
