// Internal to attention/: what the SEA prefill kernels share (sizes, device views of the inputs, the fp32
// expressions that must reproduce sea_cpu.cpp bit for bit) and the stage launchers that sea_cuda.cu calls.
// Included by .cu files only. See attention/sea_cuda.h for the overview.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "attention/sea_cuda.h"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::sea {

inline constexpr int kHeadDim = 64;
inline constexpr int kVcat = 128;           // [E_pos row ; v] (sea.md §2.2)
inline constexpr int kStateCols = kVcat + 1;  // a Performer state row: S_kv[j][0..127] and S_k[j] in column 128
inline constexpr int kEncIn = 192;
inline constexpr int kEncHidden = 128;
inline constexpr int kChunk = 64;           // rows per Performer chunk (and per v-prefix chunk)
inline constexpr int kHistoryRows = 8;      // decode: CNN history ring rows (sea_layout.h)
static_assert(kChunk == (int)kSeaChunkRows && kStateCols == (int)kSeaStateCols &&
                  kHistoryRows == (int)kSeaHistoryRows,
              "sea_layout.h sizes the buffers these kernels index");
inline constexpr int kMaxK = 256;           // K ≤ 256: the conv tile and per-warp buffers are sized for it
inline constexpr int kMaxFeatures = 64;     // m ≤ 64
inline constexpr int kConvStoredTaps = 15;  // a stored causal conv kernel: 5 rows × 3 columns, rows 0..2 live
inline constexpr float kLayerNormEps = 1e-5f;
inline constexpr float kFeatureEps = 1e-3f;
inline constexpr float kLinearAttnEps = 1e-6f;
inline constexpr float kFeatureNormalizer = 0.35355339059327373f;  // 64^-1/4 (sea_cpu performer_features)

// Sizes of one call, and the host-computed fp32 constants of the CPU reference's expressions.
struct Dims {
    int T = 0;         // rows (positions 0..T-1)
    int H = 0;         // heads
    int K = 0;         // compressed width
    int W4 = 0;        // K/4
    int KH = 0;        // K/2: row decoder outputs per (t, h)
    int C = 0;         // 2H image channels
    int KW = 0;        // ⌈K/32⌉ mask words per (t, h)
    int m = 0;         // Performer features
    int k = 0;         // per-cell cap (sea.md §2.8)
    int n_chunks = 0;  // ⌈T/64⌉
    // sea_row_budget: fl(fl(fl(1/(t+1)) · (k·K)) · H), round half to even, clamped to [1, H·K].
    float kK_f = 0.0f, H_f = 0.0f;
    // sea_expand_cells_to_keys: s = fl((t+1) · fl(1/K)).
    float inv_K = 0.0f;
    // sea_positional_row_index: identity, halving, or floor(pos · fl(in/out)) clamped to in-1.
    int pos_in = 0, pos_out = 0;
    float pos_scale = 0.0f;
    // Decode: the position of each of the T rows (device array); null in a prefill, where row t is position p0 + t.
    const int32_t *row_pos = nullptr;
    // Prefill: the position of row 0 (> 0: the call continues a sequence of p0 tokens from its decode state and its
    // keys in the cache), and the rows before row 0 that the image and conv1 buffers hold for the convs: min(p0, 4)
    // (rows -hist .. -1, from the state's rings; a row before position 0 is the causal zero padding).
    int p0 = 0, hist = 0;
};

// The Dims of a call of T rows (sea_cuda.cu).
Dims make_dims(const cpu::SeaConfig &cfg, int T);

// Position of query row t: p0 + t in a prefill, row_pos[t] in a decode call.
__device__ __forceinline__ int query_position(int t, const Dims &d) { return d.row_pos ? d.row_pos[t] : d.p0 + t; }

// The rows of a decode call (sea_cuda.h SeaDecodeRows) and where each row's sequence keeps its state and keys.
struct DecodeView {
    const int32_t *row, *pos, *seq;  // [R] each
    char *states;                    // sequence s's state at states + s·state_stride (sea_layout.h layout)
    long long state_stride;
    SeaDecodeStateLayout state;
    __half *k_cache, *v_cache;  // key j of head h of sequence s: k_cache + s·seq_stride + h·head_stride + j·64
    bool write_kv;              // the estimator kernel appends the row's own k and v to the cache (SeaKvCache)
    int prefetch_max_pos;       // SeaKvCache::prefetch_max_pos (the estimator kernel)
    long long cache_seq_stride, cache_head_stride;
};

__device__ __forceinline__ float *state_at(const DecodeView &v, int seq, size_t offset) {
    return reinterpret_cast<float *>(v.states + (long long)seq * v.state_stride + (long long)offset);
}

// q, k, v as the kernels read them (strides in elements; see SeaQkv).
struct QkvView {
    const __half *q, *k, *v;
    long long q_row, q_head, k_row, k_head, v_row, v_head;
    float q_scale;
};

__device__ __forceinline__ const __half *q_at(const QkvView &x, int t, int h) {
    return x.q + (long long)t * x.q_row + (long long)h * x.q_head;
}
__device__ __forceinline__ const __half *k_at(const QkvView &x, int t, int h) {
    return x.k + (long long)t * x.k_row + (long long)h * x.k_head;
}
__device__ __forceinline__ const __half *v_at(const QkvView &x, int t, int h) {
    return x.v + (long long)t * x.v_row + (long long)h * x.v_head;
}

// sea_positional_row_index (PyTorch "nearest" from pos_in to pos_out rows), the same fp32 product.
__device__ __forceinline__ int positional_row(int pos, const Dims &d) {
    if (d.pos_out == d.pos_in) return pos;
    if (d.pos_out == 2 * d.pos_in) return pos >> 1;
    const int idx = (int)floorf(__fmul_rn((float)pos, d.pos_scale));
    return idx < d.pos_in - 1 ? idx : d.pos_in - 1;
}

// sea_row_budget, bit for bit: IEEE division and products (the _rn intrinsics keep them exact whatever the
// compiler flags), rintf = round half to even as torch.round.
__device__ __forceinline__ int row_budget(int t, const Dims &d) {
    const float inv_len = __fdiv_rn(1.0f, (float)(t + 1));
    const float per_head = __fmul_rn(inv_len, d.kK_f);
    const float total = __fmul_rn(per_head, d.H_f);
    const float rounded = rintf(total);
    const int all_cells = d.H * d.K;
    if (!(rounded >= 1.0f)) return 1;
    if (rounded >= (float)all_cells) return all_cells;
    return (int)rounded;
}

// sea_expand_cells_to_keys' interval of cell c in row t: [v0, v1) with v = min(roundf(fl(c·s)), t+1),
// s = fl((t+1)·fl(1/K)), roundf = half away from zero (libdevice, as Triton's tl.math.round).
__device__ __forceinline__ float cell_scale(int t, const Dims &d) { return __fmul_rn((float)(t + 1), d.inv_K); }
__device__ __forceinline__ int cell_edge(int c, float s, int row_len) {
    const int v = (int)roundf(__fmul_rn((float)c, s));
    return v < row_len ? v : row_len;
}

// The parameters encoder_norm_gelu_gates reads: LayerNorm_128's weight and bias [128] each, W_s [2][128], b_s [2]
// (the SeaDeviceParams arrays, or copies of them in shared memory).
struct EncoderNormParams {
    const float *norm_w, *norm_b, *scaler_w, *scaler_b;
};
__device__ __forceinline__ EncoderNormParams encoder_norm_params(const SeaDeviceParams &p) {
    return {p.enc_norm_w, p.enc_norm_b, p.scaler_w, p.scaler_b};
}

// sea.md §2.4 and §2.9 for one (t, h) row, by one warp: zr (128 values in shared memory, the encoder's output
// X W_encᵀ + b) becomes Z = GELU(LayerNorm_128(zr)) (exact erf GELU) in place, and the gate logits
// [s_prob, s_mix] = Z W_sᵀ + b_s are returned in every lane (sea_cpu.cpp encoder_rows, gate_rows).
__device__ __forceinline__ float2 encoder_norm_gelu_gates(float *zr, const EncoderNormParams &p) {
    const int lane = threadIdx.x % kWarpSize;
    float vals[4], sum = 0.0f;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        vals[u] = zr[lane + kWarpSize * u];
        sum += vals[u];
    }
    const float mean = warp_reduce_sum(sum) / (float)kEncHidden;
    float sq = 0.0f;
#pragma unroll
    for (int u = 0; u < 4; ++u) sq += (vals[u] - mean) * (vals[u] - mean);
    const float var = warp_reduce_sum(sq) / (float)kEncHidden;
    const float rstd = 1.0f / sqrtf(var + kLayerNormEps);
    float g0 = 0.0f, g1 = 0.0f;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        const int o = lane + kWarpSize * u;
        float y = (vals[u] - mean) * rstd * p.norm_w[o] + p.norm_b[o];
        y = 0.5f * y * (1.0f + erff(y * 0.70710678118654752f));
        zr[o] = y;
        g0 = fmaf(y, p.scaler_w[o], g0);
        g1 = fmaf(y, p.scaler_w[kEncHidden + o], g1);
    }
    return make_float2(warp_reduce_sum(g0) + p.scaler_b[0], warp_reduce_sum(g1) + p.scaler_b[1]);
}

// sea.md §2.6 step 1 for one image channel, by one thread: dst[i] = LayerNorm_{K/4}(in)[i] (affine, cnn_norm1), over
// W4 = K/4 values (sea_cpu.cpp decoder_image_rows).
__device__ __forceinline__ void image_channel_layernorm(float *dst, const float *in, int W4, const float *gamma,
                                                        const float *beta) {
    float sum = 0.0f;
    for (int i = 0; i < W4; ++i) sum += in[i];
    const float mean = sum / (float)W4;
    float sq = 0.0f;
    for (int i = 0; i < W4; ++i) sq += (in[i] - mean) * (in[i] - mean);
    const float rstd = 1.0f / sqrtf(sq / (float)W4 + kLayerNormEps);
    for (int i = 0; i < W4; ++i) dst[i] = (in[i] - mean) * rstd * gamma[i] + beta[i];
}

// ---- stage launchers (arguments checked by sea_attention_prefill_cuda) ----

// sea_estimator_cuda.cu
size_t performer_state_smem_bytes(const Dims &d);
size_t estimator_rows_smem_bytes(const Dims &d);
// v_chunk: the chunks' Σ v [⌈T/64⌉][H][64], for launch_v_prefix. kv (kv.k null: none): the rows' keys and values
// also into the caller's cache (sea_attention_prefill_cuda's kv_out). The weight fragments' two regions (bytes each)
// are pulled into L2 on the way.
void launch_performer_state(float *states, float *v_chunk, const QkvView &x, const SeaDeviceParams &p,
                            const uint4 *proj_frag, const SeaKvOut &kv, const Dims &d, cudaStream_t stream,
                            uint32_t weight_frag_bytes, uint32_t conv_frag_bytes);
// init (may be null: zeros): the sums over the positions before row 0, [H][m][129] (a decode state's perf,
// sea_layout.h), added to every chunk's prefix. total (may be null): the sums over init and all chunks, same layout;
// it may be init itself (each element is read before it is written, by the same thread).
void launch_performer_scan(float *states, const Dims &d, const float *init, float *total, cudaStream_t stream);
// The linear weights as mma fragments (sea_layout.h SeaWeightFragments, in SeaDeviceParams::weight_frags).
struct WeightFrags {
    const uint4 *enc, *row, *proj;
};
void launch_estimator_rows(float *image, float *gates, const float *states, const WeightFrags &frags, const QkvView &x,
                           const SeaDeviceParams &p, const Dims &d, cudaStream_t stream);
// sea_cnn_cuda.cu
void launch_causal_conv(float *y, const float *x, const float *w, const float *mask, const float *b, const Dims &d,
                        cudaStream_t stream);
// sea_conv_tc_cuda.cu: the same convs on the tensor cores where sea_conv_on_tensor_cores(cfg) holds; frag: one conv's
// fragments (SeaDeviceParams::conv_frags). Dynamic shared memory conv_tc_smem_bytes(d).
size_t conv_tc_smem_bytes(const Dims &d);
void launch_causal_conv_tc(float *y, const float *x, const void *frag, const float *b, const Dims &d,
                           cudaStream_t stream);
size_t cnn_output_smem_bytes(const Dims &d);               // dynamic shared memory; static ~10 KB more
size_t decode_cnn_output_topk_smem_bytes(const Dims &d);   // the same for the decode's kernel; static ~9 KB more
// Prefill: Â [T][H][K] into probs, then launch_topk; or, where cnn_output_topk_fused(d) (K = 64, H ≤ 32), both in one
// kernel, launch_cnn_output_topk (probs may be null: Â is kept only for a debug copy).
bool cnn_output_topk_fused(const Dims &d);
void launch_cnn_output(float *probs, const float *conv2, const SeaDeviceParams &p, const Dims &d,
                       cudaStream_t stream);
void launch_cnn_output_topk(uint32_t *cell_mask, float *probs, const float *conv2, const SeaDeviceParams &p,
                            const Dims &d, cudaStream_t stream);
// Decode: cnn_output and topk of each call row in one block (Â also to probs [R][H][K]); dynamic shared memory
// decode_cnn_output_topk_smem_bytes(d).
void launch_decode_cnn_output_topk(uint32_t *cell_mask, float *probs, const float *conv2, const SeaDeviceParams &p,
                                   const Dims &d, cudaStream_t stream);
// Copies rows max(0, T-4) .. T-1 of an image [T][2H][K/4] into slots (p0 + r) % 8 of a history ring (a decode
// state's).
void launch_ring_store(float *ring, const float *image, const Dims &d, cudaStream_t stream);
// A continued prefill (d.hist > 0): rows -hist .. -1 of the image and conv1 buffers (positions p0 - hist .. p0 - 1)
// from the state's two rings, before the ring stores overwrite them.
void launch_history_load(float *image, float *conv1, const float *image_ring, const float *conv1_ring, const Dims &d,
                         cudaStream_t stream);
// Decode: one causal conv row per call row. Input rows pos, pos-2, pos-4 from the ring at in_offset of the row's
// state; output to the ring at out_offset (slot pos % 8) or, with out_offset = SIZE_MAX, to out [R][2H][K/4].
void launch_decode_conv(const DecodeView &v, size_t in_offset, size_t out_offset, float *out, const float *w,
                        const float *mask, const float *b, const Dims &d, cudaStream_t stream);
// sea_topk_cuda.cu
size_t topk_smem_bytes(const Dims &d);
void launch_topk(uint32_t *cell_mask, const float *probs, const Dims &d, cudaStream_t stream);
// sea_sparse_cuda.cu
// v_chunk: the chunks' Σ v from launch_performer_state; v_init (may be null: zeros): Σ v over the positions before
// row 0, [H][64] (a decode state's v_sum).
void launch_v_prefix(float *v_prefix, const float *v_chunk, const float *v_init, const QkvView &x, const Dims &d,
                     cudaStream_t stream);
// sea_sparse_flash_cuda.cu: the prefill's sparse attention and mixing on the tensor cores -> out (fp16, row stride
// out_row_stride); key_count / key_sum (debug, may be null): each (t, h)'s number of keys and Σ of their indices.
// q of row t from x's row t; the keys and values of position j from x's row j (k_at(x, j, h)): where p0 > 0 the
// caller points x's k and v at the sequence's cache. Dynamic shared memory sparse_flash_smem_bytes(d).
size_t sparse_flash_smem_bytes(const Dims &d);
void launch_sparse_flash(__half *out, long long out_row_stride, const QkvView &x, const float *gates,
                         const uint32_t *cell_mask, const float *v_prefix, const Dims &d, int32_t *key_count,
                         uint32_t *key_sum, cudaStream_t stream);
// Decode: the same per (row, head), q from qkv row row[r], keys from the cache of sequence seq[r], Σv from its state.
void launch_decode_sparse_attention(__half *out, long long out_row_stride, const QkvView &x, const DecodeView &v,
                                    const float *gates, const uint32_t *cell_mask, const Dims &d, cudaStream_t stream);
// sea_decode_cuda.cu: the estimator of one row per call row (Performer step on the state, encoder, gates, row
// decoder): gates -> [R][H][2], the LayerNormed image row -> the image ring (slot pos % 8); Σv += v.
size_t decode_estimator_smem_bytes(const Dims &d);  // dynamic shared memory (the staged weights)
void launch_decode_estimator(float *gates, const QkvView &x, const DecodeView &v, const SeaDeviceParams &p,
                             const Dims &d, cudaStream_t stream);

}  // namespace seaopt::cuda::sea
