// The SEA GPU buffer layouts (attention/sea_layout.h), which the memory planner sizes in every build: the prefill
// scratch's regions are disjoint, 256-byte aligned and inside the total; the weight fragments have the sizes the
// kernels index ([in/8 k-steps][⌈out/8⌉ n-tiles][32 lanes] × 16 bytes; a conv: [9 taps][2H/8][2H/8][32 lanes] × 16
// bytes) and, packed on the host (sea_pack_weight_fragments, sea_pack_conv_fragments), hold each weight at the place
// the mma B-fragment layout gives it, split exactly into a tf32 high part and the rest; the convs take the tensor
// cores only where their kernel exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "attention/sea_layout.h"

namespace {

using seaopt::cpu::SeaConfig;

SeaConfig config(size_t H, size_t K, size_t k = 64, size_t m = 33) {
    SeaConfig c;
    c.n_head = H;
    c.K = K;
    c.k = k;
    c.n_features = m;
    return c;
}

// Every region [offset, offset + bytes) of the layout: aligned, inside the total, pairwise disjoint.
void expect_disjoint(const seaopt::cuda::SeaPrefillScratchLayout &L) {
    // image and conv1 with the history rows before them (rows -4 .. -1 of a continued prefill).
    EXPECT_EQ(L.history_bytes % 256, 0u);
    std::vector<std::pair<size_t, size_t>> r = {{L.shared, L.shared_bytes},
                                                {L.image - L.history_bytes, L.history_bytes + L.image_bytes},
                                                {L.conv1 - L.history_bytes, L.history_bytes + L.conv1_bytes},
                                                {L.gates, L.gates_bytes},
                                                {L.cell_mask, L.cell_mask_bytes},
                                                {L.v_chunk, L.v_chunk_bytes}};
    std::sort(r.begin(), r.end());
    for (size_t i = 0; i < r.size(); ++i) {
        EXPECT_EQ(r[i].first % 256, 0u) << "region at " << r[i].first;
        EXPECT_LE(r[i].first + r[i].second, L.total);
        if (i > 0) {
            EXPECT_LE(r[i - 1].first + r[i - 1].second, r[i].first) << "regions overlap";
        }
    }
}

TEST(SeaLayout, Opt13bPrefillScratch) {
    const SeaConfig c = config(32, 64);
    const auto F = seaopt::cuda::sea_weight_fragments(c);
    EXPECT_EQ(F.enc, 0u);
    EXPECT_EQ(F.row - F.enc, 192u / 8 * 16 * 32 * 16);  // W_enc [128, 192]
    EXPECT_EQ(F.proj - F.row, 128u / 8 * 4 * 32 * 16);  // W_row [32, 128]
    EXPECT_EQ(F.total - F.proj, 64u / 8 * 5 * 32 * 16);  // the projection [33, 64]: 5 tiles of 8 features
    EXPECT_TRUE(seaopt::cuda::sea_conv_on_tensor_cores(c));
    EXPECT_EQ(seaopt::cuda::sea_conv_fragment_bytes(c), 9u * 8 * 8 * 32 * 16);  // 2H = 64: 8 × 8 tiles
    const auto L = seaopt::cuda::sea_prefill_scratch_layout(c, 2048);
    expect_disjoint(L);
    // The sizes of sea.md's shapes: Performer chunk states 32·32·33·129 floats (the largest of the shared region),
    // image and conv1 (4 + 2048)·64·16 floats each (the 4 history rows), gates and masks 2048·32·2 words each, Σv
    // chunks 32·32·64 floats.
    const size_t f = sizeof(float);
    EXPECT_EQ(L.history_bytes, 4u * 64 * 16 * f);
    EXPECT_EQ(L.total, (32u * 32 * 33 * 129 + 2 * 2052u * 64 * 16 + 2 * 2048u * 32 * 2 + 32u * 32 * 64) * f);
    EXPECT_EQ(L.total, 35557376u);  // 33.9 MiB: the figure sea_layout.h and the README quote
}

TEST(SeaLayout, ShapesWithoutTheTensorCoreConv) {
    // K = 20 (K/4 = 5 columns) and H = 4 (2H = 8): the convs run on the CUDA cores, no conv fragments; W_row [10, 128]
    // takes two tiles of 8 outputs (the second half empty), the projection [16, 64] two.
    for (const SeaConfig &c : {config(4, 20, 2, 16), config(4, 64, 64, 16), config(12, 16, 4, 16)}) {
        EXPECT_FALSE(seaopt::cuda::sea_conv_on_tensor_cores(c)) << "H " << c.n_head << " K " << c.K;
        EXPECT_EQ(seaopt::cuda::sea_conv_fragment_bytes(c), 0u);
        expect_disjoint(seaopt::cuda::sea_prefill_scratch_layout(c, 130));
    }
    const auto F = seaopt::cuda::sea_weight_fragments(config(4, 20, 2, 16));
    EXPECT_EQ(F.proj - F.row, 128u / 8 * 2 * 32 * 16);
    EXPECT_EQ(F.total - F.proj, 64u / 8 * 2 * 32 * 16);
    // OPT-125m (H 12) and 350m (H 16) at K = 64 do take it.
    EXPECT_TRUE(seaopt::cuda::sea_conv_on_tensor_cores(config(12, 64)));
    EXPECT_TRUE(seaopt::cuda::sea_conv_on_tensor_cores(config(16, 64)));
    EXPECT_EQ(seaopt::cuda::sea_conv_fragment_bytes(config(12, 64)), 9u * 3 * 3 * 32 * 16);
}

// Random values over many binades, with the rounding cases of the tf32 split among them: exact halfway points (low
// 13 bits 0x1000, which round away from zero), values just below, negative ones, zeros.
std::vector<float> tricky_values(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
        float x = u(rng) * std::ldexp(1.0f, (int)(rng() % 20) - 10);
        uint32_t b;
        std::memcpy(&b, &x, 4);
        if (i % 7 == 1) b = (b & ~0x1fffu) | 0x1000u;  // a tie
        if (i % 7 == 2) b = (b & ~0x1fffu) | 0x0fffu;  // just below a tie
        std::memcpy(&x, &b, 4);
        v[i] = i % 11 == 3 ? 0.0f : x;
    }
    return v;
}

uint32_t word(const std::vector<char> &bytes, size_t fragment, int k) {
    uint32_t w;
    std::memcpy(&w, bytes.data() + 16 * fragment + 4 * k, 4);
    return w;
}
float as_float(uint32_t w) {
    float x;
    std::memcpy(&x, &w, 4);
    return x;
}

// b = hi + lo exactly, hi a tf32 value (13 low bits clear) within half a tf32 ulp of b, ties away from zero.
void expect_split(float b, uint32_t hi, uint32_t lo, const char *what) {
    EXPECT_EQ(hi & 0x1fffu, 0u) << what;
    EXPECT_EQ(as_float(hi) + as_float(lo), b) << what;
    uint32_t bits;
    std::memcpy(&bits, &b, 4);
    const uint32_t expect_hi = (bits & 0x1fffu) >= 0x1000u ? (bits & ~0x1fffu) + 0x2000u : bits & ~0x1fffu;
    EXPECT_EQ(hi, expect_hi) << what << " " << b;
}

TEST(SeaLayout, PackedFragmentsHoldTheSplitWeights) {
    const SeaConfig c = config(12, 64, 64, 33);  // OPT-125m: 2H = 24, the tensor-core convs
    const size_t C = 2 * c.n_head;
    seaopt::cpu::SeaParams p;
    p.enc_w = tricky_values(128 * 192, 1);
    p.dec_row_w = tricky_values(32 * 128, 2);
    p.performer_proj = tricky_values(33 * 64, 3);
    p.conv1_w = tricky_values(C * C * 15, 4);
    p.conv2_w = tricky_values(C * C * 15, 5);
    p.conv2_mask = tricky_values(C * C * 15, 6);  // a given mask multiplies in
    const auto F = seaopt::cuda::sea_weight_fragments(c);
    std::vector<char> lin(F.total), conv(2 * seaopt::cuda::sea_conv_fragment_bytes(c));
    seaopt::cuda::sea_pack_weight_fragments(c, p, lin.data());
    seaopt::cuda::sea_pack_conv_fragments(c, p, conv.data());

    // Linear w [out][in]: fragment (k8, nt, lane) holds b0 = w[8nt + lane/4][8k8 + lane%4], b1 = the input 4 later.
    auto check_linear = [&](size_t offset, const std::vector<float> &w, size_t out, size_t in, const char *what) {
        const size_t n_tiles = (out + 7) / 8;
        for (size_t k8 = 0; k8 < in / 8; ++k8)
            for (size_t nt = 0; nt < n_tiles; ++nt)
                for (size_t lane = 0; lane < 32; ++lane) {
                    const size_t i = offset / 16 + (k8 * n_tiles + nt) * 32 + lane, n = 8 * nt + lane / 4;
                    const size_t k = 8 * k8 + lane % 4;
                    expect_split(n < out ? w[n * in + k] : 0.0f, word(lin, i, 0), word(lin, i, 2), what);
                    expect_split(n < out ? w[n * in + k + 4] : 0.0f, word(lin, i, 1), word(lin, i, 3), what);
                }
    };
    check_linear(F.enc, p.enc_w, 128, 192, "W_enc");
    check_linear(F.row, p.dec_row_w, 32, 128, "W_row");
    check_linear(F.proj, p.performer_proj, 33, 64, "projection");  // 5 tiles: features 33..39 are zero

    // Conv: fragment (tap, ci8, nt, lane) holds (w ⊙ mask)[co = 8nt + lane/4][ci = 8ci8 + lane%4][tap], tap = 3a + b
    // over the live kernel rows a = 0..2 of the stored [5][3], and the input channel ci + 4.
    const size_t tiles = C / 8, per_conv = 9 * tiles * tiles * 32;
    for (int which = 0; which < 2; ++which) {
        const std::vector<float> &w = which ? p.conv2_w : p.conv1_w;
        for (size_t tap = 0; tap < 9; ++tap)
            for (size_t ci8 = 0; ci8 < tiles; ++ci8)
                for (size_t nt = 0; nt < tiles; ++nt)
                    for (size_t lane = 0; lane < 32; ++lane) {
                        const size_t i = which * per_conv + ((tap * tiles + ci8) * tiles + nt) * 32 + lane;
                        const size_t co = 8 * nt + lane / 4, ci = 8 * ci8 + lane % 4;
                        const size_t at0 = (co * C + ci) * 15 + tap, at1 = (co * C + ci + 4) * 15 + tap;
                        const float b0 = which ? w[at0] * p.conv2_mask[at0] : w[at0];
                        const float b1 = which ? w[at1] * p.conv2_mask[at1] : w[at1];
                        expect_split(b0, word(conv, i, 0), word(conv, i, 2), "conv");
                        expect_split(b1, word(conv, i, 1), word(conv, i, 3), "conv");
                    }
    }
}

}  // namespace
