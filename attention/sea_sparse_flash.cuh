// Internal to attention/: what SEA's two prefill sparse-attention kernels share -- the mma.sync kernel
// (sea_sparse_flash_cuda.cu, every architecture) and the warpgroup-MMA one (sea_sparse_flash_wgmma_cuda.cu, sm_90a):
// the tile shape, the key sets of a query row worked out from its mask row (row_half_keys), the bitmap of the 64-key
// blocks a tile needs, and the output row (sparse_row_output's expressions). Both kernels therefore select the same
// keys and mix the same way; only the products differ. Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "attention/sea_cuda_kernels.cuh"
#include "engine/cuda/common.cuh"

namespace seaopt::cuda::sea {

inline constexpr int kFlashRows = 64;                     // queries per block
inline constexpr int kFlashWarpRows = 16;                 // queries per warp (the mma's M)
inline constexpr int kFlashWarps = kFlashRows / kFlashWarpRows;
inline constexpr int kFlashThreads = kFlashWarps * kWarpSize;
inline constexpr int kFlashKeys = 64;                     // keys per block step
inline constexpr float kFlashLog2e = 1.4426950408889634f;
static_assert(kFlashRows == 64 && kFlashKeys == 64 && kHeadDim == 64, "the index maths assume 64 rows, keys and dims");

// Bits lo .. hi-1 of a 32-bit word (0 <= lo < hi <= 32).
__device__ __forceinline__ uint32_t bit_range(int lo, int hi) {
    const uint32_t upto = hi >= 32 ? ~0u : ((1u << hi) - 1u);
    return upto & ~((1u << lo) - 1u);
}

// Keys per half block: a row's selected keys in a block are worked out as two 32-key halves, by two lanes.
inline constexpr int kHalfKeys = kFlashKeys / 2;

// The keys of a capped cell [e0, e1) (longer than k) among keys j0 .. j0+31, as bits: key i of the cell is
// e1 - 1 - ⌊i·len/n⌋ (n = k); those in the block have ⌊i·len/n⌋ in [u_lo, u_hi], i.e. i in [⌈u_lo·n/len⌉,
// ⌈(u_hi+1)·n/len⌉), over which ⌊i·len/n⌋ advances by len/n with a carry. Out of line: only (t+1)/K > k gets here
// (T > 4096 at K = k = 64), and inlined it made the kernel spill.
static __device__ __noinline__ uint32_t capped_cell_keys(int e0, int e1, int j0, int k) {
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

// The tile's mask rows [kFlashRows][KW] into shared memory (rows past n_rows: no cells).
__device__ __forceinline__ void stage_tile_masks(uint32_t *s_mask, const uint32_t *__restrict__ cell_mask, int t0,
                                                 int n_rows, int h, const Dims &d) {
    for (int i = (int)threadIdx.x; i < kFlashRows * d.KW; i += kFlashThreads) {
        const int r = i / d.KW;
        s_mask[i] = r < n_rows ? cell_mask[((size_t)(t0 + r) * d.H + h) * d.KW + i % d.KW] : 0u;
    }
}

// Marks in `bitmap` (⌈T/64/32⌉ words, zeroed) the 64-key blocks that the selected cells of query row t (mask row
// mrow) touch; two lanes share a row, `parity` picks every other mask word.
__device__ __forceinline__ void mark_row_key_blocks(uint32_t *bitmap, const uint32_t *mrow, int t, int parity,
                                                    const Dims &d) {
    const int len = t + 1;
    const float s = cell_scale(t, d);
    int cur = -1;
    uint32_t cur_bits = 0u;
    for (int w = parity; w < d.KW; w += 2) {
        uint32_t bits = mrow[w];
        while (bits) {
            const int c = w * 32 + __ffs(bits) - 1;
            bits &= bits - 1u;
            const int v0 = cell_edge(c, s, len), v1 = cell_edge(c + 1, s, len);
            for (int b = v0 / kFlashKeys; v1 > v0 && b <= (v1 - 1) / kFlashKeys; ++b) {
                if (b / 32 != cur) {
                    if (cur >= 0) atomicOr(&bitmap[cur], cur_bits);
                    cur = b / 32;
                    cur_bits = 0u;
                }
                cur_bits |= 1u << (b % 32);
            }
        }
    }
    if (cur >= 0) atomicOr(&bitmap[cur], cur_bits);
}

// The selected keys, in the 64-key block at j0, of this lane's rows a (row g = lane / 4 of the warp's 16, first
// row warp_row0 of the tile) and b (g + 8), 64 bits each: lane 2r + i works out row r's half i into the warp's 32
// words of shared memory (s_keys_warp), then each lane reads its two rows whole. Rows past n_rows select nothing.
// The key counts and, with `debug`, the key index sums of the two rows grow by this block's.
struct LaneKeys {
    uint64_t a, b;
};
__device__ __forceinline__ LaneKeys block_row_keys(uint32_t *s_keys_warp, const uint32_t *s_mask, int warp_row0,
                                                   int n_rows, int t0, int j0, const Dims &d, int (&count)[2],
                                                   uint32_t (&sum)[2], bool debug) {
    const int lane = (int)threadIdx.x % kWarpSize, g = lane / 4;
    {
        const int r = warp_row0 + lane / 2;
        s_keys_warp[lane] = r < n_rows ? row_half_keys(s_mask + r * d.KW, t0 + r, j0 + (lane & 1) * kHalfKeys, d) : 0u;
    }
    __syncwarp();
    const LaneKeys k{reinterpret_cast<const uint64_t *>(s_keys_warp)[g],
                     reinterpret_cast<const uint64_t *>(s_keys_warp)[g + 8]};
    count[0] += __popcll(k.a);
    count[1] += __popcll(k.b);
    if (debug) {
        sum[0] += (uint32_t)j0 * (uint32_t)__popcll(k.a) + bit_position_sum(k.a);
        sum[1] += (uint32_t)j0 * (uint32_t)__popcll(k.b) + bit_position_sum(k.b);
    }
    return k;
}

// The 16-key groups of the block that some row of the warp selected (uniform over the warp): the others' p are 0.
__device__ __forceinline__ void warp_key_groups(LaneKeys k, bool (&group)[4]) {
    const uint64_t warp_keys = k.a | k.b;
    const uint32_t any_lo = __reduce_or_sync(0xffffffffu, (uint32_t)warp_keys);
    const uint32_t any_hi = __reduce_or_sync(0xffffffffu, (uint32_t)(warp_keys >> 32));
    group[0] = (any_lo & 0xffffu) != 0u;
    group[1] = (any_lo >> 16) != 0u;
    group[2] = (any_hi & 0xffffu) != 0u;
    group[3] = (any_hi >> 16) != 0u;
}

// Scores outside the selected keys to -inf: in the m16n8 accumulator layout s[j][e] is key j0 + 8j + 2·tq4 + e (of
// row a for e < 2, of row b for e >= 2).
__device__ __forceinline__ void mask_unselected(float (&s)[8][4], LaneKeys k, int tq4) {
    const uint64_t ka = k.a >> (2 * tq4), kb = k.b >> (2 * tq4);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        if (!((ka >> (8 * j)) & 1ull)) s[j][0] = -INFINITY;
        if (!((ka >> (8 * j + 1)) & 1ull)) s[j][1] = -INFINITY;
        if (!((kb >> (8 * j)) & 1ull)) s[j][2] = -INFINITY;
        if (!((kb >> (8 * j + 1)) & 1ull)) s[j][3] = -INFINITY;
    }
}

__device__ __forceinline__ float sparse_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Query row t of head h from a lane's share of the flash accumulator (dims 8j + 2·tq4, +1 in o[j][e], o[j][e + 1];
// e = 0 for row a, 2 for row b), its key count and its softmax sum l (over the quad): C = (O / l) · σ(s_prob) (0
// without keys), out = σ(s_mix)·C + (1-σ(s_mix))·Σ_{j≤t} v_j/(t+1), rounded to fp16 -- sparse_row_output's
// expressions. Lane tq4 == 0 also writes the debug key count and key index sum where asked.
__device__ __forceinline__ void store_sparse_row(__half *__restrict__ out, long long out_row, const float (&o)[8][4],
                                                 int e, int t, int h, int tq4, int count, float l, uint32_t key_sum_row,
                                                 const float *__restrict__ gates, const float *__restrict__ v_prefix,
                                                 int H, int32_t *__restrict__ key_count,
                                                 uint32_t *__restrict__ key_sum) {
    const size_t rh = (size_t)t * H + h;
    const float2 gate = make_float2(gates[rh * 2], gates[rh * 2 + 1]);
    const float scale = count > 0 ? (1.0f / l) * sparse_sigmoid(gate.x) : 0.0f;
    const float mix = sparse_sigmoid(gate.y);
    const float inv_count = __fdiv_rn(1.0f, (float)(t + 1));
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
        if (key_sum) key_sum[rh] = key_sum_row;
    }
}

}  // namespace seaopt::cuda::sea
