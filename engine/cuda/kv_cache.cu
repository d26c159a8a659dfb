// KV cache append (launcher declared in engine/cuda/ops.h).
//
// Cache layout per layer: [seq][head][pos][head_dim], n_ctx positions per (seq, head), so element
// (s, h, p, d) lives at ((s * n_head + h) * n_ctx + p) * head_dim + d. The fused qkv row r is
// [q | k | v], each C = n_head * head_dim wide, head h at columns h * head_dim.
//
// One block per batch row, threads striding over the C columns of K (and V) in units of 8 halves
// (one 16-byte load and store each) when head_dim % 8 == 0 and the three buffers are 16-byte
// aligned (every OPT model: head_dim 64, 80 or 128, cudaMalloc'd buffers), else of one half. A unit never
// straddles two heads, the reads are contiguous, and each head's head_dim values land contiguously
// in the cache. Sequence ids and positions are validated on the host; as a last guard against
// memory corruption, a row whose position lies outside [0, n_ctx) or whose sequence id is negative
// is not written. rows == 0 is a no-op; bad sizes or null pointers throw SEAOPT_ERR_INVALID_ARGUMENT.
//
// The batch-of-one-row-per-sequence decode step does not call this: its attention kernel appends
// the row itself (attention_forward with AttentionOptions::append_kv, attention/dense_cuda.cu).
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {
namespace {

constexpr int kRowBlockThreads = 256;

// ------------------------------------------------------------------------------------------------
// CUDA kernels

// fp16 values are copied as their bits: the cache holds exactly what the GEMM wrote. Unit is
// uint16_t (one half) or uint4 (kHalves = 8 halves); all sizes below are in units.
template <typename Unit, int kHalves>
__global__ void __launch_bounds__(kRowBlockThreads)
    kv_cache_append_kernel(Unit *__restrict__ k_cache, Unit *__restrict__ v_cache, const Unit *__restrict__ qkv,
                           const int32_t *seq_ids, const int32_t *positions, int n_head, int head_dim, int n_ctx) {
    const int row = blockIdx.x;
    const int seq = seq_ids[row];
    const int pos = positions[row];
    if (seq < 0 || pos < 0 || pos >= n_ctx) return;

    const int head_units = head_dim / kHalves;
    const int C_units = n_head * head_units;
    const Unit *k_src = qkv + (int64_t)row * 3 * C_units + C_units;  // skip q
    const Unit *v_src = k_src + C_units;
    const int64_t seq_base = (int64_t)seq * n_head;
    for (int c = threadIdx.x; c < C_units; c += blockDim.x) {
        const int head = c / head_units;
        const int d = c - head * head_units;
        const int64_t dst = ((seq_base + head) * n_ctx + pos) * head_units + d;
        k_cache[dst] = k_src[c];
        v_cache[dst] = v_src[c];
    }
}

bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

// ------------------------------------------------------------------------------------------------
// kernel launchers

void kv_cache_append(half_t *k_cache, half_t *v_cache, const half_t *qkv, const int32_t *seq_ids,
                     const int32_t *positions, int rows, int n_head, int head_dim, int n_ctx, cudaStream_t stream) {
    const char *name = "kv_cache_append";
    check_arg(rows >= 0 && n_head > 0 && head_dim > 0 && n_ctx > 0, name,
              "rows must be >= 0 and n_head, head_dim, n_ctx > 0");
    check_arg((int64_t)n_head * head_dim * 3 <= INT32_MAX, name, "n_head * head_dim too large");
    if (rows == 0) return;
    check_arg(k_cache != nullptr && v_cache != nullptr && qkv != nullptr && seq_ids != nullptr && positions != nullptr,
              name, "null pointer");
    if (head_dim % 8 == 0 && aligned16(k_cache) && aligned16(v_cache) && aligned16(qkv)) {
        kv_cache_append_kernel<uint4, 8><<<rows, kRowBlockThreads, 0, stream>>>(
            reinterpret_cast<uint4 *>(k_cache), reinterpret_cast<uint4 *>(v_cache),
            reinterpret_cast<const uint4 *>(qkv), seq_ids, positions, n_head, head_dim, n_ctx);
    } else {
        kv_cache_append_kernel<uint16_t, 1><<<rows, kRowBlockThreads, 0, stream>>>(
            k_cache, v_cache, qkv, seq_ids, positions, n_head, head_dim, n_ctx);
    }
    check_launch(name);
}

}  // namespace seaopt::cuda
