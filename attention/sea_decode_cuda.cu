// SEA incremental decode, the estimator's front half for one new row per sequence (sea.md §2.12; sea_cpu.cpp
// sea_attention_decode_cpu_cached up to the CNN): one block of 256 threads per (row, head).
//   1. φ(q_t), φ(k_t) (performer_features), V_cat_t = [E_pos[row(t)] ; v_t];
//   2. the Performer step on the sequence's state: S_k += φ(k_t), S_kv += φ(k_t) ⊗ V_cat_t (written back), then
//      C_perf = φ(q_t)ᵀ S_kv / (φ(q_t) · (S_k + 1e-6)) (performer_step); Σv += v_t;
//   3. Z = GELU(LN_128([C_perf ; v_t] W_encᵀ + b)), the gates Z W_sᵀ + b_s, the row decoder Z W_rowᵀ + b_row split
//      into channels 2h, 2h+1 and LayerNormed over K/4 -> the image row, into the state's image ring (slot t % 8).
// At t = 0 the state's old contents are not read (zero sums): a cleared sequence needs no reset. The weights (123 KB
// at K = 64) are staged in shared memory before the PDL wait, overlapping the kernel before (W_enc and W_row by
// cp.async.bulk on sm_90), and so are the state's old values. After the wait one warp per block starts the L2
// prefetch of its head's cached keys and values (SeaKvCache::prefetch_max_pos).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_decode_device.cuh"
#include "engine/cuda/bulk_copy.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"

namespace seaopt::cuda::sea {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kOutsPerRound = 4;  // outputs a warp reduces at once: independent loads in flight
static_assert(kThreads >= kStateCols && kThreads >= 2 * kHeadDim, "one thread per state column / staged value");


__global__ void __launch_bounds__(kThreads)
    decode_estimator_kernel(float *__restrict__ gates, QkvView x, DecodeView v, SeaDeviceParams p, Dims d) {
    __shared__ float xq[kHeadDim], xk[kHeadDim], phq[kMaxFeatures], phk[kMaxFeatures];
    __shared__ float vc[kStateCols];   // [E_pos ; v ; 1]
    __shared__ float X[kEncIn];        // [C_perf ; v]
    __shared__ float z[kEncHidden];
    __shared__ float R[kMaxK / 2];
    __shared__ float norm1[2][kMaxK / 4];  // the image LayerNorm's gamma and beta
    // The encoder's bias, LayerNorm_128's weight and bias, W_s [2][128] and b_s, and the row decoder's bias: read in
    // the chain after the wait, each load from global memory a round trip (ordered behind the shared stores before
    // it), so staged before the wait with the other parameters.
    __shared__ float enc_b[kEncHidden], enc_norm[2][kEncHidden], scaler_w[2 * kEncHidden], scaler_b[2];
    __shared__ float row_b[kMaxK / 2];
    __shared__ float s_den;
    extern __shared__ float4 wsm4[];  // the weights: W_enc [128][192], W_row [K/2][128], W_perf [m][65]
    float *w_enc = reinterpret_cast<float *>(wsm4), *w_row = w_enc + kEncHidden * kEncIn;
    float *w_perf = w_row + d.KH * kEncHidden;
    const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
    const int m = d.m;
    // Weights do not depend on earlier kernels: staged while the kernel before this one finishes (PDL). On sm_90
    // W_enc and W_row (114 KB at K = 64) go on the copy engine (cp.async.bulk, completing on wbar, waited for
    // before the encoder) instead of 30 iterations of load and store per thread.
    bool bulk = false;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    __shared__ alignas(8) uint64_t wbar;
    bulk = ((reinterpret_cast<uintptr_t>(p.enc_w) | reinterpret_cast<uintptr_t>(p.dec_row_w)) & 15u) == 0;
    if (bulk && tid == 0) {
        const uint32_t enc_bytes = kEncHidden * kEncIn * 4, row_bytes = (uint32_t)d.KH * kEncHidden * 4;
        mbar_init(&wbar, 1);
        mbar_init_fence();
        mbar_arrive_expect_tx(&wbar, enc_bytes + row_bytes);
        bulk_load(w_enc, p.enc_w, enc_bytes, &wbar);
        bulk_load(w_row, p.dec_row_w, row_bytes, &wbar);
    }
#endif
    if (!bulk) {
        const float4 *src = reinterpret_cast<const float4 *>(p.enc_w);
        for (int i = tid; i < kEncHidden * kEncIn / 4; i += kThreads) wsm4[i] = src[i];
        const float4 *srow = reinterpret_cast<const float4 *>(p.dec_row_w);
        float4 *drow = reinterpret_cast<float4 *>(w_row);
        for (int i = tid; i < d.KH * kEncHidden / 4; i += kThreads) drow[i] = srow[i];
    }
    for (int i = tid; i < m * kHeadDim; i += kThreads) {
        w_perf[(i / kHeadDim) * (kHeadDim + 1) + i % kHeadDim] = p.performer_proj[i];
    }
    if (tid < d.W4) {
        norm1[0][tid] = p.cnn_norm1_w[tid];
        norm1[1][tid] = p.cnn_norm1_b[tid];
    }
    if (tid < kEncHidden) {
        enc_b[tid] = p.enc_b[tid];
        enc_norm[0][tid] = p.enc_norm_w[tid];
        enc_norm[1][tid] = p.enc_norm_b[tid];
        scaler_w[tid] = p.scaler_w[tid];
        scaler_w[kEncHidden + tid] = p.scaler_w[kEncHidden + tid];
    }
    if (tid < 2) scaler_b[tid] = p.scaler_b[tid];
    if (tid < d.KH) row_b[tid] = p.dec_row_b[tid];
    // Also before the wait: the row's position and sequence (staged before the step's first kernel) and the
    // sequence's state as this layer's previous call left it -- the m old values of a state column, the old Σv, the
    // positional row. No kernel still running writes them: the kernels of a step call pdl_launch_dependents only
    // after their pdl_wait, so when this kernel starts, every kernel before the one just before it has completed
    // (engine/cuda/pdl.cuh), and this layer's previous call is further back than that.
    const int pos = v.pos[r], seq = v.seq[r], br = v.row[r];
    const bool fresh = pos == 0;
    float *perf = state_at(v, seq, v.state.perf) + (size_t)h * m * kStateCols;
    float *vsum = state_at(v, seq, v.state.v_sum) + (size_t)h * kHeadDim;
    float old[kMaxFeatures];
    if (tid < kStateCols) {
#pragma unroll
        for (int j = 0; j < kMaxFeatures; ++j) old[j] = (j < m && !fresh) ? perf[(size_t)j * kStateCols + tid] : 0.0f;
    }
    float vsum_old = 0.0f;
    if (tid < kHeadDim) {
        vsum_old = fresh ? 0.0f : vsum[tid];
        vc[tid] = p.pos_table[(size_t)positional_row(pos, d) * kHeadDim + tid];
    }
    if (tid == 0) vc[kVcat] = 1.0f;
    pdl_wait();  // q, k, v come from the kernel before (engine/cuda/pdl.cuh)
    pdl_launch_dependents();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // The last warp is idle until the encoder: it pulls this head's keys (lane 0) and values (lane 1) 0 .. pos-1 into
    // L2 for the sparse attention at the end of the call (SeaKvCache::prefetch_max_pos).
    if (warp == kWarps - 1 && lane < 2 && pos > 0 && pos <= v.prefetch_max_pos) {
        const long long at = (long long)seq * v.cache_seq_stride + (long long)h * v.cache_head_stride;
        bulk_prefetch_l2((lane == 0 ? v.k_cache : v.v_cache) + at, (uint32_t)pos * kHeadDim * 2u);
    }
#endif

    if (tid < kHeadDim) {
        const float qv = __fmul_rn(__half2float(q_at(x, br, h)[tid]), x.q_scale);
        xq[tid] = __fmul_rn(kFeatureNormalizer, qv);
        xk[tid] = __fmul_rn(kFeatureNormalizer, __half2float(k_at(x, br, h)[tid]));
        if (v.write_kv) {  // the row's own key and value into the cache (SeaKvCache::append)
            const long long at = (long long)seq * v.cache_seq_stride + (long long)h * v.cache_head_stride +
                                 (long long)pos * kHeadDim + tid;
            v.k_cache[at] = k_at(x, br, h)[tid];
            v.v_cache[at] = v_at(x, br, h)[tid];
        }
        const float vv = __half2float(v_at(x, br, h)[tid]);
        vc[kHeadDim + tid] = vv;
        X[kVcat + tid] = vv;
        vsum[tid] = vsum_old + vv;
    }
    __syncthreads();
    decode_features(phq, phk, xq, xk, w_perf, m, tid);
    __syncthreads();
    // The state's column e (S_kv[·][e], or S_k in column 128) += φ(k) · V_cat[e]; the numerator (denominator).
    // The m old values of the column were loaded before the PDL wait.
    if (tid < kStateCols) {
        const int e = tid;
        const float acc = performer_state_column(perf, phq, phk, vc[e], e, m, [&](int j) { return old[j]; });
        if (e == kVcat) {
            s_den = acc;
        } else {
            X[e] = acc;
        }
    }
    __syncthreads();
    if (tid < kVcat) X[tid] *= 1.0f / s_den;
    __syncthreads();
    // Encoder (sea.md §2.4).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (bulk) mbar_wait(&wbar, 0);  // W_enc and W_row have landed (thread 0's mbarrier init is behind barriers)
#endif
    warp_gemv<kEncIn, kWarps, kOutsPerRound>(z, X, w_enc, enc_b, kEncHidden);
    __syncthreads();
    // LayerNorm_128 + exact GELU, and the gates (sea.md §2.9).
    if (warp == 0) {
        const float2 gt = encoder_norm_gelu_gates(z, EncoderNormParams{enc_norm[0], enc_norm[1], scaler_w, scaler_b});
        if (lane == 0) {
            float *g = gates + ((size_t)r * d.H + h) * 2;
            g[0] = gt.x;
            g[1] = gt.y;
        }
    }
    __syncthreads();
    // Row decoder (sea.md §2.5).
    warp_gemv<kEncHidden, kWarps, kOutsPerRound>(R, z, w_row, row_b, d.KH);
    __syncthreads();
    // Channels 2h and 2h+1, LayerNorm over K/4 (sea.md §2.6 step 1), into the image ring.
    if (tid < 2) {
        float *ring = state_at(v, seq, v.state.image_ring);
        image_channel_layernorm(ring + ((size_t)(pos % kHistoryRows) * d.C + 2 * h + tid) * d.W4, R + tid * d.W4, d.W4,
                                norm1[0], norm1[1]);
    }
}

}  // namespace

size_t decode_estimator_smem_bytes(const Dims &d) {
    return ((size_t)kEncHidden * kEncIn + (size_t)d.KH * kEncHidden + (size_t)d.m * (kHeadDim + 1)) * sizeof(float);
}

void launch_decode_estimator(float *gates, const QkvView &x, const DecodeView &v, const SeaDeviceParams &p,
                             const Dims &d, cudaStream_t stream) {
    const size_t smem = decode_estimator_smem_bytes(d);
    if (smem > (size_t(48) << 10)) {
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(decode_estimator_kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(decode_estimator)", __FILE__, __LINE__);
    }
    launch_kernel("sea decode_estimator_kernel", programmatic_launch_enabled(), decode_estimator_kernel,
                  dim3((unsigned)d.T, (unsigned)d.H), dim3(kThreads), smem, stream, gates, x, v, p, d);
}

}  // namespace seaopt::cuda::sea
