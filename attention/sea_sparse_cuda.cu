// SEA sparse attention on the selected keys (sea.md §2.8-§2.10; sea_cpu.cpp sea_expand_cells_to_keys and
// sparse_attention_row), and the running sums of v the output mixing needs.
//
//   v_prefix_kernel     grid (chunk of 64 rows, head), 64 threads (one per dim): the chunks' Σ v before this one
//                       (from performer_state_kernel, sea_estimator_cuda.cu) plus a running sum over the chunk's rows
//                       -> Σ_{j≤t} v_j [T][H][64] fp32; a call that continues a sequence starts from its state's Σ v.
//   decode_sparse_attention_kernel  one block of 8 warps per (query, head) of a decode call: the mask row says which
//       cells are kept; each kept cell's key interval [v0, v1) by the authors' fp32 arithmetic (s = fl((t+1)·fl(1/K)),
//       v = min(roundf(fl(c·s)), t+1)) and its key count n = min(v1-v0, k), an exclusive prefix of the counts over
//       the cells (shared memory, K+1 ints); key i is then in the cell found by a binary search of the prefix, at
//       v1 - 1 - ⌊j·len/n⌋ (j = i - prefix; the capped cells' even spacing, descending inside a cell as the FlatCSR
//       order). Keys go 32 per step, one per lane: q·k over 64 dims (eight 16-byte loads of the fp16 K row), an fp32
//       online softmax, Σ p·v with lanes on dims. Then, as sparse_attention_row: C = (Σ p·v / Σ p) · σ(s_prob) (0 for
//       a head without keys), out = σ(s_mix)·C + (1-σ(s_mix))·(Σ_{j≤t} v_j)/(t+1), rounded to fp16. (The prefill's
//       sparse attention is the tensor-core kernel of sea_sparse_flash_cuda.cu.) The row's keys are split over the
//       warps (a decode call has too few rows to fill the GPU one warp each), merged in warp order.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_decode_device.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kDecodeSparseWarps = 8;  // warps splitting one decode (query, head) row's keys

__global__ void __launch_bounds__(kHeadDim)
    v_prefix_kernel(float *__restrict__ v_prefix, const float *__restrict__ v_chunk, const float *__restrict__ v_init,
                    QkvView x, Dims d) {
    pdl_wait();  // prefill kernels launch with PDL: the kernel before (top-k) may still read Â, where this writes
    pdl_launch_dependents();
    const int c = blockIdx.x, h = blockIdx.y, dd = threadIdx.x;
    const int t0 = c * kChunk, n_rows = min(kChunk, d.T - t0);
    float run = v_init ? v_init[h * kHeadDim + dd] : 0.0f;  // Σ v before row 0 (a continued sequence's state)
    for (int cc = 0; cc < c; ++cc) run += v_chunk[((size_t)cc * d.H + h) * kHeadDim + dd];
    const __half *vb = v_at(x, 0, h) + dd;
    // 16 rows' loads issued before their stores: a store to v_prefix would otherwise order the next load behind it,
    // one memory round trip per row (Nsight Compute: 74% of the kernel's stall samples on that load, IPC 0.25).
    constexpr int kBatch = 16;
    for (int r0 = 0; r0 < n_rows; r0 += kBatch) {
        float v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            v[u] = r0 + u < n_rows ? __half2float(vb[(long long)(t0 + r0 + u) * x.v_row]) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            if (r0 + u < n_rows) {
                run += v[u];
                v_prefix[((size_t)(t0 + r0 + u) * d.H + h) * kHeadDim + dd] = run;
            }
        }
    }
}

// Decode: block (r, h), the query at position pos[r], its keys in the cache of sequence seq[r], Σv (this row's v
// included, by the estimator kernel) in that sequence's state. A decode call has only R·H (query, head) rows, so
// each row's selected keys are split over kDecodeSparseWarps warps (as flash-decoding splits a context): warp w
// takes keys [w·n/W, (w+1)·n/W) of the row's n in steps of 32, one per lane, loading the step's K rows and V rows
// together (one memory round trip), with an fp32 online softmax; warp 0 then merges the warps' (max, sum, Σ p·v) in
// warp order (deterministic) and writes the output (sparse_row_output).
__global__ void __launch_bounds__(kDecodeSparseWarps * kWarpSize, 1)
    decode_sparse_attention_kernel(__half *__restrict__ out, long long out_row, QkvView x, DecodeView v,
                                   const float *__restrict__ gates, const uint32_t *__restrict__ cell_mask, Dims d) {
    __shared__ int s_offs[kMaxK + 1];
    __shared__ float s_q[kHeadDim];
    __shared__ float s_part[kDecodeSparseWarps][kHeadDim + 2];  // Σ p·v (64 dims), then the max and the sum of p
    const int warp = threadIdx.x / kWarpSize;
    const int rh = (int)blockIdx.x;  // (r, h), r-major
    const int r = rh / d.H, h = rh % d.H;
    // Before the wait: q (from the qkv GEMM), the gates and Σv (from this call's estimator kernel) were written four
    // or more kernels back, complete by the time this kernel starts (see the decode estimator kernel,
    // sea_decode_cuda.cu). Only the mask comes from the kernel just before.
    const int t = v.pos[r], seq = v.seq[r], br = v.row[r];
    const long long cache_off = (long long)seq * v.cache_seq_stride + (long long)h * v.cache_head_stride;
    const __half *kb = v.k_cache + cache_off, *vb = v.v_cache + cache_off;
    const int row_len = t + 1;
    const float s = cell_scale(t, d);
    SparseRowMix mx{};
    if (warp == 0) {
        stage_q(s_q, q_at(x, br, h), x.q_scale);
        mx = load_row_mix(gates + (size_t)rh * 2, state_at(v, seq, v.state.v_sum) + (size_t)h * kHeadDim);
    }
    pdl_wait();
    pdl_launch_dependents();
    if (warp == 0) cell_key_offsets(s_offs, cell_mask + (size_t)rh * d.KW, s, row_len, d);
    __syncthreads();
    const int n_keys = s_offs[d.K];
    float m_run, l_run, acc0, acc1;
    sparse_row_warp_part<kDecodeSparseWarps, false>(m_run, l_run, acc0, acc1, s_offs, s_q, kb, vb, -1, nullptr, nullptr, s,
                                             row_len, d, warp);
    sparse_part_store(s_part[warp], m_run, l_run, acc0, acc1);
    __syncthreads();
    if (warp != 0) return;
    float l_all, a0, a1;
    sparse_parts_merge<kDecodeSparseWarps>(l_all, a0, a1, &s_part[0][0]);
    sparse_row_output(out + (long long)br * out_row + (long long)h * kHeadDim, t, n_keys, l_all, a0, a1, mx);
}

}  // namespace

void launch_v_prefix(float *v_prefix, const float *v_chunk, const float *v_init, const QkvView &x, const Dims &d,
                     cudaStream_t stream) {
    const dim3 grid((unsigned)d.n_chunks, (unsigned)d.H);
    launch_kernel("sea v_prefix_kernel", programmatic_launch_enabled(), v_prefix_kernel, grid, dim3(kHeadDim), 0,
                  stream, v_prefix, v_chunk, v_init, x, d);
}

void launch_decode_sparse_attention(__half *out, long long out_row_stride, const QkvView &x, const DecodeView &v,
                                    const float *gates, const uint32_t *cell_mask, const Dims &d,
                                    cudaStream_t stream) {
    launch_kernel("sea decode_sparse_attention_kernel", programmatic_launch_enabled(), decode_sparse_attention_kernel,
                  dim3((unsigned)(d.T * d.H)), dim3(kDecodeSparseWarps * kWarpSize), 0, stream, out, out_row_stride, x, v,
                  gates, cell_mask, d);
}

}  // namespace seaopt::cuda::sea
