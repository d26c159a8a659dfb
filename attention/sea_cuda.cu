// SEA prefill on the GPU (contract: attention/sea_cuda.h): argument checks, the scratch layout, and the stages in
// order. The kernels are in sea_estimator_cuda.cu, sea_cnn_cuda.cu, sea_topk_cuda.cu and sea_sparse_cuda.cu.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "attention/sea_cuda.h"
#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"
#include "engine/error.h"

namespace seaopt::cuda {
namespace {

constexpr const char *kLauncher = "sea_attention_prefill_cuda";

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

void check_view(const half_t *p, int64_t row_stride, int64_t head_stride, const char *what) {
    if (!p) throw_invalid_argument(std::string(kLauncher) + ": " + what + " is NULL");
    if (!aligned16(p) || row_stride < 0 || head_stride < 0 || row_stride % 8 != 0 || head_stride % 8 != 0) {
        throw_invalid_argument(std::string(kLauncher) + ": " + what +
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

SeaPrefillScratchLayout sea_prefill_scratch_layout(const cpu::SeaConfig &cfg, size_t T) {
    cpu::sea_validate_config(cfg);
    const size_t H = cfg.n_head, K = cfg.K, m = cfg.n_features, W4 = K / 4, C = 2 * H, KW = (K + 31) / 32;
    const size_t n_chunks = (T + sea::kChunk - 1) / sea::kChunk, f = sizeof(float);
    SeaPrefillScratchLayout L;
    L.perf_state_bytes = n_chunks * H * m * sea::kStateCols * f;
    L.probs_bytes = T * H * K * f;
    L.v_prefix_bytes = T * H * sea::kHeadDim * f;
    L.shared_bytes = std::max({L.perf_state_bytes, L.probs_bytes, L.v_prefix_bytes});
    L.image_bytes = T * C * W4 * f;
    L.conv1_bytes = L.image_bytes;
    L.gates_bytes = T * H * 2 * f;
    L.cell_mask_bytes = T * H * KW * sizeof(uint32_t);
    L.v_chunk_bytes = n_chunks * H * sea::kHeadDim * f;
    size_t off = 0;
    auto place = [&off](size_t bytes) {
        const size_t at = off;
        off = align256(off + bytes);
        return at;
    };
    L.shared = place(L.shared_bytes);
    L.image = place(L.image_bytes);
    L.conv1 = place(L.conv1_bytes);
    L.gates = place(L.gates_bytes);
    L.cell_mask = place(L.cell_mask_bytes);
    L.v_chunk = place(L.v_chunk_bytes);
    L.total = off;
    return L;
}

size_t sea_prefill_scratch_bytes(const cpu::SeaConfig &cfg, size_t T) {
    return sea_prefill_scratch_layout(cfg, T).total;
}

void sea_attention_prefill_cuda(const cpu::SeaConfig &cfg, const SeaDeviceParams &p, const SeaQkv &qkv,
                                float q_scale, int T, half_t *out, int64_t out_row_stride, void *scratch,
                                size_t scratch_bytes, cudaStream_t stream, const SeaPrefillDebug *debug) {
    const std::string who = kLauncher;
    cpu::sea_validate_config(cfg);  // SEAOPT_ERR_INVALID_ARGUMENT with the reason
    if (T < 0) throw_invalid_argument(who + ": T = " + std::to_string(T) + " is negative");
    if ((size_t)T > cfg.n_pos_ctx) {
        throw_invalid_argument(who + ": T = " + std::to_string(T) + " is beyond the positional table's " +
                               std::to_string(cfg.n_pos_ctx) + " positions (SeaConfig::n_pos_ctx)");
    }
    if (cfg.K > (size_t)sea::kMaxK) {
        throw_unsupported(who + ": K = " + std::to_string(cfg.K) + " (the CUDA kernels take K <= 256)");
    }
    if (cfg.n_features > (size_t)sea::kMaxFeatures) {
        throw_unsupported(who + ": n_features = " + std::to_string(cfg.n_features) +
                          " (the CUDA kernels take at most 64 random features)");
    }
    if (cfg.n_head > 65535 || T >= (1 << 24) || (uint64_t)cfg.k * (uint64_t)T >= (1ull << 31)) {
        throw_unsupported(who + ": sizes too large (n_head " + std::to_string(cfg.n_head) + ", T " +
                          std::to_string(T) + ", k " + std::to_string(cfg.k) + ")");
    }
    const float *required[] = {p.pos_table,   p.performer_proj, p.enc_w,      p.enc_b,       p.enc_norm_w,
                               p.enc_norm_b,  p.dec_row_w,      p.dec_row_b,  p.cnn_norm1_w, p.cnn_norm1_b,
                               p.conv1_w,     p.conv1_b,        p.conv2_w,    p.conv2_b,     p.conv4_w,
                               p.conv4_b,     p.cnn_norm2_w,    p.cnn_norm2_b, p.scaler_w,   p.scaler_b};
    for (const float *ptr : required) {
        if (!ptr) throw_invalid_argument(who + ": a required SEA parameter pointer is NULL");
    }
    check_view(qkv.q, qkv.q_row_stride, qkv.q_head_stride, "q");
    check_view(qkv.k, qkv.k_row_stride, qkv.k_head_stride, "k");
    check_view(qkv.v, qkv.v_row_stride, qkv.v_head_stride, "v");
    const int64_t C = (int64_t)cfg.n_head * sea::kHeadDim;
    if (!out || !aligned16(out) || out_row_stride < C || out_row_stride % 8 != 0) {
        throw_invalid_argument(who + ": out must be non-NULL, 16-byte aligned, with a row stride >= n_head·64 and a "
                                     "multiple of 8 (got " + std::to_string(out_row_stride) + ")");
    }
    const SeaPrefillScratchLayout L = sea_prefill_scratch_layout(cfg, (size_t)T);
    if (T == 0) return;
    if (!scratch || ((uintptr_t)scratch & 255u) != 0 || scratch_bytes < L.total) {
        throw_invalid_argument(who + ": scratch must be 256-byte aligned and hold sea_prefill_scratch_bytes = " +
                               std::to_string(L.total) + " bytes (got " + std::to_string(scratch_bytes) + ")");
    }

    sea::Dims d;
    d.T = T;
    d.H = (int)cfg.n_head;
    d.K = (int)cfg.K;
    d.W4 = d.K / 4;
    d.KH = d.K / 2;
    d.C = 2 * d.H;
    d.KW = (d.K + 31) / 32;
    d.m = (int)cfg.n_features;
    d.k = (int)cfg.k;
    d.n_chunks = (T + sea::kChunk - 1) / sea::kChunk;
    d.kK_f = (float)(cfg.k * cfg.K);  // exact: sea_validate_config keeps k·K <= 2^24
    d.H_f = (float)cfg.n_head;
    d.inv_K = (float)(1.0 / (double)cfg.K);
    d.pos_in = (int)cfg.n_pos_table;
    d.pos_out = (int)cfg.n_pos_ctx;
    d.pos_scale = (float)cfg.n_pos_table / (float)cfg.n_pos_ctx;

    // Shared memory the kernels need, against what this device grants a block.
    int device = 0, optin = 0;
    SEAOPT_CUDA_CHECK(cudaGetDevice(&device));
    SEAOPT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const size_t need = std::max({sea::performer_state_smem_bytes(d), sea::estimator_rows_smem_bytes(d),
                                  sea::topk_smem_bytes(d) + 2048});
    if (need > (size_t)optin) {
        throw_unsupported(who + ": the SEA kernels need " + std::to_string(need) +
                          " bytes of shared memory per block for this config, the device grants " +
                          std::to_string(optin));
    }

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
    sea::launch_performer_state(shared, x, p, d, stream);
    mark(1);
    sea::launch_performer_scan(shared, d, stream);
    mark(2);
    sea::launch_estimator_rows(image, gates, shared, x, p, d, stream);
    copy(dbg.gates, gates, L.gates_bytes);
    copy(dbg.image, image, L.image_bytes);
    mark(3);
    sea::launch_causal_conv(conv1, image, p.conv1_w, p.conv1_mask, p.conv1_b, d, stream);
    copy(dbg.conv1, conv1, L.conv1_bytes);
    mark(4);
    sea::launch_causal_conv(image, conv1, p.conv2_w, p.conv2_mask, p.conv2_b, d, stream);
    copy(dbg.conv2, image, L.image_bytes);
    mark(5);
    sea::launch_cnn_output(shared, image, p, d, stream);
    copy(dbg.probs, shared, L.probs_bytes);
    mark(6);
    sea::launch_topk(cell_mask, shared, d, stream);
    copy(dbg.cell_mask, cell_mask, L.cell_mask_bytes);
    mark(7);
    sea::launch_v_prefix(shared, v_chunk, x, d, stream);
    mark(8);
    sea::launch_sparse_attention(reinterpret_cast<__half *>(out), out_row_stride, x, gates, cell_mask, shared, d,
                                 dbg.key_count, dbg.key_sum, stream);
    mark(9);
}

}  // namespace seaopt::cuda
