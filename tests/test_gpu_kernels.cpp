// The simple CUDA kernels (engine/cuda/ops.h: embedding, row gathers, LayerNorm, KV cache append)
// and the GEMM wrapper (engine/cuda/gemm.h: cuBLASLt, and its own GEMV kernels for rows <= 8), each
// against its CPU reference (engine/cpu_ops.h) run in fp32 on the same fp16-rounded inputs. Every
// check prints its max error and tolerance. Runs only where a GPU exists (tests/gpu_test_main.cpp
// skips the program otherwise).
//
// Tolerances (why):
//   - embedding, gathers, KV cache append: bitwise. They copy fp16 bits or add two exactly
//     converted fp16 values in fp32, one correctly rounded add on both sides.
//   - LayerNorm fp32 output: |Δ| ≤ 1e-5 · (|x - mean|·rstd·|w| + |w| + |b|), i.e. 1e-5 relative to
//     the magnitude of the terms of y (the |w| term covers errors in mean and rstd, which scale
//     with |w| rather than with |y|). fp32 statistics over ≤ 8192 values err by ~1e-6 of that.
//   - LayerNorm fp16 output: must be exactly the fp16 rounding of the kernel's fp32 output, and its
//     max |Δ| against the fp32 reference ≤ 2 × that of a naive fp16 LayerNorm (flash-attention's rule).
//   - GEMM fp32 output: |Δ| ≤ 1e-4 · Σ|terms| (Σ|x·w| + |bias| + |beta·y|). fp32 accumulation of
//     exact fp16 products errs by ~√n_in · 2⁻²⁴ ≈ 1e-5 of that at n_in = 8192; 1e-4 keeps a margin
//     yet fails loudly if an fp16 accumulation (error ~1e-3) ever slips in.
//   - GEMM fp16 output: |Δ| ≤ 2 · e_fp16 + 1e-4 · Σ|terms| + 2⁻²⁴, where e_fp16 = 2⁻¹¹ · (|ref| + |x·wᵀ|
//     when there is a bias) bounds the error of a plain fp16-output reference, which rounds x·wᵀ to
//     fp16 and then the biased sum (half an ulp, 2⁻¹¹ relative, each): twice that, plus the fp32
//     accumulation allowance. The |x·wᵀ| term matters: cuBLASLt may add the bias after rounding the
//     product to the output type (reported for split-K algorithms), and where the bias cancels
//     x·wᵀ that rounding is large next to |ref|.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/cpu_ops.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/ops.h"
#include "engine/error.h"
#include "engine/fp16.h"
#include "gpu_test_util.h"
#include "seaopt.h"

namespace {

using seaopt::f16_to_f32;
using seaopt::f32_to_f16;
using seaopt::cuda::half_t;

// ---- helpers ------------------------------------------------------------------------------------

using seaopt_test::capture_graph;
using seaopt_test::cuda_ok;
using seaopt_test::DeviceBuffer;

// A non-default stream, so that the launchers' stream argument is really used.
class GpuKernels : public ::testing::Test {
protected:
    void SetUp() override { cuda_ok(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
    void TearDown() override {
        // Any asynchronous fault of a kernel would surface here at the latest.
        EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
        EXPECT_EQ(cudaGetLastError(), cudaSuccess);
        cudaStreamDestroy(stream_);
    }
    void sync() {
        cuda_ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        cuda_ok(cudaGetLastError(), "kernel");
    }
    cudaStream_t stream_ = nullptr;
};

std::vector<float> random_f32(size_t n, float lo, float hi, std::mt19937 &rng) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float &x : v) x = dist(rng);
    return v;
}

std::vector<half_t> random_f16(size_t n, float lo, float hi, std::mt19937 &rng) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<half_t> v(n);
    for (half_t &x : v) x = f32_to_f16(dist(rng));
    return v;
}

std::vector<half_t> random_bits16(size_t n, std::mt19937 &rng) {  // every pattern, NaNs included
    std::vector<half_t> v(n);
    for (half_t &x : v) x = (half_t)(rng() & 0xFFFFu);
    return v;
}

std::vector<int32_t> random_ids(size_t n, int32_t lo, int32_t hi_inclusive, std::mt19937 &rng) {
    std::uniform_int_distribution<int32_t> dist(lo, hi_inclusive);
    std::vector<int32_t> v(n);
    for (int32_t &x : v) x = dist(rng);
    return v;
}

std::vector<float> to_f32(const std::vector<half_t> &h) {
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) f[i] = f16_to_f32(h[i]);
    return f;
}

float round_f16(float v) { return f16_to_f32(f32_to_f16(v)); }

size_t count_bitwise_differences(const void *a, const void *b, size_t n_elements, size_t element_bytes) {
    size_t n = 0;
    for (size_t i = 0; i < n_elements; ++i) {
        if (std::memcmp((const char *)a + i * element_bytes, (const char *)b + i * element_bytes, element_bytes) != 0)
            ++n;
    }
    return n;
}

int cpu_threads() { return (int)std::max(1u, std::thread::hardware_concurrency()); }

// Runs f and expects a seaopt::Error with the given code.
void expect_error(const std::function<void()> &f, seaopt_status code, const char *what) {
    try {
        f();
        ADD_FAILURE() << what << ": no error thrown";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), code) << what << ": " << e.what();
        std::printf("  %-40s -> %s\n", what, e.what());
    }
}

// Prints the library's debug lines about autotuning (the candidates' times and the choice) while
// alive.
struct PrintAutotuneLog {
    PrintAutotuneLog() {
        seaopt_log_set(
            [](seaopt_log_level, const char *text, void *) {
                if (std::strstr(text, "gemm autotune") != nullptr) std::printf("  %s", text);
            },
            nullptr);
    }
    ~PrintAutotuneLog() { seaopt_log_set(nullptr, nullptr); }
};

// ---- embedding and gathers -------------------------------------------------------------------------

TEST_F(GpuKernels, EmbeddingForwardIsBitwiseTheCpuReference) {
    std::mt19937 rng(1234);
    const int pos_offset = 2;  // OPT's learned positions start at row 2
    for (const int C : {64, 300, 2048}) {
        const int vocab = 97, n_positions = 40, rows = 11;
        const std::vector<half_t> tok = random_f16((size_t)vocab * C, -1.0f, 1.0f, rng);
        const std::vector<half_t> pos = random_f16((size_t)(n_positions + pos_offset) * C, -1.0f, 1.0f, rng);
        std::vector<int32_t> ids = random_ids(rows, 0, vocab - 1, rng);
        ids[0] = 0, ids[1] = vocab - 1;  // both ends of the table
        std::vector<int32_t> positions = random_ids(rows, 0, n_positions - 1, rng);
        positions[2] = 0, positions[3] = n_positions - 1;

        // CPU: token rows + position rows (at position + offset), in fp32.
        std::vector<int32_t> pos_rows(rows);
        for (int r = 0; r < rows; ++r) pos_rows[r] = positions[r] + pos_offset;
        const std::vector<float> tok_f32 = to_f32(tok), pos_f32 = to_f32(pos);
        std::vector<float> expected((size_t)rows * C), pos_part((size_t)rows * C);
        seaopt::cpu::embedding_rows(expected.data(), tok_f32.data(), ids.data(), rows, C);
        seaopt::cpu::embedding_rows(pos_part.data(), pos_f32.data(), pos_rows.data(), rows, C);
        seaopt::cpu::add_inplace(expected.data(), pos_part.data(), expected.size());

        DeviceBuffer<half_t> d_tok(tok), d_pos(pos);
        DeviceBuffer<int32_t> d_ids(ids), d_positions(positions);
        DeviceBuffer<float> d_x(std::vector<float>((size_t)rows * C, std::nanf("")));  // must be overwritten
        seaopt::cuda::embedding_forward(d_x.get(), d_tok.get(), d_pos.get(), d_ids.get(), d_positions.get(), rows, C,
                                        pos_offset, stream_);
        sync();
        const std::vector<float> got = d_x.download();
        const size_t n_diff = count_bitwise_differences(got.data(), expected.data(), got.size(), 4);
        std::printf("embedding_forward C=%d rows=%d: %zu of %zu values differ bitwise\n", C, rows, n_diff, got.size());
        EXPECT_EQ(n_diff, 0u);

        // Without a token table (OPT-350m: x already holds project_in's output): x += positions.
        const std::vector<float> x0 = random_f32((size_t)rows * C, -3.0f, 3.0f, rng);
        std::vector<float> expected_add = x0;
        seaopt::cpu::add_inplace(expected_add.data(), pos_part.data(), expected_add.size());
        d_x.upload(x0);
        seaopt::cuda::embedding_forward(d_x.get(), nullptr, d_pos.get(), nullptr, d_positions.get(), rows, C,
                                        pos_offset, stream_);
        sync();
        const std::vector<float> got_add = d_x.download();
        const size_t n_diff_add = count_bitwise_differences(got_add.data(), expected_add.data(), got_add.size(), 4);
        std::printf("embedding_forward (positions only) C=%d: %zu values differ bitwise\n", C, n_diff_add);
        EXPECT_EQ(n_diff_add, 0u);
    }
}

TEST_F(GpuKernels, GatherRowsAreBitwiseCopies) {
    std::mt19937 rng(99);
    for (const int cols : {1, 64, 333, 50272}) {
        const int table_rows = 23, rows = 9;
        std::vector<int32_t> idx = random_ids(rows, 0, table_rows - 1, rng);
        idx[0] = 0, idx[rows - 1] = table_rows - 1, idx[1] = idx[2];  // ends, and a repeated row

        // fp16: random bit patterns (NaNs included) must come through unchanged.
        const std::vector<half_t> table16 = random_bits16((size_t)table_rows * cols, rng);
        std::vector<half_t> expected16((size_t)rows * cols);
        for (int r = 0; r < rows; ++r) {
            std::copy_n(table16.begin() + (size_t)idx[r] * cols, cols, expected16.begin() + (size_t)r * cols);
        }
        DeviceBuffer<half_t> d_table16(table16), d_out16((size_t)rows * cols);
        DeviceBuffer<int32_t> d_idx(idx);
        seaopt::cuda::gather_rows_f16(d_out16.get(), d_table16.get(), d_idx.get(), rows, cols, stream_);

        // fp32 via the CPU reference embedding_rows.
        const std::vector<float> table32 = random_f32((size_t)table_rows * cols, -100.0f, 100.0f, rng);
        std::vector<float> expected32((size_t)rows * cols);
        seaopt::cpu::embedding_rows(expected32.data(), table32.data(), idx.data(), rows, cols);
        DeviceBuffer<float> d_table32(table32), d_out32((size_t)rows * cols);
        seaopt::cuda::gather_rows_f32(d_out32.get(), d_table32.get(), d_idx.get(), rows, cols, stream_);
        sync();

        const std::vector<half_t> got16 = d_out16.download();
        const std::vector<float> got32 = d_out32.download();
        const size_t diff16 = count_bitwise_differences(got16.data(), expected16.data(), got16.size(), 2);
        const size_t diff32 = count_bitwise_differences(got32.data(), expected32.data(), got32.size(), 4);
        std::printf("gather_rows cols=%d rows=%d: f16 %zu, f32 %zu values differ bitwise\n", cols, rows, diff16,
                    diff32);
        EXPECT_EQ(diff16, 0u);
        EXPECT_EQ(diff32, 0u);
    }
}

// ---- KV cache append ---------------------------------------------------------------------------------

TEST_F(GpuKernels, KvCacheAppendWritesExactlyTheRowsSlots) {
    std::mt19937 rng(7);
    struct Shape {
        int n_seq, n_head, head_dim, n_ctx;
    };
    // Small, OPT-1.3B's heads (both 16-byte copies), and head_dim 6 (the one-half-at-a-time kernel).
    for (const Shape s : {Shape{3, 4, 8, 16}, Shape{2, 32, 64, 2048}, Shape{2, 3, 6, 16}}) {
        const int C = s.n_head * s.head_dim;
        // Rows as a batch has them: runs of consecutive positions per sequence, the context's last
        // slot used, and two rows outside [0, n_ctx) that the kernel's guard must drop.
        std::vector<int32_t> seq_ids, positions;
        for (int p = 0; p < 5; ++p) seq_ids.push_back(0), positions.push_back(p);
        for (int p = 7; p < 10; ++p) seq_ids.push_back(s.n_seq - 1), positions.push_back(p);
        seq_ids.push_back(1), positions.push_back(s.n_ctx - 1);
        seq_ids.push_back(1), positions.push_back(s.n_ctx);  // out of range: not written
        seq_ids.push_back(0), positions.push_back(-1);       // out of range: not written
        const int rows = (int)seq_ids.size();

        const size_t cache_elems = (size_t)s.n_seq * s.n_head * s.n_ctx * s.head_dim;
        const std::vector<half_t> sentinel_k(cache_elems, 0xABCDu), sentinel_v(cache_elems, 0x1234u);
        const std::vector<half_t> qkv = random_bits16((size_t)rows * 3 * C, rng);

        // Reference: element (seq, head, pos, d) at ((seq * n_head + head) * n_ctx + pos) * head_dim + d.
        std::vector<half_t> expected_k = sentinel_k, expected_v = sentinel_v;
        for (int r = 0; r < rows; ++r) {
            if (positions[r] < 0 || positions[r] >= s.n_ctx) continue;
            for (int h = 0; h < s.n_head; ++h) {
                for (int d = 0; d < s.head_dim; ++d) {
                    const size_t dst = (((size_t)seq_ids[r] * s.n_head + h) * s.n_ctx + positions[r]) * s.head_dim + d;
                    const size_t src = (size_t)r * 3 * C + (size_t)h * s.head_dim + d;
                    expected_k[dst] = qkv[src + C];
                    expected_v[dst] = qkv[src + 2 * (size_t)C];
                }
            }
        }

        DeviceBuffer<half_t> d_k(sentinel_k), d_v(sentinel_v), d_qkv(qkv);
        DeviceBuffer<int32_t> d_seq(seq_ids), d_pos(positions);
        seaopt::cuda::kv_cache_append(d_k.get(), d_v.get(), d_qkv.get(), d_seq.get(), d_pos.get(), rows, s.n_head,
                                      s.head_dim, s.n_ctx, stream_);
        sync();
        const std::vector<half_t> got_k = d_k.download(), got_v = d_v.download();
        const size_t diff_k = count_bitwise_differences(got_k.data(), expected_k.data(), cache_elems, 2);
        const size_t diff_v = count_bitwise_differences(got_v.data(), expected_v.data(), cache_elems, 2);
        std::printf("kv_cache_append heads=%d head_dim=%d n_ctx=%d rows=%d: K %zu, V %zu of %zu cache values differ\n",
                    s.n_head, s.head_dim, s.n_ctx, rows, diff_k, diff_v, cache_elems);
        EXPECT_EQ(diff_k, 0u);
        EXPECT_EQ(diff_v, 0u);
    }
}

// ---- LayerNorm --------------------------------------------------------------------------------------

// LayerNorm with every intermediate rounded to fp16 (sums accumulate in fp32, as torch's fp16
// reductions do; an fp16 accumulator over thousands of values would say nothing useful). Its error
// against the fp32 reference is the yardstick of the "2x naive fp16" rule.
std::vector<float> layer_norm_naive_f16(const std::vector<float> &x, const std::vector<float> &w,
                                        const std::vector<float> &b, int rows, int C, float eps) {
    std::vector<float> y((size_t)rows * C);
    std::vector<float> dev(C);
    for (int r = 0; r < rows; ++r) {
        const float *xr = x.data() + (size_t)r * C;
        float sum = 0.0f;
        for (int c = 0; c < C; ++c) sum += round_f16(xr[c]);
        const float mean = round_f16(sum / (float)C);
        float sum_sq = 0.0f;
        for (int c = 0; c < C; ++c) {
            dev[c] = round_f16(round_f16(xr[c]) - mean);
            sum_sq += round_f16(dev[c] * dev[c]);
        }
        const float var = round_f16(sum_sq / (float)C);
        const float rstd = round_f16(1.0f / std::sqrt(round_f16(var + eps)));
        for (int c = 0; c < C; ++c) {
            y[(size_t)r * C + c] = round_f16(round_f16(round_f16(dev[c] * rstd) * w[c]) + b[c]);
        }
    }
    return y;
}

TEST_F(GpuKernels, LayerNormMatchesCpuReference) {
    std::mt19937 rng(2024);
    const float eps = 1e-5f;
    struct Shape {
        int rows, C;
    };
    // Decode rows (1) and a prefill's (2048) at OPT widths up to OPT-66B's 9216 (the register kernel
    // with 1, 2, 4 and 8 float4 per thread), C % 4 != 0 and C > 16384 (the generic kernel); prefills of
    // >= 128 rows at several widths (rows taken 8 at a time against the whole batch).
    for (const Shape s : {Shape{1, 2048}, Shape{7, 2048}, Shape{9, 300}, Shape{64, 768}, Shape{33, 8192},
                          Shape{1, 9216}, Shape{3, 9216}, Shape{2048, 2048}, Shape{1, 2560}, Shape{2, 5120},
                          Shape{1, 7168}, Shape{4, 1024}, Shape{5, 301}, Shape{2, 20000}, Shape{256, 768},
                          Shape{130, 1024}, Shape{200, 2560}, Shape{129, 2048}, Shape{160, 4096}, Shape{128, 300},
                          Shape{136, 1536}, Shape{144, 96}}) {
        const int rows = s.rows, C = s.C;
        // Residual-stream-like rows: a per-row offset and spread, plus a few large outlier channels
        // (OPT's residual stream has them).
        std::vector<float> x((size_t)rows * C);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::uniform_real_distribution<float> offset_dist(-3.0f, 3.0f), spread_dist(0.5f, 4.0f);
        for (int r = 0; r < rows; ++r) {
            const float offset = offset_dist(rng), spread = spread_dist(rng);
            for (int c = 0; c < C; ++c) x[(size_t)r * C + c] = offset + spread * normal(rng);
            for (int c = 5; c < C; c += 997) x[(size_t)r * C + c] *= 20.0f;
        }
        const std::vector<half_t> w16 = random_f16(C, -2.0f, 2.0f, rng), b16 = random_f16(C, -1.0f, 1.0f, rng);
        const std::vector<float> w = to_f32(w16), b = to_f32(b16);

        std::vector<float> ref((size_t)rows * C);
        seaopt::cpu::layer_norm(ref.data(), x.data(), w.data(), b.data(), rows, C, eps);
        // The magnitude of y's terms per element, for the relative tolerance of the fp32 output.
        std::vector<float> term_scale((size_t)rows * C);
        for (int r = 0; r < rows; ++r) {
            const float *xr = x.data() + (size_t)r * C;
            double mean = 0.0, var = 0.0;
            for (int c = 0; c < C; ++c) mean += xr[c];
            mean /= C;
            for (int c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
            var /= C;
            const double rstd = 1.0 / std::sqrt(var + eps);
            for (int c = 0; c < C; ++c) {
                term_scale[(size_t)r * C + c] =
                    (float)(std::fabs(xr[c] - mean) * rstd * std::fabs(w[c]) + std::fabs(w[c]) + std::fabs(b[c]));
            }
        }
        const std::vector<float> naive = layer_norm_naive_f16(x, w, b, rows, C, eps);

        DeviceBuffer<float> d_x(x), d_out32((size_t)rows * C);
        DeviceBuffer<half_t> d_w(w16), d_b(b16), d_out16((size_t)rows * C);
        seaopt::cuda::layernorm_forward(d_out16.get(), d_out32.get(), d_x.get(), d_w.get(), d_b.get(), rows, C, eps,
                                        stream_);
        sync();
        const std::vector<float> got32 = d_out32.download();
        const std::vector<half_t> got16 = d_out16.download();

        double max_err32 = 0.0, max_ratio32 = 0.0, max_err16 = 0.0, max_err_naive = 0.0;
        size_t n_bad32 = 0, n_f16_not_rounded_f32 = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
            const double err32 = std::fabs((double)got32[i] - ref[i]);
            const double tol32 = 1e-5 * term_scale[i];
            max_err32 = std::max(max_err32, err32);
            max_ratio32 = std::max(max_ratio32, err32 / tol32);
            if (!(err32 <= tol32)) ++n_bad32;  // NaN counts as bad
            if (got16[i] != f32_to_f16(got32[i])) ++n_f16_not_rounded_f32;
            max_err16 = std::max(max_err16, std::fabs((double)f16_to_f32(got16[i]) - ref[i]));
            max_err_naive = std::max(max_err_naive, std::fabs((double)naive[i] - ref[i]));
        }
        std::printf(
            "layernorm rows=%d C=%d: fp32 max|err| %.3g (max err/tol %.3f); fp16 max|err| %.3g vs naive-fp16 "
            "%.3g (limit %.3g)\n",
            rows, C, max_err32, max_ratio32, max_err16, max_err_naive, 2 * max_err_naive);
        EXPECT_EQ(n_bad32, 0u) << "fp32 outputs beyond 1e-5 relative";
        EXPECT_EQ(n_f16_not_rounded_f32, 0u) << "out16 is not the fp16 rounding of out32";
        EXPECT_LE(max_err16, 2.0 * max_err_naive);

        // fp16 only (out32 = nullptr): the same fp16 bits.
        DeviceBuffer<half_t> d_out16_only((size_t)rows * C);
        seaopt::cuda::layernorm_forward(d_out16_only.get(), nullptr, d_x.get(), d_w.get(), d_b.get(), rows, C, eps,
                                        stream_);
        // In place (out32 == x, post-LN models): the same values as out of place.
        seaopt::cuda::layernorm_forward(d_out16.get(), d_x.get(), d_x.get(), d_w.get(), d_b.get(), rows, C, eps,
                                        stream_);
        sync();
        const std::vector<half_t> got16_only = d_out16_only.download(), got16_inplace = d_out16.download();
        const std::vector<float> got32_inplace = d_x.download();
        EXPECT_EQ(count_bitwise_differences(got16_only.data(), got16.data(), got16.size(), 2), 0u);
        EXPECT_EQ(count_bitwise_differences(got16_inplace.data(), got16.data(), got16.size(), 2), 0u);
        EXPECT_EQ(count_bitwise_differences(got32_inplace.data(), got32.data(), got32.size(), 4), 0u);

        // Rows normalised 8 at a time must give the whole batch's bits: a token's LayerNorm must not depend on the
        // batch it comes in (the fused GEMV's prologue follows the same arithmetic; a kernel chosen by batch size
        // would have to keep it).
        if (rows >= 128) {
            DeviceBuffer<float> d_x_again(x), d_part32((size_t)8 * C);
            DeviceBuffer<half_t> d_part16((size_t)8 * C);
            for (const int r0 : {0, rows / 2 + 3, rows - 8}) {
                seaopt::cuda::layernorm_forward(d_part16.get(), d_part32.get(), d_x_again.get() + (size_t)r0 * C,
                                                d_w.get(), d_b.get(), 8, C, eps, stream_);
                sync();
                const std::vector<half_t> part16 = d_part16.download();
                const std::vector<float> part32 = d_part32.download();
                EXPECT_EQ(count_bitwise_differences(part16.data(), got16.data() + (size_t)r0 * C, part16.size(), 2), 0u)
                    << "rows " << r0 << "..+8 of " << rows << ", C " << C;
                EXPECT_EQ(count_bitwise_differences(part32.data(), got32.data() + (size_t)r0 * C, part32.size(), 4), 0u)
                    << "rows " << r0 << "..+8 of " << rows << ", C " << C;
            }
        }
    }
}

// ---- GEMM ------------------------------------------------------------------------------------------

enum class GemmKind {
    F16None,       // gemm_f16, no epilogue (project_in / project_out)
    F16Bias,       // gemm_f16 + bias (qkv)
    F16BiasRelu,   // gemm_f16 + bias + ReLU (fc1)
    F32Beta0,      // gemm_f16_to_f32, beta 0, no bias (lm_head logits)
    F32Beta0Bias,  // gemm_f16_to_f32, beta 0, bias
    F32Beta1,      // gemm_f16_to_f32, beta 1, no bias
    F32Beta1Bias,  // gemm_f16_to_f32, beta 1, bias (out_proj / fc2 into the residual stream)
};

const char *gemm_kind_name(GemmKind k) {
    switch (k) {
        case GemmKind::F16None: return "f16 none";
        case GemmKind::F16Bias: return "f16 bias";
        case GemmKind::F16BiasRelu: return "f16 bias+relu";
        case GemmKind::F32Beta0: return "f32 beta0";
        case GemmKind::F32Beta0Bias: return "f32 beta0 bias";
        case GemmKind::F32Beta1: return "f32 beta1";
        case GemmKind::F32Beta1Bias: return "f32 beta1 bias";
    }
    return "?";
}

struct GemmCase {
    int rows, n_in, n_out;
    GemmKind kind;
};

// One GEMM case: its fp16/fp32 inputs, the CPU reference and the tolerance of every output.
// misalign: x, w and y sit one element off their 256-byte-aligned allocations.
struct GemmProblem {
    GemmCase gc;
    bool f16_out = false, has_bias = false, relu = false;
    float beta = 0.0f;
    size_t shift = 0;
    std::vector<half_t> x16, w16, bias16;  // x16, w16 hold `shift` extra leading elements
    std::vector<float> bias32, y0;         // y0 too (the residual stream for beta != 0)
    std::vector<float> ref;                // [rows, n_out]
    std::vector<double> tol;               // [rows, n_out]
    std::vector<float> naive_f16;          // fp16 output: the plain fp16-output reference
};

GemmProblem make_gemm_problem(const GemmCase &gc, std::mt19937 &rng, bool misalign = false) {
    GemmProblem p;
    p.gc = gc;
    const int rows = gc.rows, n_in = gc.n_in, n_out = gc.n_out;
    p.f16_out = gc.kind == GemmKind::F16None || gc.kind == GemmKind::F16Bias || gc.kind == GemmKind::F16BiasRelu;
    p.has_bias = gc.kind == GemmKind::F16Bias || gc.kind == GemmKind::F16BiasRelu ||
                 gc.kind == GemmKind::F32Beta0Bias || gc.kind == GemmKind::F32Beta1Bias;
    p.relu = gc.kind == GemmKind::F16BiasRelu;
    p.beta = (gc.kind == GemmKind::F32Beta1 || gc.kind == GemmKind::F32Beta1Bias) ? 1.0f : 0.0f;
    p.shift = misalign ? 1 : 0;
    const size_t shift = p.shift;

    // Inputs of magnitude ~1 and weights scaled by 1/sqrt(n_in), so outputs are ~1 as in a network.
    const float w_scale = std::sqrt(3.0f / (float)n_in);
    p.x16 = random_f16((size_t)rows * n_in + shift, -1.0f, 1.0f, rng);
    p.w16 = random_f16((size_t)n_out * n_in + shift, -w_scale, w_scale, rng);
    p.bias16 = random_f16(n_out, -0.5f, 0.5f, rng);
    p.bias32 = random_f32(n_out, -0.5f, 0.5f, rng);
    p.y0 = random_f32((size_t)rows * n_out + shift, -4.0f, 4.0f, rng);  // residual stream

    // CPU reference in fp32 on the same fp16 values, and Σ|terms| per output for the tolerance.
    const std::vector<float> x_all = to_f32(p.x16), w_all = to_f32(p.w16);
    const std::vector<float> x(x_all.begin() + shift, x_all.end()), w(w_all.begin() + shift, w_all.end());
    std::vector<float> bias(n_out, 0.0f);
    if (p.has_bias) bias = p.f16_out ? to_f32(p.bias16) : p.bias32;
    std::vector<float> x_abs(x.size()), w_abs(w.size()), bias_abs(n_out);
    for (size_t i = 0; i < x.size(); ++i) x_abs[i] = std::fabs(x[i]);
    for (size_t i = 0; i < w.size(); ++i) w_abs[i] = std::fabs(w[i]);
    for (int o = 0; o < n_out; ++o) bias_abs[o] = std::fabs(bias[o]);
    std::vector<float> &ref = p.ref;
    ref.resize((size_t)rows * n_out);
    std::vector<float> terms((size_t)rows * n_out), product((size_t)rows * n_out);
    seaopt::cpu::linear(ref.data(), x.data(), w.data(), p.has_bias ? bias.data() : nullptr, rows, n_in, n_out,
                        cpu_threads());
    seaopt::cpu::linear(terms.data(), x_abs.data(), w_abs.data(), bias_abs.data(), rows, n_in, n_out, cpu_threads());
    for (size_t i = 0; i < ref.size(); ++i) product[i] = ref[i] - bias[i % n_out];  // x·wᵀ alone
    if (p.relu) seaopt::cpu::relu_inplace(ref.data(), ref.size());
    if (p.beta != 0.0f) {
        for (size_t i = 0; i < ref.size(); ++i) {
            ref[i] += p.beta * p.y0[i + shift];
            terms[i] += std::fabs(p.beta * p.y0[i + shift]);
        }
    }

    // Tolerances (the rules at the top of this file).
    const double half_ulp = std::ldexp(1.0, -11);  // relative rounding error of fp16
    p.tol.resize(ref.size());
    if (p.f16_out) p.naive_f16.resize(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
        double tol = 1e-4 * terms[i];
        if (p.f16_out) {
            const double e_fp16 = half_ulp * (std::fabs(ref[i]) + (p.has_bias ? std::fabs(product[i]) : 0.0));
            tol += 2.0 * e_fp16 + std::ldexp(1.0, -24);
            // The plain fp16-output reference itself, for the printout: round x·wᵀ, add the bias, round.
            float naive =
                p.has_bias ? round_f16(round_f16(product[i]) + bias[i % n_out]) : round_f16(product[i]);
            if (p.relu) naive = std::max(naive, 0.0f);
            p.naive_f16[i] = naive;
        }
        p.tol[i] = tol;
    }
    return p;
}

// Runs the GEMM on the GPU for the first `rows` rows (<= p.gc.rows) of the problem's x (and y0);
// returns y [rows, n_out] as fp32.
std::vector<float> run_gemm_problem(seaopt::cuda::GemmHandle *handle, const GemmProblem &p, int rows,
                                    cudaStream_t stream) {
    const int n_out = p.gc.n_out;
    const size_t shift = p.shift;
    DeviceBuffer<half_t> d_x(p.x16), d_w(p.w16), d_bias16(p.bias16);
    DeviceBuffer<float> d_bias32(p.bias32);
    std::vector<float> got((size_t)rows * n_out);
    if (p.f16_out) {
        const seaopt::cuda::Epilogue epilogue = p.gc.kind == GemmKind::F16None ? seaopt::cuda::Epilogue::None
                                                : p.relu                       ? seaopt::cuda::Epilogue::BiasRelu
                                                                               : seaopt::cuda::Epilogue::Bias;
        DeviceBuffer<half_t> d_y(
            std::vector<half_t>((size_t)rows * n_out + shift, 0x7E00u));  // NaN: must be overwritten
        seaopt::cuda::gemm_f16(handle, d_y.get() + shift, d_x.get() + shift, d_w.get() + shift,
                               p.has_bias ? d_bias16.get() : nullptr, epilogue, rows, p.gc.n_in, n_out, stream);
        cuda_ok(cudaStreamSynchronize(stream), "gemm_f16");
        const std::vector<half_t> y16 = d_y.download();
        for (size_t i = 0; i < got.size(); ++i) got[i] = f16_to_f32(y16[i + shift]);
    } else {
        // With beta = 0 the old y must not matter: fill it with NaN.
        std::vector<float> y_init(p.y0.begin(), p.y0.begin() + (size_t)rows * n_out + shift);
        if (p.beta == 0.0f) std::fill(y_init.begin(), y_init.end(), std::numeric_limits<float>::quiet_NaN());
        DeviceBuffer<float> d_y(y_init);
        seaopt::cuda::gemm_f16_to_f32(handle, d_y.get() + shift, d_x.get() + shift, d_w.get() + shift,
                                      p.has_bias ? d_bias32.get() : nullptr, p.beta, rows, p.gc.n_in, n_out, stream);
        cuda_ok(cudaStreamSynchronize(stream), "gemm_f16_to_f32");
        const std::vector<float> y32 = d_y.download();
        std::copy(y32.begin() + shift, y32.end(), got.begin());
    }
    return got;
}

// Checks `got` (the first rows·n_out outputs) against the reference and its tolerances.
void check_gemm_result(const GemmProblem &p, const std::vector<float> &got, int rows, const char *note = "") {
    const int n_in = p.gc.n_in, n_out = p.gc.n_out;
    double max_err = 0.0, max_ratio = 0.0, max_err_naive_f16 = 0.0;
    size_t n_bad = 0, first_bad = 0;
    for (size_t i = 0; i < (size_t)rows * n_out; ++i) {
        const double err = std::fabs((double)got[i] - p.ref[i]);
        const double tol = p.tol[i];
        if (p.f16_out) max_err_naive_f16 = std::max(max_err_naive_f16, std::fabs((double)p.naive_f16[i] - p.ref[i]));
        max_err = std::max(max_err, err);
        max_ratio = std::max(max_ratio, err / tol);
        if (!(err <= tol)) {  // NaN counts as bad
            if (n_bad++ == 0) first_bad = i;
        }
    }
    std::printf("gemm %-15s rows=%5d n_in=%5d n_out=%5d%s%s: max|err| %.3g, max err/tol %.3f",
                gemm_kind_name(p.gc.kind), rows, n_in, n_out, p.shift ? " (misaligned)" : "", note, max_err, max_ratio);
    if (p.f16_out) std::printf(" (plain fp16 reference: max|err| %.3g)", max_err_naive_f16);
    std::printf("\n");
    EXPECT_EQ(n_bad, 0u) << gemm_kind_name(p.gc.kind) << " rows " << rows << " n_in " << n_in << " n_out " << n_out
                         << note << ": first bad output " << first_bad << " (row " << first_bad / n_out << ", col "
                         << first_bad % n_out << "): got " << got[first_bad] << ", expected " << p.ref[first_bad];
}

// Runs one GEMM on the GPU and on the CPU reference and checks every output against its tolerance.
void check_gemm(seaopt::cuda::GemmHandle *handle, const GemmCase &gc, cudaStream_t stream, std::mt19937 &rng,
                bool misalign = false) {
    const GemmProblem p = make_gemm_problem(gc, rng, misalign);
    check_gemm_result(p, run_gemm_problem(handle, p, gc.rows, stream), gc.rows);
}

// Autotuning (gemm.h) is off on the fixture's handle, so that each test sees the path it names
// (the GEMV kernels for rows <= 8, the heuristic's algorithm otherwise); the autotuning tests turn
// it on.
class GpuGemm : public GpuKernels {
protected:
    void SetUp() override {
        GpuKernels::SetUp();
        handle_ = seaopt::cuda::gemm_create();
        seaopt::cuda::gemm_set_autotune(handle_, false);
        seaopt::cuda::gemm_set_layernorm_fusion(handle_, true);  // the fused path is what its tests test
    }
    void TearDown() override {
        seaopt::cuda::gemm_destroy(handle_);
        GpuKernels::TearDown();
    }
    seaopt::cuda::GemmHandle *handle_ = nullptr;
};

TEST_F(GpuGemm, AllEpiloguesOnSmallAndOddShapes) {
    std::mt19937 rng(11);
    const GemmKind kinds[] = {GemmKind::F16None,      GemmKind::F16Bias,  GemmKind::F16BiasRelu, GemmKind::F32Beta0,
                              GemmKind::F32Beta0Bias, GemmKind::F32Beta1, GemmKind::F32Beta1Bias};
    struct Shape {
        int rows, n_in, n_out;
    };
    // OPT-tiny-like, odd sizes (no dimension a multiple of 8), a single row, and a tall one.
    for (const Shape s : {Shape{5, 64, 48}, Shape{3, 37, 11}, Shape{1, 72, 200}, Shape{300, 96, 40}}) {
        for (const GemmKind k : kinds) check_gemm(handle_, {s.rows, s.n_in, s.n_out, k}, stream_, rng);
    }
}

TEST_F(GpuGemm, Opt13bShapes) {
    std::mt19937 rng(13);
    const int C = 2048, ffn = 8192, vocab = 50272;
    std::vector<GemmCase> cases;
    for (const int rows : {1, 7, 64}) {
        cases.push_back({rows, C, 3 * C, GemmKind::F16Bias});     // fused qkv
        cases.push_back({rows, C, C, GemmKind::F32Beta1Bias});    // out_proj into the residual
        cases.push_back({rows, C, ffn, GemmKind::F16BiasRelu});   // fc1
        cases.push_back({rows, ffn, C, GemmKind::F32Beta1Bias});  // fc2 into the residual
        cases.push_back({rows, C, vocab, GemmKind::F32Beta0});    // lm_head logits
        cases.push_back({rows, C, C, GemmKind::F16None});
        cases.push_back({rows, C, C, GemmKind::F32Beta0Bias});
    }
    cases.push_back({2048, C, C, GemmKind::F32Beta1Bias});  // a full 2048-token prefill
    cases.push_back({2048, C, C, GemmKind::F16Bias});
    for (const GemmCase &gc : cases) check_gemm(handle_, gc, stream_, rng);
}

// ---- GEMV path (rows <= 8) ---------------------------------------------------------------------------
// gemm_f16 / gemm_f16_to_f32 with rows <= 8 run our GEMV kernels (engine/cuda/gemm.cu), not
// cuBLASLt; same tolerances. Shapes: OPT-1.3B's and OPT-125m's layers and lm_head, n_in with a
// partial last 32-wide chunk (72, 1000), n_in % 8 != 0 (1001: the scalar kernel), less than one
// chunk (8), and n_out not a multiple of the 16-output tile.
TEST_F(GpuGemm, GemvPathAtOptShapes) {
    // The GEMV kernels need sm_80; on such a device they must be in use, or this tests cuBLASLt.
    int device = 0, major = 0;
    cuda_ok(cudaGetDevice(&device), "cudaGetDevice");
    cuda_ok(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
    std::printf("GEMV path for rows <= 8: %s (compute capability %d.x)\n",
                seaopt::cuda::gemm_has_gemv(handle_) ? "on" : "off", major);
    if (major >= 8) {
        EXPECT_TRUE(seaopt::cuda::gemm_has_gemv(handle_));
    }

    std::mt19937 rng(23);
    struct Shape {
        int n_in, n_out;
        GemmKind kind;
    };
    const Shape shapes[] = {
        {2048, 6144, GemmKind::F16Bias},       // OPT-1.3B fused qkv
        {2048, 2048, GemmKind::F32Beta1Bias},  // out_proj into the residual stream
        {2048, 8192, GemmKind::F16BiasRelu},   // fc1
        {8192, 2048, GemmKind::F32Beta1Bias},  // fc2 into the residual stream
        {2048, 50272, GemmKind::F32Beta0},     // lm_head logits (y starts as NaN)
        {768, 3072, GemmKind::F16BiasRelu},    // OPT-125m fc1
        {3072, 768, GemmKind::F32Beta1Bias},   // OPT-125m fc2
        {2048, 2048, GemmKind::F16None},       {2048, 2048, GemmKind::F32Beta0Bias},
        {2048, 2048, GemmKind::F32Beta1},      {72, 200, GemmKind::F16Bias},
        {1000, 300, GemmKind::F32Beta1Bias},   {1001, 130, GemmKind::F16BiasRelu},
        {8, 17, GemmKind::F32Beta0Bias},
        // 8 warps of 15-16 chunks (the deep steps, then 4-chunk steps, then single chunks), the last
        // chunk partial (4008 = 125 x 32 + 8).
        {4008, 4096, GemmKind::F32Beta1Bias},  {4008, 4096, GemmKind::F16BiasRelu},
    };
    for (const int rows : {1, 2, 5, 8}) {
        for (const Shape &s : shapes) check_gemm(handle_, {rows, s.n_in, s.n_out, s.kind}, stream_, rng);
    }
}

// The same data through both paths: rows = 9 (cuBLASLt) and its first 8 rows (GEMV). Each is
// checked against the reference, and the two must agree within the sum of their allowances (2·tol,
// what the two checks imply); the printout shows how much closer they are.
TEST_F(GpuGemm, GemvAgreesWithCublasLt) {
    std::mt19937 rng(29);
    const GemmCase cases[] = {
        {9, 2048, 6144, GemmKind::F16Bias},      {9, 2048, 2048, GemmKind::F32Beta1Bias},
        {9, 2048, 8192, GemmKind::F16BiasRelu},  {9, 8192, 2048, GemmKind::F32Beta1Bias},
        {9, 2048, 50272, GemmKind::F32Beta0},    {9, 1000, 300, GemmKind::F16None},
        {9, 1001, 130, GemmKind::F32Beta0Bias},
    };
    for (const GemmCase &gc : cases) {
        const GemmProblem p = make_gemm_problem(gc, rng);
        const std::vector<float> got9 = run_gemm_problem(handle_, p, 9, stream_);  // cuBLASLt
        const std::vector<float> got8 = run_gemm_problem(handle_, p, 8, stream_);  // GEMV
        check_gemm_result(p, got9, 9, " (cuBLASLt)");
        check_gemm_result(p, got8, 8, " (GEMV)");
        double max_diff = 0.0, max_ratio = 0.0;
        size_t n_bad = 0, first_bad = 0;
        for (size_t i = 0; i < (size_t)8 * gc.n_out; ++i) {
            const double diff = std::fabs((double)got8[i] - got9[i]);
            max_diff = std::max(max_diff, diff);
            max_ratio = std::max(max_ratio, diff / p.tol[i]);
            if (!(diff <= 2.0 * p.tol[i]) && n_bad++ == 0) first_bad = i;
        }
        std::printf("gemm %-15s n_in=%5d n_out=%5d: GEMV (8 rows) vs cuBLASLt (9 rows): max|diff| %.3g, "
                    "max diff/tol %.3f (limit 2)\n",
                    gemm_kind_name(gc.kind), gc.n_in, gc.n_out, max_diff, max_ratio);
        EXPECT_EQ(n_bad, 0u) << gemm_kind_name(gc.kind) << " n_in " << gc.n_in << " n_out " << gc.n_out
                             << ": first disagreement at output " << first_bad << ": GEMV " << got8[first_bad]
                             << ", cuBLASLt " << got9[first_bad];
    }
}

// The decode step is captured in a CUDA graph: the GEMV launches must be capturable, and a replay
// must give the bits of a direct call (the kernels are deterministic).
TEST_F(GpuGemm, GemvIsCapturableInACudaGraph) {
    using namespace seaopt::cuda;
    std::mt19937 rng(31);
    const int rows = 1, n_in = 2048, n_out = 2048;
    const float w_scale = std::sqrt(3.0f / (float)n_in);
    DeviceBuffer<half_t> d_x(random_f16((size_t)rows * n_in, -1.0f, 1.0f, rng));
    DeviceBuffer<half_t> d_w(random_f16((size_t)n_out * n_in, -w_scale, w_scale, rng));
    DeviceBuffer<half_t> d_bias16(random_f16(n_out, -0.5f, 0.5f, rng));
    DeviceBuffer<float> d_bias32(random_f32(n_out, -0.5f, 0.5f, rng));
    DeviceBuffer<half_t> d_y16_direct((size_t)rows * n_out), d_y16_graph((size_t)rows * n_out);
    DeviceBuffer<float> d_y32_direct((size_t)rows * n_out), d_y32_graph((size_t)rows * n_out);

    auto enqueue = [&](half_t *y16, float *y32) {
        gemm_f16(handle_, y16, d_x.get(), d_w.get(), d_bias16.get(), Epilogue::BiasRelu, rows, n_in, n_out, stream_);
        gemm_f16_to_f32(handle_, y32, d_x.get(), d_w.get(), d_bias32.get(), 0.0f, rows, n_in, n_out, stream_);
    };
    enqueue(d_y16_direct.get(), d_y32_direct.get());
    sync();

    cudaGraphExec_t exec = capture_graph(stream_, [&] { enqueue(d_y16_graph.get(), d_y32_graph.get()); });
    for (int replay = 0; replay < 2; ++replay) cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
    sync();
    cudaGraphExecDestroy(exec);

    const std::vector<half_t> y16_direct = d_y16_direct.download(), y16_graph = d_y16_graph.download();
    const std::vector<float> y32_direct = d_y32_direct.download(), y32_graph = d_y32_graph.download();
    const size_t diff16 = count_bitwise_differences(y16_direct.data(), y16_graph.data(), y16_direct.size(), 2);
    const size_t diff32 = count_bitwise_differences(y32_direct.data(), y32_graph.data(), y32_direct.size(), 4);
    std::printf("gemv in a CUDA graph: f16 %zu, f32 %zu of %d values differ bitwise from direct calls\n", diff16,
                diff32, rows * n_out);
    EXPECT_EQ(diff16, 0u);
    EXPECT_EQ(diff32, 0u);
}

// Not a check (nothing asserted on speed): the time of 100 calls at decode shapes and the implied
// read bandwidth of w, for rows 1 and 8 (GEMV) and 9 (cuBLASLt, the path rows <= 8 took before),
// and for the lm_head at rows 1 and 8 also on an autotuning handle ("tuned": whatever its plan
// chose, GEMV configuration or cuBLASLt; the choice and every candidate's time are printed).
// The calls cycle through copies of w that together exceed L2 (>= 256 MiB), so w comes from HBM.
TEST_F(GpuGemm, GemvBandwidthReport) {
    using namespace seaopt::cuda;
    PrintAutotuneLog log;
    GemmHandle *tuned = gemm_create();
    struct Destroy {
        GemmHandle *h;
        ~Destroy() { gemm_destroy(h); }
    } destroy{tuned};
    gemm_set_autotune(tuned, true);
    cudaDeviceProp prop{};
    int device = 0;
    cuda_ok(cudaGetDevice(&device), "cudaGetDevice");
    cuda_ok(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    struct Bench {
        int n_in, n_out;
        bool f16_out;
        const char *what;
    };
    const int n_calls = 100, max_rows = 9;
    for (const Bench b : {Bench{2048, 6144, true, "qkv shape f16"}, Bench{2048, 2048, false, "out_proj shape f32"},
                          Bench{2048, 8192, true, "fc1 f16 bias+relu"}, Bench{8192, 2048, false, "fc2 shape f32"},
                          Bench{2048, 50272, false, "lm_head f32"}}) {
        const size_t w_elems = (size_t)b.n_out * b.n_in, w_bytes = w_elems * sizeof(half_t);
        const size_t n_copies = std::max<size_t>(2, ((size_t)256 << 20) / w_bytes + 1);
        DeviceBuffer<half_t> d_w(n_copies * w_elems), d_x((size_t)max_rows * b.n_in), d_bias16(b.n_out);
        DeviceBuffer<float> d_y32((size_t)max_rows * b.n_out);
        DeviceBuffer<half_t> d_y16((size_t)max_rows * b.n_out);
        cuda_ok(cudaMemset(d_w.get(), 0x2C, n_copies * w_bytes), "cudaMemset w");  // 0x2C2C: 0.0635
        cuda_ok(cudaMemset(d_x.get(), 0x3C, d_x.size() * sizeof(half_t)), "cudaMemset x");  // 0x3C3C: 1.06
        cuda_ok(cudaMemset(d_bias16.get(), 0, b.n_out * sizeof(half_t)), "cudaMemset bias");
        struct Mode {
            int rows;
            bool tuned;
        };
        std::vector<Mode> modes{{1, false}, {8, false}, {9, false}};
        if (w_bytes >= ((size_t)64 << 20)) modes.insert(modes.end(), {{1, true}, {8, true}});
        for (const Mode mode : modes) {
            const int rows = mode.rows;
            GemmHandle *handle = mode.tuned ? tuned : handle_;
            auto call = [&](int i) {
                const half_t *w = d_w.get() + (size_t)(i % n_copies) * w_elems;
                if (b.f16_out) {
                    gemm_f16(handle, d_y16.get(), d_x.get(), w, d_bias16.get(), Epilogue::BiasRelu, rows, b.n_in,
                             b.n_out, stream_);
                } else {
                    gemm_f16_to_f32(handle, d_y32.get(), d_x.get(), w, nullptr, 0.0f, rows, b.n_in, b.n_out,
                                    stream_);
                }
            };
            for (size_t i = 0; i < n_copies; ++i) call((int)i);  // warm-up (and cuBLASLt's plan)
            cudaEvent_t start = nullptr, stop = nullptr;
            cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
            cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
            cuda_ok(cudaEventRecord(start, stream_), "cudaEventRecord");
            for (int i = 0; i < n_calls; ++i) call(i);
            cuda_ok(cudaEventRecord(stop, stream_), "cudaEventRecord");
            sync();
            float ms = 0.0f;
            cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
            cudaEventDestroy(start);
            cudaEventDestroy(stop);
            const double us_per_call = 1e3 * ms / n_calls;
            const double gb_per_s = (double)w_bytes / (us_per_call * 1e-6) / 1e9;
            const char *path = mode.tuned ? "tuned   " : rows <= 8 && gemm_has_gemv(handle_) ? "GEMV    " : "cuBLASLt";
            std::printf("gemm bench %s: %s rows=%d %d->%d: %.2f us/call, %.0f GB/s of weights (%.1f MiB)\n",
                        prop.name, path, rows, b.n_in, b.n_out, us_per_call, gb_per_s, w_bytes / 1048576.0);
        }
    }
}

// Programmatic dependent launch (ops.h, set_programmatic_launch): the decode-path kernels may then
// overlap the kernel before them and wait on the device. A batch-1 decode layer of OPT-1.3B's
// shape (LayerNorm, qkv GEMV, split decode attention with the fused KV append, out-projection into
// the residual, LayerNorm, fc1, fc2 into the residual, then the final LayerNorm and a 4096-output
// head) must give the same bits with it as without, in plain launches and in a CUDA graph
// (replayed twice: the second replay starts from the first one's residual and cache, as the direct
// calls do). Without sm_90 the switch does nothing and this compares the plain path with itself.
// The same layer with the LayerNorms fused into the GEMVs (gemm_f16_layernorm,
// gemm_f16_to_f32_layernorm, as the engine runs pre-LN decode) must give those bits too (residual,
// logits, cache), PDL on and off, plain and captured.
TEST_F(GpuGemm, ProgrammaticLaunchGivesTheSameBits) {
    using namespace seaopt::cuda;
    struct Restore {  // the process-wide setting as it was (on by default where supported)
        bool was = programmatic_launch_enabled();
        ~Restore() { set_programmatic_launch(was); }
    } restore;
    std::mt19937 rng(37);
    const int C = 2048, F = 8192, H = 32, hd = 64, n_ctx = 2048, pos = 1500;
    const float eps = 1e-5f, ws = std::sqrt(3.0f / C), ws_f = std::sqrt(3.0f / F);
    DeviceBuffer<float> d_x(random_f32(C, -2.0f, 2.0f, rng));
    const std::vector<float> x0 = d_x.download();
    DeviceBuffer<half_t> ln1_w(random_f16(C, 0.5f, 1.5f, rng)), ln1_b(random_f16(C, -0.2f, 0.2f, rng));
    DeviceBuffer<half_t> ln2_w(random_f16(C, 0.5f, 1.5f, rng)), ln2_b(random_f16(C, -0.2f, 0.2f, rng));
    DeviceBuffer<half_t> qkv_w(random_f16((size_t)3 * C * C, -ws, ws, rng));
    DeviceBuffer<half_t> qkv_b(random_f16(3 * C, -0.1f, 0.1f, rng));
    DeviceBuffer<half_t> o_w(random_f16((size_t)C * C, -ws, ws, rng)), up_w(random_f16((size_t)F * C, -ws, ws, rng));
    DeviceBuffer<half_t> up_b(random_f16(F, -0.1f, 0.1f, rng)), down_w(random_f16((size_t)C * F, -ws_f, ws_f, rng));
    DeviceBuffer<float> o_b(random_f32(C, -0.1f, 0.1f, rng)), down_b(random_f32(C, -0.1f, 0.1f, rng));
    const size_t cache_elems = (size_t)H * n_ctx * hd;
    const std::vector<half_t> k0 = random_f16(cache_elems, -1.0f, 1.0f, rng);
    const std::vector<half_t> v0 = random_f16(cache_elems, -1.0f, 1.0f, rng);
    DeviceBuffer<half_t> d_k(k0), d_v(v0);
    const int V = 4096;  // a head of 16 MiB: the GEMV (not autotuned) with the fused LayerNorm
    DeviceBuffer<half_t> lm_w(random_f16((size_t)V * C, -ws, ws, rng));
    DeviceBuffer<half_t> h16(C), qkv((size_t)3 * C), attn(C), ff(F), head16(C);
    DeviceBuffer<float> logits(V);
    DeviceBuffer<AttentionTile> tiles(std::vector<AttentionTile>{AttentionTile{0, 1, 0, pos, pos}});
    DeviceBuffer<float> partials(attention_decode_partials_bytes(1, H, hd) / sizeof(float) + 1);
    DeviceBuffer<uint32_t> counters(std::vector<uint32_t>(kAttentionDecodeCounters, 0u));
    AttentionOptions opt;
    opt.append_kv = true;
    opt.partials = partials.get();
    opt.partials_bytes = partials.size() * sizeof(float);
    opt.counters = counters.get();
    opt.counters_bytes = counters.size() * sizeof(uint32_t);

    bool fused = false;  // the LayerNorms go into the GEMV calls
    auto enqueue = [&]() {
        if (fused) {
            gemm_f16_layernorm(handle_, qkv.get(), h16.get(), d_x.get(), ln1_w.get(), ln1_b.get(), eps, qkv_w.get(),
                               qkv_b.get(), Epilogue::Bias, 1, C, 3 * C, stream_);
        } else {
            layernorm_forward(h16.get(), nullptr, d_x.get(), ln1_w.get(), ln1_b.get(), 1, C, eps, stream_);
            gemm_f16(handle_, qkv.get(), h16.get(), qkv_w.get(), qkv_b.get(), Epilogue::Bias, 1, C, 3 * C, stream_);
        }
        attention_forward(attn.get(), qkv.get(), d_k.get(), d_v.get(), tiles.get(), 1, true, pos, H, hd, n_ctx, opt,
                          stream_);
        gemm_f16_to_f32(handle_, d_x.get(), attn.get(), o_w.get(), o_b.get(), 1.0f, 1, C, C, stream_);
        if (fused) {
            gemm_f16_layernorm(handle_, ff.get(), h16.get(), d_x.get(), ln2_w.get(), ln2_b.get(), eps, up_w.get(),
                               up_b.get(), Epilogue::BiasRelu, 1, C, F, stream_);
        } else {
            layernorm_forward(h16.get(), nullptr, d_x.get(), ln2_w.get(), ln2_b.get(), 1, C, eps, stream_);
            gemm_f16(handle_, ff.get(), h16.get(), up_w.get(), up_b.get(), Epilogue::BiasRelu, 1, C, F, stream_);
        }
        gemm_f16_to_f32(handle_, d_x.get(), ff.get(), down_w.get(), down_b.get(), 1.0f, 1, F, C, stream_);
        if (fused) {
            gemm_f16_to_f32_layernorm(handle_, logits.get(), head16.get(), d_x.get(), ln1_w.get(), ln1_b.get(), eps,
                                      lm_w.get(), nullptr, 0.0f, 1, C, V, stream_);
        } else {
            layernorm_forward(head16.get(), nullptr, d_x.get(), ln1_w.get(), ln1_b.get(), 1, C, eps, stream_);
            gemm_f16_to_f32(handle_, logits.get(), head16.get(), lm_w.get(), nullptr, 0.0f, 1, C, V, stream_);
        }
    };
    struct Result {
        std::vector<float> x, logits;
        std::vector<half_t> head16, k, v;
    };
    auto reset = [&]() {
        d_x.upload(x0);
        d_k.upload(k0);
        d_v.upload(v0);
    };
    auto result = [&]() {
        sync();
        return Result{d_x.download(), logits.download(), head16.download(), d_k.download(), d_v.download()};
    };
    // head16 is the fused calls' scratch (written only where they do not fuse): compared unfused only.
    auto compare = [&](const Result &a, const Result &b, const char *what) {
        const size_t dx = count_bitwise_differences(a.x.data(), b.x.data(), a.x.size(), 4);
        const size_t dl = count_bitwise_differences(a.logits.data(), b.logits.data(), a.logits.size(), 4);
        const size_t dh =
            fused ? 0 : count_bitwise_differences(a.head16.data(), b.head16.data(), a.head16.size(), 2);
        const size_t dk = count_bitwise_differences(a.k.data(), b.k.data(), a.k.size(), 2);
        const size_t dv = count_bitwise_differences(a.v.data(), b.v.data(), a.v.size(), 2);
        std::printf("programmatic launch (%s, %s): residual %zu, logits %zu, head16 %s%zu, K %zu, V %zu values differ\n",
                    what, programmatic_launch_enabled() ? "on" : "off: not sm_90", dx, dl, fused ? "(not compared) " : "",
                    dh, dk, dv);
        EXPECT_EQ(dx + dl + dh + dk + dv, 0u) << what;
    };

    // Plain launches: one layer, then a second one on its output.
    set_programmatic_launch(false);
    reset();
    enqueue();
    const Result off1 = result();
    enqueue();
    const Result off2 = result();
    set_programmatic_launch(true);
    reset();
    enqueue();
    compare(off1, result(), "plain launches, step 1");
    enqueue();
    compare(off2, result(), "plain launches, step 2");

    // Captured with PDL on, replayed twice.
    auto captured = [&](const char *what1, const char *what2) {
        reset();
        cudaGraphExec_t exec = capture_graph(stream_, enqueue);
        cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
        compare(off1, result(), what1);
        cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
        compare(off2, result(), what2);
        cudaGraphExecDestroy(exec);
    };
    captured("CUDA graph, replay 1", "CUDA graph, replay 2");

    // The LayerNorms fused into the GEMVs: the unfused bits, PDL off and on, plain and captured.
    fused = true;
    const int fused_before = gemm_stats(handle_).fused_layernorm_calls;
    for (const bool pdl : {false, true}) {
        set_programmatic_launch(pdl);
        reset();
        enqueue();
        compare(off1, result(), pdl ? "fused LayerNorm, PDL, step 1" : "fused LayerNorm, no PDL, step 1");
        enqueue();
        compare(off2, result(), pdl ? "fused LayerNorm, PDL, step 2" : "fused LayerNorm, no PDL, step 2");
    }
    captured("fused LayerNorm, CUDA graph, replay 1", "fused LayerNorm, CUDA graph, replay 2");
    const int fused_calls = gemm_stats(handle_).fused_layernorm_calls - fused_before;
    std::printf("fused LayerNorm calls: %d of 12 direct ones (the captured ones count too)\n", fused_calls);
    if (gemm_has_gemv(handle_)) {
        EXPECT_GE(fused_calls, 12);  // qkv, fc1 and the head of 4 steps
    }
}

// ---- LayerNorm fused into the GEMV (gemm_f16_layernorm, gemm_f16_to_f32_layernorm) ---------------

// Residual-stream-like fp32 rows (as the LayerNorm test's): a per-row offset and spread, and a few
// large outlier channels.
std::vector<float> residual_rows(int rows, int C, std::mt19937 &rng) {
    std::vector<float> x((size_t)rows * C);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> offset_dist(-3.0f, 3.0f), spread_dist(0.5f, 4.0f);
    for (int r = 0; r < rows; ++r) {
        const float offset = offset_dist(rng), spread = spread_dist(rng);
        for (int c = 0; c < C; ++c) x[(size_t)r * C + c] = offset + spread * normal(rng);
        for (int c = 5; c < C; c += 997) x[(size_t)r * C + c] *= 20.0f;
    }
    return x;
}

// One gemm_*_layernorm case against layernorm_forward + gemm_* on the same data: y must be bitwise
// the same, fused or not. x_shift / scratch_shift (elements) misalign x_f32 / the scratch. Returns
// whether the call fused (the handle's counter), and checks the scratch: untouched (NaN) where it
// fused, LayerNorm's output where it did not.
bool check_layernorm_gemm(seaopt::cuda::GemmHandle *handle, GemmKind kind, int rows, int C, int n_out,
                          cudaStream_t stream, std::mt19937 &rng, size_t x_shift = 0, size_t scratch_shift = 0,
                          bool y_is_x = false) {
    using namespace seaopt::cuda;
    const bool f16_out = kind == GemmKind::F16None || kind == GemmKind::F16Bias || kind == GemmKind::F16BiasRelu;
    const bool has_bias = kind == GemmKind::F16Bias || kind == GemmKind::F16BiasRelu ||
                          kind == GemmKind::F32Beta0Bias || kind == GemmKind::F32Beta1Bias;
    const float beta = (kind == GemmKind::F32Beta1 || kind == GemmKind::F32Beta1Bias) ? 1.0f : 0.0f;
    const Epilogue epilogue = !has_bias ? Epilogue::None : kind == GemmKind::F16BiasRelu ? Epilogue::BiasRelu
                                                                                          : Epilogue::Bias;
    const float eps = 1e-5f, w_scale = std::sqrt(3.0f / (float)C);
    std::vector<float> x = residual_rows(rows, C, rng);
    x.insert(x.begin(), x_shift, 0.0f);
    DeviceBuffer<float> d_x(x), d_bias32(random_f32(n_out, -0.5f, 0.5f, rng));
    DeviceBuffer<half_t> d_ln_w(random_f16(C, 0.5f, 1.5f, rng)), d_ln_b(random_f16(C, -0.3f, 0.3f, rng));
    DeviceBuffer<half_t> d_w(random_f16((size_t)n_out * C, -w_scale, w_scale, rng));
    DeviceBuffer<half_t> d_bias16(random_f16(n_out, -0.5f, 0.5f, rng));
    const size_t y_elems = (size_t)rows * n_out;
    const std::vector<float> y0 = random_f32(y_elems, -4.0f, 4.0f, rng);  // the residual for beta != 0
    const size_t scratch_elems = (size_t)rows * C + scratch_shift;
    DeviceBuffer<half_t> d_ref16(scratch_elems), d_scratch(std::vector<half_t>(scratch_elems, 0x7E00u));  // NaN
    DeviceBuffer<half_t> d_y16_ref(y_elems), d_y16(y_elems);
    DeviceBuffer<float> d_y32_ref(y0), d_y32(y0);
    const float *x_f32 = d_x.get() + x_shift;
    half_t *ref16 = d_ref16.get() + scratch_shift, *scratch = d_scratch.get() + scratch_shift;
    // y_is_x (fp32, n_out == C, beta 1): y += LN(x)·wᵀ into x itself; the reference works on a copy.
    DeviceBuffer<float> d_x_ref(x);
    float *y32 = y_is_x ? d_x.get() + x_shift : d_y32.get();
    float *y32_ref = y_is_x ? d_x_ref.get() + x_shift : d_y32_ref.get();

    // The call under test first (with autotuning on, the first call of a shape makes its plan),
    // then the reference on the same handle (the same plan).
    const int fused_before = gemm_stats(handle).fused_layernorm_calls;
    if (f16_out) {
        gemm_f16_layernorm(handle, d_y16.get(), scratch, x_f32, d_ln_w.get(), d_ln_b.get(), eps, d_w.get(),
                           has_bias ? d_bias16.get() : nullptr, epilogue, rows, C, n_out, stream);
    } else {
        gemm_f16_to_f32_layernorm(handle, y32, scratch, x_f32, d_ln_w.get(), d_ln_b.get(), eps, d_w.get(),
                                  has_bias ? d_bias32.get() : nullptr, beta, rows, C, n_out, stream);
    }
    cuda_ok(cudaStreamSynchronize(stream), "gemm layernorm");
    const bool fused = gemm_stats(handle).fused_layernorm_calls > fused_before;
    layernorm_forward(ref16, nullptr, y_is_x ? d_x_ref.get() + x_shift : x_f32, d_ln_w.get(), d_ln_b.get(), rows, C,
                      eps, stream);
    if (f16_out) {
        gemm_f16(handle, d_y16_ref.get(), ref16, d_w.get(), has_bias ? d_bias16.get() : nullptr, epilogue, rows, C,
                 n_out, stream);
    } else {
        gemm_f16_to_f32(handle, y32_ref, ref16, d_w.get(), has_bias ? d_bias32.get() : nullptr, beta, rows, C, n_out,
                        stream);
    }
    cuda_ok(cudaStreamSynchronize(stream), "reference");
    size_t n_diff = 0;
    if (f16_out) {
        const std::vector<half_t> a = d_y16_ref.download(), b = d_y16.download();
        n_diff = count_bitwise_differences(a.data(), b.data(), y_elems, 2);
    } else if (y_is_x) {
        const std::vector<float> a = d_x_ref.download(), b = d_x.download();
        n_diff = count_bitwise_differences(a.data() + x_shift, b.data() + x_shift, y_elems, 4);
    } else {
        const std::vector<float> a = d_y32_ref.download(), b = d_y32.download();
        n_diff = count_bitwise_differences(a.data(), b.data(), y_elems, 4);
    }
    const std::vector<half_t> ln_ref = d_ref16.download(), ln_got = d_scratch.download();
    const size_t scratch_written =
        (size_t)std::count_if(ln_got.begin() + scratch_shift, ln_got.end(), [](half_t h) { return h != 0x7E00u; });
    const size_t scratch_diff =
        count_bitwise_differences(ln_ref.data() + scratch_shift, ln_got.data() + scratch_shift, (size_t)rows * C, 2);
    std::printf("gemm layernorm %-15s rows=%d C=%5d n_out=%5d%s%s%s: %s, %zu of %zu outputs differ from "
                "layernorm_forward + %s\n",
                gemm_kind_name(kind), rows, C, n_out, x_shift ? " (x misaligned)" : "",
                scratch_shift ? " (scratch misaligned)" : "", y_is_x ? " (y = x)" : "", fused ? "fused" : "unfused",
                n_diff, y_elems, f16_out ? "gemm_f16" : "gemm_f16_to_f32");
    EXPECT_EQ(n_diff, 0u) << gemm_kind_name(kind) << " rows " << rows << " C " << C << " n_out " << n_out;
    if (fused) {
        EXPECT_EQ(scratch_written, 0u) << "the fused kernel wrote its scratch";
    } else {
        EXPECT_EQ(scratch_diff, 0u) << "the unfused path's scratch is not layernorm_forward's output";
    }
    return fused;
}

// The fused kernel reproduces layernorm_forward's fp16 rows (same block shape emulated, same order
// of sums, same IEEE steps: engine/cuda/layernorm_math.cuh) and runs the GEMV's main loop on them:
// its output is bitwise that of layernorm_forward + the GEMV, at OPT's widths (768, 2048, 2560,
// 5120: 1, 2, 4, 8 float4 a LayerNorm thread) and 1, 3, 8 rows, for every epilogue. Where a shape
// is not eligible the call falls back to exactly those two calls (same bits again).
TEST_F(GpuGemm, FusedLayerNormGemvIsBitwiseTheUnfusedCalls) {
    using seaopt::cuda::gemm_has_gemv;
    std::mt19937 rng(41);
    struct Case {
        GemmKind kind;
        int C, n_out;
    };
    const Case cases[] = {
        {GemmKind::F16Bias, 768, 3 * 768},       {GemmKind::F16BiasRelu, 768, 4 * 768},
        {GemmKind::F16Bias, 2048, 3 * 2048},     {GemmKind::F16BiasRelu, 2048, 4 * 2048},
        {GemmKind::F32Beta0, 2048, 1000},        {GemmKind::F32Beta1Bias, 2048, 2048},
        {GemmKind::F16Bias, 2560, 3 * 2560},     {GemmKind::F16None, 2560, 520},
        {GemmKind::F16BiasRelu, 5120, 2048},     {GemmKind::F32Beta0Bias, 5120, 1000},
    };
    int n_fused = 0, n_cases = 0;
    for (const int rows : {1, 3, 8}) {
        for (const Case &c : cases) {
            const bool fused = check_layernorm_gemm(handle_, c.kind, rows, c.C, c.n_out, stream_, rng);
            n_fused += fused ? 1 : 0;
            ++n_cases;
            // One row of OPT-1.3B's qkv and fc1 (the decode step) always fuses on a GEMV device.
            if (gemm_has_gemv(handle_) && rows == 1 && c.C == 2048 && c.n_out >= 3 * 2048) {
                EXPECT_TRUE(fused) << "rows 1, C 2048, n_out " << c.n_out;
            }
        }
    }
    std::printf("gemm layernorm: %d of %d cases fused\n", n_fused, n_cases);

    // Not eligible, so the unfused calls: 9 rows (cuBLASLt), n_in % 8 != 0 (the scalar GEMV), x_f32
    // or the scratch misaligned (LayerNorm's generic kernel; the scalar GEMV), C > 16384 (the
    // generic LayerNorm), y overlapping x.
    const bool f1 = check_layernorm_gemm(handle_, GemmKind::F16Bias, 9, 2048, 512, stream_, rng);
    const bool f2 = check_layernorm_gemm(handle_, GemmKind::F16BiasRelu, 2, 300, 200, stream_, rng);
    const bool f3 = check_layernorm_gemm(handle_, GemmKind::F32Beta1Bias, 1, 2048, 512, stream_, rng, /*x_shift=*/1);
    const bool f4 = check_layernorm_gemm(handle_, GemmKind::F16Bias, 1, 2048, 512, stream_, rng, 0, /*scratch=*/4);
    const bool f5 = check_layernorm_gemm(handle_, GemmKind::F16Bias, 1, 16392, 64, stream_, rng);
    const bool f6 = check_layernorm_gemm(handle_, GemmKind::F32Beta1Bias, 1, 2048, 2048, stream_, rng, 0, 0,
                                         /*y_is_x=*/true);
    EXPECT_FALSE(f1 || f2 || f3 || f4 || f5 || f6);
}

// Not a check (nothing asserted on speed): LayerNorm + GEMV as two kernels against the fused
// kernel (gemm_f16_layernorm, gemm_f16_to_f32_layernorm) at decode shapes, 100 calls each with
// programmatic dependent launch as configured (on by default on sm_90), cycling through copies of
// w that exceed L2 as the bandwidth report does; the saving per call is what each pre-LN LayerNorm
// of a decode step gains (2 a layer, and the head's).
TEST_F(GpuGemm, FusedLayerNormReport) {
    using namespace seaopt::cuda;
    cudaDeviceProp prop{};
    int device = 0;
    cuda_ok(cudaGetDevice(&device), "cudaGetDevice");
    cuda_ok(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    std::mt19937 rng(59);
    const int n_calls = 100, max_rows = 8, C = 2048;
    DeviceBuffer<float> d_x(residual_rows(max_rows, C, rng));
    DeviceBuffer<half_t> d_ln_w(random_f16(C, 0.5f, 1.5f, rng)), d_ln_b(random_f16(C, -0.3f, 0.3f, rng));
    DeviceBuffer<half_t> d_scratch((size_t)max_rows * C);
    struct Bench {
        int n_out;
        bool f16_out;
        const char *what;
    };
    for (const Bench b : {Bench{3 * C, true, "qkv"}, Bench{4 * C, true, "fc1"}, Bench{50272, false, "lm_head"}}) {
        const size_t w_elems = (size_t)b.n_out * C, w_bytes = w_elems * sizeof(half_t);
        const size_t n_copies = std::max<size_t>(2, ((size_t)256 << 20) / w_bytes + 1);
        DeviceBuffer<half_t> d_w(n_copies * w_elems), d_bias16(b.n_out), d_y16((size_t)max_rows * b.n_out);
        DeviceBuffer<float> d_y32((size_t)max_rows * b.n_out);
        cuda_ok(cudaMemset(d_w.get(), 0x2C, n_copies * w_bytes), "cudaMemset w");
        cuda_ok(cudaMemset(d_bias16.get(), 0, b.n_out * sizeof(half_t)), "cudaMemset bias");
        for (const int rows : {1, 8}) {
            double us[2] = {0.0, 0.0};
            for (const bool fused : {false, true}) {
                auto call = [&](int i) {
                    const half_t *w = d_w.get() + (size_t)(i % n_copies) * w_elems;
                    if (!fused) {
                        layernorm_forward(d_scratch.get(), nullptr, d_x.get(), d_ln_w.get(), d_ln_b.get(), rows, C,
                                          1e-5f, stream_);
                        if (b.f16_out) {
                            gemm_f16(handle_, d_y16.get(), d_scratch.get(), w, d_bias16.get(), Epilogue::Bias, rows,
                                     C, b.n_out, stream_);
                        } else {
                            gemm_f16_to_f32(handle_, d_y32.get(), d_scratch.get(), w, nullptr, 0.0f, rows, C,
                                            b.n_out, stream_);
                        }
                    } else if (b.f16_out) {
                        gemm_f16_layernorm(handle_, d_y16.get(), d_scratch.get(), d_x.get(), d_ln_w.get(),
                                           d_ln_b.get(), 1e-5f, w, d_bias16.get(), Epilogue::Bias, rows, C, b.n_out,
                                           stream_);
                    } else {
                        gemm_f16_to_f32_layernorm(handle_, d_y32.get(), d_scratch.get(), d_x.get(), d_ln_w.get(),
                                                  d_ln_b.get(), 1e-5f, w, nullptr, 0.0f, rows, C, b.n_out, stream_);
                    }
                };
                for (size_t i = 0; i < n_copies; ++i) call((int)i);  // warm-up
                cudaEvent_t start = nullptr, stop = nullptr;
                cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
                cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
                const int fused_before = gemm_stats(handle_).fused_layernorm_calls;
                cuda_ok(cudaEventRecord(start, stream_), "cudaEventRecord");
                for (int i = 0; i < n_calls; ++i) call(i);
                cuda_ok(cudaEventRecord(stop, stream_), "cudaEventRecord");
                sync();
                float ms = 0.0f;
                cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
                cudaEventDestroy(start);
                cudaEventDestroy(stop);
                us[fused ? 1 : 0] = 1e3 * ms / n_calls;
                if (fused && gemm_stats(handle_).fused_layernorm_calls - fused_before != n_calls) {
                    std::printf("  (%s rows=%d: not fused; the unfused calls were timed twice)\n", b.what, rows);
                }
            }
            std::printf("layernorm+gemv bench %s: %s rows=%d %d->%d: LayerNorm + GEMV %.2f us, fused %.2f us "
                        "(%+.2f us a call; PDL %s)\n",
                        prop.name, b.what, rows, C, b.n_out, us[0], us[1], us[1] - us[0],
                        programmatic_launch_enabled() ? "on" : "off");
        }
    }
}

// ---- autotuning (gemm.h) ------------------------------------------------------------------------


// Prefill shapes of OPT-1.3B, the lm_head's 128-row chunk, and the batch-1 lm_head (GEMV
// configurations against cuBLASLt): every autotuned plan must still be right (against the CPU
// reference, the usual tolerances; beta = 1 checks that timing did not add into the residual), give
// the same bits at every later call, and the same bits on another handle (which takes the choice
// this one made: contexts of a process agree).
TEST_F(GpuGemm, AutotunedPlansAreRightAndStable) {
    using namespace seaopt::cuda;
    PrintAutotuneLog log;
    gemm_set_autotune(handle_, true);
    GemmHandle *other = gemm_create();
    struct Destroy {
        GemmHandle *h;
        ~Destroy() { gemm_destroy(h); }
    } destroy{other};
    gemm_set_autotune(other, true);
    std::mt19937 rng(43);
    const GemmCase cases[] = {
        {2048, 2048, 2048, GemmKind::F32Beta1Bias},  // out-proj: timed into a workspace scratch
        {1024, 8192, 2048, GemmKind::F32Beta1Bias},  // fc2
        {512, 2048, 6144, GemmKind::F16Bias},        // qkv
        {512, 2048, 8192, GemmKind::F16BiasRelu},    // fc1
        {128, 2048, 50272, GemmKind::F32Beta0},      // a 128-row chunk of the lm_head
        {1, 2048, 50272, GemmKind::F32Beta0},        // batch-1 lm_head: GEMV or cuBLASLt
        {8, 2048, 50272, GemmKind::F32Beta0},
    };
    for (const GemmCase &gc : cases) {
        const GemmProblem p = make_gemm_problem(gc, rng);
        const int tuned_before = gemm_stats(handle_).tuned_plans;
        const std::vector<float> got = run_gemm_problem(handle_, p, gc.rows, stream_);
        const int tuned = gemm_stats(handle_).tuned_plans - tuned_before;
        check_gemm_result(p, got, gc.rows, " (autotuned)");
        // The skinny shapes are tuned only where the GEMV path exists; the others always.
        if (gc.rows > 8 || gemm_has_gemv(handle_)) {
            EXPECT_EQ(tuned, 1) << "rows " << gc.rows << " n_out " << gc.n_out;
        }
        for (int again = 0; again < 2; ++again) {
            const std::vector<float> got_again = run_gemm_problem(handle_, p, gc.rows, stream_);
            EXPECT_EQ(count_bitwise_differences(got.data(), got_again.data(), got.size(), 4), 0u)
                << "the plan's choice changed between calls";
        }
        EXPECT_EQ(gemm_stats(handle_).tuned_plans - tuned_before, tuned) << "a cached plan was tuned again";
        const std::vector<float> got_other = run_gemm_problem(other, p, gc.rows, stream_);
        const size_t n_diff = count_bitwise_differences(got.data(), got_other.data(), got.size(), 4);
        std::printf("  another handle: %zu of %zu outputs differ\n", n_diff, got.size());
        EXPECT_EQ(n_diff, 0u) << "another handle of the process chose differently";
    }
}

// Where timing is not possible or not wanted, the plan takes the heuristic's first algorithm (or
// the default GEMV) untimed, and the call is right: the fp32 output of a 4096-row out-projection
// (32 MiB: no room for a scratch in the workspace), autotuning off, and a new shape first met while
// the stream is being captured (capture must work, and replays give the direct call's bits).
TEST_F(GpuGemm, AutotuningStandsAsideWhereItMust) {
    using namespace seaopt::cuda;
    PrintAutotuneLog log;
    std::mt19937 rng(47);
    gemm_set_autotune(handle_, true);
    const int tuned0 = gemm_stats(handle_).tuned_plans;
    check_gemm(handle_, {4096, 2048, 2048, GemmKind::F32Beta1Bias}, stream_, rng);
    EXPECT_EQ(gemm_stats(handle_).tuned_plans, tuned0) << "a beta = 1 output of 32 MiB has no scratch";

    gemm_set_autotune(handle_, false);
    check_gemm(handle_, {1024, 2048, 2048, GemmKind::F16Bias}, stream_, rng);
    check_gemm(handle_, {1, 2048, 50272, GemmKind::F32Beta0}, stream_, rng);
    EXPECT_EQ(gemm_stats(handle_).tuned_plans, tuned0) << "autotuning is off";

    gemm_set_autotune(handle_, true);
    const int rows = 1536, n_in = 2048, n_out = 2048;  // a shape no call has met yet
    const float w_scale = std::sqrt(3.0f / (float)n_in);
    DeviceBuffer<half_t> d_x(random_f16((size_t)rows * n_in, -1.0f, 1.0f, rng));
    DeviceBuffer<half_t> d_w(random_f16((size_t)n_out * n_in, -w_scale, w_scale, rng));
    DeviceBuffer<float> d_bias(random_f32(n_out, -0.5f, 0.5f, rng));
    const std::vector<float> y0 = random_f32((size_t)rows * n_out, -4.0f, 4.0f, rng);
    DeviceBuffer<float> d_y_graph(y0), d_y_direct(y0);
    cudaGraphExec_t exec = capture_graph(stream_, [&] {
        gemm_f16_to_f32(handle_, d_y_graph.get(), d_x.get(), d_w.get(), d_bias.get(), 1.0f, rows, n_in, n_out,
                        stream_);
    });
    EXPECT_EQ(gemm_stats(handle_).tuned_plans, tuned0) << "a plan made during capture was timed";
    cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
    gemm_f16_to_f32(handle_, d_y_direct.get(), d_x.get(), d_w.get(), d_bias.get(), 1.0f, rows, n_in, n_out, stream_);
    sync();
    cudaGraphExecDestroy(exec);
    const std::vector<float> y_graph = d_y_graph.download(), y_direct = d_y_direct.download();
    const size_t n_diff = count_bitwise_differences(y_graph.data(), y_direct.data(), y_graph.size(), 4);
    std::printf("gemm plan made during capture: %zu of %zu values differ between the replay and a direct call\n",
                n_diff, y_graph.size());
    EXPECT_EQ(n_diff, 0u);
    EXPECT_EQ(gemm_stats(handle_).tuned_plans, tuned0) << "the plan made during capture was timed later";
}

// The batch-1 lm_head with its LayerNorm (the engine's decode head) under autotuning: the first
// call runs unfused and makes (times) the plan, later ones fuse where the plan routes to a GEMV;
// every call gives the bits of layernorm_forward + gemm_f16_to_f32 on the same handle.
TEST_F(GpuGemm, AutotunedHeadWithLayerNorm) {
    using namespace seaopt::cuda;
    PrintAutotuneLog log;
    gemm_set_autotune(handle_, true);
    std::mt19937 rng(53);
    for (int call = 0; call < 3; ++call) {
        const bool fused = check_layernorm_gemm(handle_, GemmKind::F32Beta0, 1, 2048, 50272, stream_, rng);
        if (call == 0) {
            EXPECT_FALSE(fused) << "the first call has no plan to fuse with";
        }
    }
}

TEST_F(GpuGemm, MisalignedPointersGetTheirOwnAlgorithm) {
    std::mt19937 rng(17);
    // Aligned first (caches an algorithm that may assume 256-byte alignment), then the same shape
    // with pointers one element off: the cache keys on alignment, so this must still be right.
    // rows 9 goes to cuBLASLt; rows 7 to the GEMV path, whose misaligned case is the scalar kernel.
    for (const int rows : {9, 7}) {
        for (const GemmKind k : {GemmKind::F16Bias, GemmKind::F32Beta1Bias}) {
            check_gemm(handle_, {rows, 2048, 512, k}, stream_, rng, /*misalign=*/false);
            check_gemm(handle_, {rows, 2048, 512, k}, stream_, rng, /*misalign=*/true);
            check_gemm(handle_, {rows, 2048, 512, k}, stream_, rng, /*misalign=*/true);  // cached
        }
    }
}

TEST_F(GpuGemm, CachedPlanUsesEachCallsBias) {
    // Same shape twice with different bias buffers: the second call must not reuse the first bias.
    std::mt19937 rng(19);
    const int rows = 4, n_in = 64, n_out = 32;
    const std::vector<half_t> x16 = random_f16((size_t)rows * n_in, -1.0f, 1.0f, rng);
    const std::vector<half_t> w16 = random_f16((size_t)n_out * n_in, -0.2f, 0.2f, rng);
    const std::vector<float> bias_a(n_out, 100.0f), bias_b(n_out, -100.0f);
    DeviceBuffer<half_t> d_x(x16), d_w(w16);
    DeviceBuffer<float> d_bias_a(bias_a), d_bias_b(bias_b), d_y((size_t)rows * n_out);
    std::vector<float> ref((size_t)rows * n_out);
    const std::vector<float> x = to_f32(x16), w = to_f32(w16);
    for (const std::vector<float> *bias : {&bias_a, &bias_b, &bias_a}) {
        const float *d_bias = bias == &bias_b ? d_bias_b.get() : d_bias_a.get();
        seaopt::cuda::gemm_f16_to_f32(handle_, d_y.get(), d_x.get(), d_w.get(), d_bias, 0.0f, rows, n_in, n_out,
                                      stream_);
        sync();
        seaopt::cpu::linear(ref.data(), x.data(), w.data(), bias->data(), rows, n_in, n_out, 1);
        const std::vector<float> got = d_y.download();
        double max_err = 0.0;
        for (size_t i = 0; i < got.size(); ++i) max_err = std::max(max_err, std::fabs((double)got[i] - ref[i]));
        std::printf("gemm cached plan, bias %+.0f: max|err| %.3g\n", (*bias)[0], max_err);
        EXPECT_LT(max_err, 1e-3);
    }
}

// ---- bad input ------------------------------------------------------------------------------------
// Policy: rows == 0 is a no-op (nothing is touched); negative or zero sizes otherwise, null
// pointers, or a missing bias throw seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT) before any launch.

TEST_F(GpuGemm, BadInputIsAnErrorOrANoOp) {
    using namespace seaopt::cuda;
    DeviceBuffer<half_t> d_h(std::vector<half_t>(64 * 64, 0x3C00u));  // 1.0
    DeviceBuffer<float> d_f(std::vector<float>(64 * 64, 42.0f));
    DeviceBuffer<int32_t> d_i(std::vector<int32_t>(64, 0));
    half_t *h = d_h.get();
    float *f = d_f.get();
    int32_t *ids = d_i.get();
    cudaStream_t s = stream_;
    GemmHandle *g = handle_;

    // rows == 0: no-op, the outputs keep their contents.
    gemm_f16(g, h, h, h, nullptr, Epilogue::None, 0, 64, 64, s);
    gemm_f16_to_f32(g, f, h, h, nullptr, 1.0f, 0, 64, 64, s);
    layernorm_forward(h, f, f, h, h, 0, 64, 1e-5f, s);
    gemm_f16_layernorm(g, h, h, f, h, h, 1e-5f, h, nullptr, Epilogue::None, 0, 64, 64, s);
    gemm_f16_to_f32_layernorm(g, f, h, f, h, h, 1e-5f, h, nullptr, 1.0f, 0, 64, 64, s);
    embedding_forward(f, h, h, ids, ids, 0, 64, 2, s);
    gather_rows_f16(h, h, ids, 0, 64, s);
    gather_rows_f32(f, f, ids, 0, 64, s);
    kv_cache_append(h, h, h, ids, ids, 0, 4, 16, 8, s);
    sync();
    const std::vector<float> f_after = d_f.download();
    const std::vector<half_t> h_after = d_h.download();
    EXPECT_TRUE(std::all_of(f_after.begin(), f_after.end(), [](float v) { return v == 42.0f; }));
    EXPECT_TRUE(std::all_of(h_after.begin(), h_after.end(), [](half_t v) { return v == 0x3C00u; }));

    const seaopt_status invalid = SEAOPT_ERR_INVALID_ARGUMENT;
    expect_error([&] { gemm_f16(g, h, h, h, nullptr, Epilogue::None, -1, 64, 64, s); }, invalid, "gemm_f16 rows -1");
    expect_error([&] { gemm_f16(g, h, h, h, nullptr, Epilogue::None, 4, 0, 64, s); }, invalid, "gemm_f16 n_in 0");
    expect_error([&] { gemm_f16(g, h, h, h, nullptr, Epilogue::Bias, 4, 64, 64, s); }, invalid, "gemm_f16 no bias");
    expect_error([&] { gemm_f16(nullptr, h, h, h, nullptr, Epilogue::None, 4, 64, 64, s); }, invalid,
                 "gemm_f16 null handle");
    expect_error([&] { gemm_f16(g, h, h, h, h + 1, Epilogue::Bias, 4, 64, 64, s); }, invalid,
                 "gemm_f16 misaligned bias");
    expect_error([&] { gemm_f16_to_f32(g, f, nullptr, h, nullptr, 0.0f, 4, 64, 64, s); }, invalid,
                 "gemm_f16_to_f32 null x");
    expect_error([&] { gemm_f16_to_f32(g, f, h, h, nullptr, 1.0f, 4, 64, -5, s); }, invalid,
                 "gemm_f16_to_f32 n_out -5");
    expect_error([&] { gemm_f16_layernorm(g, h, nullptr, f, h, h, 1e-5f, h, nullptr, Epilogue::None, 4, 64, 64, s); },
                 invalid, "gemm_f16_layernorm null scratch");
    expect_error([&] { gemm_f16_layernorm(g, h, h, nullptr, h, h, 1e-5f, h, nullptr, Epilogue::None, 4, 64, 64, s); },
                 invalid, "gemm_f16_layernorm null x");
    expect_error([&] { gemm_f16_layernorm(g, h, h, f, h, h, -1.0f, h, nullptr, Epilogue::None, 4, 64, 64, s); },
                 invalid, "gemm_f16_layernorm eps -1");
    expect_error([&] { gemm_f16_layernorm(g, h, h, f, h, h, 1e-5f, h, nullptr, Epilogue::Bias, 4, 64, 64, s); },
                 invalid, "gemm_f16_layernorm no bias");
    expect_error([&] { gemm_f16_to_f32_layernorm(g, f, h, f, nullptr, h, 1e-5f, h, nullptr, 0.0f, 4, 64, 64, s); },
                 invalid, "gemm_f16_to_f32_layernorm null ln_w");
    expect_error([&] { gemm_f16_to_f32_layernorm(g, f, h, f, h, h, 1e-5f, h, nullptr, 0.0f, -1, 64, 64, s); },
                 invalid, "gemm_f16_to_f32_layernorm rows -1");
    expect_error([&] { gemm_set_autotune(nullptr, true); }, invalid, "gemm_set_autotune null handle");
    expect_error([&] { layernorm_forward(h, f, f, h, h, -1, 64, 1e-5f, s); }, invalid, "layernorm rows -1");
    expect_error([&] { layernorm_forward(h, f, f, h, h, 4, 0, 1e-5f, s); }, invalid, "layernorm C 0");
    expect_error([&] { layernorm_forward(nullptr, f, f, h, h, 4, 64, 1e-5f, s); }, invalid, "layernorm null out16");
    expect_error([&] { embedding_forward(f, h, h, ids, ids, -2, 64, 2, s); }, invalid, "embedding rows -2");
    expect_error([&] { embedding_forward(f, h, h, nullptr, ids, 4, 64, 2, s); }, invalid, "embedding tok without ids");
    expect_error([&] { gather_rows_f16(h, h, ids, 4, 0, s); }, invalid, "gather_rows_f16 cols 0");
    expect_error([&] { gather_rows_f32(f, nullptr, ids, 4, 64, s); }, invalid, "gather_rows_f32 null table");
    expect_error([&] { kv_cache_append(h, h, h, ids, ids, 4, 4, 16, 0, s); }, invalid, "kv_cache_append n_ctx 0");
    expect_error([&] { kv_cache_append(h, h, h, ids, ids, -1, 4, 16, 8, s); }, invalid, "kv_cache_append rows -1");

    gemm_destroy(nullptr);  // no-op
    sync();                 // nothing was launched by the failing calls, so the device is still healthy
}

}  // namespace
