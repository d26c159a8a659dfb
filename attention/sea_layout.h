// Byte layouts of the SEA attention's GPU memory, in plain C++ so that the memory planner (engine/memory_plan.cpp)
// can size them in every build: the prefill's scratch, the decode step's scratch, and the decode state a sequence
// keeps per SEA layer (sea.md §2.12). The kernels (attention/sea_*_cuda.cu) index with the same offsets.
#pragma once

#include <cstddef>

#include "attention/sea_cpu.h"

namespace seaopt::cuda {

// Fixed shapes of the kernels' buffers.
inline constexpr size_t kSeaChunkRows = 64;       // rows per Performer chunk (and per Σv chunk)
inline constexpr size_t kSeaStateCols = 129;      // a Performer state row: S_kv[j][0..127] and S_k[j] in column 128
inline constexpr size_t kSeaHistoryRows = 8;      // decode: rows of the CNN history rings (row r in slot r % 8)

// Scratch memory of one prefill call, byte offsets into the caller's buffer (each 256-byte aligned). Regions
// whose lives do not overlap share memory: `shared` holds the Performer chunk states (stages 0-2), then Â (5-6),
// then the running sums of v (7-8). `image` holds the decoder image (2-3) and then the conv2 output (4-5).
// `image` and `conv1` are each preceded by history_bytes: rows -4 .. -1, which a call that continues a sequence
// fills from the sequence's state for the convs (the region of `image` is [image - history_bytes, image +
// image_bytes)).
struct SeaPrefillScratchLayout {
    size_t shared = 0, shared_bytes = 0;          // max(perf_state_bytes, probs_bytes, v_prefix_bytes)
    size_t perf_state_bytes = 0;                  // ⌈T/64⌉·H·m·129 floats
    size_t probs_bytes = 0;                       // T·H·K floats
    size_t v_prefix_bytes = 0;                    // T·H·64 floats
    size_t image = 0, image_bytes = 0;            // T·2H·K/4 floats
    size_t conv1 = 0, conv1_bytes = 0;            // T·2H·K/4 floats
    size_t history_bytes = 0;                     // 4·2H·K/4 floats, rounded up to 256 bytes
    size_t gates = 0, gates_bytes = 0;            // T·H·2 floats
    size_t cell_mask = 0, cell_mask_bytes = 0;    // T·H·⌈K/32⌉ uint32
    size_t v_chunk = 0, v_chunk_bytes = 0;        // ⌈T/64⌉·H·64 floats
    size_t total = 0;
};
// The estimator's linear weights (nn.Linear [out][in]) split into tf32 mma B fragments for the prefill kernels
// (SeaDeviceParams::weight_frags, made once with the parameters by sea_pack_weight_fragments), byte offsets:
// [in/8 k-steps][⌈out/8⌉ n-tiles][32 lanes] × 16 bytes each.
struct SeaWeightFragments {
    size_t enc = 0;    // W_enc [128, 192]
    size_t row = 0;    // W_row [K/2, 128]
    size_t proj = 0;   // the Performer projection [m, 64]
    size_t total = 0;
};
SeaWeightFragments sea_weight_fragments(const cpu::SeaConfig &cfg);
// Whether the prefill's two causal convs run on the tensor cores (3xTF32): K = 64 (K/4 = 16 columns, one mma row
// tile) and 2H in {24, 32, 64} (OPT-125m, 350m, 1.3B). Other shapes run the CUDA-core conv.
bool sea_conv_on_tensor_cores(const cpu::SeaConfig &cfg);
// Bytes of one conv's weight fragments (9 taps × (2H/8)² tiles × 32 lanes × 16 bytes); 0 where the convs run on
// the CUDA cores.
size_t sea_conv_fragment_bytes(const cpu::SeaConfig &cfg);

// The prefill kernels read these weights as tensor-core B fragments already split for 3xTF32 (attention/sea_mma.cuh):
// each 16-byte fragment is {b0 hi, b1 hi, b0 lo, b1 lo} for one lane of one (k-step, n-tile), hi = tf32(x) rounded
// to nearest with ties away (cvt.rna), lo = x − hi, exactly the split the kernels would make themselves. Made on the
// host once, when the parameters are packed for upload (model/opt_sea_upload.cpp): 0.8 MiB per OPT-1.3B layer,
// where a launch per prefill call had rebuilt them in the scratch (~4.4 µs a layer on H100).
// dst: sea_weight_fragments(cfg).total bytes, laid out as SeaWeightFragments says: W_enc, W_row, the projection
// (b0 = w[8·nt + lane/4][8·k8 + lane%4], b1 four inputs later, 0 past the output count).
void sea_pack_weight_fragments(const cpu::SeaConfig &cfg, const cpu::SeaParams &params, void *dst);
// dst: 2 · sea_conv_fragment_bytes(cfg) bytes (nothing where that is 0): conv1's then conv2's w ⊙ mask, each
// [9 taps][2H/8 ci-steps][2H/8 n-tiles][32 lanes], b0 = (w ⊙ mask)[8·nt + lane/4][8·ci8 + lane%4][tap] (live kernel
// rows 0..2 of the stored [5][3]), b1 four input channels later.
void sea_pack_conv_fragments(const cpu::SeaConfig &cfg, const cpu::SeaParams &params, void *dst);
// Throws seaopt::Error (SEAOPT_ERR_INVALID_ARGUMENT) for a config sea_validate_config rejects.
SeaPrefillScratchLayout sea_prefill_scratch_layout(const cpu::SeaConfig &cfg, size_t T);
// = sea_prefill_scratch_layout(cfg, T).total: linear in T; 35.6 MB (33.9 MiB) for OPT-1.3B (H 32, m 33, K 64) at
// T = 2048, 17.8 MB at T = 1024.
size_t sea_prefill_scratch_bytes(const cpu::SeaConfig &cfg, size_t T);

// The decode state of one sequence in one SEA layer (sea.md §2.12), fp32, byte offsets from the state's start
// (each 256-byte aligned). Valid for the sequence's next position p = its length; nothing in it is read at p = 0
// (a decode step at position 0 starts from zero sums and an empty history), so a cleared sequence needs no reset.
struct SeaDecodeStateLayout {
    size_t perf = 0, perf_bytes = 0;              // [H][m][129]   S_kv | S_k, sums over positions < p
    size_t v_sum = 0, v_sum_bytes = 0;            // [H][64]       Σ_{j<p} v_j
    size_t image_ring = 0, ring_bytes = 0;        // [8][2H][K/4]  LayerNormed decoder image row r in slot r % 8
    size_t conv1_ring = 0;                        // [8][2H][K/4]  ReLU(conv1) row r in slot r % 8
    size_t total = 0;
};
SeaDecodeStateLayout sea_decode_state_layout(const cpu::SeaConfig &cfg);

// Scratch of one decode call of R rows (each a different sequence's next token).
struct SeaDecodeScratchLayout {
    size_t gates = 0, gates_bytes = 0;            // [R][H][2]     s_prob, s_mix
    size_t conv2 = 0, conv2_bytes = 0;            // [R][2H][K/4]  ReLU(conv2)
    size_t probs = 0, probs_bytes = 0;            // [R][H][K]     Â
    size_t cell_mask = 0, cell_mask_bytes = 0;    // [R][H][⌈K/32⌉]
    size_t total = 0;
};
SeaDecodeScratchLayout sea_decode_scratch_layout(const cpu::SeaConfig &cfg, size_t R);

}  // namespace seaopt::cuda
