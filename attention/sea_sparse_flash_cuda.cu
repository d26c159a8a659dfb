// SEA sparse attention of a prefill on the tensor cores (sea.md §2.8-§2.10; sea_cpu.cpp sea_expand_cells_to_keys and
// sparse_attention_row): the dense prefill kernel's FlashAttention-2 loop (dense_prefill_cuda.cu) with every score
// outside the query's selected keys masked, and only the key blocks that some query of the tile selects visited.
//
//   sparse_flash_kernel  grid (tile of 64 queries, head), 128 threads = 4 warps × 16 query rows, longest tiles first.
//     Query rows count from the call's row 0, keys by position: a call that continues a sequence (row 0 at position
//     p0 > 0) reads the keys and values of every position, its own rows' included, from the sequence's KV cache.
//     Set-up: the tile's mask rows (⌈K/32⌉ words per query) into shared memory; two lanes per query walk its selected
//       cells, turn each into its key interval [v0, v1) (cell_edge: the authors' fp32 arithmetic, as the gather
//       kernel of sea_sparse_cuda.cu and the CPU) and mark the 64-key blocks it touches in a bitmap per warp; the
//       block's bitmap is their union. Nothing the size of T × T exists: a bitmap is ⌈T/64/32⌉ words.
//     Loop over the marked key blocks only (K and V by cp.async, two stages, the next marked block prefetched while
//       this one is computed); a warp skips the maths of a block none of its rows selected, and of each 16-key group
//       of a block none of its rows selected (their p are 0). Per block and row, the
//       64-bit set of its selected keys in the block (row_half_keys, two lanes a row, 32 keys each, through shared
//       memory: the cells that overlap the half, each kept cell's interval, or the per-cell cap's evenly spaced keys
//       where (t+1)/K > k) masks S = Q Kᵀ to -inf outside it; then the online softmax in fp32 (log2 domain) and
//       O += P V with P rounded to fp16, as the dense kernel.
//     End: C = (O / Σp) · σ(s_prob) (0 for a (query, head) without keys), out = σ(s_mix)·C + (1-σ(s_mix))·(Σ_{j≤t} v_j)
//       /(t+1) (sparse_row_output's expressions), rounded to fp16; with debug pointers, each row's key count and key
//       index sum, from the very bit sets that masked its scores. Launched with PDL: everything before the stores reads
//       only what kernels two or more launches back wrote, so the loop overlaps the running sums of v (v_prefix).
//   The gather kernel (sea_sparse_cuda.cu, one warp per (query, head), fp32 dot products) stays for the decode. Here
//   q·k and P V run in fp16 with fp32 accumulation: the flash-attention precision rule of the README (the tests
//   compare against fp64 with the 2×-naive-fp16 bound), not bit-identical to the gather kernel.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/mma_f16.cuh"
#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"
#include "engine/error.h"

namespace seaopt::cuda::sea {
namespace {

constexpr int kFlashRows = 64;                     // queries per block
constexpr int kFlashWarpRows = 16;                 // queries per warp (the mma's M)
constexpr int kFlashWarps = kFlashRows / kFlashWarpRows;
constexpr int kFlashThreads = kFlashWarps * kWarpSize;
constexpr int kFlashKeys = 64;                     // keys per block step
constexpr int kRowBytes = (kHeadDim + 8) * 2;      // a shared row: 64 halves + 8 of padding (conflict-free ldmatrix)
constexpr int kStageBytes = kFlashKeys * kRowBytes;
constexpr int kVOffset = 2 * kStageBytes;          // K stages, then V stages
constexpr int kQOffset = 2 * kVOffset;             // then the tile's q rows
constexpr int kMaskOffset = kQOffset + kFlashRows * kRowBytes;  // then the tile's mask rows, then the bitmaps
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kFlashRows == 64 && kFlashKeys == 64 && kHeadDim == 64, "the index maths assume 64 rows, keys and dims");

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Issues the copies of rows [r0, r0 + 64) (64 halves each; row r at src + r·stride) into a stage at dst; rows past
// `last` are zero-filled, not read. Thread tid copies chunk tid % 8 of rows tid / 8 + 16 i.
__device__ __forceinline__ void load_rows64(uint32_t dst, const __half *src, long long stride, int r0, int last) {
    const int tid = (int)threadIdx.x, row0 = tid / 8, dim = (tid % 8) * 8;
#pragma unroll
    for (int i = 0; i < kFlashKeys * 8 / kFlashThreads; ++i) {
        const int r = row0 + i * (kFlashThreads / 8);
        const bool valid = r0 + r <= last;
        cp_async16(dst + (uint32_t)(r * kRowBytes + dim * 2), src + (valid ? (long long)(r0 + r) * stride : 0) + dim,
                   valid);
    }
}

// Bits lo .. hi-1 of a 32-bit word (0 <= lo < hi <= 32).
__device__ __forceinline__ uint32_t bit_range(int lo, int hi) {
    const uint32_t upto = hi >= 32 ? ~0u : ((1u << hi) - 1u);
    return upto & ~((1u << lo) - 1u);
}

// Keys per half block: a row's selected keys in a block are worked out as two 32-key halves, by two lanes.
constexpr int kHalfKeys = kFlashKeys / 2;

// The keys of a capped cell [e0, e1) (longer than k) among keys j0 .. j0+31, as bits: key i of the cell is
// e1 - 1 - ⌊i·len/n⌋ (n = k); those in the block have ⌊i·len/n⌋ in [u_lo, u_hi], i.e. i in [⌈u_lo·n/len⌉,
// ⌈(u_hi+1)·n/len⌉), over which ⌊i·len/n⌋ advances by len/n with a carry. Out of line: only (t+1)/K > k gets here
// (T > 4096 at K = k = 64), and inlined it made the kernel spill.
__device__ __noinline__ uint32_t capped_cell_keys(int e0, int e1, int j0, int k) {
    const int jend = j0 + kHalfKeys;
    const unsigned n = (unsigned)k, ulen = (unsigned)(e1 - e0);
    const unsigned u_lo = (unsigned)max(e1 - jend, 0), u_hi = (unsigned)(e1 - 1 - max(e0, j0));
    unsigned i = (u_lo * n + ulen - 1) / ulen;
    const unsigned i_end = min(((u_hi + 1) * n + ulen - 1) / ulen, n);
    unsigned q = (i * ulen) / n, r = (i * ulen) % n;
    const unsigned dq = ulen / n, dr = ulen % n;
    uint32_t bits = 0u;
    for (; i < i_end; ++i) {
        bits |= 1u << (e1 - 1 - (int)q - j0);
        q += dq;
        r += dr;
        if (r >= n) {
            r -= n;
            ++q;
        }
    }
    return bits;
}

// The selected keys of query row t (mask words mrow) among keys j0 .. j0+31, as bits 0..31: the cells that overlap
// the block, each kept cell's keys as sea_expand_cells_to_keys emits them (its whole interval, or n = k keys at
// v1 - 1 - ⌊i·len/n⌋ when the interval is longer than k).
__device__ __forceinline__ uint32_t row_half_keys(const uint32_t *mrow, int t, int j0, const Dims &d) {
    const int len = t + 1, K = d.K;
    if (j0 >= len) return 0u;
    const float s = cell_scale(t, d);
    // The cell holding key j0: an estimate, then walked to the c with edge(c) <= j0 < edge(c+1) (edges are monotone,
    // so the walk is exact whatever the estimate's rounding).
    int c = (int)__fdividef((float)j0, s);
    c = c < 0 ? 0 : (c > K - 1 ? K - 1 : c);
    while (c > 0 && cell_edge(c, s, len) > j0) --c;
    int e1 = cell_edge(c + 1, s, len);
    while (e1 <= j0 && c < K - 1) e1 = cell_edge(++c + 1, s, len);
    int e0 = cell_edge(c, s, len);
    const int jend = j0 + kHalfKeys;
    uint32_t bits = 0u;
    for (; c < K && e0 < jend; ++c) {  // cell c = keys [e0, e1)
        const int n_len = e1 - e0;
        if (n_len > 0 && ((mrow[c >> 5] >> (c & 31)) & 1u)) {
            if (n_len <= d.k) {
                const int lo = max(e0, j0) - j0, hi = min(e1, jend) - j0;
                if (hi > lo) bits |= bit_range(lo, hi);  // empty only where edge(K) < t + 1 left keys uncovered
            } else {
                bits |= capped_cell_keys(e0, e1, j0, d.k);
            }
        }
        e0 = e1;
        e1 = cell_edge(c + 2, s, len);
    }
    return bits;
}

// Σ of the bit positions set in w (six popcounts).
__device__ __forceinline__ uint32_t bit_position_sum(uint64_t w) {
    return (uint32_t)__popcll(w & 0xAAAAAAAAAAAAAAAAull) + 2u * (uint32_t)__popcll(w & 0xCCCCCCCCCCCCCCCCull) +
           4u * (uint32_t)__popcll(w & 0xF0F0F0F0F0F0F0F0ull) + 8u * (uint32_t)__popcll(w & 0xFF00FF00FF00FF00ull) +
           16u * (uint32_t)__popcll(w & 0xFFFF0000FFFF0000ull) + 32u * (uint32_t)__popcll(w & 0xFFFFFFFF00000000ull);
}

// The next marked block at or after block b (n_blocks when none): the bitmap is uniform over the block.
__device__ __forceinline__ int next_marked(const uint32_t *bitmap, int b, int n_blocks) {
    for (int w = b >> 5; (w << 5) < n_blocks; ++w) {
        const uint32_t bits = bitmap[w] & (b > (w << 5) ? ~0u << (b & 31) : ~0u);
        if (bits) return min((w << 5) + __ffs(bits) - 1, n_blocks);
    }
    return n_blocks;
}

__global__ void __launch_bounds__(kFlashThreads, 4)
    sparse_flash_kernel(__half *__restrict__ out, long long out_row, QkvView x, const float *__restrict__ gates,
                        const uint32_t *__restrict__ cell_mask, const float *__restrict__ v_prefix, Dims d,
                        int32_t *__restrict__ key_count, uint32_t *__restrict__ key_sum) {
    // [K, V][stage][key][72 halves], q [row][72 halves], the tile's mask rows [64][KW], the warps' key-block bitmaps
    // [4][n_words], the block's [n_words] (dynamic: sparse_flash_smem_bytes).
    extern __shared__ __align__(128) unsigned char fsm[];
    __shared__ __align__(8) uint32_t s_keys[kFlashWarps][kWarpSize];  // a block's selected keys per row half
    // Query rows are counted from the call's row 0 (position p0 = d.p0); keys and key blocks by position, from 0.
    const int T = d.T, H = d.H, KW = d.KW, p0 = d.p0;
    const int n_tiles = (T + kFlashRows - 1) / kFlashRows;
    const int n_blocks = (p0 + T + kFlashKeys - 1) / kFlashKeys;  // 64-key blocks up to the last position
    const int n_words = (n_blocks + 31) / 32;
    const int block = (int)blockIdx.x;  // n_tiles · H blocks, the later tiles (most keys) of every head first
    const int tile = n_tiles - 1 - block / H, h = block % H;
    // The tile's rows: call rows t0 .. t0 + n_rows - 1, positions tp .. last (no key after `last` is read). Only tp
    // is kept through the loop (t0 = tp - p0 after it): one more live register made the kernel spill.
    const int n_rows = min(kFlashRows, T - tile * kFlashRows);
    const int tp = p0 + tile * kFlashRows, last = tp + n_rows - 1;
    const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize, g = lane / 4, tq4 = lane % 4;

    uint32_t *s_mask = reinterpret_cast<uint32_t *>(fsm + kMaskOffset);
    uint32_t *s_need = s_mask + kFlashRows * KW;  // [kFlashWarps][n_words]
    uint32_t *s_any = s_need + kFlashWarps * n_words;
    const uint32_t smem = (uint32_t)__cvta_generic_to_shared(fsm);

    // q of the tile's rows (rows past n_rows zero-filled), issued first; its group completes with the first K/V block.
    const __half *k_head = k_at(x, 0, h), *v_head = v_at(x, 0, h);
    // The loop reads the heads' K and V bases from shared memory: kept in registers through it, they made the kernel
    // spill.
    __shared__ const __half *s_kv_head[2];
    if (tid == 0) {
        s_kv_head[0] = k_head;
        s_kv_head[1] = v_head;
    }
    load_rows64(smem + kQOffset, q_at(x, tile * kFlashRows, h), x.q_row, 0, n_rows - 1);

    for (int i = tid; i < kFlashRows * KW; i += kFlashThreads) {
        const int r = i / KW;
        s_mask[i] = r < n_rows ? cell_mask[((size_t)(tile * kFlashRows + r) * H + h) * KW + i % KW] : 0u;
    }
    for (int i = tid; i < (kFlashWarps + 1) * n_words; i += kFlashThreads) s_need[i] = 0u;
    __syncthreads();
    // The key blocks each warp's rows select: two lanes per row, each taking every other mask word's cells.
    {
        const int r = warp * kFlashWarpRows + lane / 2;
        if (r < n_rows) {
            const int t = tp + r, len = t + 1;
            const float s = cell_scale(t, d);
            int cur = -1;
            uint32_t cur_bits = 0u;
            for (int w = lane & 1; w < KW; w += 2) {
                uint32_t bits = s_mask[r * KW + w];
                while (bits) {
                    const int c = w * 32 + __ffs(bits) - 1;
                    bits &= bits - 1u;
                    const int v0 = cell_edge(c, s, len), v1 = cell_edge(c + 1, s, len);
                    for (int b = v0 / kFlashKeys; v1 > v0 && b <= (v1 - 1) / kFlashKeys; ++b) {
                        if (b / 32 != cur) {
                            if (cur >= 0) atomicOr(&s_need[warp * n_words + cur], cur_bits);
                            cur = b / 32;
                            cur_bits = 0u;
                        }
                        cur_bits |= 1u << (b % 32);
                    }
                }
            }
            if (cur >= 0) atomicOr(&s_need[warp * n_words + cur], cur_bits);
        }
    }
    __syncthreads();
    for (int i = tid; i < n_words; i += kFlashThreads) {
        uint32_t any = 0u;
#pragma unroll
        for (int w = 0; w < kFlashWarps; ++w) any |= s_need[w * n_words + i];
        s_any[i] = any;
    }
    __syncthreads();

    // ldmatrix addresses of this lane, as in dense_prefill_cuda.cu (Q x4 per dim slice, K x4 per key-tile pair and
    // dim slice, V x4.trans per key slice and dim-tile pair).
    const uint32_t q_lane =
        smem + kQOffset + (uint32_t)((warp * kFlashWarpRows + (lane & 15)) * kRowBytes + (lane >> 4) * 16);
    const uint32_t k_lane = smem + (uint32_t)(((lane >> 4) * 8 + (lane & 7)) * kRowBytes + ((lane >> 3) & 1) * 16);
    const uint32_t v_lane =
        smem + kVOffset + (uint32_t)((((lane >> 3) & 1) * 8 + (lane & 7)) * kRowBytes + (lane >> 4) * 16);

    // This lane's rows a = g and b = g + 8 of the warp's 16, and their mask rows.
    // (Their indices are worked out after the loop: live through it they made the kernel spill.)
    const float q_scale = x.q_scale * kLog2e;  // scores in the log2 domain: exp(q_eff·k) = exp2(q·k · q_scale)

    float o[8][4];  // O[row_a][8j + 2·tq4, +1] in [j][0, 1], row_b in [j][2, 3]; unnormalised
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
    int count_a = 0, count_b = 0;
    uint32_t sum_a = 0u, sum_b = 0u;

    int blk = next_marked(s_any, 0, n_blocks);
    if (blk < n_blocks) load_rows64(smem, k_head, x.k_row, blk * kFlashKeys, last);
    if (blk < n_blocks) load_rows64(smem + kVOffset, v_head, x.v_row, blk * kFlashKeys, last);
    cp_async_commit();  // q and the first K/V block: one group
    uint32_t stage = 0;
    while (blk < n_blocks) {
        const int j0 = blk * kFlashKeys;
        const int nxt = next_marked(s_any, blk + 1, n_blocks);
        const uint32_t other = kStageBytes - stage;
        if (nxt < n_blocks) {
            load_rows64(smem + other, s_kv_head[0], x.k_row, nxt * kFlashKeys, last);
            load_rows64(smem + kVOffset + other, s_kv_head[1], x.v_row, nxt * kFlashKeys, last);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();

        if ((s_need[warp * n_words + blk / 32] >> (blk % 32)) & 1u) {  // uniform over the warp
            // The selected keys of the warp's 16 rows in this block: lane 2r + i works out row r's half i into
            // shared memory; each lane then reads its rows a and b whole (64 bits each).
            {
                const int r = warp * kFlashWarpRows + lane / 2;
                s_keys[warp][lane] =
                    r < n_rows ? row_half_keys(s_mask + r * KW, tp + r, j0 + (lane & 1) * kHalfKeys, d) : 0u;
            }
            __syncwarp();
            const uint64_t keys_a = reinterpret_cast<const uint64_t *>(s_keys[warp])[g];
            const uint64_t keys_b = reinterpret_cast<const uint64_t *>(s_keys[warp])[g + 8];
            count_a += __popcll(keys_a);
            count_b += __popcll(keys_b);
            if (key_sum) {  // debug only
                sum_a += (uint32_t)j0 * (uint32_t)__popcll(keys_a) + bit_position_sum(keys_a);
                sum_b += (uint32_t)j0 * (uint32_t)__popcll(keys_b) + bit_position_sum(keys_b);
            }

            // The 16-key groups that some row of the warp selected (uniform over the warp): the others' products,
            // exponentials and P V are skipped (their p are 0).
            const uint64_t warp_keys = keys_a | keys_b;
            const uint32_t any_lo = __reduce_or_sync(0xffffffffu, (uint32_t)warp_keys);
            const uint32_t any_hi = __reduce_or_sync(0xffffffffu, (uint32_t)(warp_keys >> 32));
            bool group[4];
            group[0] = (any_lo & 0xffffu) != 0u;
            group[1] = (any_lo >> 16) != 0u;
            group[2] = (any_hi & 0xffffu) != 0u;
            group[3] = (any_hi >> 16) != 0u;

            float s[8][4];
#pragma unroll
            for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < kHeadDim / 16; ++kk) {
                uint32_t qa[4];
                ldmatrix_x4(qa, q_lane + (uint32_t)(kk * 32));
#pragma unroll
                for (int jp = 0; jp < 4; ++jp) {
                    if (!group[jp]) continue;
                    uint32_t b[4];
                    ldmatrix_x4(b, k_lane + stage + (uint32_t)(jp * 16 * kRowBytes + kk * 32));
                    mma_16816(s[2 * jp], qa, b[0], b[1]);
                    mma_16816(s[2 * jp + 1], qa, b[2], b[3]);
                }
            }
            // Scores outside the selected keys to -inf: s[j][e] is key j0 + 8j + 2·tq4 + e.
            const uint64_t ka = keys_a >> (2 * tq4), kb = keys_b >> (2 * tq4);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                if (!((ka >> (8 * j)) & 1ull)) s[j][0] = -INFINITY;
                if (!((ka >> (8 * j + 1)) & 1ull)) s[j][1] = -INFINITY;
                if (!((kb >> (8 * j)) & 1ull)) s[j][2] = -INFINITY;
                if (!((kb >> (8 * j + 1)) & 1ull)) s[j][3] = -INFINITY;
            }

            flash_softmax_step(s, o, m_a, m_b, l_a, l_b, q_scale, [&](int j) { return group[j / 2]; });
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                if (!group[kk]) continue;  // P is 0 on these 16 keys
                const uint32_t pa[4] = {pack_f16x2(s[2 * kk][0], s[2 * kk][1]), pack_f16x2(s[2 * kk][2], s[2 * kk][3]),
                                        pack_f16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                        pack_f16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int jp = 0; jp < 4; ++jp) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, v_lane + stage + (uint32_t)(kk * 16 * kRowBytes + jp * 32));
                    mma_16816(o[2 * jp], pa, b[0], b[1]);
                    mma_16816(o[2 * jp + 1], pa, b[2], b[3]);
                }
            }
        }
        __syncthreads();  // every warp is done with this stage before the next prefetch overwrites it
        stage = other;
        blk = nxt;
    }
    cp_async_wait<0>();  // no copy may still target shared memory when the block exits
    // Everything so far read q, k, v, the gates and the mask (kernels that have completed); the running sums of v
    // come from the kernel just before (v_prefix), which may still be running: launched with PDL, the whole loop
    // above overlaps it.
    pdl_wait();
    pdl_launch_dependents();

    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    // sparse_row_output's expressions, per row: this lane's dims 8j + 2·tq4, +1. t: the call row (position p0 + t).
    auto store_row = [&](int t, int count, float l, int e) {
        const size_t rh = (size_t)t * H + h;
        const float2 gate = make_float2(gates[rh * 2], gates[rh * 2 + 1]);
        const float scale = count > 0 ? (1.0f / l) * sigmoid(gate.x) : 0.0f;
        const float mix = sigmoid(gate.y);
        const float inv_count = __fdiv_rn(1.0f, (float)(d.p0 + t + 1));
        const float *vs = v_prefix + rh * kHeadDim + 2 * tq4;
        __half2 *dst = reinterpret_cast<__half2 *>(out + (long long)t * out_row + (long long)h * kHeadDim + 2 * tq4);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const float2 vsum = *reinterpret_cast<const float2 *>(vs + 8 * j);
            const float c0 = count > 0 ? o[j][e] * scale : 0.0f, c1 = count > 0 ? o[j][e + 1] * scale : 0.0f;
            const float o0 = mix * c0 + (1.0f - mix) * (vsum.x * inv_count);
            const float o1 = mix * c1 + (1.0f - mix) * (vsum.y * inv_count);
            dst[4 * j] = __floats2half2_rn(o0, o1);
        }
        if (tq4 == 0) {
            if (key_count) key_count[rh] = count;
            if (key_sum) key_sum[rh] = e == 0 ? sum_a : sum_b;
        }
    };
    const int t0 = tp - d.p0, row_a = warp * kFlashWarpRows + g, row_b = row_a + 8;  // call rows t0 + row
    if (row_a < n_rows) store_row(t0 + row_a, count_a, l_a, 0);
    if (row_b < n_rows) store_row(t0 + row_b, count_b, l_b, 2);
}

}  // namespace

size_t sparse_flash_smem_bytes(const Dims &d) {
    const size_t n_blocks = ((size_t)d.p0 + d.T + kFlashKeys - 1) / kFlashKeys, n_words = (n_blocks + 31) / 32;
    return (size_t)kMaskOffset + ((size_t)kFlashRows * d.KW + (kFlashWarps + 1) * n_words) * sizeof(uint32_t);
}

void launch_sparse_flash(__half *out, long long out_row_stride, const QkvView &x, const float *gates,
                         const uint32_t *cell_mask, const float *v_prefix, const Dims &d, int32_t *key_count,
                         uint32_t *key_sum, cudaStream_t stream) {
    const size_t smem = sparse_flash_smem_bytes(d);  // the caller checked the device grants it
    if (smem > (size_t(48) << 10)) {
        check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(sparse_flash_kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "cudaFuncSetAttribute(sparse_flash)", __FILE__, __LINE__);
    }
    const long long blocks = (long long)((d.T + kFlashRows - 1) / kFlashRows) * d.H;
    if (blocks > 0x7fffffffLL) throw_unsupported("SEA sparse attention: T·n_head too large for one grid");
    launch_kernel("sea sparse_flash_kernel", programmatic_launch_enabled(), sparse_flash_kernel,
                  dim3((unsigned)blocks), dim3(kFlashThreads), smem, stream, out, out_row_stride, x, gates, cell_mask,
                  v_prefix, d, key_count, key_sum);
}

}  // namespace seaopt::cuda::sea
