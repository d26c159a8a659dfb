// Linear layers on the GPU: a cuBLASLt wrapper (engine/cuda/gemm.cu). Plain C++ (no CUDA headers),
// like ops.h. CPU reference: cpu::linear (+ cpu::relu_inplace), engine/cpu_ops.h.
//
// Skinny calls (rows <= 8: decode) take our own memory-bound GEMV kernels instead, same semantics
// (gemm.cu, "GEMV path"): tensor-core mma with fp32 accumulation over w streamed in 16-byte loads
// when n_in % 8 == 0 and x and w are 16-byte aligned, a slow scalar kernel otherwise. They need no
// workspace or plan, are deterministic, and are safe to capture in a CUDA graph. Devices before
// sm_80 use cuBLASLt for every call. The mma kernel takes part in programmatic dependent launch
// when that is on (engine/cuda/ops.h: set_programmatic_launch; on by default, SEAOPT_PDL=0 turns it off).
//
// Layouts are row-major as in the rest of the engine: x [rows, n_in], y [rows, n_out], and the
// weight w [n_out, n_in] as PyTorch's Linear stores it. Inputs are fp16; products are accumulated
// in fp32 (CUBLAS_COMPUTE_32F, fp32 alpha/beta; split-K partial sums are reduced in fp32 too); the
// bias is added in the GEMM's epilogue.
//
// A handle owns a cuBLASLt handle, a 32 MiB workspace and a cache of the algorithm chosen per
// shape (cublasLtMatmulAlgoGetHeuristic runs once per shape, epilogue and pointer alignment), and
// records the device's SM count (sizes the GEMV grid) at gemm_create. It
// is not thread-safe, and its calls share one workspace: use it from one host thread and one
// stream at a time (or one handle per stream).
//
// Pointers: x, w and y need only their element's alignment (the algorithm is chosen for the actual
// alignment; the GEMV path falls back to scalar loads); a bias must be 16-byte aligned (cudaMalloc
// gives 256).
//
// Errors: rows == 0 is a no-op; negative rows, n_in/n_out <= 0, null pointers, or a missing or
// misaligned bias throw seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT); CUDA and cuBLASLt failures
// throw seaopt::Error(SEAOPT_ERR_DEVICE).
#pragma once

#include "engine/cuda/ops.h"  // half_t, cudaStream_t

namespace seaopt::cuda {

struct GemmHandle;

// Creates the cuBLASLt handle and allocates the workspace on the current device.
GemmHandle *gemm_create();
// Releases everything (nullptr: no-op). Frees all it can, then throws the first failure, if any.
void gemm_destroy(GemmHandle *handle);

// Whether calls with rows <= 8 run the GEMV kernels on this handle's device (false: all go to
// cuBLASLt, e.g. before sm_80). For tests and logs.
bool gemm_has_gemv(const GemmHandle *handle);

enum class Epilogue { None, Bias, BiasRelu };

// y[rows, n_out] = x[rows, n_in] · wᵀ (+ bias_f16) (then ReLU), fp16 out. bias_f16 [n_out] is
// required for Bias and BiasRelu and ignored for None.
void gemm_f16(GemmHandle *handle, half_t *y, const half_t *x, const half_t *w, const half_t *bias_f16,
              Epilogue epilogue, int rows, int n_in, int n_out, cudaStream_t stream);

// y[rows, n_out] (fp32) = beta * y + x · wᵀ (+ bias_f32 when not null). beta = 1 adds into the fp32
// residual stream; with beta = 0, y's old contents do not matter (BLAS semantics: C is not read;
// tests/test_gpu_kernels.cpp checks it with a NaN-filled y).
void gemm_f16_to_f32(GemmHandle *handle, float *y, const half_t *x, const half_t *w, const float *bias_f32, float beta,
                     int rows, int n_in, int n_out, cudaStream_t stream);

}  // namespace seaopt::cuda
