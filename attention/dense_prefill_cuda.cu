// Dense causal attention, prefill (any tiles of up to 64 rows): a FlashAttention-2 style kernel on
// the tensor cores (mma.sync m16n8k16, fp16 inputs, fp32 accumulators; sm_80 and later).
//
//   attention_prefill_kernel   grid (tile, head), 128 threads = 4 warps x 16 query rows.
//       Blocks start in linear order; block b takes head b % n_head of tile n_tiles - 1 - b / n_head,
//       so the later tiles (the most keys) of every head start first (longest job first).
//       Warp w owns rows 16w..16w+15 of the tile. The block walks the sequence's keys in blocks of
//       64 up to the tile's last position. K and V blocks are copied into shared memory with
//       cp.async (16 bytes, zero-filled past the tile's last position: those cache positions are
//       never read), two stages deep so the next block's copies overlap this block's maths; the
//       tile's q (fp16, unscaled, zero rows past n_rows) comes with the first block and stays in
//       shared memory (held in registers it would push the kernel past 128 registers, the limit
//       for 4 blocks = 16 warps per SM). Per key block and warp:
//         S (16 x 64, fp32 accumulators) = Q Kᵀ      (Q and K fragments by ldmatrix),
//         causal mask (only on blocks that cross the warp's diagonal),
//         online softmax in fp32 in the log2 domain: the row max is taken on the raw scores and
//         p = exp2(s * q_scale - max * q_scale) (one FFMA + MUFU.EX2; q_scale includes log2 e, so
//         q itself is never rounded after scaling), row max by quad shuffles, per-lane partial sums,
//         P rounded to fp16 in registers: the accumulator layout of two adjacent n8 tiles of S is
//         the A-fragment layout of one k16 slice of P, so P V needs no shared memory for P,
//         O (16 x 64, fp32) = alpha O + P V          (V fragments by ldmatrix.trans).
//       At the end O is divided by the row sums (reduced over the quad) and stored as fp16 for the
//       tile's real rows (rows past n_rows compute harmless values and are never stored).
//       With append_kv the block also copies its tile's K and V rows of its head from qkv into the
//       cache (the work of kv_cache_append, one launch and a 2·T·C·2-byte round trip fewer per layer),
//       and reads the keys of its run (positions >= tile.run_pos0) from qkv rather than the cache, so no
//       block depends on another's copies; keys before the run come from the cache as always.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .f16/.f32), lane = 4 g + t (g = lane / 4, t = lane % 4):
//   A (16 x 16, row-major), 4 regs of 2 halves: a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1],
//       a2 = A[g][2t+8, 2t+9], a3 = A[g+8][2t+8, 2t+9]          (the lower column in the low half)
//   B (16 x 8, "col"), 2 regs: b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//   C/D (16 x 8, fp32), 4 regs: c0, c1 = C[g][2t, 2t+1], c2, c3 = C[g+8][2t, 2t+1]
//   ldmatrix .x4: lanes 8i..8i+7 give the 8 row addresses (16 bytes each) of matrix i; register i
//       of lane gets matrix i's [g][2t, 2t+1] (with .trans: [2t][g] and [2t+1][g]).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "attention/dense_cuda_kernels.cuh"
#include "attention/mma_f16.cuh"
#include "engine/cuda/common.cuh"
#include "engine/error.h"

namespace seaopt::cuda::dense {
namespace {

constexpr int kPrefillRows = kAttentionTileRows;                 // 64 query rows per block (one tile)
constexpr int kPrefillWarpRows = 16;                             // rows per warp: the mma's M
constexpr int kPrefillWarps = kPrefillRows / kPrefillWarpRows;   // 4
constexpr int kPrefillThreads = kPrefillWarps * kWarpSize;       // 128
constexpr int kPrefillKeys = 64;                                 // keys per block step
constexpr int kPrefillStages = 2;                                // K/V shared-memory stages
constexpr int kPrefillKeyTiles = kPrefillKeys / 8;  // 8 n8 tiles of keys (S columns)
constexpr int kPrefillPSlices = kPrefillKeys / 16;  // 4 k16 slices of keys (O = P V)
static_assert(kPrefillRows == 64 && kPrefillKeys == 64, "the index maths below assume 64 rows and keys a block");

// What depends on the head size D (64, 80 or 128).
template <int D> struct PrefillShape {
    // A shared-memory row: D halves and 8 of padding (144, 176 or 272 bytes), so that the 8 rows of
    // an ldmatrix phase hit 8 distinct 16-byte bank groups.
    static constexpr int kRowBytes = (D + 8) * (int)sizeof(__half);
    static constexpr int kStageBytes = kPrefillKeys * kRowBytes;        // one K or V block
    static constexpr int kVOffset = kPrefillStages * kStageBytes;       // V stages after the K stages
    static constexpr int kQOffset = 2 * kVOffset;                       // then the tile's q rows
    static constexpr int kSmemBytes = kQOffset + kPrefillRows * kRowBytes;  // 46,080 / 56,320 / 87,040
    static constexpr int kChunksPerRow = D / 8;                          // 16-byte chunks of a row
    static constexpr int kCopiesPerThread = kPrefillKeys * kChunksPerRow / kPrefillThreads;  // D / 16
    static constexpr int kKSlices = D / 16;  // k16 slices of head_dim (S = Q Kᵀ)
    static constexpr int kDimTiles = D / 8;  // n8 tiles of output dims
    // Blocks per SM: 4 (16 warps, registers capped at 128, no spills) where shared memory allows
    // (H100/H200: 4 x 45 KB); 3 for D = 80, 2 for D = 128 (their accumulators need more registers too).
    static constexpr int kMinBlocksPerSm = D <= 64 ? 4 : (D <= 80 ? 3 : 2);
    static_assert(D % 16 == 0 && D <= 128, "head_dim a multiple of 16, at most 128");
    static_assert(kPrefillKeys * kChunksPerRow % kPrefillThreads == 0, "whole copies per thread");
};

// Issues the copies of the 64 rows [r0, r0 + 64) of a [row][D] source into a stage (row r at
// (r - r0) * kRowBytes): thread tid copies the 16-byte chunks c = tid + 128 i (i < D / 16): row
// r0 + c / (D / 8), dims 8 (c % (D / 8)) .. +7 (consecutive threads copy a row's consecutive
// chunks; for D = 64 and 128 a thread's chunks share their dims, rows 16 or 8 apart). Rows past
// `last` are zero-filled, not read. src: the row-0 element of the source, `stride` elements a row;
// dst: the stage's shared-memory address. Two sources at once (K and V, dst_b = dst_a + kVOffset)
// where src_b is not null.
template <int D>
__device__ __forceinline__ void load_rows(uint32_t dst_a, const __half *src_a, const __half *src_b, size_t stride,
                                          int r0, int last) {
    using S = PrefillShape<D>;
    constexpr bool kSameDims = kPrefillThreads % S::kChunksPerRow == 0;
    const int tid = (int)threadIdx.x;
    const int row0 = tid / S::kChunksPerRow, dim0 = (tid % S::kChunksPerRow) * 8;  // chunk tid
    const int room = last - r0 - row0;  // chunk tid's row is valid while <= last
#pragma unroll
    for (int i = 0; i < S::kCopiesPerThread; ++i) {
        int r, dim;
        if constexpr (kSameDims) {
            r = row0 + i * (kPrefillThreads / S::kChunksPerRow);
            dim = dim0;
        } else {
            const int c = tid + i * kPrefillThreads;
            r = c / S::kChunksPerRow;
            dim = (c % S::kChunksPerRow) * 8;
        }
        const bool valid = kSameDims ? i * (kPrefillThreads / S::kChunksPerRow) <= room : r0 + r <= last;
        const size_t at = (valid ? (size_t)(r0 + r) * stride : 0) + (size_t)dim;  // clamped: row 0
        const uint32_t d = dst_a + (uint32_t)(r * S::kRowBytes + dim * (int)sizeof(__half));
        cp_async16(d, src_a + at, valid);
        if (src_b != nullptr) cp_async16(d + S::kVOffset, src_b + at, valid);
    }
}

// load_rows restricted to the rows of positions [lo, hi) of the block r0 .. r0 + 63 (the others are
// not touched), row p at src + (row_shift + p)·stride: with append_kv a block's keys before the run
// come from the cache and the run's from the qkv rows, so a block that straddles the run's start is
// loaded in two calls.
template <int D>
__device__ __forceinline__ void load_rows_range(uint32_t dst_a, const __half *src_a, const __half *src_b,
                                                size_t stride, int row_shift, int r0, int lo, int hi, int last) {
    using S = PrefillShape<D>;
    const int tid = (int)threadIdx.x;
#pragma unroll
    for (int i = 0; i < S::kCopiesPerThread; ++i) {
        const int c = tid + i * kPrefillThreads, r = c / S::kChunksPerRow, dim = (c % S::kChunksPerRow) * 8;
        const int p = r0 + r;
        if (p < lo || p >= hi) continue;
        const bool valid = p <= last;
        const size_t at = (valid ? (size_t)(row_shift + p) * stride : 0) + (size_t)dim;  // clamped: row 0
        const uint32_t d = dst_a + (uint32_t)(r * S::kRowBytes + dim * (int)sizeof(__half));
        cp_async16(d, src_a + at, valid);
        cp_async16(d + S::kVOffset, src_b + at, valid);
    }
}

// ---- CUDA kernel ----

// kAppend: append_kv. A template parameter so that the plain kernel stays as it was (its loop's live values
// fit 128 registers); the append variant holds the run's pointers too: 8 bytes of spill at D = 64.
template <int D, bool kAppend>
__global__ void __launch_bounds__(kPrefillThreads, PrefillShape<D>::kMinBlocksPerSm)
    attention_prefill_kernel(__half *__restrict__ out, const __half *__restrict__ qkv, __half *__restrict__ k_cache,
                             __half *__restrict__ v_cache, const AttentionTile *__restrict__ tiles, int n_tiles,
                             int n_head, int n_ctx, float q_scale) {
    using Shape = PrefillShape<D>;
    // [K, V][stage][key][D + 8 halves], then q [row][D + 8 halves] (dynamic: Shape::kSmemBytes).
    extern __shared__ __align__(128) unsigned char kv_smem[];

    // Later tiles of a sequence have more keys: start them first, for every head (see the top).
    const int block = (int)(blockIdx.y * gridDim.x + blockIdx.x);  // n_tiles * n_head blocks
    const AttentionTile tile = tiles[n_tiles - 1 - block / n_head];
    if (!tile_ok(tile, n_ctx)) return;  // uniform over the block
    const int h = block % n_head;
    const int C = n_head * D;
    const int tid = threadIdx.x;
    const int warp = tid / kWarpSize;
    const int lane = tid % kWarpSize;
    const int g = lane / 4;  // fragment row (and +8)
    const int t = lane % 4;  // fragment column pair
    const int last = tile.pos0 + tile.n_rows - 1;  // the tile's last position: keys 0..last

    // This lane's two query rows in the tile, and the warp's row range (positions pos0 + row).
    const int row_a = warp * kPrefillWarpRows + g;
    const int row_b = row_a + 8;
    // Row_a's position minus 2t (row_b's is 8 more; rows past n_rows: past `last`, never stored).
    const int diag0 = tile.pos0 + row_a - 2 * t;
    const int warp_first_pos = tile.pos0 + warp * kPrefillWarpRows;
    // The last key block start this warp computes: its last position, or -1 when none of its rows is
    // real (uniform over the warp; earlier blocks with no real row are harmless and not skipped).
    const int warp_last_j0 = warp * kPrefillWarpRows < tile.n_rows ? warp_first_pos + kPrefillWarpRows - 1 : -1;

    const size_t kv_base = ((size_t)tile.seq * (size_t)n_head + (size_t)h) * (size_t)n_ctx * D;
    __half *k_head = k_cache + kv_base, *v_head = v_cache + kv_base;
    // With append_kv, keys from the run's first position on are read from the qkv rows: position p's
    // k at qk_head + (row_shift + p)·3C (its batch row), its v C halves later.
    const __half *qk_head = qkv + C + h * D;
    const int row_shift = tile.row0 - tile.pos0;
    // The copies of key block r0 (zero past `last`).
    auto load_kv = [&](uint32_t dst, int r0) {
        if constexpr (!kAppend) {
            load_rows<D>(dst, k_head, v_head, D, r0, last);
        } else {
            const int run = tile.run_pos0;  // uniform over the block
            if (r0 < run) load_rows_range<D>(dst, k_head, v_head, D, 0, r0, r0, run, last);
            if (r0 + kPrefillKeys > run) {
                load_rows_range<D>(dst, qk_head, qk_head + C, (size_t)(3 * C), row_shift, r0, run, INT_MAX, last);
            }
        }
    };

    const uint32_t smem = (uint32_t)__cvta_generic_to_shared(kv_smem);
    constexpr uint32_t kStageBytes = Shape::kStageBytes;
    constexpr uint32_t kRowBytes = Shape::kRowBytes;

    // The tile's q rows into shared memory (rows past n_rows are zero-filled: they may not exist).
    load_rows<D>(smem + Shape::kQOffset, qkv + (size_t)tile.row0 * (size_t)(3 * C) + (size_t)h * D, nullptr,
                 (size_t)(3 * C), 0, tile.n_rows - 1);

    // ldmatrix row addresses of this lane (byte offsets in a stage; i = lane / 8 picks the matrix):
    //   Q, x4 for dim slice kk: matrix i = the warp's rows 8 (i % 2) .. +7, dims 16kk + 8 (i / 2) .. +7,
    //     so registers = {a0, a1, a2, a3} (a0 = Q[row g][16kk + 2t, +1], a1 rows + 8, a2 dims + 8).
    //   K, x4 for key tiles 2jp, 2jp+1 and dim slice kk: matrix i = keys 16jp + 8 (i / 2) .. +7,
    //     dims 16kk + 8 (i % 2) .. +7, so registers = {b0, b1 of key tile 2jp, b0, b1 of 2jp+1}
    //     (b0 = K[key 8j + g][dims 16kk + 2t, +1] = Kᵀ[2t, 2t+1][g], b1 the same 8 dims later).
    //   V, x4.trans for key slice kk and dim tiles 2jp, 2jp+1: matrix i = keys 16kk + 8 (i % 2) .. +7,
    //     dims 16jp + 8 (i / 2) .. +7, so registers = {b0, b1 of dim tile 2jp, b0, b1 of 2jp+1}
    //     (.trans: b0 = V[keys 16kk + 2t, +1][dim 8j + g], b1 = the same 8 keys later).
    const uint32_t q_lane = smem + Shape::kQOffset +
                            (uint32_t)((warp * kPrefillWarpRows + (lane & 15)) * kRowBytes + (lane >> 4) * 16);
    const uint32_t k_lane = smem + (uint32_t)(((lane >> 4) * 8 + (lane & 7)) * kRowBytes + ((lane >> 3) & 1) * 16);
    const uint32_t v_lane = smem + Shape::kVOffset +
                            (uint32_t)((((lane >> 3) & 1) * 8 + (lane & 7)) * kRowBytes + (lane >> 4) * 16);

    float o[Shape::kDimTiles][4];  // O[row_a][8j + 2t, +1] in [j][0, 1], row_b in [j][2, 3]; unnormalised
#pragma unroll
    for (int j = 0; j < Shape::kDimTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY;  // running max of the raw scores (equal over the quad)
    float l_a = 0.0f, l_b = 0.0f;            // this lane's share of the running sums of p

    load_kv(smem, 0);
    cp_async_commit();  // q and the first K/V block: one group
    uint32_t stage = 0;  // byte offset of the stage holding keys j0..j0+63
    for (int j0 = 0; j0 <= last; j0 += kPrefillKeys) {
        const uint32_t next = kStageBytes - stage;
        if (j0 + kPrefillKeys <= last) {  // prefetch the next block into the other stage
            load_kv(smem + next, j0 + kPrefillKeys);
        }
        cp_async_commit();  // (an empty group on the last block keeps the count uniform)
        cp_async_wait<1>();  // this block's group has landed (for this thread's copies) ...
        __syncthreads();     // ... and for every thread's

        // A warp whose rows are all before this block, or past n_rows, has nothing to do here.
        if (j0 <= warp_last_j0) {
            // S = Q Kᵀ: s[j] = S[row_a][j0 + 8j + 2t, +1] in [0, 1], row_b in [2, 3].
            float s[kPrefillKeyTiles][4];
#pragma unroll
            for (int j = 0; j < kPrefillKeyTiles; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < Shape::kKSlices; ++kk) {
                uint32_t qa[4];  // A fragment of dims 16kk..16kk+15
                ldmatrix_x4(qa, q_lane + (uint32_t)(kk * 32));
#pragma unroll
                for (int jp = 0; jp < kPrefillKeyTiles / 2; ++jp) {
                    uint32_t b[4];
                    ldmatrix_x4(b, k_lane + stage + (uint32_t)(jp * 16 * kRowBytes + kk * 32));
                    mma_16816(s[2 * jp], qa, b[0], b[1]);
                    mma_16816(s[2 * jp + 1], qa, b[2], b[3]);
                }
            }

            // Causal mask, only where the block reaches past the warp's first position.
            if (j0 + kPrefillKeys - 1 > warp_first_pos) flash_causal_mask(s, diag0 - j0);

            // Online softmax (log2 domain: scores scaled by q_scale inside the exponent).
            flash_softmax_step(s, o, m_a, m_b, l_a, l_b, q_scale, [](int) { return true; });

            // O += P V. The A fragment of key slice kk (keys 16kk..16kk+15) is S tiles 2kk, 2kk+1:
            //   a0 = P[row_a][16kk + 2t, +1] = s[2kk][0, 1],     a1 = P[row_b][same] = s[2kk][2, 3],
            //   a2 = P[row_a][16kk + 8 + 2t, +1] = s[2kk+1][0, 1], a3 = P[row_b][same] = s[2kk+1][2, 3].
#pragma unroll
            for (int kk = 0; kk < kPrefillPSlices; ++kk) {
                const uint32_t pa[4] = {pack_f16x2(s[2 * kk][0], s[2 * kk][1]), pack_f16x2(s[2 * kk][2], s[2 * kk][3]),
                                        pack_f16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                        pack_f16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int jp = 0; jp < Shape::kDimTiles / 2; ++jp) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, v_lane + stage + (uint32_t)(kk * 16 * kRowBytes + jp * 32));
                    mma_16816(o[2 * jp], pa, b[0], b[1]);
                    mma_16816(o[2 * jp + 1], pa, b[2], b[3]);
                }
            }
        }
        __syncthreads();  // every warp is done with this stage before the next prefetch overwrites it
        stage = next;
    }

    // Normalise and store the tile's real rows: O[row][8j + 2t, +1] as one fp16 pair (4 bytes).
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float inv_a = l_a > 0.0f ? 1.0f / l_a : 0.0f;  // l >= 1 for real rows: their max gives exp2(0)
    const float inv_b = l_b > 0.0f ? 1.0f / l_b : 0.0f;
    const size_t o_col = (size_t)h * D + 2 * t;
    if (row_a < tile.n_rows) {
        uint32_t *orow = reinterpret_cast<uint32_t *>(out + (size_t)(tile.row0 + row_a) * (size_t)C + o_col);
#pragma unroll
        for (int j = 0; j < Shape::kDimTiles; ++j) orow[4 * j] = pack_f16x2(o[j][0] * inv_a, o[j][1] * inv_a);
    }
    if (row_b < tile.n_rows) {
        uint32_t *orow = reinterpret_cast<uint32_t *>(out + (size_t)(tile.row0 + row_b) * (size_t)C + o_col);
#pragma unroll
        for (int j = 0; j < Shape::kDimTiles; ++j) orow[4 * j] = pack_f16x2(o[j][2] * inv_b, o[j][3] * inv_b);
    }
    // This block's share of the KV append, last (no block reads the cache where another writes; here
    // the accumulators' registers are free, and other blocks of the SM cover the copies' latency).
    if (kAppend) append_tile_kv<D, kPrefillThreads>(k_head, v_head, qk_head, qk_head + C, (size_t)(3 * C), tile);
}

}  // namespace

// ---- launcher ----

namespace {
template <int D>
void launch_prefill(__half *out, const __half *qkv, __half *k_cache, __half *v_cache, const AttentionTile *tiles,
                    int n_tiles, int n_head, int n_ctx, float q_scale, bool append_kv, cudaStream_t stream) {
    constexpr int kSmem = PrefillShape<D>::kSmemBytes;
    if (kSmem > 48 * 1024) {  // past the default limit: opt in (per device; cheap, and not a stream operation)
        for (const auto kernel : {attention_prefill_kernel<D, false>, attention_prefill_kernel<D, true>}) {
            const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
            if (err != cudaSuccess) cudaGetLastError();
            check_cuda(err, "attention_prefill_kernel shared memory", __FILE__, __LINE__);
        }
    }
    const dim3 grid((unsigned)n_tiles, (unsigned)n_head);
    (append_kv ? attention_prefill_kernel<D, true> : attention_prefill_kernel<D, false>)<<<grid, kPrefillThreads, kSmem,
                                                                                          stream>>>(
        out, qkv, k_cache, v_cache, tiles, n_tiles, n_head, n_ctx, q_scale);
    check_launch("attention_prefill_kernel");
}
}  // namespace

void launch_attention_prefill(__half *out, const __half *qkv, __half *k_cache, __half *v_cache,
                              const AttentionTile *tiles, int n_tiles, int n_head, int head_dim, int n_ctx,
                              float q_scale, bool append_kv, cudaStream_t stream) {
    const auto run = [&](auto launch) {
        launch(out, qkv, k_cache, v_cache, tiles, n_tiles, n_head, n_ctx, q_scale, append_kv, stream);
    };
    switch (head_dim) {
        case 64: run(launch_prefill<64>); break;
        case 80: run(launch_prefill<80>); break;
        case 128: run(launch_prefill<128>); break;
        default: throw_invalid_argument("launch_attention_prefill: head_dim " + std::to_string(head_dim));
    }
}

}  // namespace seaopt::cuda::dense
