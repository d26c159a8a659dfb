// SEA prefill on the GPU (contract: attention/sea_cuda.h): argument checks, the scratch layout, and the stages in
// order. The kernels are in sea_estimator_cuda.cu, sea_cnn_cuda.cu, sea_topk_cuda.cu and sea_sparse_cuda.cu.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <string>

#include "attention/sea_cuda.h"
#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"
#include "engine/error.h"

namespace seaopt::cuda {
namespace {


bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

void check_view(const std::string &who, const half_t *p, int64_t row_stride, int64_t head_stride, const char *what) {
    if (!p) throw_invalid_argument(who + ": " + what + " is NULL");
    if (!aligned16(p) || row_stride < 0 || head_stride < 0 || row_stride % 8 != 0 || head_stride % 8 != 0) {
        throw_invalid_argument(who + ": " + what +
                               " must be 16-byte aligned with non-negative strides that are multiples of 8 (row "
                               "stride " + std::to_string(row_stride) + ", head stride " +
                               std::to_string(head_stride) + ")");
    }
}

}  // namespace

const char *sea_prefill_stage_name(int stage) {
    static const char *const kNames[kSeaPrefillStages] = {
        "performer_state", "performer_scan", "estimator_rows", "conv1",  "conv2",
        "cnn_output",      "topk",           "v_prefix",       "sparse",
    };
    return stage >= 0 && stage < kSeaPrefillStages ? kNames[stage] : "?";
}

namespace sea {

Dims make_dims(const cpu::SeaConfig &cfg, int T) {
    Dims d;
    d.T = T;
    d.H = (int)cfg.n_head;
    d.K = (int)cfg.K;
    d.W4 = d.K / 4;
    d.KH = d.K / 2;
    d.C = 2 * d.H;
    d.KW = (d.K + 31) / 32;
    d.m = (int)cfg.n_features;
    d.k = (int)cfg.k;
    d.n_chunks = (T + kChunk - 1) / kChunk;
    d.kK_f = (float)(cfg.k * cfg.K);  // exact: sea_validate_config keeps k·K <= 2^24
    d.H_f = (float)cfg.n_head;
    d.inv_K = (float)(1.0 / (double)cfg.K);
    d.pos_in = (int)cfg.n_pos_table;
    d.pos_out = (int)cfg.n_pos_ctx;
    d.pos_scale = (float)cfg.n_pos_table / (float)cfg.n_pos_ctx;
    return d;
}

}  // namespace sea

namespace {

// The checks both entry points make on the config, the parameters and the shared memory the kernels need.
void check_config_and_params(const std::string &who, const cpu::SeaConfig &cfg, const SeaDeviceParams &p) {
    cpu::sea_validate_config(cfg);  // SEAOPT_ERR_INVALID_ARGUMENT with the reason
    if (cfg.K > (size_t)sea::kMaxK) {
        throw_unsupported(who + ": K = " + std::to_string(cfg.K) + " (the CUDA kernels take K <= 256)");
    }
    if (cfg.n_features > (size_t)sea::kMaxFeatures) {
        throw_unsupported(who + ": n_features = " + std::to_string(cfg.n_features) +
                          " (the CUDA kernels take at most 64 random features)");
    }
    if (cfg.n_head > 65535) throw_unsupported(who + ": n_head = " + std::to_string(cfg.n_head) + " is too large");
    const float *required[] = {p.pos_table,   p.performer_proj, p.enc_w,      p.enc_b,       p.enc_norm_w,
                               p.enc_norm_b,  p.dec_row_w,      p.dec_row_b,  p.cnn_norm1_w, p.cnn_norm1_b,
                               p.conv1_w,     p.conv1_b,        p.conv2_w,    p.conv2_b,     p.conv4_w,
                               p.conv4_b,     p.cnn_norm2_w,    p.cnn_norm2_b, p.scaler_w,   p.scaler_b};
    for (const float *ptr : required) {
        if (!ptr) throw_invalid_argument(who + ": a required SEA parameter pointer is NULL");
    }
}

// q, k and v views and the output of either entry point (SEAOPT_ERR_INVALID_ARGUMENT naming the bad one).
void check_qkv_and_out(const std::string &who, const cpu::SeaConfig &cfg, const SeaQkv &qkv, const half_t *out,
                       int64_t out_row_stride) {
    check_view(who, qkv.q, qkv.q_row_stride, qkv.q_head_stride, "q");
    check_view(who, qkv.k, qkv.k_row_stride, qkv.k_head_stride, "k");
    check_view(who, qkv.v, qkv.v_row_stride, qkv.v_head_stride, "v");
    const int64_t C = (int64_t)cfg.n_head * sea::kHeadDim;
    if (!out || !aligned16(out) || out_row_stride < C || out_row_stride % 8 != 0) {
        throw_invalid_argument(who + ": out must be non-NULL, 16-byte aligned, with a row stride >= n_head·64 and a "
                                     "multiple of 8 (got " + std::to_string(out_row_stride) + ")");
    }
}

sea::QkvView qkv_view(const SeaQkv &qkv, float q_scale) {
    sea::QkvView x;
    x.q = reinterpret_cast<const __half *>(qkv.q);
    x.k = reinterpret_cast<const __half *>(qkv.k);
    x.v = reinterpret_cast<const __half *>(qkv.v);
    x.q_row = qkv.q_row_stride;
    x.q_head = qkv.q_head_stride;
    x.k_row = qkv.k_row_stride;
    x.k_head = qkv.k_head_stride;
    x.v_row = qkv.v_row_stride;
    x.v_head = qkv.v_head_stride;
    x.q_scale = q_scale;
    return x;
}

// Refuses (SEAOPT_ERR_UNSUPPORTED) a config whose kernels need more shared memory per block than this device grants.
void check_shared_memory(const std::string &who, size_t need) {
    int device = 0, optin = 0;
    SEAOPT_CUDA_CHECK(cudaGetDevice(&device));
    SEAOPT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (need > (size_t)optin) {
        throw_unsupported(who + ": the SEA kernels need " + std::to_string(need) +
                          " bytes of shared memory per block for this config, the device grants " +
                          std::to_string(optin));
    }
}

// SEAOPT_SEA_CONV_FMA=1: the prefill's convs on the CUDA cores even where the tensor-core kernel applies, for
// same-run comparisons.
bool conv_fma_requested() {
    static const bool fma = [] {
        const char *e = std::getenv("SEAOPT_SEA_CONV_FMA");
        return e && e[0] == '1';
    }();
    return fma;
}

}  // namespace

size_t sea_decode_state_bytes(const cpu::SeaConfig &cfg) { return sea_decode_state_layout(cfg).total; }

size_t sea_decode_scratch_bytes(const cpu::SeaConfig &cfg, int R) {
    return sea_decode_scratch_layout(cfg, (size_t)(R < 0 ? 0 : R)).total;
}

void sea_attention_prefill_cuda(const cpu::SeaConfig &cfg, const SeaDeviceParams &p, const SeaQkv &qkv,
                                float q_scale, int T, half_t *out, int64_t out_row_stride, void *scratch,
                                size_t scratch_bytes, cudaStream_t stream, const SeaPrefillDebug *debug,
                                void *state_out, const SeaKvOut &kv_out, int start_pos) {
    const std::string who = "sea_attention_prefill_cuda";
    check_config_and_params(who, cfg, p);
    if (T < 0) throw_invalid_argument(who + ": T = " + std::to_string(T) + " is negative");
    if (start_pos < 0) throw_invalid_argument(who + ": start_pos = " + std::to_string(start_pos) + " is negative");
    const int64_t end = (int64_t)start_pos + T;  // the positions are start_pos .. end - 1
    if ((uint64_t)end > cfg.n_pos_ctx) {
        throw_invalid_argument(who + ": positions up to " + std::to_string(end) + " are beyond the positional table's " +
                               std::to_string(cfg.n_pos_ctx) + " positions (SeaConfig::n_pos_ctx)");
    }
    if (end >= (1 << 24) || (uint64_t)cfg.k * (uint64_t)end >= (1ull << 31)) {
        throw_unsupported(who + ": sizes too large (n_head " + std::to_string(cfg.n_head) + ", positions " +
                          std::to_string(end) + ", k " + std::to_string(cfg.k) + ")");
    }
    if (start_pos > 0 && (!state_out || !kv_out.k)) {
        throw_invalid_argument(who + ": a prefill that continues a sequence (start_pos " + std::to_string(start_pos) +
                               ") needs its state (state_out) and its KV cache (kv_out)");
    }
    check_qkv_and_out(who, cfg, qkv, out, out_row_stride);
    if (!p.weight_frags || !aligned16(p.weight_frags) ||
        (sea_conv_on_tensor_cores(cfg) && (!p.conv_frags || !aligned16(p.conv_frags)))) {
        throw_invalid_argument(who + ": the weights' tensor-core fragments (SeaDeviceParams::weight_frags" +
                               std::string(sea_conv_on_tensor_cores(cfg) ? " and conv_frags" : "") +
                               ", sea_pack_weight_fragments) must be given, 16-byte aligned");
    }
    if (kv_out.k && (!kv_out.v || !aligned16(kv_out.k) || !aligned16(kv_out.v) || kv_out.head_stride < end * 64 ||
                     kv_out.head_stride % 8 != 0)) {
        throw_invalid_argument(who + ": kv_out needs k and v 16-byte aligned and a head stride >= (start_pos + T)·64, "
                                     "a multiple of 8");
    }
    const SeaPrefillScratchLayout L = sea_prefill_scratch_layout(cfg, (size_t)T);
    if (T == 0) return;
    if (!scratch || ((uintptr_t)scratch & 255u) != 0 || scratch_bytes < L.total) {
        throw_invalid_argument(who + ": scratch must be 256-byte aligned and hold sea_prefill_scratch_bytes = " +
                               std::to_string(L.total) + " bytes (got " + std::to_string(scratch_bytes) + ")");
    }

    const SeaDecodeStateLayout S = sea_decode_state_layout(cfg);
    char *state = static_cast<char *>(state_out);
    if (state && ((uintptr_t)state & 255u) != 0) throw_invalid_argument(who + ": state_out must be 256-byte aligned");
    sea::Dims d = sea::make_dims(cfg, T);
    d.p0 = start_pos;
    d.hist = std::min(start_pos, (int)kSeaHistoryRows / 2);

    // Shared memory the kernels need, against what this device grants a block.
    check_shared_memory(who, std::max({sea::performer_state_smem_bytes(d), sea::estimator_rows_smem_bytes(d),
                                       sea::topk_smem_bytes(d) + 2048,
                                       sea::cnn_output_smem_bytes(d) + 12288, sea::sparse_flash_smem_bytes(d),
                                       sea_conv_on_tensor_cores(cfg) ? sea::conv_tc_smem_bytes(d) : 0}));

    const sea::QkvView x = qkv_view(qkv, q_scale);

    char *base = static_cast<char *>(scratch);
    float *shared = reinterpret_cast<float *>(base + L.shared);  // Performer states, then Â, then Σ v
    float *image = reinterpret_cast<float *>(base + L.image);    // decoder image, then the conv2 output
    float *conv1 = reinterpret_cast<float *>(base + L.conv1);
    float *gates = reinterpret_cast<float *>(base + L.gates);
    uint32_t *cell_mask = reinterpret_cast<uint32_t *>(base + L.cell_mask);
    float *v_chunk = reinterpret_cast<float *>(base + L.v_chunk);

    auto mark = [&](int stage) {
        if (debug && debug->stage_events) SEAOPT_CUDA_CHECK(cudaEventRecord(debug->stage_events[stage], stream));
    };
    auto copy = [&](void *dst, const void *src, size_t bytes) {
        if (dst) SEAOPT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
    };
    const SeaPrefillDebug none{};
    const SeaPrefillDebug &dbg = debug ? *debug : none;

    mark(0);
    const SeaWeightFragments F = sea_weight_fragments(cfg);
    const char *wf = static_cast<const char *>(p.weight_frags);
    const bool conv_tc = sea_conv_on_tensor_cores(cfg) && !conv_fma_requested();
    const char *frag = static_cast<const char *>(p.conv_frags);
    const sea::WeightFrags frags{reinterpret_cast<const uint4 *>(wf + F.enc),
                                 reinterpret_cast<const uint4 *>(wf + F.row),
                                 reinterpret_cast<const uint4 *>(wf + F.proj)};
    sea::launch_performer_state(shared, v_chunk, x, p, frags.proj, kv_out, d, stream, (uint32_t)F.total,
                                conv_tc ? (uint32_t)(2 * sea_conv_fragment_bytes(cfg)) : 0u);
    mark(1);
    float *state_perf = state ? reinterpret_cast<float *>(state + S.perf) : nullptr;
    sea::launch_performer_scan(shared, d, start_pos > 0 ? state_perf : nullptr, state_perf, stream);
    mark(2);
    sea::launch_estimator_rows(image, gates, shared, frags, x, p, d, stream);
    copy(dbg.gates, gates, L.gates_bytes);
    copy(dbg.image, image, L.image_bytes);
    if (state) {
        // A continuation's conv history (rows -4 .. -1 of image and conv1) from the rings before they are overwritten.
        sea::launch_history_load(image, conv1, reinterpret_cast<const float *>(state + S.image_ring),
                                 reinterpret_cast<const float *>(state + S.conv1_ring), d, stream);
        sea::launch_ring_store(reinterpret_cast<float *>(state + S.image_ring), image, d, stream);
    }
    mark(3);
    if (conv_tc) {
        sea::launch_causal_conv_tc(conv1, image, frag, p.conv1_b, d, stream);
    } else {
        sea::launch_causal_conv(conv1, image, p.conv1_w, p.conv1_mask, p.conv1_b, d, stream);
    }
    copy(dbg.conv1, conv1, L.conv1_bytes);
    if (state) sea::launch_ring_store(reinterpret_cast<float *>(state + S.conv1_ring), conv1, d, stream);
    mark(4);
    if (conv_tc) {
        sea::launch_causal_conv_tc(image, conv1, frag + sea_conv_fragment_bytes(cfg), p.conv2_b, d, stream);
    } else {
        sea::launch_causal_conv(image, conv1, p.conv2_w, p.conv2_mask, p.conv2_b, d, stream);
    }
    copy(dbg.conv2, image, L.image_bytes);
    mark(5);
    if (sea::cnn_output_topk_fused(d)) {  // one kernel: the "topk" stage is empty
        sea::launch_cnn_output_topk(cell_mask, dbg.probs ? shared : nullptr, image, p, d, stream);
        copy(dbg.probs, shared, L.probs_bytes);
        mark(6);
    } else {
        sea::launch_cnn_output(shared, image, p, d, stream);
        copy(dbg.probs, shared, L.probs_bytes);
        mark(6);
        sea::launch_topk(cell_mask, shared, d, stream);
    }
    copy(dbg.cell_mask, cell_mask, L.cell_mask_bytes);
    mark(7);
    sea::launch_v_prefix(shared, v_chunk, start_pos > 0 ? reinterpret_cast<const float *>(state + S.v_sum) : nullptr,
                         x, d, stream);
    // Σ_{j<T} v_j: the running sums' last row.
    copy(state ? state + S.v_sum : nullptr, shared + (size_t)(T - 1) * cfg.n_head * sea::kHeadDim, S.v_sum_bytes);
    mark(8);
    // Keys and values: the call's own rows, or (continuing a sequence) every position's from the cache.
    sea::QkvView keys = x;
    if (start_pos > 0) {
        keys.k = reinterpret_cast<const __half *>(kv_out.k);
        keys.v = reinterpret_cast<const __half *>(kv_out.v);
        keys.k_row = keys.v_row = sea::kHeadDim;
        keys.k_head = keys.v_head = kv_out.head_stride;
    }
    sea::launch_sparse_flash(reinterpret_cast<__half *>(out), out_row_stride, keys, gates, cell_mask, shared, d,
                             dbg.key_count, dbg.key_sum, stream);
    mark(9);
}

void sea_attention_decode_cuda(const cpu::SeaConfig &cfg, const SeaDeviceParams &p, const SeaQkv &qkv, float q_scale,
                               const SeaDecodeRows &rows, const SeaKvCache &cache, void *states, size_t state_stride,
                               half_t *out, int64_t out_row_stride, void *scratch, size_t scratch_bytes,
                               cudaStream_t stream) {
    const std::string who = "sea_attention_decode_cuda";
    check_config_and_params(who, cfg, p);
    if (rows.R < 0) throw_invalid_argument(who + ": R = " + std::to_string(rows.R) + " is negative");
    if (rows.R == 0) return;
    if (!rows.row || !rows.pos || !rows.seq) throw_invalid_argument(who + ": the row, pos and seq arrays are needed");
    check_qkv_and_out(who, cfg, qkv, out, out_row_stride);
    check_view(who, cache.k, cache.seq_stride, cache.head_stride, "the key cache");
    check_view(who, cache.v, cache.seq_stride, cache.head_stride, "the value cache");
    const SeaDecodeStateLayout S = sea_decode_state_layout(cfg);
    if (!states || ((uintptr_t)states & 255u) != 0 || state_stride < S.total || state_stride % 256 != 0) {
        throw_invalid_argument(who + ": states must be 256-byte aligned, state_stride a multiple of 256 and at least "
                                     "sea_decode_state_bytes = " + std::to_string(S.total));
    }
    const SeaDecodeScratchLayout L = sea_decode_scratch_layout(cfg, (size_t)rows.R);
    if (!scratch || ((uintptr_t)scratch & 255u) != 0 || scratch_bytes < L.total) {
        throw_invalid_argument(who + ": scratch must be 256-byte aligned and hold sea_decode_scratch_bytes = " +
                               std::to_string(L.total) + " bytes (got " + std::to_string(scratch_bytes) + ")");
    }
    sea::Dims d = sea::make_dims(cfg, rows.R);
    d.row_pos = rows.pos;
    check_shared_memory(who, std::max(sea::decode_cnn_output_topk_smem_bytes(d) + 12288,
                                      sea::decode_estimator_smem_bytes(d) + 8192));  // + static arrays

    const sea::QkvView x = qkv_view(qkv, q_scale);
    sea::DecodeView v;
    v.row = rows.row;
    v.pos = rows.pos;
    v.seq = rows.seq;
    v.states = static_cast<char *>(states);
    v.state_stride = (long long)state_stride;
    v.state = S;
    v.k_cache = reinterpret_cast<__half *>(cache.k);
    v.v_cache = reinterpret_cast<__half *>(cache.v);
    v.write_kv = cache.append;
    v.prefetch_max_pos = cache.prefetch_max_pos;
    v.cache_seq_stride = cache.seq_stride;
    v.cache_head_stride = cache.head_stride;

    char *base = static_cast<char *>(scratch);
    float *gates = reinterpret_cast<float *>(base + L.gates);
    float *conv2 = reinterpret_cast<float *>(base + L.conv2);
    float *probs = reinterpret_cast<float *>(base + L.probs);
    uint32_t *cell_mask = reinterpret_cast<uint32_t *>(base + L.cell_mask);
    sea::launch_decode_estimator(gates, x, v, p, d, stream);
    sea::launch_decode_conv(v, S.image_ring, S.conv1_ring, nullptr, p.conv1_w, p.conv1_mask, p.conv1_b, d, stream);
    sea::launch_decode_conv(v, S.conv1_ring, SIZE_MAX, conv2, p.conv2_w, p.conv2_mask, p.conv2_b, d, stream);
    sea::launch_decode_cnn_output_topk(cell_mask, probs, conv2, p, d, stream);
    sea::launch_decode_sparse_attention(reinterpret_cast<__half *>(out), out_row_stride, x, v, gates, cell_mask, d,
                                        stream);
}

}  // namespace seaopt::cuda
