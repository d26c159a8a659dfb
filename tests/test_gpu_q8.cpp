// The int8 (Q8_0) weight GEMMs of engine/cuda/gemm.h (engine/cuda/gemm_q8.cu): the GEMV path (rows <= 16: q and d
// read directly) and the dequantize + cuBLASLt path (rows > 16), against a CPU reference in double precision on the
// same fp16 inputs. Every check prints its max error and tolerance. Runs only where a GPU exists
// (tests/gpu_test_main.cpp skips the program otherwise).
//
// Weights: random q in [-127, 127], scales fp16(|N(0, 0.01)|) with some zero; the GEMV problems also hold one
// block whose q·d (127 · 520 = 66040) is past fp16's range, so a kernel that rounded the weight to fp16 would
// give inf there (its x is 0.25, so the exact output stays inside fp16).
//
// Tolerances (tests/test_gpu_kernels.cpp's rules, reference in double instead of fp32):
//   - fp32 output: |Δ| ≤ 1e-4 · Σ|terms| (Σ|x·w| + |bias| + |beta·y|).
//   - fp16 output: |Δ| ≤ 2 · e_fp16 + 1e-4 · Σ|terms| + 2⁻²⁴, e_fp16 = 2⁻¹¹ · (|ref| + |x·wᵀ| when there is a bias).
//   - rows > 16 round the weight to fp16 first (dequantize_q8_f16, then cuBLASLt), so their reference uses the
//     fp16-rounded weights (same rules), and dequantize_q8_f16 is checked bitwise against the host's f32_to_f16(q·d).
//   - the GEMV is deterministic: the same call twice, inside a CUDA graph, and with programmatic dependent launch on
//     or off give the same bits.
// Two reports assert nothing: the GEMV's time and bandwidth against the fp16 GEMV at OPT-1.3B's decode shapes, and a
// decode layer's time with int8 and with fp16 weights (both as CUDA graphs).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/cuda/gemm.h"
#include "engine/cuda/ops.h"
#include "engine/error.h"
#include "engine/fp16.h"
#include "gpu_test_util.h"

namespace {

using seaopt::f16_to_f32;
using seaopt::f32_to_f16;
using seaopt::cuda::Epilogue;
using seaopt::cuda::GemmHandle;
using seaopt::cuda::half_t;
using seaopt::cuda::WeightQ8;

// ---- helpers ------------------------------------------------------------------------------------

using seaopt_test::capture_graph;
using seaopt_test::cuda_ok;
using seaopt_test::DeviceBuffer;

size_t count_bitwise_differences(const void *a, const void *b, size_t n_elements, size_t element_bytes) {
    size_t n = 0;
    for (size_t i = 0; i < n_elements; ++i) {
        if (std::memcmp((const char *)a + i * element_bytes, (const char *)b + i * element_bytes, element_bytes) != 0)
            ++n;
    }
    return n;
}

// Runs f(begin, end) over [0, n) split across the host's threads.
void parallel_for(size_t n, const std::function<void(size_t, size_t)> &f) {
    const size_t n_threads =
        std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), std::max<size_t>(n, 1));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < n_threads; ++i) {
        const size_t begin = n * i / n_threads, end = n * (i + 1) / n_threads;
        threads.emplace_back([&f, begin, end] { f(begin, end); });
    }
    for (std::thread &t : threads) t.join();
}

// Runs f and expects a seaopt::Error with the given code.
void expect_error(const std::function<void()> &f, seaopt_status code, const char *what) {
    try {
        f();
        ADD_FAILURE() << what << ": no error thrown";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), code) << what << ": " << e.what();
        std::printf("  %-48s -> %s\n", what, e.what());
    }
}

// A non-default stream and a GEMM handle (autotuning off: each test sees the path it names).
class GpuQ8 : public ::testing::Test {
protected:
    void SetUp() override {
        cuda_ok(cudaStreamCreate(&stream_), "cudaStreamCreate");
        handle_ = seaopt::cuda::gemm_create();
        seaopt::cuda::gemm_set_autotune(handle_, false);
    }
    void TearDown() override {
        EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);  // an asynchronous fault surfaces here at the latest
        EXPECT_EQ(cudaGetLastError(), cudaSuccess);
        seaopt::cuda::gemm_destroy(handle_);
        cudaStreamDestroy(stream_);
    }
    void sync() {
        cuda_ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        cuda_ok(cudaGetLastError(), "kernel");
    }
    cudaStream_t stream_ = nullptr;
    GemmHandle *handle_ = nullptr;
};

// ---- Q8_0 weights -----------------------------------------------------------------------------------

constexpr int kBlock = 32;
constexpr int kBigQ = 127;
constexpr float kBigScale = 520.0f;  // exact in fp16; 127 · 520 = 66040 is not (> 65504: inf)
constexpr float kBigX = 0.25f;

struct HostQ8 {
    int n_out = 0, n_in = 0;
    std::vector<int8_t> q;         // [n_out][n_in]
    std::vector<half_t> d;         // [n_out][n_in / 32]
    int big_row = -1, big_k = -1;  // the out-of-fp16-range weight, if any

    float weight(size_t o, size_t k) const {  // exact: 8 x 11 significant bits fit a float
        return (float)q[o * n_in + k] * f16_to_f32(d[o * (n_in / kBlock) + k / kBlock]);
    }
};

// Random q in [-127, 127], scales fp16(|N(0, 0.01)|), every 11th block (diagonally) a zero scale; with `big`, one
// block of the middle output holds a single q = 127 with the scale 520 (the rest of that block 0).
HostQ8 make_q8(int n_out, int n_in, bool big, std::mt19937 &rng) {
    HostQ8 w;
    w.n_out = n_out, w.n_in = n_in;
    const int nb = n_in / kBlock;
    w.q.resize((size_t)n_out * n_in);
    w.d.resize((size_t)n_out * nb);
    std::uniform_int_distribution<int> qdist(-127, 127);
    std::normal_distribution<float> ddist(0.0f, 0.01f);
    for (int8_t &v : w.q) v = (int8_t)qdist(rng);
    for (int o = 0; o < n_out; ++o) {
        for (int b = 0; b < nb; ++b) {
            w.d[(size_t)o * nb + b] = (o + b) % 11 == 5 ? f32_to_f16(0.0f) : f32_to_f16(std::fabs(ddist(rng)));
        }
    }
    if (big) {
        const int o = n_out / 2, b = nb / 2;
        w.big_row = o, w.big_k = b * kBlock + 5;
        std::fill(w.q.begin() + (size_t)o * n_in + (size_t)b * kBlock,
                  w.q.begin() + (size_t)o * n_in + (size_t)(b + 1) * kBlock, (int8_t)0);
        w.q[(size_t)o * n_in + w.big_k] = (int8_t)kBigQ;
        w.d[(size_t)o * nb + b] = f32_to_f16(kBigScale);
    }
    return w;
}

// The weights the reference multiplies with: exact q·d, or rounded to fp16 (what the rows > 16 path multiplies).
std::vector<float> dequantized(const HostQ8 &w, bool round_to_f16) {
    std::vector<float> out((size_t)w.n_out * w.n_in);
    for (size_t o = 0; o < (size_t)w.n_out; ++o) {
        for (size_t k = 0; k < (size_t)w.n_in; ++k) {
            const float v = w.weight(o, k);
            out[o * w.n_in + k] = round_to_f16 ? f16_to_f32(f32_to_f16(v)) : v;
        }
    }
    return out;
}

// The weight on the device (q 256-byte aligned by cudaMalloc; d shifted by `d_shift` elements).
struct DeviceQ8 {
    DeviceBuffer<int8_t> q;
    DeviceBuffer<half_t> d;
    size_t d_shift;
    DeviceQ8(const HostQ8 &w, size_t d_shift_) : q(w.q), d(with_shift(w.d, d_shift_)), d_shift(d_shift_) {}
    WeightQ8 view() const { return WeightQ8{q.get(), d.get() + d_shift}; }
    static std::vector<half_t> with_shift(const std::vector<half_t> &v, size_t shift) {
        std::vector<half_t> out(shift, 0);
        out.insert(out.end(), v.begin(), v.end());
        return out;
    }
};

// ---- GEMM problems ----------------------------------------------------------------------------------

enum class Kind { F16None, F16Bias, F16BiasRelu, F32Beta0, F32Beta0Bias, F32Beta1, F32Beta1Bias };
const Kind kAllKinds[] = {Kind::F16None,      Kind::F16Bias,  Kind::F16BiasRelu, Kind::F32Beta0,
                          Kind::F32Beta0Bias, Kind::F32Beta1, Kind::F32Beta1Bias};

const char *kind_name(Kind k) {
    switch (k) {
        case Kind::F16None: return "f16 none";
        case Kind::F16Bias: return "f16 bias";
        case Kind::F16BiasRelu: return "f16 bias+relu";
        case Kind::F32Beta0: return "f32 beta0";
        case Kind::F32Beta0Bias: return "f32 beta0 bias";
        case Kind::F32Beta1: return "f32 beta1";
        case Kind::F32Beta1Bias: return "f32 beta1 bias";
    }
    return "?";
}

struct Case {
    int rows, n_in, n_out;
    Kind kind;
};

// One problem: the inputs (x, y, d shifted by `shift` elements where misaligned), the reference and tolerances.
struct Problem {
    Case c;
    bool f16_out = false, has_bias = false, relu = false, misalign = false;
    float beta = 0.0f;
    HostQ8 w;
    std::vector<half_t> x16, bias16;  // x16 [rows, n_in]
    std::vector<float> bias32, y0;    // y0 [rows, n_out]: the old y for beta != 0
    std::vector<double> ref, tol;     // [rows, n_out]
};

// The reference and tolerances of p on weights w_ref (exact or fp16-rounded), in double (the rules at the top).
void compute_reference(Problem &p, const std::vector<float> &w_ref) {
    const int rows = p.c.rows, n_in = p.c.n_in, n_out = p.c.n_out;
    p.ref.assign((size_t)rows * n_out, 0.0);
    p.tol.assign((size_t)rows * n_out, 0.0);
    std::vector<float> bias(n_out, 0.0f);
    if (p.has_bias) {
        for (int o = 0; o < n_out; ++o) bias[o] = p.f16_out ? f16_to_f32(p.bias16[o]) : p.bias32[o];
    }
    std::vector<double> x(p.x16.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = f16_to_f32(p.x16[i]);
    parallel_for((size_t)n_out, [&](size_t begin, size_t end) {
        for (size_t o = begin; o < end; ++o) {
            const float *wr = w_ref.data() + o * n_in;
            for (int r = 0; r < rows; ++r) {
                const double *xr = x.data() + (size_t)r * n_in;
                double sum = 0.0, terms = 0.0;
                for (int k = 0; k < n_in; ++k) {
                    const double t = xr[k] * (double)wr[k];
                    sum += t;
                    terms += std::fabs(t);
                }
                const double product = sum;
                double v = sum + bias[o];
                terms += std::fabs((double)bias[o]);
                if (p.relu) v = std::max(v, 0.0);
                const size_t i = (size_t)r * n_out + o;
                if (p.beta != 0.0f) {
                    v += (double)p.beta * p.y0[i];
                    terms += std::fabs((double)p.beta * p.y0[i]);
                }
                double tol = 1e-4 * terms;
                if (p.f16_out) {
                    const double e_fp16 =
                        std::ldexp(1.0, -11) * (std::fabs(v) + (p.has_bias ? std::fabs(product) : 0.0));
                    tol += 2.0 * e_fp16 + std::ldexp(1.0, -24);
                }
                p.ref[i] = v;
                p.tol[i] = tol;
            }
        }
    });
}

// A problem with random inputs; `big`: the weight holds the out-of-fp16-range block (GEMV problems only: the
// rows > 16 path turns it into inf, as it must), whose x column is set to kBigX. The reference multiplies the
// exact weight (round_weight false) or the fp16-rounded one.
Problem make_problem(const Case &c, bool big, bool round_weight, bool misalign, std::mt19937 &rng) {
    Problem p;
    p.c = c;
    p.misalign = misalign;
    p.f16_out = c.kind == Kind::F16None || c.kind == Kind::F16Bias || c.kind == Kind::F16BiasRelu;
    p.has_bias = c.kind == Kind::F16Bias || c.kind == Kind::F16BiasRelu || c.kind == Kind::F32Beta0Bias ||
                 c.kind == Kind::F32Beta1Bias;
    p.relu = c.kind == Kind::F16BiasRelu;
    p.beta = (c.kind == Kind::F32Beta1 || c.kind == Kind::F32Beta1Bias) ? 1.0f : 0.0f;
    p.w = make_q8(c.n_out, c.n_in, big, rng);
    std::uniform_real_distribution<float> xdist(-1.0f, 1.0f), bdist(-0.5f, 0.5f), ydist(-4.0f, 4.0f);
    p.x16.resize((size_t)c.rows * c.n_in);
    for (half_t &v : p.x16) v = f32_to_f16(xdist(rng));
    if (big) {
        for (int r = 0; r < c.rows; ++r) p.x16[(size_t)r * c.n_in + p.w.big_k] = f32_to_f16(kBigX);
    }
    p.bias16.resize(c.n_out);
    p.bias32.resize(c.n_out);
    for (half_t &v : p.bias16) v = f32_to_f16(bdist(rng));
    for (float &v : p.bias32) v = bdist(rng);
    p.y0.resize((size_t)c.rows * c.n_out);
    for (float &v : p.y0) v = ydist(rng);
    compute_reference(p, dequantized(p.w, round_weight));
    return p;
}

// Runs the problem's call on the GPU (y prefilled: NaN for fp16 and for fp32 with beta 0, y0 for beta != 0);
// returns y [rows, n_out] as double.
std::vector<double> run_problem(GemmHandle *handle, const Problem &p, cudaStream_t stream) {
    const int rows = p.c.rows, n_in = p.c.n_in, n_out = p.c.n_out;
    const size_t shift = p.misalign ? 1 : 0;
    DeviceQ8 w(p.w, shift);
    std::vector<half_t> x_host(shift, 0);
    x_host.insert(x_host.end(), p.x16.begin(), p.x16.end());
    DeviceBuffer<half_t> d_x(x_host), d_bias16(p.bias16);
    DeviceBuffer<float> d_bias32(p.bias32);
    const size_t scratch_bytes = seaopt::cuda::gemm_q8_scratch_bytes(rows, n_in, n_out);
    EXPECT_EQ(scratch_bytes, rows <= 16 ? 0u : (size_t)n_out * n_in * sizeof(half_t));
    DeviceBuffer<half_t> d_scratch(scratch_bytes / sizeof(half_t));
    half_t *scratch = scratch_bytes ? d_scratch.get() : nullptr;
    std::vector<double> got((size_t)rows * n_out);
    if (p.f16_out) {
        const Epilogue epilogue = p.c.kind == Kind::F16None ? Epilogue::None
                                  : p.relu                  ? Epilogue::BiasRelu
                                                            : Epilogue::Bias;
        DeviceBuffer<half_t> d_y(std::vector<half_t>((size_t)rows * n_out + shift, 0x7E00u));  // NaN
        seaopt::cuda::gemm_q8_f16(handle, d_y.get() + shift, d_x.get() + shift, w.view(),
                                  p.has_bias ? d_bias16.get() : nullptr, epilogue, rows, n_in, n_out, scratch, stream);
        cuda_ok(cudaStreamSynchronize(stream), "gemm_q8_f16");
        const std::vector<half_t> y = d_y.download();
        for (size_t i = 0; i < got.size(); ++i) got[i] = f16_to_f32(y[i + shift]);
    } else {
        std::vector<float> y_init(shift, 0.0f);
        if (p.beta == 0.0f) {
            y_init.resize(shift + (size_t)rows * n_out, std::numeric_limits<float>::quiet_NaN());  // must not leak
        } else {
            y_init.insert(y_init.end(), p.y0.begin(), p.y0.end());
        }
        DeviceBuffer<float> d_y(y_init);
        seaopt::cuda::gemm_q8_to_f32(handle, d_y.get() + shift, d_x.get() + shift, w.view(),
                                     p.has_bias ? d_bias32.get() : nullptr, p.beta, rows, n_in, n_out, scratch, stream);
        cuda_ok(cudaStreamSynchronize(stream), "gemm_q8_to_f32");
        const std::vector<float> y = d_y.download();
        for (size_t i = 0; i < got.size(); ++i) got[i] = y[i + shift];
    }
    return got;
}

void check_result(const Problem &p, const std::vector<double> &got, const char *note) {
    const int rows = p.c.rows, n_out = p.c.n_out;
    double max_err = 0.0, max_ratio = 0.0;
    size_t n_bad = 0, first_bad = 0;
    for (size_t i = 0; i < (size_t)rows * n_out; ++i) {
        const double err = std::fabs(got[i] - p.ref[i]);
        max_err = std::max(max_err, err);
        max_ratio = std::max(max_ratio, err / p.tol[i]);
        if (!(err <= p.tol[i]) && n_bad++ == 0) first_bad = i;  // NaN counts as bad
    }
    std::printf("q8 %-15s rows=%3d n_in=%5d n_out=%5d%s%s%s: max|err| %.3g, max err/tol %.3f%s\n", kind_name(p.c.kind),
                rows, p.c.n_in, n_out, p.misalign ? " (x, y, d misaligned)" : "",
                p.w.big_row >= 0 ? " (q*d past fp16)" : "", note, max_err, max_ratio, n_bad ? "  FAIL" : "");
    EXPECT_EQ(n_bad, 0u) << kind_name(p.c.kind) << " rows " << rows << " n_in " << p.c.n_in << " n_out " << n_out
                         << note << ": " << n_bad << " bad, first at " << first_bad << " (row " << first_bad / n_out
                         << ", col " << first_bad % n_out << "): got " << got[first_bad] << ", expected "
                         << p.ref[first_bad] << " ± " << p.tol[first_bad];
}

// A GEMV case (rows <= 16): exact weights, with the out-of-fp16-range block.
void check_gemv(GemmHandle *handle, const Case &c, cudaStream_t stream, std::mt19937 &rng, bool misalign = false) {
    const Problem p = make_problem(c, /*big=*/true, /*round_weight=*/false, misalign, rng);
    check_result(p, run_problem(handle, p, stream), " (GEMV)");
}

// A rows > 16 case: against the fp16-rounded weights (dequantize + cuBLASLt).
void check_dequant_path(GemmHandle *handle, const Case &c, cudaStream_t stream, std::mt19937 &rng) {
    const Problem p = make_problem(c, /*big=*/false, /*round_weight=*/true, /*misalign=*/false, rng);
    check_result(p, run_problem(handle, p, stream), " (dequantize + cuBLASLt)");
}

// ---- tests ------------------------------------------------------------------------------------------

// dequantize_q8_f16 must give exactly the host's f32_to_f16(q·d) (q·d exact in fp32, one rounding), including
// zero scales and a product past fp16's range (inf).
TEST_F(GpuQ8, DequantizeIsBitwiseTheHostRounding) {
    std::mt19937 rng(101);
    struct Shape {
        int n_out, n_in;
    };
    for (const Shape s : {Shape{1, 32}, Shape{7, 96}, Shape{2048, 2048}, Shape{3, 8192}, Shape{1000, 2080}}) {
        const HostQ8 w = make_q8(s.n_out, s.n_in, /*big=*/true, rng);
        DeviceQ8 dw(w, 0);
        DeviceBuffer<half_t> out((size_t)s.n_out * s.n_in);
        seaopt::cuda::dequantize_q8_f16(out.get(), dw.view(), s.n_out, s.n_in, stream_);
        sync();
        const std::vector<half_t> got = out.download();
        std::vector<half_t> want(got.size());
        size_t n_inf = 0;
        for (size_t o = 0; o < (size_t)s.n_out; ++o) {
            for (size_t k = 0; k < (size_t)s.n_in; ++k) {
                want[o * s.n_in + k] = f32_to_f16(w.weight(o, k));
                if ((want[o * s.n_in + k] & 0x7FFFu) == 0x7C00u) ++n_inf;
            }
        }
        const size_t diff = count_bitwise_differences(got.data(), want.data(), got.size(), sizeof(half_t));
        std::printf("dequantize_q8_f16 %5d x %5d: %zu of %zu values differ bitwise (%zu inf expected)\n", s.n_out,
                    s.n_in, diff, got.size(), n_inf);
        EXPECT_EQ(diff, 0u);
        EXPECT_EQ(n_inf, 1u);
    }
}

// Every epilogue on small and odd shapes through the GEMV (rows 1, 2, 3, 8): n_in of one block (32) and of three
// (96: the last 64-wide chunk half empty), n_out 1, 7 and 40 (partial 16-output tiles); and x, y and d one element
// off their alignment (x then read with 2-byte loads).
TEST_F(GpuQ8, GemvAllEpiloguesOnSmallShapes) {
    ASSERT_TRUE(seaopt::cuda::gemm_has_gemv(handle_)) << "the int8 GEMV needs sm_80";
    std::mt19937 rng(103);
    struct Shape {
        int n_in, n_out;
    };
    for (const int rows : {1, 2, 3, 8}) {
        for (const Shape s : {Shape{32, 1}, Shape{96, 7}, Shape{96, 40}, Shape{32, 7}}) {
            for (const Kind k : kAllKinds) check_gemv(handle_, {rows, s.n_in, s.n_out, k}, stream_, rng);
        }
        for (const Kind k : {Kind::F16BiasRelu, Kind::F32Beta1Bias, Kind::F32Beta0}) {
            check_gemv(handle_, {rows, 96, 7, k}, stream_, rng, /*misalign=*/true);
            check_gemv(handle_, {rows, 2048, 40, k}, stream_, rng, /*misalign=*/true);
        }
    }
}

// OPT-1.3B's decode shapes through the GEMV: qkv 2048 -> 6144, out-proj 2048 -> 2048 (into the fp32 residual), fc1
// 2048 -> 8192, fc2 8192 -> 2048 (into the residual), at rows 1 and 8 (and 2, 3 for qkv and fc2), plus the other
// epilogues at 2048 -> 2048 and n_in 8192 with few outputs.
TEST_F(GpuQ8, GemvAtOpt13bDecodeShapes) {
    ASSERT_TRUE(seaopt::cuda::gemm_has_gemv(handle_)) << "the int8 GEMV needs sm_80";
    std::mt19937 rng(107);
    std::vector<Case> cases;
    for (const int rows : {1, 8}) {
        cases.push_back({rows, 2048, 6144, Kind::F16Bias});
        cases.push_back({rows, 2048, 2048, Kind::F32Beta1Bias});
        cases.push_back({rows, 2048, 8192, Kind::F16BiasRelu});
        cases.push_back({rows, 8192, 2048, Kind::F32Beta1Bias});
        cases.push_back({rows, 2048, 2048, Kind::F16None});
        cases.push_back({rows, 2048, 2048, Kind::F32Beta0});
        cases.push_back({rows, 2048, 2048, Kind::F32Beta0Bias});
        cases.push_back({rows, 2048, 2048, Kind::F32Beta1});
        cases.push_back({rows, 8192, 7, Kind::F32Beta1Bias});
        cases.push_back({rows, 8192, 1, Kind::F16BiasRelu});
    }
    for (const int rows : {2, 3}) {
        cases.push_back({rows, 2048, 6144, Kind::F16Bias});
        cases.push_back({rows, 8192, 2048, Kind::F32Beta1Bias});
    }
    // 9 to 16 rows: two passes of the GEMV (8 rows, then the rest), each on its own rows of x and y.
    for (const int rows : {9, 13, 16}) {
        cases.push_back({rows, 2048, 6144, Kind::F16Bias});
        cases.push_back({rows, 2048, 2048, Kind::F32Beta1Bias});
        cases.push_back({rows, 2048, 8192, Kind::F16BiasRelu});
        cases.push_back({rows, 8192, 2048, Kind::F32Beta0Bias});
        cases.push_back({rows, 96, 7, Kind::F16None});
    }
    for (const Case &c : cases) check_gemv(handle_, c, stream_, rng);
}

// rows > 16: dequantize_q8_f16 into the scratch, then cuBLASLt; against the fp16-rounded weights. Every epilogue at
// rows 17 on a small shape, the OPT-1.3B shapes at rows 17 and 64.
TEST_F(GpuQ8, DequantizePathAtRows17And64) {
    std::mt19937 rng(109);
    for (const Kind k : kAllKinds) check_dequant_path(handle_, {17, 96, 7, k}, stream_, rng);
    for (const int rows : {17, 64}) {
        check_dequant_path(handle_, {rows, 2048, 6144, Kind::F16Bias}, stream_, rng);
        check_dequant_path(handle_, {rows, 2048, 2048, Kind::F32Beta1Bias}, stream_, rng);
        check_dequant_path(handle_, {rows, 2048, 8192, Kind::F16BiasRelu}, stream_, rng);
        check_dequant_path(handle_, {rows, 8192, 2048, Kind::F32Beta1Bias}, stream_, rng);
    }
    check_dequant_path(handle_, {64, 2048, 2048, Kind::F32Beta0}, stream_, rng);
    check_dequant_path(handle_, {64, 32, 1, Kind::F16None}, stream_, rng);
}

// The GEMV never rounds the weight: a row whose only non-zero block is q = 127 at scale 520 (66040, inf in fp16)
// must give 66040 · 0.25 (+ bias) in both output types, at rows 1 and 8.
TEST_F(GpuQ8, GemvDoesNotRoundTheWeightToFp16) {
    ASSERT_TRUE(seaopt::cuda::gemm_has_gemv(handle_)) << "the int8 GEMV needs sm_80";
    std::mt19937 rng(113);
    for (const int rows : {1, 8}) {
        for (const Kind k : {Kind::F16Bias, Kind::F32Beta0}) {
            Problem p = make_problem({rows, 2048, 16, k}, /*big=*/true, /*round_weight=*/false, false, rng);
            const int nb = 2048 / kBlock, o = p.w.big_row;
            for (int b = 0; b < nb; ++b) {  // the big block alone in its row
                if (b != p.w.big_k / kBlock) p.w.d[(size_t)o * nb + b] = f32_to_f16(0.0f);
            }
            compute_reference(p, dequantized(p.w, false));
            const std::vector<double> got = run_problem(handle_, p, stream_);
            for (int r = 0; r < rows; ++r) {
                const size_t i = (size_t)r * 16 + o;
                std::printf("q8 %s rows=%d: the 66040-weight output, row %d: %.6g (reference %.6g)\n", kind_name(k),
                            rows, r, got[i], p.ref[i]);
                EXPECT_TRUE(std::isfinite(got[i]));
                EXPECT_NEAR(got[i], p.ref[i], p.tol[i]);
            }
            check_result(p, got, " (GEMV)");
        }
    }
}

// The same GEMV call twice gives the same bits; so does the call captured in a CUDA graph (replayed twice); and a
// chain of GEMVs that each read the one before (qkv-like, out-proj into the residual, an fp16 copy of it, fc1, fc2
// into the residual) gives the same bits with programmatic dependent launch on and off, plain and captured (a read
// before the device-side wait would race).
TEST_F(GpuQ8, GemvIsDeterministicCapturableAndPdlSafe) {
    using namespace seaopt::cuda;
    ASSERT_TRUE(gemm_has_gemv(handle_)) << "the int8 GEMV needs sm_80";
    struct Restore {  // the process-wide PDL setting as it was
        bool was = programmatic_launch_enabled();
        ~Restore() { set_programmatic_launch(was); }
    } restore;
    std::mt19937 rng(127);
    for (const int rows : {1, 8}) {
        const int C = 2048, F = 8192;
        const HostQ8 h_qkv = make_q8(C, C, false, rng), h_o = make_q8(C, C, false, rng);
        const HostQ8 h_up = make_q8(F, C, false, rng), h_down = make_q8(C, F, false, rng);
        DeviceQ8 qkv(h_qkv, 0), o(h_o, 0), up(h_up, 0), down(h_down, 0);
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        std::vector<half_t> x0((size_t)rows * C);
        for (half_t &v : x0) v = f32_to_f16(dist(rng));
        std::vector<float> r0((size_t)rows * C), b32(C);
        for (float &v : r0) v = 4.0f * dist(rng);
        for (float &v : b32) v = 0.5f * dist(rng);
        std::vector<half_t> b16(F);
        for (half_t &v : b16) v = f32_to_f16(0.5f * dist(rng));
        DeviceBuffer<half_t> d_x(x0), d_b16(b16), d_h((size_t)rows * C), d_x2((size_t)rows * C), d_f((size_t)rows * F);
        DeviceBuffer<float> d_r(r0), d_b32(b32);

        // One call, twice: the same bits.
        auto one_call = [&] {
            gemm_q8_f16(handle_, d_h.get(), d_x.get(), qkv.view(), d_b16.get(), Epilogue::BiasRelu, rows, C, C, nullptr,
                        stream_);
            sync();
            return d_h.download();
        };
        const std::vector<half_t> first = one_call(), second = one_call();
        const size_t diff_twice = count_bitwise_differences(first.data(), second.data(), first.size(), 2);
        std::printf("q8 GEMV rows=%d: the same call twice: %zu of %zu values differ\n", rows, diff_twice, first.size());
        EXPECT_EQ(diff_twice, 0u);

        auto chain = [&] {
            gemm_q8_f16(handle_, d_h.get(), d_x.get(), qkv.view(), d_b16.get(), Epilogue::Bias, rows, C, C, nullptr,
                        stream_);
            gemm_q8_to_f32(handle_, d_r.get(), d_h.get(), o.view(), d_b32.get(), 1.0f, rows, C, C, nullptr, stream_);
            convert_f32_to_f16(d_x2.get(), d_r.get(), (size_t)rows * C, stream_);
            gemm_q8_f16(handle_, d_f.get(), d_x2.get(), up.view(), d_b16.get(), Epilogue::BiasRelu, rows, C, F, nullptr,
                        stream_);
            gemm_q8_to_f32(handle_, d_r.get(), d_f.get(), down.view(), d_b32.get(), 1.0f, rows, F, C, nullptr, stream_);
        };
        auto residual = [&] {
            sync();
            return d_r.download();
        };
        auto compare = [&](const std::vector<float> &a, const std::vector<float> &b, const char *what) {
            const size_t diff = count_bitwise_differences(a.data(), b.data(), a.size(), 4);
            std::printf("q8 GEMV chain rows=%d (%s, PDL %s): %zu of %zu residual values differ\n", rows, what,
                        programmatic_launch_enabled() ? "on" : "off or not sm_90", diff, a.size());
            EXPECT_EQ(diff, 0u) << what;
        };
        set_programmatic_launch(false);
        d_r.upload(r0);
        chain();
        const std::vector<float> step1 = residual();
        chain();
        const std::vector<float> step2 = residual();
        chain();  // a third step: the chain itself is deterministic
        const std::vector<float> step3 = residual();
        d_r.upload(r0);
        chain();
        chain();
        chain();
        compare(step3, residual(), "plain, PDL off, again");

        set_programmatic_launch(true);
        d_r.upload(r0);
        chain();
        compare(step1, residual(), "plain, step 1");
        chain();
        compare(step2, residual(), "plain, step 2");
        d_r.upload(r0);
        cudaGraphExec_t exec = capture_graph(stream_, chain);
        cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
        compare(step1, residual(), "CUDA graph, replay 1");
        cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
        compare(step2, residual(), "CUDA graph, replay 2");
        cudaGraphExecDestroy(exec);
    }
}

// Argument errors throw seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT); rows == 0 is a no-op.
TEST_F(GpuQ8, ArgumentErrors) {
    using namespace seaopt::cuda;
    const int n_in = 64, n_out = 16;
    DeviceBuffer<int8_t> q((size_t)n_out * n_in + 16);
    DeviceBuffer<half_t> d((size_t)n_out * n_in / kBlock), x((size_t)16 * n_in), y((size_t)16 * n_out), bias(n_out + 8);
    DeviceBuffer<half_t> scratch((size_t)n_out * n_in + 8);
    DeviceBuffer<float> y32((size_t)16 * n_out);
    const WeightQ8 w{q.get(), d.get()};
    const auto inval = SEAOPT_ERR_INVALID_ARGUMENT;
    auto f16 = [&](GemmHandle *h, WeightQ8 wt, int rows, int in, int out, const half_t *b, Epilogue e, half_t *s) {
        gemm_q8_f16(h, y.get(), x.get(), wt, b, e, rows, in, out, s, stream_);
    };
    expect_error([&] { f16(handle_, w, 1, 48, n_out, nullptr, Epilogue::None, nullptr); }, inval, "n_in % 32 != 0");
    expect_error([&] { f16(handle_, w, 17, 40, n_out, nullptr, Epilogue::None, scratch.get()); }, inval,
                 "n_in % 32 != 0, rows > 16");
    expect_error(
        [&] {
            f16(handle_, WeightQ8{nullptr, d.get()}, 1, n_in, n_out, nullptr, Epilogue::None, nullptr);
        },
        inval, "null q");
    expect_error(
        [&] {
            f16(handle_, WeightQ8{q.get(), nullptr}, 1, n_in, n_out, nullptr, Epilogue::None, nullptr);
        },
        inval, "null d");
    expect_error(
        [&] {
            f16(handle_, WeightQ8{q.get() + 8, d.get()}, 1, n_in, n_out, nullptr, Epilogue::None, nullptr);
        },
        inval, "q not 16-byte aligned");
    expect_error(
        [&] {
            const half_t *d_odd = reinterpret_cast<const half_t *>(reinterpret_cast<const char *>(d.get()) + 1);
            f16(handle_, WeightQ8{q.get(), d_odd}, 1, n_in, n_out, nullptr, Epilogue::None, nullptr);
        },
        inval, "d not 2-byte aligned");
    expect_error([&] { f16(handle_, w, 17, n_in, n_out, nullptr, Epilogue::None, nullptr); }, inval,
                 "rows > 16, null scratch");
    expect_error([&] { f16(handle_, w, 17, n_in, n_out, nullptr, Epilogue::None, scratch.get() + 1); }, inval,
                 "rows > 16, scratch not 16-byte aligned");
    expect_error([&] { f16(handle_, w, -1, n_in, n_out, nullptr, Epilogue::None, nullptr); }, inval, "rows < 0");
    expect_error([&] { f16(handle_, w, 1, n_in, 0, nullptr, Epilogue::None, nullptr); }, inval, "n_out == 0");
    expect_error([&] { f16(handle_, w, 1, 0, n_out, nullptr, Epilogue::None, nullptr); }, inval, "n_in == 0");
    expect_error([&] { f16(handle_, w, 1, n_in, n_out, nullptr, Epilogue::Bias, nullptr); }, inval, "missing bias");
    expect_error([&] { f16(handle_, w, 1, n_in, n_out, bias.get() + 1, Epilogue::Bias, nullptr); }, inval,
                 "bias not 16-byte aligned");
    expect_error([&] { f16(nullptr, w, 1, n_in, n_out, nullptr, Epilogue::None, nullptr); }, inval, "null handle");
    expect_error(
        [&] { gemm_q8_f16(handle_, nullptr, x.get(), w, nullptr, Epilogue::None, 1, n_in, n_out, nullptr, stream_); },
        inval, "null y");
    expect_error(
        [&] { gemm_q8_to_f32(handle_, y32.get(), nullptr, w, nullptr, 0.0f, 1, n_in, n_out, nullptr, stream_); }, inval,
        "gemm_q8_to_f32: null x");
    expect_error([&] { gemm_q8_to_f32(handle_, y32.get(), x.get(), w, nullptr, 1.0f, 1, 33, n_out, nullptr, stream_); },
                 inval, "gemm_q8_to_f32: n_in % 32 != 0");
    expect_error(
        [&] {
            gemm_q8_to_f32(handle_, y32.get(), x.get(), WeightQ8{nullptr, d.get()}, nullptr, 1.0f, 1, n_in, n_out,
                           nullptr, stream_);
        },
        inval, "gemm_q8_to_f32: null q");
    expect_error(
        [&] { gemm_q8_to_f32(handle_, y32.get(), x.get(), w, nullptr, 1.0f, 17, n_in, n_out, nullptr, stream_); },
        inval, "gemm_q8_to_f32: rows > 16, null scratch");
    expect_error([&] { dequantize_q8_f16(scratch.get(), w, n_out, 48, stream_); }, inval, "dequantize: n_in % 32 != 0");
    expect_error(
        [&] {
            dequantize_q8_f16(scratch.get(), WeightQ8{nullptr, d.get()}, n_out, n_in, stream_);
        },
        inval, "dequantize: null q");
    expect_error([&] { dequantize_q8_f16(nullptr, w, n_out, n_in, stream_); }, inval, "dequantize: null out");
    expect_error([&] { dequantize_q8_f16(scratch.get() + 1, w, n_out, n_in, stream_); }, inval,
                 "dequantize: out not 16-byte aligned");
    // rows == 0: nothing to do, nothing checked past the shapes.
    gemm_q8_f16(handle_, nullptr, nullptr, WeightQ8{}, nullptr, Epilogue::None, 0, n_in, n_out, nullptr, stream_);
    gemm_q8_to_f32(handle_, nullptr, nullptr, WeightQ8{}, nullptr, 0.0f, 0, n_in, n_out, nullptr, stream_);
    EXPECT_EQ(gemm_q8_scratch_bytes(8, 2048, 2048), 0u);
    EXPECT_EQ(gemm_q8_scratch_bytes(16, 2048, 6144), 0u);
    EXPECT_EQ(gemm_q8_scratch_bytes(17, 2048, 6144), (size_t)2048 * 6144 * 2);
    sync();
}

// Not a check (nothing asserted on speed): the time of 100 calls at OPT-1.3B's decode shapes, rows 1 and 8, of the
// int8 GEMV against the fp16 GEMV (gemm_f16 / gemm_f16_to_f32) on the same shape, and the read bandwidth each
// implies (int8: q and d; fp16: w). The calls cycle through copies of the weights that together exceed L2
// (>= 256 MiB), so they come from HBM, and run as one CUDA graph (with programmatic dependent launch where it is
// on), as the decode step does.
TEST_F(GpuQ8, GemvBandwidthReport) {
    using namespace seaopt::cuda;
    cudaDeviceProp prop{};
    int device = 0;
    cuda_ok(cudaGetDevice(&device), "cudaGetDevice");
    cuda_ok(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    struct Bench {
        int n_in, n_out;
        bool f16_out;
        const char *what;
    };
    const int n_calls = 100;
    for (const Bench b : {Bench{2048, 6144, true, "qkv f16 bias"}, Bench{2048, 2048, false, "out_proj f32 beta1"},
                          Bench{2048, 8192, true, "fc1 f16 bias+relu"}, Bench{8192, 2048, false, "fc2 f32 beta1"}}) {
        const size_t elems = (size_t)b.n_out * b.n_in;
        const size_t q8_bytes = elems + elems / kBlock * 2, f16_bytes = elems * 2;
        const size_t n_copies = std::max<size_t>(2, ((size_t)256 << 20) / q8_bytes + 1);
        const size_t n_copies16 = std::max<size_t>(2, ((size_t)256 << 20) / f16_bytes + 1);
        DeviceBuffer<int8_t> q(n_copies * elems);
        DeviceBuffer<half_t> d(n_copies * elems / kBlock), w16(n_copies16 * elems);
        DeviceBuffer<half_t> x((size_t)8 * b.n_in), y16((size_t)8 * b.n_out), bias16(b.n_out);
        DeviceBuffer<float> y32((size_t)8 * b.n_out), bias32(b.n_out);
        cuda_ok(cudaMemset(q.get(), 0x05, n_copies * elems), "cudaMemset q");
        cuda_ok(cudaMemset(d.get(), 0x20, d.size() * 2), "cudaMemset d");  // 0x2020: 0.0079
        cuda_ok(cudaMemset(w16.get(), 0x2C, w16.size() * 2), "cudaMemset w16");
        cuda_ok(cudaMemset(x.get(), 0x3C, x.size() * 2), "cudaMemset x");
        cuda_ok(cudaMemset(bias16.get(), 0, b.n_out * 2), "cudaMemset bias16");
        cuda_ok(cudaMemset(bias32.get(), 0, b.n_out * 4), "cudaMemset bias32");
        cuda_ok(cudaMemset(y32.get(), 0, y32.size() * 4), "cudaMemset y32");
        for (const int rows : {1, 8}) {
            for (const bool int8 : {true, false}) {
                auto call = [&](size_t i) {
                    if (int8) {
                        const WeightQ8 w{q.get() + (i % n_copies) * elems, d.get() + (i % n_copies) * (elems / kBlock)};
                        if (b.f16_out) {
                            gemm_q8_f16(handle_, y16.get(), x.get(), w, bias16.get(), Epilogue::BiasRelu, rows, b.n_in,
                                        b.n_out, nullptr, stream_);
                        } else {
                            gemm_q8_to_f32(handle_, y32.get(), x.get(), w, bias32.get(), 1.0f, rows, b.n_in, b.n_out,
                                           nullptr, stream_);
                        }
                    } else {
                        const half_t *w = w16.get() + (i % n_copies16) * elems;
                        if (b.f16_out) {
                            gemm_f16(handle_, y16.get(), x.get(), w, bias16.get(), Epilogue::BiasRelu, rows, b.n_in,
                                     b.n_out, stream_);
                        } else {
                            gemm_f16_to_f32(handle_, y32.get(), x.get(), w, bias32.get(), 1.0f, rows, b.n_in, b.n_out,
                                            stream_);
                        }
                    }
                };
                const size_t copies = int8 ? n_copies : n_copies16;
                for (size_t i = 0; i < copies; ++i) call(i);  // warm-up
                // Timed as one CUDA graph of n_calls calls (as decode runs): the GPU's time, not the host's launches.
                cudaGraphExec_t exec = capture_graph(stream_, [&] {
                    for (int i = 0; i < n_calls; ++i) call((size_t)i);
                });
                cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");  // warm-up
                cudaEvent_t start = nullptr, stop = nullptr;
                cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
                cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
                cuda_ok(cudaEventRecord(start, stream_), "cudaEventRecord");
                cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
                cuda_ok(cudaEventRecord(stop, stream_), "cudaEventRecord");
                sync();
                cudaGraphExecDestroy(exec);
                float ms = 0.0f;
                cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
                cudaEventDestroy(start);
                cudaEventDestroy(stop);
                const double us = 1e3 * ms / n_calls;
                const size_t bytes = int8 ? q8_bytes : f16_bytes;
                std::printf("q8 bench %s: %s rows=%d %s %d->%d: %.2f us/call, %.0f GB/s of weights (%.1f MiB)\n",
                            prop.name, int8 ? "int8 GEMV" : "fp16 GEMV", rows, b.what, b.n_in, b.n_out, us,
                            (double)bytes / (us * 1e-6) / 1e9, bytes / 1048576.0);
            }
        }
    }
}

// Not a check either: OPT-1.3B's decode layer at batch 1 and 8 as it runs on the GPU (LayerNorm, qkv, out-proj into
// the residual, LayerNorm, fc1, fc2 into the residual; attention left out), its matrices int8 (gemm_q8_*) or fp16
// (gemm_f16*), over enough layers' weights to exceed L2, captured in one CUDA graph: the time per layer.
TEST_F(GpuQ8, DecodeLayerTimeReport) {
    using namespace seaopt::cuda;
    cudaDeviceProp prop{};
    int device = 0;
    cuda_ok(cudaGetDevice(&device), "cudaGetDevice");
    cuda_ok(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    const int C = 2048, F = 8192, n_layers = 6, max_rows = 8;  // 6 layers: 306 MiB int8, 576 MiB fp16
    const size_t mats[4][2] = {
        {(size_t)3 * C, (size_t)C}, {(size_t)C, (size_t)C}, {(size_t)F, (size_t)C}, {(size_t)C, (size_t)F}};
    std::vector<std::unique_ptr<DeviceBuffer<int8_t>>> q;
    std::vector<std::unique_ptr<DeviceBuffer<half_t>>> d, w16;
    for (int l = 0; l < n_layers; ++l) {
        for (const auto &m : mats) {
            q.push_back(std::make_unique<DeviceBuffer<int8_t>>(m[0] * m[1]));
            d.push_back(std::make_unique<DeviceBuffer<half_t>>(m[0] * m[1] / kBlock));
            w16.push_back(std::make_unique<DeviceBuffer<half_t>>(m[0] * m[1]));
            cuda_ok(cudaMemset(q.back()->get(), 0x03, m[0] * m[1]), "cudaMemset");
            cuda_ok(cudaMemset(d.back()->get(), 0x10, m[0] * m[1] / kBlock * 2), "cudaMemset");  // 0x1010: ~5e-4
            cuda_ok(cudaMemset(w16.back()->get(), 0x10, m[0] * m[1] * 2), "cudaMemset");
        }
    }
    DeviceBuffer<float> resid((size_t)max_rows * C), b32(F);
    DeviceBuffer<half_t> h16((size_t)max_rows * C), qkv((size_t)max_rows * 3 * C), ff((size_t)max_rows * F), b16(F);
    DeviceBuffer<half_t> ln_w(C), ln_b(C);
    cuda_ok(cudaMemset(resid.get(), 0, resid.size() * 4), "cudaMemset");
    cuda_ok(cudaMemset(b32.get(), 0, b32.size() * 4), "cudaMemset");
    cuda_ok(cudaMemset(b16.get(), 0, b16.size() * 2), "cudaMemset");
    cuda_ok(cudaMemset(ln_w.get(), 0x3C, C * 2), "cudaMemset");  // ~1.06
    cuda_ok(cudaMemset(ln_b.get(), 0, C * 2), "cudaMemset");
    for (const int rows : {1, 8}) {
        for (const bool int8 : {true, false}) {
            auto layer = [&](int l) {
                auto qw = [&](int m) { return WeightQ8{q[(size_t)(4 * l + m)]->get(), d[(size_t)(4 * l + m)]->get()}; };
                auto fw = [&](int m) { return w16[(size_t)(4 * l + m)]->get(); };
                layernorm_forward(h16.get(), nullptr, resid.get(), ln_w.get(), ln_b.get(), rows, C, 1e-5f, stream_);
                if (int8) {
                    gemm_q8_f16(handle_, qkv.get(), h16.get(), qw(0), b16.get(), Epilogue::Bias, rows, C, 3 * C,
                                nullptr, stream_);
                    gemm_q8_to_f32(handle_, resid.get(), h16.get(), qw(1), b32.get(), 1.0f, rows, C, C, nullptr,
                                   stream_);
                } else {
                    gemm_f16(handle_, qkv.get(), h16.get(), fw(0), b16.get(), Epilogue::Bias, rows, C, 3 * C, stream_);
                    gemm_f16_to_f32(handle_, resid.get(), h16.get(), fw(1), b32.get(), 1.0f, rows, C, C, stream_);
                }
                layernorm_forward(h16.get(), nullptr, resid.get(), ln_w.get(), ln_b.get(), rows, C, 1e-5f, stream_);
                if (int8) {
                    gemm_q8_f16(handle_, ff.get(), h16.get(), qw(2), b16.get(), Epilogue::BiasRelu, rows, C, F, nullptr,
                                stream_);
                    gemm_q8_to_f32(handle_, resid.get(), ff.get(), qw(3), b32.get(), 1.0f, rows, F, C, nullptr,
                                   stream_);
                } else {
                    gemm_f16(handle_, ff.get(), h16.get(), fw(2), b16.get(), Epilogue::BiasRelu, rows, C, F, stream_);
                    gemm_f16_to_f32(handle_, resid.get(), ff.get(), fw(3), b32.get(), 1.0f, rows, F, C, stream_);
                }
            };
            for (int l = 0; l < n_layers; ++l) layer(l);  // warm-up (plans, configs)
            cudaGraphExec_t exec = capture_graph(stream_, [&] {
                for (int rep = 0; rep < 4; ++rep) {
                    for (int l = 0; l < n_layers; ++l) layer(l);
                }
            });
            cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
            cudaEvent_t start = nullptr, stop = nullptr;
            cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
            cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
            cuda_ok(cudaEventRecord(start, stream_), "cudaEventRecord");
            cuda_ok(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
            cuda_ok(cudaEventRecord(stop, stream_), "cudaEventRecord");
            sync();
            cudaGraphExecDestroy(exec);
            float ms = 0.0f;
            cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
            cudaEventDestroy(start);
            cudaEventDestroy(stop);
            std::printf("q8 layer %s: %s weights rows=%d: %.2f us per decode layer (LayerNorms + 4 GEMVs, PDL %s)\n",
                        prop.name, int8 ? "int8" : "fp16", rows, 1e3 * ms / (4 * n_layers),
                        programmatic_launch_enabled() ? "on" : "off");
        }
    }
}

}  // namespace
