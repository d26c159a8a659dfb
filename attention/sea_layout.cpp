#include "attention/sea_layout.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engine/memory_plan.h"

namespace seaopt::cuda {
namespace {

// x = hi + lo as attention/sea_mma.cuh's split_tf32 makes it on the device (same integer rounding, same fp32
// subtraction, which is exact), so the fragments hold the bits the kernels would have formed from the raw weights.
void split_tf32_host(float x, uint32_t &hi, uint32_t &lo) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    hi = (u + 0x1000u) & 0xffffe000u;
    float h;
    std::memcpy(&h, &hi, 4);
    const float l = x - h;
    std::memcpy(&lo, &l, 4);
}

// Fragment i of a job: {b0 hi, b1 hi, b0 lo, b1 lo}.
void put_fragment(char *dst, size_t i, float b0, float b1) {
    uint32_t f[4];
    split_tf32_host(b0, f[0], f[2]);
    split_tf32_host(b1, f[1], f[3]);
    std::memcpy(dst + 16 * i, f, 16);
}

// An nn.Linear weight w [out][in] as B(k, n) = w[n][k]: [in/8][⌈out/8⌉][32 lanes].
void pack_linear(char *dst, const std::vector<float> &w, size_t out, size_t in) {
    const size_t n_tiles = (out + 7) / 8, count = in / 8 * n_tiles * 32;
    for (size_t i = 0; i < count; ++i) {
        const size_t lane = i % 32, nt = i / 32 % n_tiles, k8 = i / 32 / n_tiles;
        const size_t n = 8 * nt + lane / 4, k = 8 * k8 + lane % 4;
        put_fragment(dst, i, n < out ? w[n * in + k] : 0.0f, n < out ? w[n * in + k + 4] : 0.0f);
    }
}

// A causal conv's w ⊙ mask [C][C][5][3] (mask empty: the stored standard mask, ones on the live rows read here) as
// B(ci, co) = w[co][ci][tap] for the 9 live taps: [9][C/8][C/8][32 lanes].
void pack_conv(char *dst, const std::vector<float> &w, const std::vector<float> &mask, size_t C) {
    constexpr size_t kStoredTaps = 15;  // 5 kernel rows × 3 columns, rows 0..2 live
    const size_t n_tiles = C / 8, count = 9 * n_tiles * n_tiles * 32;
    auto value = [&](size_t at) { return mask.empty() ? w[at] : w[at] * mask[at]; };
    for (size_t i = 0; i < count; ++i) {
        const size_t lane = i % 32, nt = i / 32 % n_tiles, rest = i / 32 / n_tiles;
        const size_t ci8 = rest % n_tiles, tap = rest / n_tiles, ci = 8 * ci8 + lane % 4, n = 8 * nt + lane / 4;
        const size_t at0 = (n * C + ci) * kStoredTaps + tap, at1 = at0 + 4 * kStoredTaps;  // input channel ci + 4
        put_fragment(dst, i, value(at0), value(at1));
    }
}

}  // namespace

SeaWeightFragments sea_weight_fragments(const cpu::SeaConfig &cfg) {
    auto bytes = [](size_t out, size_t in) { return in / 8 * ((out + 7) / 8) * 32 * 16; };
    SeaWeightFragments f;
    f.enc = 0;
    f.row = f.enc + bytes(128, 192);
    f.proj = f.row + bytes(cfg.K / 2, 128);
    f.total = f.proj + bytes(cfg.n_features, 64);
    return f;
}

bool sea_conv_on_tensor_cores(const cpu::SeaConfig &cfg) {
    const size_t C = 2 * cfg.n_head;
    return cfg.K == 64 && (C == 24 || C == 32 || C == 64);
}

size_t sea_conv_fragment_bytes(const cpu::SeaConfig &cfg) {
    if (!sea_conv_on_tensor_cores(cfg)) return 0;
    const size_t tiles = 2 * cfg.n_head / 8;
    return 9 * tiles * tiles * 32 * 16;
}

void sea_pack_weight_fragments(const cpu::SeaConfig &cfg, const cpu::SeaParams &params, void *dst) {
    const SeaWeightFragments F = sea_weight_fragments(cfg);
    char *out = static_cast<char *>(dst);
    pack_linear(out + F.enc, params.enc_w, 128, 192);
    pack_linear(out + F.row, params.dec_row_w, cfg.K / 2, 128);
    pack_linear(out + F.proj, params.performer_proj, cfg.n_features, cpu::kSeaHeadDim);
}

void sea_pack_conv_fragments(const cpu::SeaConfig &cfg, const cpu::SeaParams &params, void *dst) {
    const size_t bytes = sea_conv_fragment_bytes(cfg), C = 2 * cfg.n_head;
    if (bytes == 0) return;
    char *out = static_cast<char *>(dst);
    pack_conv(out, params.conv1_w, params.conv1_mask, C);
    pack_conv(out + bytes, params.conv2_w, params.conv2_mask, C);
}

SeaPrefillScratchLayout sea_prefill_scratch_layout(const cpu::SeaConfig &cfg, size_t T) {
    cpu::sea_validate_config(cfg);
    const size_t H = cfg.n_head, K = cfg.K, m = cfg.n_features, W4 = K / 4, C = 2 * H, KW = (K + 31) / 32;
    const size_t n_chunks = (T + kSeaChunkRows - 1) / kSeaChunkRows, f = sizeof(float);
    SeaPrefillScratchLayout L;
    L.perf_state_bytes = n_chunks * H * m * kSeaStateCols * f;
    L.probs_bytes = T * H * K * f;
    L.v_prefix_bytes = T * H * cpu::kSeaHeadDim * f;
    L.shared_bytes = std::max({L.perf_state_bytes, L.probs_bytes, L.v_prefix_bytes});
    L.image_bytes = T * C * W4 * f;
    L.conv1_bytes = L.image_bytes;
    L.gates_bytes = T * H * 2 * f;
    L.cell_mask_bytes = T * H * KW * sizeof(uint32_t);
    L.v_chunk_bytes = n_chunks * H * cpu::kSeaHeadDim * f;
    L.history_bytes = (kSeaHistoryRows / 2 * C * W4 * f + 255) / 256 * 256;
    SequentialPlacer p;
    L.shared = p.place(L.shared_bytes);
    L.image = p.place(L.history_bytes + L.image_bytes) + L.history_bytes;
    L.conv1 = p.place(L.history_bytes + L.conv1_bytes) + L.history_bytes;
    L.gates = p.place(L.gates_bytes);
    L.cell_mask = p.place(L.cell_mask_bytes);
    L.v_chunk = p.place(L.v_chunk_bytes);
    L.total = p.total;
    return L;
}

size_t sea_prefill_scratch_bytes(const cpu::SeaConfig &cfg, size_t T) { return sea_prefill_scratch_layout(cfg, T).total; }

SeaDecodeStateLayout sea_decode_state_layout(const cpu::SeaConfig &cfg) {
    cpu::sea_validate_config(cfg);
    const size_t H = cfg.n_head, m = cfg.n_features, W4 = cfg.K / 4, f = sizeof(float);
    SeaDecodeStateLayout L;
    L.perf_bytes = H * m * kSeaStateCols * f;
    L.v_sum_bytes = H * cpu::kSeaHeadDim * f;
    L.ring_bytes = kSeaHistoryRows * 2 * H * W4 * f;
    SequentialPlacer p;
    L.perf = p.place(L.perf_bytes);
    L.v_sum = p.place(L.v_sum_bytes);
    L.image_ring = p.place(L.ring_bytes);
    L.conv1_ring = p.place(L.ring_bytes);
    L.total = p.total;
    return L;
}

SeaDecodeScratchLayout sea_decode_scratch_layout(const cpu::SeaConfig &cfg, size_t R) {
    cpu::sea_validate_config(cfg);
    const size_t H = cfg.n_head, K = cfg.K, W4 = K / 4, KW = (K + 31) / 32, f = sizeof(float);
    SeaDecodeScratchLayout L;
    L.gates_bytes = R * H * 2 * f;
    L.conv2_bytes = R * 2 * H * W4 * f;
    L.probs_bytes = R * H * K * f;
    L.cell_mask_bytes = R * H * KW * sizeof(uint32_t);
    SequentialPlacer p;
    L.gates = p.place(L.gates_bytes);
    L.conv2 = p.place(L.conv2_bytes);
    L.probs = p.place(L.probs_bytes);
    L.cell_mask = p.place(L.cell_mask_bytes);
    L.total = p.total;
    return L;
}

}  // namespace seaopt::cuda
