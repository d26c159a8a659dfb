// cuBLASLt wrapper for the Linear layers (interface and conventions: engine/cuda/gemm.h).
//
// Row-major to column-major: cuBLASLt is column-major, and a row-major [r, c] matrix is the same
// memory as a column-major [c, r] one. So we compute yᵀ = w · xᵀ in column-major terms:
//   D = yᵀ: [n_out, rows], ld n_out        (row-major y [rows, n_out])
//   A = w stored [n_in, n_out], ld n_in, op T  -> op(A) = w [n_out, n_in]   (row-major w [n_out, n_in])
//   B = xᵀ stored [n_in, rows], ld n_in, op N                               (row-major x [rows, n_in])
// and the bias vector, of length D's row count n_out, is broadcast along D's columns (the rows of y):
// one bias per output feature, as a Linear layer wants.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "engine/cuda/common.cuh"
#include "engine/cuda/gemm.h"

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

}  // namespace gemm_internal

struct GemmHandle {
    cublasLtHandle_t lt = nullptr;
    void *workspace = nullptr;
    std::map<gemm_internal::PlanKey, std::unique_ptr<gemm_internal::Plan>> plans;

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
    return handle.release();
}

void gemm_destroy(GemmHandle *handle) {
    if (handle == nullptr) return;
    const std::string error = handle->release();
    delete handle;
    if (!error.empty()) throw Error(SEAOPT_ERR_DEVICE, "gemm_destroy: " + error);
}

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
