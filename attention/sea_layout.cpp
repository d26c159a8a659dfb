#include "attention/sea_layout.h"

#include <algorithm>

namespace seaopt::cuda {
namespace {

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

// Places regions one after another, each 256-byte aligned.
struct Placer {
    size_t off = 0;
    size_t place(size_t bytes) {
        const size_t at = off;
        off = align256(off + bytes);
        return at;
    }
};

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
    L.conv_frag_bytes = 2 * sea_conv_fragment_bytes(cfg);
    L.weight_frag_bytes = sea_weight_fragments(cfg).total;
    Placer p;
    L.shared = p.place(L.shared_bytes);
    L.image = p.place(L.image_bytes);
    L.conv1 = p.place(L.conv1_bytes);
    L.gates = p.place(L.gates_bytes);
    L.cell_mask = p.place(L.cell_mask_bytes);
    L.v_chunk = p.place(L.v_chunk_bytes);
    L.conv_frag = p.place(L.conv_frag_bytes);
    L.weight_frag = p.place(L.weight_frag_bytes);
    L.total = p.off;
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
    Placer p;
    L.perf = p.place(L.perf_bytes);
    L.v_sum = p.place(L.v_sum_bytes);
    L.image_ring = p.place(L.ring_bytes);
    L.conv1_ring = p.place(L.ring_bytes);
    L.total = p.off;
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
    Placer p;
    L.gates = p.place(L.gates_bytes);
    L.conv2 = p.place(L.conv2_bytes);
    L.probs = p.place(L.probs_bytes);
    L.cell_mask = p.place(L.cell_mask_bytes);
    L.total = p.off;
    return L;
}

}  // namespace seaopt::cuda
