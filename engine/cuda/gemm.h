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
// A handle owns a cuBLASLt handle, a 32 MiB workspace and a cache of plans, one per shape, epilogue
// and pointer alignment, made at the first call of each, and records the device's SM count (sizes
// the GEMV grid) at gemm_create. It is not thread-safe, and its calls share one workspace: use it
// from one host thread and one stream at a time (or one handle per stream).
//
// Autotuning (gemm.cu, "Plans and autotuning"): a plan of a large problem (rows·n_in·n_out >= 2^30:
// prefill shapes) asks cuBLASLt's heuristic for several algorithms and times each on the call's own
// operands (CUDA events, a host wait at that first call only), keeping the fastest; one of a
// skinny call (rows <= 8, beta = 0) with at least 64 MiB of weights (the lm_head) also times GEMV
// configurations against cuBLASLt and routes the shape to the fastest. Timing never writes memory
// the call would not (beta = 0: into y, which the call then overwrites; beta != 0: into a scratch
// in the workspace, y only read), allocates nothing, and is skipped while the stream is being
// captured into a CUDA graph (the heuristic's first algorithm, or the default GEMV, is taken). A
// plan's choice never changes afterwards, so repeated calls give the same bits, and a choice made
// by timing is shared with every handle of the process on that device (which takes it instead of
// timing): contexts of one process agree bitwise. Another process may time differently and choose
// another algorithm, whose results differ in rounding only. So it is off unless
// SEAOPT_GEMM_AUTOTUNE=1 is in the environment (read at gemm_create) or gemm_set_autotune(handle,
// true) turns it on (a number N >= 2 times N candidates instead of 8); the choices and every candidate's time are logged at
// debug level (seaopt_log_set; the tools' -v).
//
// Pointers: x, w and y need only their element's alignment (the algorithm is chosen for the actual
// alignment; the GEMV path falls back to scalar loads); a bias must be 16-byte aligned (cudaMalloc
// gives 256).
//
// Errors: rows == 0 is a no-op; negative rows, n_in/n_out <= 0, null pointers, or a missing or
// misaligned bias throw seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT); CUDA and cuBLASLt failures
// throw seaopt::Error(SEAOPT_ERR_DEVICE).
#pragma once

#include <cstddef>
#include <cstdint>

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

// Autotuning of plans made from now on (plans already made keep their choice).
void gemm_set_autotune(GemmHandle *handle, bool on);
// Whether gemm_*_layernorm may fuse the LayerNorm into the GEMV (off unless SEAOPT_GEMV_LN=1 at
// gemm_create: measured slower on H100, see gemm.cu); results are the same bits either way.
void gemm_set_layernorm_fusion(GemmHandle *handle, bool on);

// What the handle has done so far, for tests and logs.
struct GemmStats {
    int plans = 0;        // plans made (cuBLASLt shapes, and skinny shapes that autotuning considered)
    int tuned_plans = 0;  // of those, chosen by autotuning (timed here, or by an earlier handle)
    int fused_layernorm_calls = 0;  // gemm_*_layernorm calls that ran the fused kernel
};
GemmStats gemm_stats(const GemmHandle *handle);

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

// A LayerNorm, then the linear layer: y = LN(x_f32) · wᵀ with LN(x) = layernorm_forward's
// (ln_w, ln_b [n_in] fp16, eps; biased variance, fp32 statistics) rounded to fp16, the rest as
// gemm_f16 / gemm_f16_to_f32. Where the GEMV path takes the call (rows <= 8, n_in % 8 == 0, w,
// x_f32 and ln_scratch16 16-byte aligned, ln_w and ln_b 8-byte aligned, n_in <= 16384, the rows'
// fp16 copy fits the kernel's shared memory (64 KB with the partial sums: 8 rows up to n_in 3072,
// fewer rows beyond), at most 8 LayerNorm warps' worth of rows per GEMV warp, and, for a shape that
// autotuning routes, a plan that routes it to a GEMV; not when y overlaps x_f32), one kernel does
// both: every block normalises
// the rows into shared memory itself, with layernorm_forward's arithmetic in its order
// (engine/cuda/layernorm_math.cuh), then runs the GEMV; otherwise layernorm_forward writes LN(x)
// to ln_scratch16 [rows, n_in] and gemm_f16 / gemm_f16_to_f32 reads it. Either way the result is
// bitwise that of layernorm_forward into ln_scratch16 followed by the plain call (the fused kernel
// is the GEMV with x from shared memory instead of ln_scratch16). ln_scratch16 is required; it is
// written on the unfused path only. Errors as gemm_f16, and null x_f32, ln_w, ln_b or
// ln_scratch16, or eps < 0, throw seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT).
void gemm_f16_layernorm(GemmHandle *handle, half_t *y, half_t *ln_scratch16, const float *x_f32, const half_t *ln_w,
                        const half_t *ln_b, float eps, const half_t *w, const half_t *bias_f16, Epilogue epilogue,
                        int rows, int n_in, int n_out, cudaStream_t stream);
void gemm_f16_to_f32_layernorm(GemmHandle *handle, float *y, half_t *ln_scratch16, const float *x_f32,
                               const half_t *ln_w, const half_t *ln_b, float eps, const half_t *w,
                               const float *bias_f32, float beta, int rows, int n_in, int n_out, cudaStream_t stream);

// ---- int8 weights (ggml's Q8_0 grouping), engine/cuda/gemm_q8.cu ----
// A weight w [n_out, n_in] (n_in % 32 == 0) as blocks of 32 consecutive weights along n_in, each an
// fp16 scale d and 32 int8 q: w[o][i] = float(q[o·n_in + i]) · float(d[o·(n_in/32) + i/32]). q must be
// 16-byte aligned and d 2-byte aligned (cudaMalloc gives 256).
struct WeightQ8 {
    const int8_t *q = nullptr;  // [n_out][n_in]
    const half_t *d = nullptr;  // [n_out][n_in / 32]
};
// Bytes of the fp16 scratch that gemm_q8_* need for a call with these shapes (0 where rows <= 16: the GEMV needs none;
// 0 for shapes the calls reject).
size_t gemm_q8_scratch_bytes(int rows, int n_in, int n_out);
// out[n_out][n_in] (fp16) = the dequantized weight, each element fp16(float(q) * float(d)) rounded to nearest (even;
// overflow gives ±inf). out must be 16-byte aligned. n_out, n_in <= 0, n_in % 32 != 0, null or misaligned pointers
// throw seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT). A plain launch (no PDL), no allocation: capturable.
void dequantize_q8_f16(half_t *out, WeightQ8 w, int n_out, int n_in, cudaStream_t stream);
// As gemm_f16 / gemm_f16_to_f32 with w[o][i] = q * d. rows <= 16 (decode): the q8 GEMV kernel reads q and d directly,
// one launch per 8 rows (fp32 products and accumulation; the weight is never rounded to fp16). rows > 16:
// dequantize_q8_f16 into `scratch`
// (gemm_q8_scratch_bytes, 16-byte aligned), then gemm_f16 / gemm_f16_to_f32 on it (cuBLASLt).
// The GEMV (gemm_q8.cu): tensor-core mma on the exact int8 -> fp16 q, fp32 sums per 32-block times the block's scale
// in fp32; deterministic (no atomics, a fixed reduction order), no allocation or host sync, capturable in a CUDA
// graph, and it takes part in programmatic dependent launch as the fp16 GEMV does. Its grid comes from the kernel's
// occupancy, asked at the first call of each shape on a device (host only, no sync) and remembered process-wide.
// x and y need only their element's alignment (x 16-byte aligned is faster); the bias 16-byte alignment as gemm_f16.
// Errors: those of gemm_f16 / gemm_f16_to_f32 (rows == 0 a no-op, ...), and n_in % 32 != 0, a null or misaligned q
// or d, rows > 16 with a null or misaligned scratch throw seaopt::Error(SEAOPT_ERR_INVALID_ARGUMENT); rows <= 16 on a
// device without the GEMV kernels (gemm_has_gemv false: before sm_80) throws seaopt::Error(SEAOPT_ERR_DEVICE).
void gemm_q8_f16(GemmHandle *handle, half_t *y, const half_t *x, WeightQ8 w, const half_t *bias_f16,
                 Epilogue epilogue, int rows, int n_in, int n_out, half_t *scratch, cudaStream_t stream);
void gemm_q8_to_f32(GemmHandle *handle, float *y, const half_t *x, WeightQ8 w, const float *bias_f32, float beta,
                    int rows, int n_in, int n_out, half_t *scratch, cudaStream_t stream);

}  // namespace seaopt::cuda
