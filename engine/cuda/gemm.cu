// cuBLASLt wrapper for the Linear layers (interface and conventions: engine/cuda/gemm.h).
//
// Row-major to column-major: cuBLASLt is column-major, and a row-major [r, c] matrix is the same
// memory as a column-major [c, r] one. So we compute yᵀ = w · xᵀ in column-major terms:
//   D = yᵀ: [n_out, rows], ld n_out        (row-major y [rows, n_out])
//   A = w stored [n_in, n_out], ld n_in, op T  -> op(A) = w [n_out, n_in]   (row-major w [n_out, n_in])
//   B = xᵀ stored [n_in, rows], ld n_in, op N                               (row-major x [rows, n_in])
// and the bias vector, of length D's row count n_out, is broadcast along D's columns (the rows of y):
// one bias per output feature, as a Linear layer wants.
//
// Skinny GEMMs (rows <= 8, batch-1..8 decode) do not go to cuBLASLt but to our own GEMV kernels
// below (see "GEMV path"): they are bound by the read of w, and cuBLASLt's tiles leave most SMs idle.
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "engine/cuda/common.cuh"
#include "engine/cuda/gemm.h"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda {

// Not in an anonymous namespace: GemmHandle (declared in gemm.h) holds these.
namespace gemm_internal {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // 32 MiB, NVIDIA's recommendation for Hopper
constexpr uintptr_t kBiasAlignment = 16;

void check_cublas(cublasStatus_t status, const char *what, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        throw Error(SEAOPT_ERR_DEVICE, std::string(what) + " failed: " + cublasLtGetStatusName(status) + " (" +
                                           cublasLtGetStatusString(status) + ") at " + source_location(file, line));
    }
}
#define SEAOPT_CUBLAS_CHECK(expr) ::seaopt::cuda::gemm_internal::check_cublas((expr), #expr, __FILE__, __LINE__)

// The largest power of two, at most 256 (cuBLASLt's default assumption), dividing the address. The
// heuristic is told these alignments so it never picks a kernel that needs more; they are part of
// the cache key, so a less aligned pointer later gets its own (suitable) algorithm.
uint32_t pointer_alignment(const void *p) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(p);
    uint32_t alignment = 256;
    while (alignment > 1 && address % alignment != 0) alignment >>= 1;
    return alignment;
}

enum class OutputType { F16, F32 };

struct PlanKey {
    OutputType output;
    Epilogue epilogue;
    int rows, n_in, n_out;
    uint32_t align_x, align_w, align_y, align_bias;  // align_bias is 0 without a bias

    auto as_tuple() const {
        return std::tie(output, epilogue, rows, n_in, n_out, align_x, align_w, align_y, align_bias);
    }
    bool operator<(const PlanKey &other) const { return as_tuple() < other.as_tuple(); }
};

// The descriptors and the chosen algorithm of one GEMM shape. Only the bias pointer changes
// between calls; it is set on `desc` before each matmul.
struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w_layout = nullptr;  // A
    cublasLtMatrixLayout_t x_layout = nullptr;  // B
    cublasLtMatrixLayout_t y_layout = nullptr;  // C and D (same memory: C = D = y)
    cublasLtMatmulAlgo_t algo{};

    Plan() = default;
    Plan(const Plan &) = delete;
    Plan &operator=(const Plan &) = delete;
    ~Plan() {  // descriptor destruction only frees host memory; nothing useful to report
        if (y_layout) cublasLtMatrixLayoutDestroy(y_layout);
        if (x_layout) cublasLtMatrixLayoutDestroy(x_layout);
        if (w_layout) cublasLtMatrixLayoutDestroy(w_layout);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
};

// Owns a matmul preference for the duration of a heuristic query.
struct Preference {
    cublasLtMatmulPreference_t pref = nullptr;
    Preference() { SEAOPT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref)); }
    Preference(const Preference &) = delete;
    Preference &operator=(const Preference &) = delete;
    ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
    void set_u32(cublasLtMatmulPreferenceAttributes_t attr, uint32_t value) {
        SEAOPT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
    }
    void set_u64(cublasLtMatmulPreferenceAttributes_t attr, uint64_t value) {
        SEAOPT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
    }
};

cublasLtEpilogue_t to_cublaslt(Epilogue epilogue) {
    switch (epilogue) {
        case Epilogue::None: return CUBLASLT_EPILOGUE_DEFAULT;
        case Epilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
        case Epilogue::BiasRelu: return CUBLASLT_EPILOGUE_RELU_BIAS;
    }
    throw Error(SEAOPT_ERR_INVALID_ARGUMENT, "gemm: unknown epilogue");
}

void set_bias_pointer(cublasLtMatmulDesc_t desc, const void *bias) {
    SEAOPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
}

std::string describe(const PlanKey &key) {
    static const char *epilogue_names[] = {"none", "bias", "bias+relu"};
    return std::string(key.output == OutputType::F16 ? "fp16" : "fp32") + " output, epilogue " +
           epilogue_names[(int)key.epilogue] + ", rows " + std::to_string(key.rows) + ", n_in " +
           std::to_string(key.n_in) + ", n_out " + std::to_string(key.n_out) + ", alignments x/w/y/bias " +
           std::to_string(key.align_x) + "/" + std::to_string(key.align_w) + "/" + std::to_string(key.align_y) + "/" +
           std::to_string(key.align_bias);
}

std::unique_ptr<Plan> make_plan(cublasLtHandle_t lt, const PlanKey &key, const void *bias) {
    auto plan = std::make_unique<Plan>();
    const cudaDataType_t out_type = key.output == OutputType::F16 ? CUDA_R_16F : CUDA_R_32F;

    // fp32 accumulation and fp32 alpha/beta whatever the output type.
    SEAOPT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_w = CUBLAS_OP_T, op_x = CUBLAS_OP_N;
    SEAOPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_w, sizeof(op_w)));
    SEAOPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_x, sizeof(op_x)));
    const cublasLtEpilogue_t epilogue = to_cublaslt(key.epilogue);
    SEAOPT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (key.epilogue != Epilogue::None) {
        // For fp16 and fp32 outputs cuBLASLt wants the bias in D's type; said explicitly here.
        const int32_t bias_type = out_type;
        SEAOPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                           sizeof(bias_type)));
        set_bias_pointer(plan->desc, bias);  // cublasLt.h: the heuristic derives the expected alignment from it
    }

    // Column-major views of the row-major matrices (see the top of this file).
    SEAOPT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->w_layout, CUDA_R_16F, key.n_in, key.n_out, key.n_in));
    SEAOPT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->x_layout, CUDA_R_16F, key.n_in, key.rows, key.n_in));
    SEAOPT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->y_layout, out_type, key.n_out, key.rows, key.n_out));

    Preference preference;
    preference.set_u64(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, kWorkspaceBytes);
    preference.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w);
    preference.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
    preference.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y);
    preference.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y);
    if (key.output == OutputType::F16) {
        // Split-K partial sums must meet in fp32, not in the fp16 output type (the INPLACE and
        // OUTPUT_TYPE schemes would round each partial to fp16). Algorithms without split-K pass too.
        preference.set_u32(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE);
    }

    cublasLtMatmulHeuristicResult_t result{};
    int n_results = 0;
    const cublasStatus_t status =
        cublasLtMatmulAlgoGetHeuristic(lt, plan->desc, plan->w_layout, plan->x_layout, plan->y_layout, plan->y_layout,
                                       preference.pref, 1, &result, &n_results);
    if (status != CUBLAS_STATUS_NOT_SUPPORTED) SEAOPT_CUBLAS_CHECK(status);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED || n_results == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
        throw Error(SEAOPT_ERR_DEVICE, "gemm: cuBLASLt has no algorithm for " + describe(key));
    }
    plan->algo = result.algo;
    return plan;
}

// ---- GEMV path (rows <= kGemvMaxRows) ------------------------------------------------------------
//
// y[r, o] = Σ_i x[r, i]·w[o, i] for at most 8 rows: the time is the read of w (n_out·n_in fp16), so
// the kernels stream w once, with 16-byte loads, from enough warps to fill every SM.
//
// gemv_mma_kernel (w and x 16-byte aligned, n_in % 8 == 0): a block owns 16 outputs o and its
// warps split n_in. Each warp multiplies with the tensor cores, mma.m16n8k16 (fp16 in, fp32
// accumulate): A = 16 rows of w (M = outputs), B = xᵀ (N = 8 rows of x; columns >= rows are junk
// that is never stored), over "chunks" of 32 k. Lane (g = lane / 4, t = lane % 4) loads 8 halves
// (16 bytes) at k = chunk·32 + 8t of w rows o0+g and o0+g+8 and of x row g, which is one chunk's
// share of two mmas. The mma's k order is not the memory order, which does not matter for a dot
// product as long as A and B use the same one: PTX's fragments give lane (g, t) the A elements
// (row g and g+8, cols 2t, 2t+1, 2t+8, 2t+9) and the B elements (rows 2t, 2t+1, 2t+8, 2t+9, col g),
// so mma-k 2t+j <-> memory k 8t+j and mma-k 2t+8+j <-> 8t+2+j (j = 0, 1) in the first mma, 8t+4..7
// in the second, for A and B alike: every memory k of the chunk is used exactly once. The k slots
// past n_in read as zero in both w and x (0·0, never 0·NaN). The warps' fp32 partial sums meet in
// shared memory in a fixed order (deterministic), and warp 0 applies the epilogue.
//
// Bytes in flight (what a memory-bound kernel lives on; an H100 wants roughly 32-64 KB per SM to
// cover HBM latency): a warp issues the loads of 4 chunks (16 rows x 128 halves = 4 KB of w)
// before its mmas, so what matters is the number of warps per SM, which the launcher sizes to
// about kGemvTargetWarpsPerSm (32: with ~64 registers a thread, as many as an SM holds) by
// splitting n_in over more warps of a block. OPT-1.3B batch 1 on 132 SMs: qkv (2048 -> 6144) 384
// blocks of 8 warps, fc1 (2048 -> 8192) 512 of 8, about 24-31 warps and 96-124 KB in flight per
// SM (16 warps before); fc2 (8192 -> 2048) 128 blocks of 16 warps (the most a block has). Warps
// with at least 8 chunks to walk take 8 per step where registers allow (the kDeep instantiation;
// ptxas may interleave its loads with the mmas, but never has fewer in flight); not for one-warp
// blocks, where the 50k-output lm_head relies on ~24 resident blocks per SM. The out-projection
// (2048 -> 2048: 128 blocks of 16 warps, 4 chunks each) already issues all of its 8 MB at once,
// 64 KB per SM; splitting its n_in over more blocks would not put more bytes in flight, only add a
// cross-block reduction (and atomics would make the fp32 residual non-deterministic). What such a
// short kernel loses is its tail: so the storing warp loads its epilogue operands (bias, and y
// when beta != 0) before the main loop, which takes a dependent memory round trip off every
// GEMV's end.
//
// With programmatic dependent launch (engine/cuda/pdl.cuh, on by default on sm_90), a GEMV starts while the kernel
// before it finishes: each warp prefetches its first kGemvPrefetchChunks chunks of w into L2 (the
// whole matrix for qkv, fc1 and the out-projection of OPT-1.3B), then waits on the device, then
// lets the next kernel start, then runs as above with its first loads hitting L2.
//
// gemv_scalar_kernel (anything else: unaligned pointers, n_in % 8 != 0): one warp per output,
// scalar loads, fp32 FMAs (exact fp16 products), warp-shuffle sums. Correct, not fast.
//
// Epilogue, in fp32 on the fp32 sum: fp16 out: + bias, ReLU, one rounding to fp16; fp32 out:
// + bias, + beta·y (y is read only when beta != 0). No allocation, no synchronization: capturable
// in a CUDA graph.

constexpr int kGemvMaxRows = 8;        // rows <= this take the GEMV path (the mma's N)
constexpr int kGemvTileOut = 16;       // outputs per block of the mma kernel (the mma's M)
constexpr int kGemvChunk = 32;         // k per chunk: 4 lanes x 8 halves of a weight row
constexpr int kGemvUnroll = 4;         // chunks whose loads a warp issues before it multiplies
constexpr int kGemvDeepUnroll = 8;     // the same for warps with many chunks (kDeep)
constexpr int kGemvMaxWarps = 16;      // warps splitting n_in within one block
constexpr int kGemvTargetWarpsPerSm = 32;  // fewer, longer warps once the grid has this many
constexpr int kGemvScalarWarps = 8;    // outputs (one per warp) per block of the scalar kernel
constexpr int kGemvPrefetchChunks = 8; // chunks of w per warp pulled into L2 before the PDL wait

struct GemvOutput {
    void *y;           // __half [rows, n_out] or float [rows, n_out]
    const void *bias;  // __half or float [n_out], or nullptr
    float beta;        // fp32 output only
    int n_out;
    bool relu;  // fp16 output only
};

// The epilogue's operands of output (r, o), loaded ahead of the sum: the bias, and (fp32 output,
// beta != 0) the old y. y[r, o] is read and written only by the thread that stores (r, o).
struct GemvEpilogueIn {
    float bias = 0.0f, y = 0.0f;
};

template <bool kF16Out>
__device__ __forceinline__ GemvEpilogueIn gemv_epilogue_load(const GemvOutput &out, int r, int o) {
    GemvEpilogueIn in;
    if constexpr (kF16Out) {
        if (out.bias != nullptr) in.bias = __half2float(static_cast<const __half *>(out.bias)[o]);
    } else {
        if (out.bias != nullptr) in.bias = static_cast<const float *>(out.bias)[o];
        // beta == 0: y is not read (it may hold NaN)
        if (out.beta != 0.0f) in.y = static_cast<const float *>(out.y)[(size_t)r * out.n_out + o];
    }
    return in;
}

template <bool kF16Out>
__device__ __forceinline__ void gemv_store(const GemvOutput &out, int r, int o, float v, const GemvEpilogueIn &in) {
    const size_t i = (size_t)r * out.n_out + o;
    if (out.bias != nullptr) v += in.bias;
    if constexpr (kF16Out) {
        if (out.relu && v < 0.0f) v = 0.0f;  // NaN stays NaN
        static_cast<__half *>(out.y)[i] = __float2half_rn(v);
    } else {
        if (out.beta != 0.0f) v += out.beta * in.y;
        static_cast<float *>(out.y)[i] = v;
    }
}

// 16 bytes of weights, read once: not kept in L1 (x, which every warp reads, stays there).
__device__ __forceinline__ uint4 gemv_load_weights(const uint4 *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// d += A·B, m16n8k16, fp16 inputs, fp32 accumulator (row-major A, column-major B).
__device__ __forceinline__ void mma_m16n8k16_f32(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                 uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
    __trap();  // never launched: gemm_create enables the mma kernel only for PTX >= sm_80 (see there)
#endif
}

// kU chunks of one warp from chunk c on, all inside n_in: every load issued before the mmas.
template <int kU>
__device__ __forceinline__ void gemv_mma_chunks(float (&acc)[4], const uint4 *w_lo, const uint4 *w_hi,
                                                const uint4 *x_g, int c) {
    uint4 a_lo[kU], a_hi[kU], b[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
        const int k8 = (c + u) * (kGemvChunk / 8);  // the chunk's first uint4 (this lane adds t)
        a_lo[u] = gemv_load_weights(w_lo + k8);
        a_hi[u] = gemv_load_weights(w_hi + k8);
        b[u] = __ldg(x_g + k8);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
        mma_m16n8k16_f32(acc, a_lo[u].x, a_hi[u].x, a_lo[u].y, a_hi[u].y, b[u].x, b[u].y);
        mma_m16n8k16_f32(acc, a_lo[u].z, a_hi[u].z, a_lo[u].w, a_hi[u].w, b[u].z, b[u].w);
    }
}

__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// Grid: ceil(n_out / 16) blocks of 32·n_warps threads (n_warps <= 16), dynamic shared memory
// n_warps > 1 ? n_warps·32·16 bytes : 0. w: n_out rows of n_in8 uint4; x: rows (1..8) rows of n_in8.
// kDeep: steps of kGemvDeepUnroll chunks first (see "Bytes in flight" above). prefetch: launched
// with PDL, so pull the first chunks of w into L2 before waiting for the previous kernel.
template <bool kF16Out, bool kDeep>
__global__ void __launch_bounds__(kGemvMaxWarps * kWarpSize)
    gemv_mma_kernel(const uint4 *__restrict__ w, const uint4 *__restrict__ x, int rows, int n_in8, int n_out,
                    int n_chunks, GemvOutput out, bool prefetch) {
    extern __shared__ float4 gemv_partial[];  // [n_warps][32]
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize, n_warps = blockDim.x / kWarpSize;
    const int g = lane / 4, t = lane % 4;
    const int o0 = blockIdx.x * kGemvTileOut;
    // Rows past n_out (last block) and x rows past `rows` repeat the last real one: their results
    // land in outputs that are not stored, and the loads stay in bounds.
    const uint4 *w_lo = w + (size_t)min(o0 + g, n_out - 1) * n_in8 + t;
    const uint4 *w_hi = w + (size_t)min(o0 + g + 8, n_out - 1) * n_in8 + t;
    const uint4 *x_g = x + (size_t)min(g, rows - 1) * n_in8 + t;
    // This warp's chunks (uniform across the warp: the mma needs all 32 lanes).
    const int c_begin = (int)((long long)warp * n_chunks / n_warps);
    const int c_end = (int)((long long)(warp + 1) * n_chunks / n_warps);

    // Before the PDL wait only w (immutable) is touched: this warp's 16 rows over its first chunks,
    // one 128-byte line per prefetch (and the range's last uint4, for a range not line-aligned).
    if (prefetch) {
        const int k_begin = c_begin * (kGemvChunk / 8);
        const int k_end = min(min(c_end, c_begin + kGemvPrefetchChunks) * (kGemvChunk / 8), n_in8);
        if (k_begin < k_end) {
            const int n_lines = (k_end - k_begin + 7) / 8 + 1;
            for (int i = lane; i < kGemvTileOut * n_lines; i += kWarpSize) {
                const int row = min(o0 + i % kGemvTileOut, n_out - 1);
                const int k = min(k_begin + (i / kGemvTileOut) * 8, k_end - 1);
                prefetch_l2(w + (size_t)row * n_in8 + k);
            }
        }
    }
    pdl_wait();
    pdl_launch_dependents();

    // Accumulator fragment: acc[0], acc[1] are (o0+g, rows 2t, 2t+1); acc[2], acc[3] (o0+g+8, same).
    // The storing warp (warp 0) loads its epilogue operands now, so that they arrive with the weights.
    const int r = 2 * t;
    const bool store_lo = o0 + g < n_out, store_hi = o0 + g + 8 < n_out;
    GemvEpilogueIn pre[4];
    if (warp == 0) {  // uniform across the warp
        if (store_lo && r < rows) pre[0] = gemv_epilogue_load<kF16Out>(out, r, o0 + g);
        if (store_lo && r + 1 < rows) pre[1] = gemv_epilogue_load<kF16Out>(out, r + 1, o0 + g);
        if (store_hi && r < rows) pre[2] = gemv_epilogue_load<kF16Out>(out, r, o0 + g + 8);
        if (store_hi && r + 1 < rows) pre[3] = gemv_epilogue_load<kF16Out>(out, r + 1, o0 + g + 8);
    }

    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    // Main loop: kGemvDeepUnroll (kDeep), then kGemvUnroll chunks wholly inside n_in at a time, all
    // loads issued before the mmas, no predicates. Then the rest one chunk at a time, the k slots
    // past n_in reading as zero.
    const int full_end = min(c_end, n_in8 / (kGemvChunk / 8));
    int c = c_begin;
    if constexpr (kDeep) {
        for (; c + kGemvDeepUnroll <= full_end; c += kGemvDeepUnroll) {
            gemv_mma_chunks<kGemvDeepUnroll>(acc, w_lo, w_hi, x_g, c);
        }
    }
    for (; c + kGemvUnroll <= full_end; c += kGemvUnroll) gemv_mma_chunks<kGemvUnroll>(acc, w_lo, w_hi, x_g, c);
    for (; c < c_end; ++c) {
        const int k8 = c * (kGemvChunk / 8);
        const bool in_range = k8 + t < n_in8;  // false only in the last chunk of n_in % 32 != 0
        const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
        const uint4 a_lo = in_range ? gemv_load_weights(w_lo + k8) : zero;
        const uint4 a_hi = in_range ? gemv_load_weights(w_hi + k8) : zero;
        const uint4 b = in_range ? __ldg(x_g + k8) : zero;
        mma_m16n8k16_f32(acc, a_lo.x, a_hi.x, a_lo.y, a_hi.y, b.x, b.y);
        mma_m16n8k16_f32(acc, a_lo.z, a_hi.z, a_lo.w, a_hi.w, b.z, b.w);
    }

    if (n_warps > 1) {  // uniform across the block
        gemv_partial[threadIdx.x] = make_float4(acc[0], acc[1], acc[2], acc[3]);
        __syncthreads();
        if (warp != 0) return;
#pragma unroll 4
        for (int i = 1; i < n_warps; ++i) {  // in warp order: deterministic
            const float4 p = gemv_partial[i * kWarpSize + lane];
            acc[0] += p.x, acc[1] += p.y, acc[2] += p.z, acc[3] += p.w;
        }
    }
    if (store_lo) {
        if (r < rows) gemv_store<kF16Out>(out, r, o0 + g, acc[0], pre[0]);
        if (r + 1 < rows) gemv_store<kF16Out>(out, r + 1, o0 + g, acc[1], pre[1]);
    }
    if (store_hi) {
        if (r < rows) gemv_store<kF16Out>(out, r, o0 + g + 8, acc[2], pre[2]);
        if (r + 1 < rows) gemv_store<kF16Out>(out, r + 1, o0 + g + 8, acc[3], pre[3]);
    }
}

// Grid: ceil(n_out / 8) blocks of 256 threads, one warp per output.
template <bool kF16Out>
__global__ void __launch_bounds__(kGemvScalarWarps * kWarpSize)
    gemv_scalar_kernel(const __half *__restrict__ w, const __half *__restrict__ x, int rows, int n_in, int n_out,
                       GemvOutput out) {
    const int lane = threadIdx.x % kWarpSize;
    const int o = blockIdx.x * kGemvScalarWarps + threadIdx.x / kWarpSize;
    if (o >= n_out) return;  // the whole warp leaves together
    const __half *w_row = w + (size_t)o * n_in;
    float acc[kGemvMaxRows];
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0.0f;
    for (int k = lane; k < n_in; k += kWarpSize) {
        const float wk = __half2float(w_row[k]);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; ++r) {
            if (r < rows) acc[r] += wk * __half2float(x[(size_t)r * n_in + k]);
        }
    }
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < rows) {  // uniform across the warp
            const float v = warp_reduce_sum(acc[r]);
            if (lane == 0) gemv_store<kF16Out>(out, r, o, v, gemv_epilogue_load<kF16Out>(out, r, o));
        }
    }
}

// Whether this device runs gemv_mma_kernel: tensor-core mma.m16n8k16 needs sm_80, and the code that
// was loaded for the device must have been compiled for it (not the __trap() stub).
bool gemv_mma_supported() {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    cudaFuncAttributes f16{}, f32{}, f16_deep{}, f32_deep{};
    if (cudaFuncGetAttributes(&f16, gemv_mma_kernel<true, false>) != cudaSuccess ||
        cudaFuncGetAttributes(&f32, gemv_mma_kernel<false, false>) != cudaSuccess ||
        cudaFuncGetAttributes(&f16_deep, gemv_mma_kernel<true, true>) != cudaSuccess ||
        cudaFuncGetAttributes(&f32_deep, gemv_mma_kernel<false, true>) != cudaSuccess) {
        cudaGetLastError();  // e.g. no kernel image for this device: cuBLASLt does it all
        return false;
    }
    return major >= 8 && f16.ptxVersion >= 80 && f32.ptxVersion >= 80 && f16_deep.ptxVersion >= 80 &&
           f32_deep.ptxVersion >= 80;
}

// Developer knobs for tuning sweeps on the GPU machine (scripts/gpu-profile.sh, docs/development.md),
// read once: SEAOPT_GEMV_WARPS_PER_SM (default kGemvTargetWarpsPerSm), SEAOPT_GEMV_DEEP=0 (no deep steps).
struct GemvTuning {
    int warps_per_sm = kGemvTargetWarpsPerSm;
    bool deep = true;
};
const GemvTuning &gemv_tuning() {
    static const GemvTuning tuning = [] {
        GemvTuning t;
        if (const char *v = std::getenv("SEAOPT_GEMV_WARPS_PER_SM")) {
            const int n = std::atoi(v);
            if (n >= 1 && n <= 64) t.warps_per_sm = n;
        }
        if (const char *v = std::getenv("SEAOPT_GEMV_DEEP")) t.deep = std::string(v) != "0";
        return t;
    }();
    return tuning;
}

// Launches the GEMV kernels (arguments already checked by run_gemm; rows in 1..kGemvMaxRows).
void launch_gemv(const char *name, int sm_count, bool f16_out, void *y, const half_t *x, const half_t *w,
                 const void *bias, bool relu, float beta, int rows, int n_in, int n_out, cudaStream_t stream) {
    const GemvOutput out{y, bias, beta, n_out, relu};
    const bool vectorizable = n_in % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                              reinterpret_cast<uintptr_t>(w) % 16 == 0;
    if (vectorizable) {
        const int tiles = (int)ceil_div<long long>(n_out, kGemvTileOut);
        const int n_chunks = (int)ceil_div<long long>(n_in, kGemvChunk);
        // Split n_in over as many warps per block as keep the grid near the target (many small
        // tiles: more warps each; the 50k-output lm_head: one warp per block), each warp with at
        // least kGemvUnroll chunks.
        const long long target = (long long)std::max(sm_count, 1) * gemv_tuning().warps_per_sm;
        int n_warps = kGemvMaxWarps;
        while (n_warps > 1 && ((long long)tiles * n_warps > target || n_warps * kGemvUnroll > n_chunks)) n_warps /= 2;
        const size_t shared = n_warps > 1 ? (size_t)n_warps * kWarpSize * sizeof(float4) : 0;
        // Deep steps for warps of multi-warp blocks with at least one full deep step of chunks.
        const bool deep = gemv_tuning().deep && n_warps > 1 && n_chunks / n_warps >= kGemvDeepUnroll;
        const auto *w4 = reinterpret_cast<const uint4 *>(w);
        const auto *x4 = reinterpret_cast<const uint4 *>(x);
        const int threads = n_warps * kWarpSize, n_in8 = n_in / 8;
        const bool pdl = programmatic_launch_enabled();
        auto kernel = f16_out ? (deep ? gemv_mma_kernel<true, true> : gemv_mma_kernel<true, false>)
                              : (deep ? gemv_mma_kernel<false, true> : gemv_mma_kernel<false, false>);
        launch_kernel(name, pdl, kernel, dim3((unsigned)tiles), dim3((unsigned)threads), shared, stream, w4, x4, rows,
                      n_in8, n_out, n_chunks, out, pdl);
        return;
    }
    // The scalar kernel: always a plain launch (it does not wait on the device).
    const int blocks = (int)ceil_div<long long>(n_out, kGemvScalarWarps);
    const auto *wh = reinterpret_cast<const __half *>(w);
    const auto *xh = reinterpret_cast<const __half *>(x);
    if (f16_out) {
        gemv_scalar_kernel<true><<<blocks, kGemvScalarWarps * kWarpSize, 0, stream>>>(wh, xh, rows, n_in, n_out, out);
    } else {
        gemv_scalar_kernel<false><<<blocks, kGemvScalarWarps * kWarpSize, 0, stream>>>(wh, xh, rows, n_in, n_out, out);
    }
    check_launch(name);
}

}  // namespace gemm_internal

// ---- programmatic dependent launch switch (ops.h) ----------------------------------------------

namespace {

constexpr int kMaxDevices = 64;
std::atomic<int> g_pdl_setting{-1};  // -1: not decided yet (SEAOPT_PDL at the first query), 0 off, 1 on
std::atomic<int> g_device_pdl[kMaxDevices];  // per device: 0 unknown, 1 unsupported, 2 supported

// sm_90 hardware, and kernel code compiled for it: a kernel JIT-compiled from compute_80 PTX has no
// griddepcontrol.wait, and launching it with PDL would race. All CUDA sources of the library are
// built for the same architectures, so the GEMV kernel stands for every kernel that uses PDL.
bool device_supports_pdl(int device) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, gemm_internal::gemv_mma_kernel<true, false>) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return major >= 9 && attributes.ptxVersion >= 90;
}

bool programmatic_launch_requested() {
    int v = g_pdl_setting.load();
    if (v < 0) {
        const char *env = std::getenv("SEAOPT_PDL");
        int expected = -1;
        // On unless SEAOPT_PDL=0 (measured on H100: tg128 647 -> 679 tok/s, identical bits).
        g_pdl_setting.compare_exchange_strong(expected, env != nullptr && std::string(env) == "0" ? 0 : 1);
        v = g_pdl_setting.load();
    }
    return v == 1;
}

}  // namespace

void set_programmatic_launch(bool on) { g_pdl_setting.store(on ? 1 : 0); }

bool programmatic_launch_enabled() {
    if (!programmatic_launch_requested()) return false;
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) {
        cudaGetLastError();
        return false;
    }
    int known = g_device_pdl[device].load();
    if (known == 0) {
        known = device_supports_pdl(device) ? 2 : 1;
        g_device_pdl[device].store(known);
    }
    return known == 2;
}

struct GemmHandle {
    cublasLtHandle_t lt = nullptr;
    void *workspace = nullptr;
    std::map<gemm_internal::PlanKey, std::unique_ptr<gemm_internal::Plan>> plans;
    int sm_count = 0;       // of the device current at gemm_create
    bool gemv_mma = false;  // rows <= kGemvMaxRows go to the GEMV kernels (else all to cuBLASLt)

    GemmHandle() = default;
    GemmHandle(const GemmHandle &) = delete;
    GemmHandle &operator=(const GemmHandle &) = delete;
    ~GemmHandle() { release(); }

    // Frees everything it holds; returns the first failure in words ("" if none).
    std::string release() {
        std::string first_error;
        plans.clear();
        if (workspace != nullptr) {
            const cudaError_t err = cudaFree(workspace);
            workspace = nullptr;
            if (err != cudaSuccess) first_error = std::string("cudaFree(gemm workspace): ") + cudaGetErrorString(err);
        }
        if (lt != nullptr) {
            const cublasStatus_t status = cublasLtDestroy(lt);
            lt = nullptr;
            if (status != CUBLAS_STATUS_SUCCESS && first_error.empty()) {
                first_error = std::string("cublasLtDestroy: ") + cublasLtGetStatusString(status);
            }
        }
        return first_error;
    }
};

namespace {

void run_gemm(const char *name, GemmHandle *handle, gemm_internal::OutputType output, Epilogue epilogue, void *y,
              const half_t *x, const half_t *w, const void *bias, float beta, int rows, int n_in, int n_out,
              cudaStream_t stream) {
    using namespace gemm_internal;
    check_arg(handle != nullptr, name, "null handle");
    check_arg(rows >= 0 && n_in > 0 && n_out > 0, name, "rows must be >= 0 and n_in, n_out > 0");
    check_arg(epilogue == Epilogue::None || epilogue == Epilogue::Bias || epilogue == Epilogue::BiasRelu, name,
              "unknown epilogue");
    if (rows == 0) return;
    check_arg(y != nullptr && x != nullptr && w != nullptr, name, "null pointer");
    check_arg(epilogue == Epilogue::None || bias != nullptr, name, "the epilogue needs a bias");
    // The alignment preferences cover x, w and y but not the bias, and cuBLASLt kernels may assume
    // a 16-byte-aligned bias (misaligned-address faults are reported with sliced biases).
    check_arg(epilogue == Epilogue::None || reinterpret_cast<uintptr_t>(bias) % kBiasAlignment == 0, name,
              "the bias must be 16-byte aligned");

    if (rows <= kGemvMaxRows && handle->gemv_mma) {
        launch_gemv(name, handle->sm_count, output == OutputType::F16, y, x, w,
                    epilogue == Epilogue::None ? nullptr : bias, epilogue == Epilogue::BiasRelu, beta, rows, n_in,
                    n_out, stream);
        return;
    }

    const PlanKey key{output,
                      epilogue,
                      rows,
                      n_in,
                      n_out,
                      pointer_alignment(x),
                      pointer_alignment(w),
                      pointer_alignment(y),
                      epilogue == Epilogue::None ? 0u : pointer_alignment(bias)};
    auto it = handle->plans.find(key);
    if (it == handle->plans.end()) it = handle->plans.emplace(key, make_plan(handle->lt, key, bias)).first;
    Plan &plan = *it->second;
    if (epilogue != Epilogue::None) set_bias_pointer(plan.desc, bias);

    const float alpha = 1.0f;  // host scalars (the default pointer mode), read before the call returns
    SEAOPT_CUBLAS_CHECK(cublasLtMatmul(handle->lt, plan.desc, &alpha, w, plan.w_layout, x, plan.x_layout, &beta, y,
                                       plan.y_layout, y, plan.y_layout, &plan.algo, handle->workspace, kWorkspaceBytes,
                                       stream));
}

}  // namespace

GemmHandle *gemm_create() {
    auto handle = std::make_unique<GemmHandle>();  // frees what was made if a step below throws
    SEAOPT_CUBLAS_CHECK(cublasLtCreate(&handle->lt));
    SEAOPT_CUDA_CHECK(cudaMalloc(&handle->workspace, gemm_internal::kWorkspaceBytes));
    int device = 0;
    SEAOPT_CUDA_CHECK(cudaGetDevice(&device));
    SEAOPT_CUDA_CHECK(cudaDeviceGetAttribute(&handle->sm_count, cudaDevAttrMultiProcessorCount, device));
    handle->gemv_mma = gemm_internal::gemv_mma_supported();
    return handle.release();
}

void gemm_destroy(GemmHandle *handle) {
    if (handle == nullptr) return;
    const std::string error = handle->release();
    delete handle;
    if (!error.empty()) throw Error(SEAOPT_ERR_DEVICE, "gemm_destroy: " + error);
}

bool gemm_has_gemv(const GemmHandle *handle) { return handle != nullptr && handle->gemv_mma; }

void gemm_f16(GemmHandle *handle, half_t *y, const half_t *x, const half_t *w, const half_t *bias_f16,
              Epilogue epilogue, int rows, int n_in, int n_out, cudaStream_t stream) {
    run_gemm("gemm_f16", handle, gemm_internal::OutputType::F16, epilogue, y, x, w, bias_f16, 0.0f, rows, n_in, n_out,
             stream);
}

void gemm_f16_to_f32(GemmHandle *handle, float *y, const half_t *x, const half_t *w, const float *bias_f32, float beta,
                     int rows, int n_in, int n_out, cudaStream_t stream) {
    run_gemm("gemm_f16_to_f32", handle, gemm_internal::OutputType::F32,
             bias_f32 != nullptr ? Epilogue::Bias : Epilogue::None, y, x, w, bias_f32, beta, rows, n_in, n_out, stream);
}

}  // namespace seaopt::cuda
