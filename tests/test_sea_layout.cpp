// The SEA GPU buffer layouts (attention/sea_layout.h), which the memory planner sizes in every build: the prefill
// scratch's regions are disjoint, 256-byte aligned and inside the total; the weight fragments have the sizes the
// kernels index (attention/sea_fragments_cuda.cu: [in/8 k-steps][⌈out/8⌉ n-tiles][32 lanes] × 16 bytes; a conv:
// [9 taps][2H/8][2H/8][32 lanes] × 16 bytes); the convs take the tensor cores only where their kernel exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
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
    std::vector<std::pair<size_t, size_t>> r = {{L.shared, L.shared_bytes},       {L.image, L.image_bytes},
                                                {L.conv1, L.conv1_bytes},         {L.gates, L.gates_bytes},
                                                {L.cell_mask, L.cell_mask_bytes}, {L.v_chunk, L.v_chunk_bytes},
                                                {L.conv_frag, L.conv_frag_bytes}, {L.weight_frag, L.weight_frag_bytes}};
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
    EXPECT_EQ(L.conv_frag_bytes, 2 * seaopt::cuda::sea_conv_fragment_bytes(c));
    EXPECT_EQ(L.weight_frag_bytes, F.total);
    expect_disjoint(L);
    // The sizes of sea.md's shapes: Performer chunk states 32·32·33·129 floats (the largest of the shared region),
    // image and conv1 2048·64·16 floats each, gates and masks 2048·32·2 words each, Σv chunks 32·32·64 floats.
    const size_t f = sizeof(float);
    EXPECT_EQ(L.total, (32u * 32 * 33 * 129 + 2 * 2048u * 64 * 16 + 2 * 2048u * 32 * 2 + 32u * 32 * 64) * f +
                           L.conv_frag_bytes + L.weight_frag_bytes);
    EXPECT_EQ(L.total, 36364288u);  // 34.7 MiB: the figure sea_layout.h and the README quote
}

TEST(SeaLayout, ShapesWithoutTheTensorCoreConv) {
    // K = 20 (K/4 = 5 columns) and H = 4 (2H = 8): the convs run on the CUDA cores, no conv fragments; W_row [10, 128]
    // takes two tiles of 8 outputs (the second half empty), the projection [16, 64] two.
    for (const SeaConfig &c : {config(4, 20, 2, 16), config(4, 64, 64, 16), config(12, 16, 4, 16)}) {
        EXPECT_FALSE(seaopt::cuda::sea_conv_on_tensor_cores(c)) << "H " << c.n_head << " K " << c.K;
        EXPECT_EQ(seaopt::cuda::sea_conv_fragment_bytes(c), 0u);
        const auto L = seaopt::cuda::sea_prefill_scratch_layout(c, 130);
        EXPECT_EQ(L.conv_frag_bytes, 0u);
        expect_disjoint(L);
    }
    const auto F = seaopt::cuda::sea_weight_fragments(config(4, 20, 2, 16));
    EXPECT_EQ(F.proj - F.row, 128u / 8 * 2 * 32 * 16);
    EXPECT_EQ(F.total - F.proj, 64u / 8 * 2 * 32 * 16);
    // OPT-125m (H 12) and 350m (H 16) at K = 64 do take it.
    EXPECT_TRUE(seaopt::cuda::sea_conv_on_tensor_cores(config(12, 64)));
    EXPECT_TRUE(seaopt::cuda::sea_conv_on_tensor_cores(config(16, 64)));
    EXPECT_EQ(seaopt::cuda::sea_conv_fragment_bytes(config(12, 64)), 9u * 3 * 3 * 32 * 16);
}

}  // namespace
