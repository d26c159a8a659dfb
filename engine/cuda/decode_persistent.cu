// The batch-1 decode step of a pre-LN OPT as one persistent kernel: see decode_persistent.h for why.
//
// Grid: one block per SM (cooperative launch: every block is resident, so blocks may wait on each
// other without deadlock). Block: 8 compute warps and 1 producer warp.
//
// The weight stream. Every matrix of the step (per layer qkv [3C, C], out [C, C], fc1 [F, C], fc2
// [C, F]; then the lm_head [V, C]) is split by output rows: block b owns rows [r0, r1) (about n/G,
// r0 even), a contiguous piece of memory. The producer's lane 0 walks the block's pieces of all
// matrices in step order in chunks of R whole rows (R a power of two, R·row bytes <= a slot) and
// copies each into the next slot of a ring in shared memory with cp.async.bulk, completing on the
// slot's "full" mbarrier; before reusing a slot it waits on its "empty" mbarrier (one arrival per
// compute warp), and it keeps at most `in_flight` copies outstanding. After a layer's qkv pieces
// come, for a block that runs attention, its key range's cached K and V rows (produce_kv), so the
// attention reads them from shared memory too. The stream goes through L2 as evict-first. It never waits on
// activations: while the compute warps wait for another block's output, the ring fills. Few bytes
// in flight matter as much as many: every outstanding byte is queued ahead of the small,
// latency-bound reads that the step's critical path is made of (measured: 16-32 KB per SM beat
// 192 KB).
//
// The compute warps run the phases of a layer:
//   1. LN1 of the residual x (every block computes it, into shared memory as fp16), then its rows
//      of qkv = W_qkv·LN1(x) + b: q, k, v out as LL words (below), k and v also into the KV cache;
//   2. attention: block u < H·S takes head u / S and key range u % S of [0, pos] (S: as many as
//      make ranges of >= 256 keys, at most G / H): groups of lanes take keys (8 dims a lane: 32
//      groups of 8 lanes for heads of 64, 16 of 16 lanes for heads of 80 and 128, the lanes past the
//      head's dims idle; the cached rows from the ring, 128 or 64 keys a K and a V chunk; the step's
//      own k, v from the LL words; log2-domain online softmax in fp32), merged in shared memory; one
//      range writes the output, several write partials (m, l, acc[head_dim]) and the last of the
//      head's blocks (atomicInc on the head's counter, which wraps back to zero) merges them in range
//      order (deterministic);
//      (a SEA layer runs the SEA decode instead, as sub-phases over the blocks: see "SEA attention inside
//      the step" below; its output goes out as the dense attention's does);
//   3. x += W_o·attn + b_o;   4. ff = relu(W_fc1·LN2(x) + b);   5. x += W_fc2·ff + b.
// Then LN_final(x) and logits = W_head·LN_final(x) (plain stores, into mapped host memory unless
// SEAOPT_PERSISTENT_ZERO_COPY=0: the host reads them after the kernel), and where asked each block's greedy
// key of its logits (engine/argmax_key.h; a shared atomic max, then one store into mapped host memory). A chunk of R rows is
// computed by 8/R warps per row, each a contiguous part of the row (on the tensor cores where the
// part is 512, 1,024 or 2,048 halves: mma_span_dot; else fp32 FMAs of exactly converted fp16), two chunks
// at a time; the partial sums of a row are added in a fixed order after the block's last chunk, and
// the epilogue follows. Each block keeps the residual rows it
// owns (the same rows in phases 3 and 5) in shared memory and is the only one to update them.
//
// No grid barrier: phases hand their outputs over as LL words (NCCL's low-latency protocol): 32
// bits of data and a 32-bit tag, written by one 8-byte store. A reader spins on the words it
// needs until every tag is at least the tag of the phase that writes them; data and tag arrive
// together, so the wait and the read are one round trip, where a barrier costs a release, a poll
// and then the read. Tags: tag_base + 5·layer + phase (the host advances tag_base by 5·n_layer per
// step; words start at 0 and tag_base at 1; compared as a signed difference, so wrap-around is
// harmless). Reusing a buffer is safe without a barrier because each overwrite depends, through
// the data, on every reader of the old contents: e.g. x is overwritten in phase 3 only after
// every head's attention, which needed every block's qkv rows, which each block computes after
// it read x for LN1.
#include "engine/cuda/decode_persistent.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "attention/dense_cuda_kernels.cuh"
#include "attention/mma_f16.cuh"
#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_decode_device.cuh"
#include "attention/sea_topk_select.cuh"
#include "engine/argmax_key.h"
#include "engine/cuda/bulk_copy.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/layernorm_math.cuh"
#include "engine/cuda/q8_device.cuh"

namespace seaopt::cuda {
namespace {

constexpr int kComputeWarps = 8;
constexpr int kComputeThreads = kComputeWarps * kWarpSize;  // 256
constexpr int kThreads = kComputeThreads + kWarpSize;        // + the producer warp
constexpr int kMaxSlots = 16;
constexpr int kMinSlots = 3;  // OPT-13B: 3 slots of 40 KB (its FC2 rows)
constexpr int kMinSlotBytes = 16 << 10;
// The residual's float4s per compute thread are the kernel's template parameter V4 (C <= 1,024 V4): 4
// up to OPT-6.7B's hidden size of 4,096, 5 for OPT-13B's 5,120.

// The attention of a head of D dims (64, 80 or 128: OPT's head sizes): key groups of kLanes lanes,
// 8 dims a lane (8 lanes for 64, 16 for 80 and 128: the lanes past D / 8 idle).
template <int D> struct Heads {
    static constexpr int kDimLanes = D / 8;                        // lanes that hold dims
    static constexpr int kLanes = kDimLanes <= 8 ? 8 : 16;         // a key group's lanes
    static constexpr int kGroups = kComputeThreads / kLanes;       // 32 or 16 key groups
    static constexpr int kPartialFloats = D + 2;                   // acc[D], m, l
    static_assert(D % 16 == 0 && kDimLanes <= 16, "head_dim a multiple of 16, at most 128");
};
constexpr int kMaxAttnGroups = 32;     // Heads<64>::kGroups
constexpr int kAttnAccFloats = 2048;   // the most groups x D: 32 x 64, 16 x 80, 16 x 128
constexpr int kPhasesPerLayer = 5;
constexpr int kMaxPairsPerThread = 2;   // rows of one matrix per block <= 2 x 2 x 256
constexpr int kMaxOwnRows = 256;        // residual rows a block keeps
constexpr int kLanePartials = 8;        // partial sums a warp leaves per row part (gemv_phase)

// Shared memory: a fixed header, the GEMV input vector, the row parts of a GEMV (y_parts), the ring.
constexpr int kOffFull = 0;                                      // uint64 mbarrier[kMaxSlots]
constexpr int kOffEmpty = kOffFull + 8 * kMaxSlots;              // uint64 mbarrier[kMaxSlots]
constexpr int kOffLn = kOffEmpty + 8 * kMaxSlots;                // float[2][8]: LayerNorm warp sums
constexpr int kOffFlag = kOffLn + 2 * kComputeWarps * 4;         // int: "this block merges the head"
constexpr int kOffBest = kOffFlag + 8;                           // uint64: the block's greedy key (lm_head phase)
constexpr int kOffPicked = kOffBest + 8;                         // int: steps whose greedy pick the block has (chain)
constexpr int kOffToken = kOffPicked + 4;                        // int: the token of the chain's next step
constexpr int kPickedStop = 1 << 30;  // in *picked: the chain stops after that step (PersistentDecodeArgs::stop_token)
constexpr int kOffXOwn = 512;                                    // float[kMaxOwnRows]
constexpr int kOffAttnM = kOffXOwn + 4 * kMaxOwnRows;            // float[32]
constexpr int kOffAttnL = kOffAttnM + kMaxAttnGroups * 4;        // float[32]
constexpr int kOffAttnAcc = kOffAttnL + kMaxAttnGroups * 4;      // float[groups][D]
constexpr int kHeaderBytes = kOffAttnAcc + kAttnAccFloats * 4;
static_assert(kOffFlag + 4 <= kOffBest && kOffBest % 8 == 0 && kOffBest + 8 <= kOffPicked && kOffToken + 4 <= kOffXOwn,
              "header overlap");
static_assert(kHeaderBytes % 128 == 0, "the vector and the ring start 128-byte aligned");
// The compact layout (PersistentDecodePlan::compact): the header ends before the attention's group sums, which share
// one area with the GEMV vector and the row parts (their lifetimes do not overlap where every GEMV runs on the tensor
// cores: a phase reads its vector into registers before any row part is written). 24 KB more for the ring.
constexpr int kCompactHeaderBytes = kOffAttnAcc;
static_assert(kCompactHeaderBytes % 128 == 0, "the compact layout's vector and ring start 128-byte aligned");
__host__ __device__ inline int compact_area_bytes(int vec_bytes, int parts_bytes) {
    return max(max(vec_bytes, parts_bytes), kAttnAccFloats * 4);
}

int vector_bytes(const PersistentDecodeShape &s) { return ceil_div(std::max(s.C, s.F) * 2, 128) * 128; }

// The scratch (device memory zeroed once): per-head counters, attention partials, LL buffers.
struct ScratchLayout {
    size_t counters, partials, x, qkv, attn, ff, sea, picks, total;  // sea: 3 LL buffers of sea_image_floats words
};
// A greedy chain's handover of the blocks' greedy keys: two LL words (the key's halves) per block.
constexpr int kMaxGrid = 1024;
__host__ __device__ inline size_t align256(size_t n) { return (n + 255) / 256 * 256; }
// partial_floats: a range's attention partial, acc[head_dim], m, l.
__host__ __device__ inline ScratchLayout scratch_layout(const PersistentDecodeShape &s, int splits, int partial_floats) {
    ScratchLayout l;
    l.counters = 0;
    l.partials = align256(4 * (size_t)s.H);
    l.x = l.partials + align256((size_t)s.H * splits * (size_t)partial_floats * 4);
    l.qkv = l.x + align256(8 * (size_t)s.C);
    l.attn = l.qkv + align256(8 * (size_t)(3 * s.C / 2));
    l.ff = l.attn + align256(8 * (size_t)(s.C / 2));
    l.sea = l.ff + align256(8 * (size_t)(s.F / 2));
    l.picks = l.sea + 3 * align256(8 * (size_t)s.sea_image_floats);
    l.total = l.picks + align256(16 * (size_t)kMaxGrid);
    return l;
}

// The kernel's SEA arguments (a kernel parameter; zeros without SEA layers).
struct SeaStep {
    sea::Dims d;
    SeaDecodeStateLayout S;
    long long state_stride;
};

// Bytes of the CNN output's operands that a SEA layer's S blocks stage (see sea_operands_w4 and the two after it).
__host__ __device__ inline size_t sea_operand_bytes(const sea::Dims &d) {
    return ((size_t)d.H * d.C + 4 * (size_t)d.K + (size_t)(d.H + d.H % 2)) * 4;
}

// ---- device helpers ----------------------------------------------------------------------------


// A row of n_in weights in a ring slot: fp16, or Q8_0 (n_in int8 values and n_in / 32 fp16 scales: a chunk of R
// rows holds the R rows' values, then from byte R·n_in their scales).
__host__ __device__ inline int row_bytes(int n_in, bool q8) { return q8 ? n_in + n_in / 16 : n_in * 2; }
__host__ __device__ inline int chunk_rows(int n_in, int slot_bytes, bool q8 = false) {
    const int fit = slot_bytes / row_bytes(n_in, q8);
    int r = 1;
    while (r * 2 <= fit && r * 2 <= kComputeWarps) r *= 2;
    return r;
}

// The kernel's device code exists for sm_90 only (its body is empty elsewhere): an sm_80 pass skips the helpers
// below instead of warning that they are unused.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// Timing modes (SEAOPT_PERSISTENT_MODE; results are wrong in 1, 2 and 3): 0 the step; 1 the weight
// stream alone (the compute warps only release the slots); 2 the step without waiting for handovers; 3 the step
// without the weight stream.
constexpr int kModeStreamOnly = 1;
constexpr int kModeNoHandoverWaits = 2;
constexpr int kModeComputeOnly = 3;  // the producer copies nothing: the step's compute on stale slots
constexpr int kAttnUnroll = 4;  // keys per group per step
template <int D> constexpr int kAttnKeysPerStep = Heads<D>::kGroups * kAttnUnroll;  // 128 (D = 64) or 64
constexpr int kAttnKeysPerSplit = 256;  // keys per attention range at least (below: fewer ranges)
constexpr float kLog2e = 1.4426950408889634f;

// The compute warps' own block barrier (named barrier 1; the producer warp never arrives).
__device__ __forceinline__ void compute_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kComputeThreads) : "memory"); }

// The block's rows of a matrix of n_out rows: [r0, r1), r0 even (fp16 outputs go out in pairs). In 32-bit
// arithmetic (the plan checks that pairs x grid fits): a 64-bit division took ~300 cycles at every phase's start.
__device__ __forceinline__ void block_rows(int n_out, int &r0, int &r1) {
    const uint32_t pairs = (uint32_t)(n_out + 1) / 2u;
    r0 = min(n_out, (int)(2u * (blockIdx.x * pairs / gridDim.x)));
    r1 = min(n_out, (int)(2u * ((blockIdx.x + 1u) * pairs / gridDim.x)));
}

struct Ring {
    uint64_t *full, *empty;
    unsigned char *slots;
    int n_slots, slot_bytes;
    int in_flight;  // copies issued and not yet landed, at most
    bool evict_first;  // weights stream through L2 as evict-first: the KV rows and handover words stay
    uint64_t policy;
    bool copy;  // false in the timing mode kModeComputeOnly
};

// A chunk's slot and the parity of that slot's use, stepped along the ring without a division per chunk.
struct RingPos {
    int slot;
    uint32_t parity;
};
__device__ __forceinline__ RingPos ring_pos(const Ring &ring, uint32_t c) {
    return {(int)(c % (uint32_t)ring.n_slots), (c / (uint32_t)ring.n_slots) & 1u};
}
__device__ __forceinline__ void ring_next(const Ring &ring, RingPos &p) {
    if (++p.slot == ring.n_slots) {
        p.slot = 0;
        p.parity ^= 1u;
    }
}

// The producer's place: chunks issued, the next one's position, and that of the chunk in_flight back.
struct ProducerPos {
    uint32_t c = 0;
    RingPos next{0, 0u}, landed{0, 0u};
};

// The producer: the next chunk of the ring, `bytes` (a multiple of 16, at most a slot) from src; with kScales also
// scale_bytes (a multiple of 16) from scales to byte scale_at of the slot, on the same barrier (a Q8_0 chunk).
template <bool kScales = false>
__device__ void produce_chunk(const Ring &ring, ProducerPos &pp, const void *src, uint32_t bytes,
                              const void *scales = nullptr, uint32_t scale_bytes = 0, uint32_t scale_at = 0) {
    if (pp.c >= (uint32_t)ring.in_flight) {  // chunk c - in_flight has landed
        mbar_wait(ring.full + pp.landed.slot, pp.landed.parity);
        ring_next(ring, pp.landed);
    }
    const int slot = pp.next.slot;
    const uint32_t parity = pp.next.parity;
    ring_next(ring, pp.next);
    ++pp.c;
    mbar_wait(ring.empty + slot, parity ^ 1u);  // a fresh barrier counts its "previous" phase done
    if (!ring.copy) {
        mbar_arrive(ring.full + slot);
        return;
    }
    unsigned char *const dst = ring.slots + (size_t)slot * ring.slot_bytes;
    mbar_arrive_expect_tx(ring.full + slot, kScales ? bytes + scale_bytes : bytes);
    if (ring.evict_first) {
        bulk_load_hinted(dst, src, bytes, ring.full + slot, ring.policy);
        if constexpr (kScales) bulk_load_hinted(dst + scale_at, scales, scale_bytes, ring.full + slot, ring.policy);
    } else {
        bulk_load(dst, src, bytes, ring.full + slot);
        if constexpr (kScales) bulk_load(dst + scale_at, scales, scale_bytes, ring.full + slot);
    }
}

// One chunk of `rows` rows from row r of a matrix [n_out, n_in] (R rows a full chunk): fp16 rows, or Q8_0 int8 rows
// and then their scales at byte R·n_in of the slot. Every Q8_0 piece is 16-byte aligned and a multiple of 16 bytes
// where n_in % 256 == 0 (persistent_decode_plan checks it).
__device__ __forceinline__ void produce_rows(const Ring &ring, ProducerPos &pp, const half_t *w, int n_in, int r,
                                             uint32_t rows, int) {
    produce_chunk(ring, pp, w + (size_t)r * n_in, rows * (uint32_t)n_in * 2u);
}
__device__ __forceinline__ void produce_rows(const Ring &ring, ProducerPos &pp, WeightQ8 w, int n_in, int r,
                                             uint32_t rows, int R) {
    produce_chunk<true>(ring, pp, w.q + (size_t)r * n_in, rows * (uint32_t)n_in, w.d + (size_t)r * (n_in / 32),
                        rows * (uint32_t)n_in / 16, (uint32_t)(R * n_in));
}

// The producer's share of one matrix [n_out, n_in] (W: const half_t * or WeightQ8): the block's rows, chunk_rows a
// chunk.
template <typename W>
__device__ void produce(const Ring &ring, ProducerPos &pp, W w, int n_in, int n_out) {
    int r0, r1;
    block_rows(n_out, r0, r1);
    const int R = chunk_rows(n_in, ring.slot_bytes, std::is_same_v<W, WeightQ8>);
    for (int r = r0; r < r1; r += R) produce_rows(ring, pp, w, n_in, r, (uint32_t)min(R, r1 - r), R);
}

// The compute warps' side of produce() without the maths: each of the block's chunks of a matrix [n_out, n_in] waited
// for and its slot released (c counts the chunks consumed, as in gemv_phase). The stream-only timing mode consumes a
// whole step this way; a greedy chain that stops drains the next step's qkv rows, which the producer streams before
// it learns of the stop, so that no bulk copy is still writing the block's shared memory when it exits.
__device__ void release_rows(const Ring &ring, uint32_t &c, int n_in, int n_out, bool q8 = false) {
    int r0, r1;
    block_rows(n_out, r0, r1);
    const int R = chunk_rows(n_in, ring.slot_bytes, q8);
    for (int r = r0; r < r1; r += R, ++c) {
        const int slot = (int)(c % (uint32_t)ring.n_slots);
        mbar_wait(ring.full + slot, (c / (uint32_t)ring.n_slots) & 1u);
        __syncwarp();
        if (threadIdx.x % kWarpSize == 0) mbar_arrive(ring.empty + slot);
    }
}

__device__ __forceinline__ float dot8(uint4 w, uint4 x, float acc) {
    const uint32_t wv[4] = {w.x, w.y, w.z, w.w}, xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float2 a = half2_bits_to_float2(wv[e]), b = half2_bits_to_float2(xv[e]);
        acc = fmaf(a.x, b.x, acc);
        acc = fmaf(a.y, b.y, acc);
    }
    return acc;
}


// ---- LL words -------------------------------------------------------------------------------------

__device__ __forceinline__ void ll_store(uint64_t *p, uint32_t data, uint32_t tag) {
    const uint64_t word = (uint64_t)data | ((uint64_t)tag << 32);
    asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(p), "l"(word) : "memory");
}

__device__ __forceinline__ bool ll_ready(uint64_t word, uint32_t tag) { return (int32_t)((uint32_t)(word >> 32) - tag) >= 0; }

// Two LL words (16 bytes, 16-byte aligned), waited for: their data. (A sleep between polls, to leave
// the L2 to the weight stream, measured slower: 784-794 against 799 t/s.)
__device__ __forceinline__ uint2 ll_load2(const uint64_t *p, uint32_t tag) {
    uint64_t a, b;
    do {
        asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(p) : "memory");
    } while (!ll_ready(a, tag) || !ll_ready(b, tag));
    return make_uint2((uint32_t)a, (uint32_t)b);
}

// Issues the loads of N pairs of LL words (null pointers: none), then waits for each: one round
// trip for all of them where they are ready.
template <int N>
__device__ __forceinline__ void ll_load_many(uint2 (&out)[N], const uint64_t *const (&p)[N], uint32_t tag) {
    uint64_t a[N], b[N];
#pragma unroll
    for (int i = 0; i < N; ++i) {
        a[i] = b[i] = (uint64_t)tag << 32;
        if (p[i] != nullptr) {
            asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(a[i]), "=l"(b[i]) : "l"(p[i]) : "memory");
        }
    }
#pragma unroll
    for (int i = 0; i < N; ++i) {
        if (!ll_ready(a[i], tag) || !ll_ready(b[i], tag)) {
            const uint2 d = ll_load2(p[i], tag);
            a[i] = d.x;
            b[i] = d.y;
        }
        out[i] = make_uint2((uint32_t)a[i], (uint32_t)b[i]);
    }
}

__device__ __forceinline__ uint32_t pack_half2_bits(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&h);
}

// The step's LL buffers (in the scratch) and tags.
struct Handoff {
    uint64_t *x;     // [C]: fp32 residual
    uint64_t *qkv;   // [3C/2]: fp16 pairs of q, k, v
    uint64_t *attn;  // [C/2]: fp16 pairs
    uint64_t *ff;    // [F/2]: fp16 pairs
    uint32_t tag_base;
    uint32_t wait_bias;  // 0; 2^30 in the "no handover waits" timing mode (every word reads as ready)
    __device__ uint32_t tag(int layer, int phase) const { return tag_base + (uint32_t)(kPhasesPerLayer * layer + phase); }
    __device__ uint32_t wait_tag(int layer, int phase) const { return tag(layer, phase) - wait_bias; }
};

// Σ w[i]·x[i] over one warp's span of a weight row (kTiles x 256 halves in shared memory) on the tensor
// cores, fp32 accumulation; the lane's share of the sum (see below). The span is read as a 16 x 16·kTiles
// matrix A whose row i, k-block b (8 halves) are the 16 bytes at half 8i + 128b of the span: each 8x8
// piece that ldmatrix loads is then 128 contiguous bytes (no bank conflict), and it lands in the lanes
// as the mma's A fragment (no register moves). B1 / B2 are x mapped the same way, their 8 columns the
// rows 0-7 / 8-15 of that map, so D1[s][s] and D2[s + 8][s] are the dot products of the span's 16
// row pieces and the rest of D is never used. The diagonal entry of piece s sits in lane (s, s / 2):
// d1[s % 2] and d2[2 + s % 2]. Even and odd tiles go to two accumulator sets: chains half as long.
template <int kTiles>
__device__ __forceinline__ float mma_span_dot(uint32_t w_lane, const uint32_t (&xb)[kTiles][4], int g, int t) {
    float d1[2][4] = {}, d2[2][4] = {};
    uint32_t a[kTiles][4];
#pragma unroll
    for (int kk = 0; kk < kTiles; ++kk) ldmatrix_x4(a[kk], w_lane + 512u * kk);
#pragma unroll
    for (int kk = 0; kk < kTiles; ++kk) {
        mma_16816(d1[kk & 1], a[kk], xb[kk][0], xb[kk][1]);
        mma_16816(d2[kk & 1], a[kk], xb[kk][2], xb[kk][3]);
    }
    const bool odd = (g & 1) != 0;
    const float s1 = odd ? d1[0][1] + d1[1][1] : d1[0][0] + d1[1][0];
    const float s2 = odd ? d2[0][3] + d2[1][3] : d2[0][2] + d2[1][2];
    return t == g / 2 ? s1 + s2 : 0.0f;
}

// This lane's byte offset in a span for mma_span_dot's ldmatrix: lanes 8j..8j+7 give the rows of piece j
// (rows 0-7 / 8-15 of A for even / odd j, k-block 2kk + j / 2).
__device__ __forceinline__ uint32_t mma_span_lane_offset(int lane) { return 16u * (lane & 15) + 256u * (lane >> 4); }

// mma_span_dot's B fragments of x (xs: the warp's span of xin): tile kk, lane (g, t): B1 k-blocks 2kk and
// 2kk + 1 of piece g, B2 of piece g + 8, halves 2t and 2t + 1 of each.
template <int kTiles>
__device__ __forceinline__ void mma_span_x(uint32_t (&xb)[kTiles][4], const __half *xs, int g, int t) {
    const uint32_t *x32 = reinterpret_cast<const uint32_t *>(xs);
#pragma unroll
    for (int kk = 0; kk < kTiles; ++kk) {
        const int h = 8 * g + 256 * kk + 2 * t;  // half index of B1's b0
        xb[kk][0] = x32[h / 2];
        xb[kk][1] = x32[(h + 128) / 2];
        xb[kk][2] = x32[(h + 64) / 2];
        xb[kk][3] = x32[(h + 64 + 128) / 2];
    }
}

// A Q8_0 span (the int8 values of one warp's part of a row; the chunk's scales after its rows): the same 16 row
// pieces and diagonal as mma_span_dot, with another map of k. In tile kk (256 values) lane (g, t) holds the span's
// 8 consecutive values from (32kk + lane)·8 as the A fragment's pairs a0 = (0, 1), a1 = (2, 3), a2 = (4, 5),
// a3 = (6, 7): values 0, 1, 4, 5 belong to piece g, values 2, 3, 6, 7 to piece g + 8, and the B fragments are x at
// the lane's own 8 positions (mma_span_x_q8). A piece's 16 values of a tile then come from lanes 4g..4g+3: one
// 32-value block, scale 8kk + g of the span. So each tile's two mmas start from zero and the diagonal lane adds
// scale x (its D1 + D2 entries) in fp32: the int8 GEMV's arithmetic (engine/cuda/gemm_q8.cu: exact int8 -> fp16
// values, a block's products summed in fp32, times its scale), never a weight rounded to fp16.
template <int kTiles>
__device__ __forceinline__ void mma_span_x_q8(uint32_t (&xb)[kTiles][4], const __half *xs, int lane) {
    const uint4 *x4 = reinterpret_cast<const uint4 *>(xs);
#pragma unroll
    for (int kk = 0; kk < kTiles; ++kk) {
        const uint4 v = x4[32 * kk + lane];
        xb[kk][0] = v.x;  // B1 (piece g): pairs (0, 1) and (4, 5)
        xb[kk][1] = v.z;
        xb[kk][2] = v.y;  // B2 (piece g + 8): pairs (2, 3) and (6, 7)
        xb[kk][3] = v.w;
    }
}
// q_lane: shared address of this lane's 8 values in tile 0 (the span + 8·lane); d_group: of its group's scale in
// tile 0 (the span's scales + 2g). All of the span's loads go first (asm volatile keeps them there): with each tile's
// loads beside its mmas the OPT-1.3B step ran 1,038-1,043 t/s against 1,093-1,102 (H100). Dropped too: the 1152·Σx
// of a block subtracted once in fp32 instead of 1152 from every weight pair (fewer instructions, more registers
// spilled: 1,054-1,057 t/s).
template <int kTiles>
__device__ __forceinline__ float mma_span_dot_q8(uint32_t q_lane, uint32_t d_group, const uint32_t (&xb)[kTiles][4],
                                                 int g, int t) {
    uint32_t w[kTiles][2];
    float sc[kTiles];
#pragma unroll
    for (int kk = 0; kk < kTiles; ++kk) {
        asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(w[kk][0]), "=r"(w[kk][1]) : "r"(q_lane + 256u * kk));
        unsigned short d;
        asm volatile("ld.shared.u16 %0, [%1];" : "=h"(d) : "r"(d_group + 16u * kk));
        sc[kk] = __half2float(__ushort_as_half(d));
    }
    const bool odd = (g & 1) != 0;
    float acc[2] = {0.0f, 0.0f};
#pragma unroll
    for (int kk = 0; kk < kTiles; ++kk) {
        uint32_t a[4];
        q8_to_half2x2(w[kk][0], a[0], a[1]);
        q8_to_half2x2(w[kk][1], a[2], a[3]);
        float d1[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        mma_16816(d1, a, xb[kk][0], xb[kk][1]);
        mma_16816(d2, a, xb[kk][2], xb[kk][3]);
        const float b = odd ? d1[1] + d2[3] : d1[0] + d2[2];
        acc[kk & 1] = fmaf(sc[kk], b, acc[kk & 1]);
    }
    return t == g / 2 ? acc[0] + acc[1] : 0.0f;
}

// The compute warps' share of one matrix: y[o] = W[o, :]·xin for the block's rows, then the
// epilogue on pairs of rows (o, o+1), o even: epi.store(o, y0, y1, pre0, pre1, has_second) with
// pre = epi.load(row) fetched before the stream (its latency overlaps it). A warp's part of a row
// leaves kLanePartials partial sums in y_parts[local row][part][kLanePartials] (the tensor-core
// path: the 8 lanes that hold a diagonal pair; the FMA path: the warp's sum and zeros), added up
// once per row after the block's last chunk: no shuffle reduction per chunk. Chunks go two at a
// time, so that each warp has two independent chains of loads and mmas in flight. No chunk waits on
// another warp or on memory other than the ring.

// One chunk's part for this warp on the FMA path: the warp's sum in lane 0; loads only from the slot and xin.
__device__ __forceinline__ float chunk_part_fma(const uint4 *ws, const uint4 *xs, int seg, int lane) {
    float acc0 = 0.0f, acc1 = 0.0f;
    int i = lane;
    for (; i + kWarpSize < seg; i += 2 * kWarpSize) {
        acc0 = dot8(ws[i], xs[i], acc0);
        acc1 = dot8(ws[i + kWarpSize], xs[i + kWarpSize], acc1);
    }
    if (i < seg) acc0 = dot8(ws[i], xs[i], acc0);
    const float acc = warp_reduce_sum(acc0 + acc1);
    return lane == 0 ? acc : 0.0f;
}

// The same for a Q8_0 chunk: groups of 8 values (8 bytes of q; the scale of their 32-value block), the exact int8
// values times x in fp32, each group's sum times its scale.
__device__ __forceinline__ float chunk_part_fma_q8(const uint2 *wq, const __half *wd, const uint4 *xs, int seg,
                                                   int lane) {
    float acc = 0.0f;
    for (int i = lane; i < seg; i += kWarpSize) {
        const uint2 w = wq[i];
        float x[8];
        unpack8(x, xs[i]);
        float s = 0.0f;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            s = fmaf((float)(int8_t)(w.x >> (8 * e)), x[e], s);
            s = fmaf((float)(int8_t)(w.y >> (8 * e)), x[4 + e], s);
        }
        acc = fmaf(__half2float(wd[i / 4]), s, acc);
    }
    const float sum = warp_reduce_sum(acc);
    return lane == 0 ? sum : 0.0f;
}

// The chunk loop of gemv_phase (chunks c.. of the phase's n_rows rows, R a chunk): kTiles tiles of 256 values a
// warp's row part on the tensor cores, or 0: FMAs over seg groups of 8 values. kQ8: Q8_0 chunks (row_bytes).
struct GemvLoop {
    int n_rows, R, parts, row, part, n8, seg, writer;
};
template <int kTiles, bool kQ8>
__device__ __forceinline__ void gemv_chunks(const Ring &ring, uint32_t c, const GemvLoop &gl, const __half *xin,
                                            float *y_parts, bool parts_on_x, long long *prof) {
    const int lane = threadIdx.x % kWarpSize, g = lane / 4, t = lane % 4;
    const __half *xs = xin + (size_t)gl.part * gl.seg * 8;
    uint32_t xb[kTiles > 0 ? kTiles : 1][4];
    if constexpr (kTiles > 0) {
        if constexpr (kQ8) {
            mma_span_x_q8<kTiles>(xb, xs, lane);
        } else {
            mma_span_x<kTiles>(xb, xs, g, t);
        }
        // The row parts share xin's bytes (the compact layout): every warp has its x before any writes a part.
        if (parts_on_x) compute_sync();
    }
    // This warp's part of row `row` of a chunk in slot s: bytes from the slot's start (Q8_0: of its values, and of
    // their scales after the chunk's R rows of values).
    const uint32_t group0 = (uint32_t)(gl.row * gl.n8 + gl.part * gl.seg);  // the part's first group of 8 values
    const uint32_t part_bytes = kQ8 ? group0 * 8u : group0 * 16u;
    const uint32_t scale_bytes = (uint32_t)(gl.R * gl.n8) * 8u + group0 / 2u;
    const uint32_t slots_addr =
        smem_addr(ring.slots) + part_bytes + (kTiles > 0 ? (kQ8 ? 8u * (uint32_t)lane : mma_span_lane_offset(lane)) : 0u);
    auto part_of = [&](const RingPos &p) -> float {
        if constexpr (kTiles > 0 && kQ8) {
            const uint32_t slot = (uint32_t)p.slot * (uint32_t)ring.slot_bytes;
            return mma_span_dot_q8<kTiles>(slots_addr + slot, smem_addr(ring.slots) + slot + scale_bytes + 2u * g, xb,
                                           g, t);
        } else if constexpr (kTiles > 0) {
            return mma_span_dot<kTiles>(slots_addr + (uint32_t)p.slot * (uint32_t)ring.slot_bytes, xb, g, t);
        } else if constexpr (kQ8) {
            const unsigned char *slot = ring.slots + (size_t)p.slot * ring.slot_bytes;
            return chunk_part_fma_q8(reinterpret_cast<const uint2 *>(slot + part_bytes),
                                     reinterpret_cast<const __half *>(slot + scale_bytes),
                                     reinterpret_cast<const uint4 *>(xs), gl.seg, lane);
        } else {
            const uint4 *ws = reinterpret_cast<const uint4 *>(ring.slots + (size_t)p.slot * ring.slot_bytes + part_bytes);
            return chunk_part_fma(ws, reinterpret_cast<const uint4 *>(xs), gl.seg, lane);
        }
    };
    const int n_chunks = ceil_div(gl.n_rows, gl.R);
    RingPos pa = ring_pos(ring, c);
    for (int k = 0; k < n_chunks; k += 2) {
        const bool two = k + 1 < n_chunks;
        RingPos pb = pa;
        ring_next(ring, pb);
        const long long t0 = prof ? clock64() : 0;
        mbar_wait(ring.full + pa.slot, pa.parity);
        if (two) mbar_wait(ring.full + pb.slot, pb.parity);
        if (prof) prof[2] += clock64() - t0;
        const int rows_a = min(gl.R, gl.n_rows - k * gl.R), rows_b = two ? min(gl.R, gl.n_rows - (k + 1) * gl.R) : 0;
        const float va = gl.row < rows_a ? part_of(pa) : 0.0f;
        const float vb = gl.row < rows_b ? part_of(pb) : 0.0f;
        __syncwarp();  // every lane's slot reads are done
        if (lane == 0) {
            mbar_arrive(ring.empty + pa.slot);
            if (two) mbar_arrive(ring.empty + pb.slot);
        }
        if (gl.writer >= 0) {
            if (gl.row < rows_a) y_parts[((k * gl.R + gl.row) * gl.parts + gl.part) * kLanePartials + gl.writer] = va;
            if (gl.row < rows_b) y_parts[(((k + 1) * gl.R + gl.row) * gl.parts + gl.part) * kLanePartials + gl.writer] = vb;
        }
        pa = pb;
        ring_next(ring, pa);
    }
}

// sub_begin, sub_rows: only the block's rows [sub_begin, sub_begin + sub_rows) of the matrix (sub_begin a multiple of
// the chunk rows): the lm_head goes in rounds of at most PersistentDecodePlan::head_rows rows, so that its row parts
// need no more shared memory than the layers' matrices (the ring gets the rest).
// area_bytes > 0: the compact layout, y_parts = xin = the start of an area of that many bytes; the row parts go
// after the vector where they fit, else over it (the FC2 phase at OPT-1.3B).
// kQ8: the matrix streams as Q8_0 chunks (produce with a WeightQ8: produce_rows).
template <bool kQ8 = false, typename Epilogue>
__device__ void gemv_phase(const Ring &ring, uint32_t &c, const __half *xin, int n_in, int n_out, float *y_parts,
                           const Epilogue &epi, long long *prof, int area_bytes, int sub_begin = 0,
                           int sub_rows = INT_MAX) {
    const long long t_setup = prof ? clock64() : 0;
    int r0, r1;
    block_rows(n_out, r0, r1);
    r0 = min(r1, r0 + sub_begin);
    r1 = min(r1, r0 + min(sub_rows, r1 - r0));
    const int n_rows = r1 - r0;
    float2 pre[kMaxPairsPerThread][2];
#pragma unroll
    for (int k = 0; k < kMaxPairsPerThread; ++k) {
        const int i = 2 * (threadIdx.x + k * kComputeThreads);
        pre[k][0] = i < n_rows ? epi.load(r0 + i) : make_float2(0.0f, 0.0f);
        pre[k][1] = i + 1 < n_rows ? epi.load(r0 + i + 1) : make_float2(0.0f, 0.0f);
    }
    const int R = chunk_rows(n_in, ring.slot_bytes, kQ8);
    const int parts = kComputeWarps / R;  // warps per row
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    const int n8 = n_in / 8, seg = n8 / parts;  // uint4s per row, per warp
    // Tensor cores where a warp's span of a row is 512, 1,024 or 2,048 halves (all of OPT-1.3B's and 6.7B's
    // matrices): see mma_span_dot. Its B fragments (x) are the same for every chunk of the phase: in registers.
    // (persistent_decode_plan's on_tensor_cores states the same rule for the compact layout.)
    const int tiles = seg % 32 == 0 ? seg / 32 : 0;
    const bool use_mma = tiles == 2 || tiles == 4 || tiles == 8;
    // The lane's slot among the row part's partials: tensor cores, lane (g, g / 2) holds one; FMAs, lanes 0-7.
    const int g = lane / 4, t = lane % 4;
    const GemvLoop gl{n_rows, R, parts, warp / parts, warp % parts, n8, seg,
                      use_mma ? (t == g / 2 ? g : -1) : (lane < kLanePartials ? lane : -1)};
    const int n_chunks = ceil_div(n_rows, R);
    bool parts_on_x = false;
    if (area_bytes > 0) {
        const int vec = (n_in * 2 + 127) / 128 * 128, need = n_chunks * R * parts * kLanePartials * 4;
        if (vec + need <= area_bytes) {
            y_parts += vec / 4;
        } else {
            parts_on_x = true;  // the host allows this for single-round phases on the tensor cores only
        }
    }
    const long long t_loop = prof ? clock64() : 0;
    if (prof) prof[5] += t_loop - t_setup;
    if (use_mma && tiles == 8) {
        gemv_chunks<8, kQ8>(ring, c, gl, xin, y_parts, parts_on_x, prof);
    } else if (use_mma && tiles == 4) {
        gemv_chunks<4, kQ8>(ring, c, gl, xin, y_parts, parts_on_x, prof);
    } else if (use_mma) {
        gemv_chunks<2, kQ8>(ring, c, gl, xin, y_parts, parts_on_x, prof);
    } else {
        gemv_chunks<0, kQ8>(ring, c, gl, xin, y_parts, parts_on_x, prof);
    }
    c += (uint32_t)n_chunks;
    const long long t_epi = prof ? clock64() : 0;
    if (prof) prof[6] += t_epi - t_loop;
    compute_sync();
    const int per_row4 = parts * kLanePartials / 4;  // float4s of partials per row
#pragma unroll
    for (int k = 0; k < kMaxPairsPerThread; ++k) {
        const int i = 2 * (threadIdx.x + k * kComputeThreads);
        if (i < n_rows) {
            const bool second = i + 1 < n_rows;
            const float4 *p0 = reinterpret_cast<const float4 *>(y_parts) + (size_t)i * per_row4;
            float y0 = 0.0f, y1 = 0.0f;
            for (int q = 0; q < per_row4; ++q) {  // in part order: deterministic
                const float4 a = p0[q];
                y0 += (a.x + a.y) + (a.z + a.w);
            }
            if (second) {
                for (int q = 0; q < per_row4; ++q) {
                    const float4 a = p0[per_row4 + q];
                    y1 += (a.x + a.y) + (a.z + a.w);
                }
            }
            epi.store(r0 + i, y0, y1, pre[k][0], pre[k][1], second);
        }
    }
    compute_sync();  // y_parts is free again
    if (prof) prof[7] += clock64() - t_epi;
}

__device__ __forceinline__ float half_at(const half_t *p, int i) {
    return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short *>(p) + i)));
}

// The epilogues: load(o) before the stream, store(o, ...) after it for rows o and o + 1.
template <int D>
struct QkvEpilogue {  // + bias -> fp16 pairs: LL words of q, k, v; k and v also into the cache at pos
    const half_t *bias;
    uint64_t *out;
    uint32_t tag;
    __half *k_at, *v_at;  // head 0 of the cache at (seq, pos)
    int C;
    size_t head_stride;
    half_t *plain;  // null, or [3C]: q, k, v also as plain fp16 (a segment's last layer, for the SEA kernels after it)
    __device__ float2 load(int o) const { return make_float2(half_at(bias, o), 0.0f); }
    __device__ void store(int o, float y0, float y1, float2 p0, float2 p1, bool) const {
        const uint32_t bits = pack_half2_bits(y0 + p0.x, y1 + p1.x);
        ll_store(out + o / 2, bits, tag);
        if (plain != nullptr) *reinterpret_cast<uint32_t *>(plain + o) = bits;
        if (o >= C) {  // o even: o and o + 1 are in the same head
            const int i = o < 2 * C ? o - C : o - 2 * C;
            __half *dst = (o < 2 * C ? k_at : v_at) + (size_t)(i / D) * head_stride + i % D;
            *reinterpret_cast<uint32_t *>(dst) = bits;
        }
    }
};
struct ResidualEpilogue {  // x_own += y + bias (fp32), out as LL words
    const float *bias;
    float *x_own;  // the block's rows of x (shared memory), from row r0_own
    int r0_own;
    uint64_t *out;
    uint32_t tag;
    __device__ float2 load(int o) const { return make_float2(__ldg(bias + o), 0.0f); }
    __device__ void store(int o, float y0, float y1, float2 p0, float2 p1, bool second) const {
        float *x = x_own + (o - r0_own);
        x[0] = x[0] + (y0 + p0.x);
        ll_store(out + o, __float_as_uint(x[0]), tag);
        if (second) {
            x[1] = x[1] + (y1 + p1.x);
            ll_store(out + o + 1, __float_as_uint(x[1]), tag);
        }
    }
};
struct ReluEpilogue {  // relu(y + bias) -> fp16 pairs as LL words
    const half_t *bias;
    uint64_t *out;
    uint32_t tag;
    __device__ float2 load(int o) const { return make_float2(half_at(bias, o), 0.0f); }
    __device__ void store(int o, float y0, float y1, float2 p0, float2 p1, bool) const {
        y0 += p0.x;
        y1 += p1.x;
        if (y0 < 0.0f) y0 = 0.0f;  // NaN stays NaN
        if (y1 < 0.0f) y1 = 0.0f;
        ll_store(out + o / 2, pack_half2_bits(y0, y1), tag);
    }
};
// The logits, and (best != null) the block's greedy key of them (engine/argmax_key.h) by a shared atomic max.
struct LogitsEpilogue {
    float *out;
    unsigned long long *best;  // shared memory, kArgmaxKeyNone before the phase; or null
    __device__ float2 load(int) const { return make_float2(0.0f, 0.0f); }
    __device__ void store(int o, float y0, float y1, float2, float2, bool second) const {
        out[o] = y0;
        if (second) out[o + 1] = y1;
        if (best != nullptr) {
            unsigned long long k = argmax_key(y0, (uint32_t)o);
            if (second) {
                const unsigned long long k1 = argmax_key(y1, (uint32_t)(o + 1));
                k = k1 > k ? k1 : k;
            }
            atomicMax(best, k);
        }
    }
};

// v: this thread's float4s of the residual (float4 index tid + k·256), waited for as LL words.
template <int V4>
__device__ __forceinline__ void load_residual(float4 (&v)[V4], const uint64_t *x, int C, uint32_t tag) {
    const int n4 = C / 4;
    const uint64_t *ptr[2 * V4];
#pragma unroll
    for (int k = 0; k < V4; ++k) {
        const int i4 = (int)threadIdx.x + k * kComputeThreads;
        ptr[2 * k] = i4 < n4 ? x + 4 * (size_t)i4 : nullptr;
        ptr[2 * k + 1] = i4 < n4 ? x + 4 * (size_t)i4 + 2 : nullptr;
    }
    uint2 d[2 * V4];
    ll_load_many(d, ptr, tag);
#pragma unroll
    for (int k = 0; k < V4; ++k) {
        v[k] = make_float4(__uint_as_float(d[2 * k].x), __uint_as_float(d[2 * k].y), __uint_as_float(d[2 * k + 1].x),
                           __uint_as_float(d[2 * k + 1].y));
    }
}
// A LayerNorm's gamma and beta for this thread's float4s of the residual (as load_residual's),
// loaded before the residual is awaited so that their latency overlaps the wait.
template <int V4> struct LnParams {
    uint2 w[V4], b[V4];
};
template <int V4> __device__ __forceinline__ LnParams<V4> load_ln_params(const half_t *w, const half_t *b, int C) {
    LnParams<V4> p;
    const uint2 *w4 = reinterpret_cast<const uint2 *>(w), *b4 = reinterpret_cast<const uint2 *>(b);
#pragma unroll
    for (int k = 0; k < V4; ++k) {
        const int i4 = (int)threadIdx.x + k * kComputeThreads;
        p.w[k] = i4 < C / 4 ? __ldg(w4 + i4) : make_uint2(0u, 0u);
        p.b[k] = i4 < C / 4 ? __ldg(b4 + i4) : make_uint2(0u, 0u);
    }
    return p;
}
// xin = fp16(LayerNorm(v)) (two-pass statistics in fp32, as layernorm_forward), visible to all
// compute threads on return.
template <int V4>
__device__ __forceinline__ void layernorm_to_smem(const float4 (&v)[V4], int C, const LnParams<V4> &prm, float eps,
                                                  __half *xin, float *ln_red) {
    const int n4 = C / 4, warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < V4; ++k) {
        if ((int)threadIdx.x + k * kComputeThreads < n4) s = __fadd_rn(s, ln_sum4(v[k]));
    }
    s = warp_reduce_sum(s);
    if (lane == 0) ln_red[warp] = s;
    compute_sync();
    const float mean = ln_mean(ln_sum_warps(ln_red, kComputeWarps), C);
    float q = 0.0f;
#pragma unroll
    for (int k = 0; k < V4; ++k) {
        if ((int)threadIdx.x + k * kComputeThreads < n4) q = __fadd_rn(q, ln_sq4(v[k], mean));
    }
    q = warp_reduce_sum(q);
    if (lane == 0) ln_red[kComputeWarps + warp] = q;
    compute_sync();
    const float rstd = ln_rstd(ln_sum_warps(ln_red + kComputeWarps, kComputeWarps), C, eps);
    uint2 *out4 = reinterpret_cast<uint2 *>(xin);
#pragma unroll
    for (int k = 0; k < V4; ++k) {
        const int i4 = threadIdx.x + k * kComputeThreads;
        if (i4 < n4) out4[i4] = float4_to_half4(ln_apply4(v[k], mean, rstd, prm.w[k], prm.b[k]));
    }
    compute_sync();
}

// xin = the n halves of an LL vector (n / 2 words), waited for: up to kVectorBatch loads per thread
// issued before any is checked (one round trip, not one per load).
constexpr int kVectorBatch = 8;
__device__ void vector_to_smem(__half *xin, const uint64_t *src, int n, uint32_t tag) {
    uint2 *d2 = reinterpret_cast<uint2 *>(xin);
    const int n2 = n / 4;  // uint2s: two words each
    for (int i0 = threadIdx.x; i0 < n2; i0 += kVectorBatch * kComputeThreads) {
        const uint64_t *ptr[kVectorBatch];
#pragma unroll
        for (int k = 0; k < kVectorBatch; ++k) {
            const int i = i0 + k * kComputeThreads;
            ptr[k] = i < n2 ? src + 2 * (size_t)i : nullptr;
        }
        uint2 d[kVectorBatch];
        ll_load_many(d, ptr, tag);
#pragma unroll
        for (int k = 0; k < kVectorBatch; ++k) {
            if (ptr[k] != nullptr) d2[i0 + k * kComputeThreads] = d[k];
        }
    }
    compute_sync();
}


// Block split's key range [j_begin, j_end) of a head (n_valid ranges have keys); false: none.
__device__ __forceinline__ bool attention_range(int pos, int splits, int split, int &n_valid, int &j_begin,
                                                int &j_end) {
    const int n_keys = pos + 1;
    n_valid = min(splits, ceil_div(n_keys, kAttnKeysPerSplit));  // ranges with keys
    if (split >= n_valid) return false;
    const int per = ceil_div(n_keys, n_valid);
    j_begin = split * per;
    j_end = min(j_begin + per, n_keys);
    return true;
}

// The attention phase's cache rows go through the ring too: after a layer's qkv chunks, an attention
// block's producer copies its key range's K and V rows before pos (written by earlier steps), a
// chunk per kAttnKeysPerStep step of the attention loop (128 keys of 64 dims, 64 of 80 or 128: at most
// 16 KB), K then V for each step that has cached keys. So the attention reads them from shared
// memory, fetched while the qkv GEMV and its handover run, instead of a global round trip per step
// (at depth 1,920: 4 steps a layer).
static_assert(kAttnKeysPerStep<64> * 64 * 2 <= kMinSlotBytes && kAttnKeysPerStep<80> * 80 * 2 <= kMinSlotBytes &&
                  kAttnKeysPerStep<128> * 128 * 2 <= kMinSlotBytes,
              "a step's K or V rows fit one ring slot");
template <int D>
__device__ __forceinline__ int attention_kv_chunks(const PersistentDecodeShape &sh, int pos, int splits, int &j_begin,
                                                   int &j_last) {
    const int unit = blockIdx.x;
    int n_valid, j_end;
    if (unit >= sh.H * splits || !attention_range(pos, splits, unit % splits, n_valid, j_begin, j_end)) return 0;
    j_last = min(j_end, pos);  // the row at pos is this step's: from the handover words
    return j_last > j_begin ? 2 * ceil_div(j_last - j_begin, kAttnKeysPerStep<D>) : 0;
}

template <int D>
__device__ void produce_kv(const Ring &ring, ProducerPos &pp, const PersistentDecodeShape &sh,
                           const PersistentDecodeArgs &a, int pos, const PersistentLayer &L, int splits) {
    int j_begin = 0, j_last = 0;
    if (attention_kv_chunks<D>(sh, pos, splits, j_begin, j_last) == 0) return;
    const size_t head_base = ((size_t)a.seq * sh.H + blockIdx.x / splits) * (size_t)sh.n_ctx * D;
    for (int j = j_begin; j < j_last; j += kAttnKeysPerStep<D>) {
        const uint32_t bytes = (uint32_t)(min(kAttnKeysPerStep<D>, j_last - j) * D * 2);
        produce_chunk(ring, pp, L.k_cache + head_base + (size_t)j * D, bytes);
        produce_chunk(ring, pp, L.v_cache + head_base + (size_t)j * D, bytes);
    }
}

struct AttnShared {
    float *m, *l, *acc;
    int *flag;
};

// Phase 2 for block u < H·S (see the top of the file); other blocks return at once.
template <int D>
__device__ void attention_phase(const PersistentDecodeShape &sh, int pos, const Ring &ring,
                                uint32_t &c, const Handoff &ho, int layer, int splits, float *partials,
                                uint32_t *head_counters, const AttnShared &sm) {
    const int unit = blockIdx.x;
    if (unit >= sh.H * splits) return;  // uniform over the block
    const int h = unit / splits, split = unit % splits;
    int n_valid, j_begin, j_end;
    if (!attention_range(pos, splits, split, n_valid, j_begin, j_end)) return;  // uniform over the block
    using Hd = Heads<D>;
    constexpr int kLanes = Hd::kLanes, kGroups = Hd::kGroups;
    const int tid = threadIdx.x, g = tid / kLanes, d4 = tid % kLanes, d0 = d4 * 8;
    const bool has_dims = Hd::kDimLanes == kLanes || d4 < Hd::kDimLanes;  // (always, for D = 64)
    const int lane = tid % kWarpSize;
    int kv_begin = 0, j_last = 0;  // the cached keys [kv_begin, j_last) come through the ring (produce_kv)
    attention_kv_chunks<D>(sh, pos, splits, kv_begin, j_last);
    // q, and the step's own k and v (position pos: from the LL words, the cache copy is not
    // ordered with this read), 8 dims a lane (a lane without dims loads nothing: zeros).
    const uint32_t tag = ho.wait_tag(layer, 0);
    const size_t w0 = ((size_t)h * D + d0) / 2;  // word of dim d0 of head h
    const uint64_t *const ptr[6] = {has_dims ? ho.qkv + w0 : nullptr,
                                    has_dims ? ho.qkv + w0 + 2 : nullptr,
                                    has_dims ? ho.qkv + sh.C / 2 + w0 : nullptr,
                                    has_dims ? ho.qkv + sh.C / 2 + w0 + 2 : nullptr,
                                    has_dims ? ho.qkv + sh.C + w0 : nullptr,
                                    has_dims ? ho.qkv + sh.C + w0 + 2 : nullptr};
    uint2 qkv_words[6];
    ll_load_many(qkv_words, ptr, tag);
    float q[8];
    unpack8(q, make_uint4(qkv_words[0].x, qkv_words[0].y, qkv_words[1].x, qkv_words[1].y));
    const uint4 k_own = make_uint4(qkv_words[2].x, qkv_words[2].y, qkv_words[3].x, qkv_words[3].y);
    const uint4 v_own = make_uint4(qkv_words[4].x, qkv_words[4].y, qkv_words[5].x, qkv_words[5].y);
    const float q_scale = rsqrtf((float)D) * kLog2e;
#pragma unroll
    for (int e = 0; e < 8; ++e) q[e] *= q_scale;

    float m = -INFINITY, l = 0.0f, acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.0f;
    for (int j0 = j_begin; j0 < j_end; j0 += kAttnKeysPerStep<D>) {  // bounds uniform over the block
        const bool cached = j0 < j_last;  // this step has a K and a V chunk in the ring
        const int slot_k = (int)(c % (uint32_t)ring.n_slots), slot_v = (int)((c + 1) % (uint32_t)ring.n_slots);
        if (cached) {
            mbar_wait(ring.full + slot_k, (c / (uint32_t)ring.n_slots) & 1u);
            mbar_wait(ring.full + slot_v, ((c + 1) / (uint32_t)ring.n_slots) & 1u);
        }
        const uint4 *ks = reinterpret_cast<const uint4 *>(ring.slots + (size_t)slot_k * ring.slot_bytes) + d4;
        const uint4 *vs = reinterpret_cast<const uint4 *>(ring.slots + (size_t)slot_v * ring.slot_bytes) + d4;
        float s[kAttnUnroll];
        uint4 v[kAttnUnroll];
#pragma unroll
        for (int u = 0; u < kAttnUnroll; ++u) {
            const int j = j0 + u * kGroups + g;
            float dot = 0.0f;
            v[u] = make_uint4(0u, 0u, 0u, 0u);
            if (j < j_end && has_dims) {
                float k[8];
                const bool own = j == pos;  // else j < pos: a cached row, in this step's chunks
                const int row = (j - j0) * (D / 8);
                unpack8(k, own ? k_own : ks[row]);
                v[u] = own ? v_own : vs[row];
#pragma unroll
                for (int e = 0; e < 8; ++e) dot += q[e] * k[e];
            }
            s[u] = dot;
        }
        if (cached) {
            __syncwarp();  // every lane's slot reads are done
            if (lane == 0) {
                mbar_arrive(ring.empty + slot_k);
                mbar_arrive(ring.empty + slot_v);
            }
            c += 2;
        }
        dense::decode_online_softmax_step<kAttnUnroll, kLanes>(s, v, j0, g, kGroups, j_end, m, l, acc);
    }

    // The block's group states -> one (m, l, acc) per dim; thread t < D / 2 takes dims 2t, 2t + 1.
    if (tid % kLanes == 0) {
        sm.m[g] = m;
        sm.l[g] = l;
    }
    if (has_dims) {
        float4 *dst = reinterpret_cast<float4 *>(sm.acc + g * D + d0);
        dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
        dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    }
    compute_sync();
    constexpr int kPartialFloats = Hd::kPartialFloats;
    const uint32_t out_tag = ho.tag(layer, 1);
    uint64_t *const head_words = ho.attn + (size_t)h * D / 2;
    float *head_partials = partials + (size_t)h * splits * kPartialFloats;
    // The merge of the groups: dims 2p, 2p + 1 by kSubs adjacent lanes, each over kGroups / kSubs groups, then
    // combined by shuffles (one lane's loop over all the groups was a chain of ~2k cycles on the critical path).
    constexpr int kPairs = D / 2;
    constexpr int kSubs = kPairs * 8 <= kComputeThreads && kGroups % 8 == 0 ? 8 : 4;
    constexpr int kPerSub = kGroups / kSubs;
    static_assert(kPairs * kSubs <= kComputeThreads && (kPairs * kSubs) % kWarpSize == 0 && kGroups % kSubs == 0,
                  "the group merge's lanes are whole warps");
    if (tid < kPairs * kSubs) {  // whole warps
        const int pr = tid / kSubs, sub = tid % kSubs;
        float M = -INFINITY;
#pragma unroll
        for (int i = 0; i < kPerSub; ++i) M = fmaxf(M, sm.m[sub * kPerSub + i]);
#pragma unroll
        for (int off = kSubs / 2; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        // M is finite: group 0 has key j_begin
        float Ls = 0.0f, o0 = 0.0f, o1 = 0.0f;
#pragma unroll
        for (int i = 0; i < kPerSub; ++i) {
            const int gg = sub * kPerSub + i;
            const float wgt = sm.m[gg] == -INFINITY ? 0.0f : exp2f(sm.m[gg] - M);
            Ls += wgt * sm.l[gg];
            o0 += wgt * sm.acc[gg * D + 2 * pr];
            o1 += wgt * sm.acc[gg * D + 2 * pr + 1];
        }
#pragma unroll
        for (int off = kSubs / 2; off > 0; off >>= 1) {
            Ls += __shfl_xor_sync(0xffffffffu, Ls, off);
            o0 += __shfl_xor_sync(0xffffffffu, o0, off);
            o1 += __shfl_xor_sync(0xffffffffu, o1, off);
        }
        if (sub == 0) {
            if (n_valid == 1) {
                ll_store(head_words + pr, pack_half2_bits(o0 / Ls, o1 / Ls), out_tag);
            } else {
                float *mine = head_partials + (size_t)split * kPartialFloats;
                mine[2 * pr] = o0;
                mine[2 * pr + 1] = o1;
                if (pr == 0) {
                    mine[D] = M;
                    mine[D + 1] = Ls;
                }
            }
        }
    }
    if (n_valid == 1) return;  // uniform over the block
    __threadfence();           // the partial is visible device-wide before the counter moves
    compute_sync();
    if (tid == 0) *sm.flag = atomicInc(head_counters + h, (unsigned)(n_valid - 1)) == (unsigned)(n_valid - 1);
    compute_sync();
    if (!*sm.flag) return;  // uniform over the block
    __threadfence();
    if (tid < D / 2) {
        float M = -INFINITY;
        for (int s = 0; s < n_valid; ++s) M = fmaxf(M, __ldcg(head_partials + (size_t)s * kPartialFloats + D));
        float Ls = 0.0f, o0 = 0.0f, o1 = 0.0f;
        for (int s = 0; s < n_valid; ++s) {
            const float *p = head_partials + (size_t)s * kPartialFloats;
            const float wgt = exp2f(__ldcg(p + D) - M);  // every valid range has keys: finite m
            Ls += wgt * __ldcg(p + D + 1);
            o0 += wgt * __ldcg(p + 2 * tid);
            o1 += wgt * __ldcg(p + 2 * tid + 1);
        }
        ll_store(head_words + tid, pack_half2_bits(o0 / Ls, o1 / Ls), out_tag);
    }
}


// ---- SEA attention inside the step (heads of 64) ---------------------------------------------------------------
//
// A SEA layer's phase 2 is the decode of attention/sea_cuda.h (sea_attention_decode_cuda's five kernels) as four
// sub-phases over the blocks, with the same sums in the same order (the shared bodies of sea_decode_device.cuh):
//   E  block h < H: the estimator row of head h (q, k, v from the qkv LL words; the Performer step on the sequence's
//      state, Σv, encoder, gates, row decoder, image LayerNorm -> the state's image ring and LL words);
//   C1 block (H + co) % G, co < 2H: conv1's output channel co (-> the state's conv1 ring and LL words);
//   C2 block (3H + co) % G: conv2's output channel co (-> LL words);
//   S  block h < H: every head's CNN output row and the grouped top-k (each head's block computes the whole row's
//      selection itself: one handover fewer), then head h's sparse attention and mixing -> the attention's LL words,
//      which phase 3 reads as it reads the dense attention's.
// The image, conv1 and conv2 rows go from sub-phase to sub-phase as LL words (the layer's qkv tag; three buffers of
// 2H·K/4 words in the scratch, reused by every layer as the dense handover buffers are: each overwrite depends on
// every read of the old contents through phase 3). What a sub-phase needs that no earlier sub-phase of the step
// writes (weights, the state's older rows) is staged before its wait, loads batched: a decode step is a chain of
// memory round trips, which the weight stream makes long. The weights come from global memory (L2), not the ring;
// the ring meanwhile fills with the out-projection's rows. Shared memory: the GEMV vector and row parts (free
// between GEMVs): the CNN output's operands first (staged at the phase's start by the S blocks), then each
// sub-phase's buffers; the header's attention area for what lives from E to S (q, the own k and v, the gates).
// Correct, but on H100 slower than the kernel-per-op SEA step (tg128 358 against 514 t/s; the chain takes ~66 us a
// layer here against ~25 there: docs/development.md), so model/opt_cuda.cpp runs it only with SEAOPT_PERSISTENT_SEA=1.

struct ComputeSync {
    __device__ void operator()() const { compute_sync(); }
};

// What lives from E to S in block h (the header's attention area, unused by SEA layers).
struct SeaKeep {
    float q[sea::kHeadDim];     // q · 1/8, fp32 (the sparse attention's query)
    uint32_t k_own[sea::kHeadDim / 2], v_own[sea::kHeadDim / 2];  // the step's own k and v (fp16 pairs)
    float gate[2];              // s_prob, s_mix
};
static_assert(sizeof(SeaKeep) <= kAttnAccFloats * 4, "SeaKeep fits the attention area");

// The scratch's LL buffers of the SEA sub-phases, 2H·K/4 words each.
struct SeaHandoff {
    uint64_t *image, *conv1, *conv2;
};

// LL words src[0 .. n) (n even, fp32 data) into dst (shared, 8-byte aligned), waited for; ends with a barrier.
__device__ __forceinline__ void ll_floats_to_smem(float *dst, const uint64_t *src, int n, uint32_t tag) {
    vector_to_smem(reinterpret_cast<__half *>(dst), src, 2 * n, tag);  // 32 bits a word, whatever they hold
}

// A long wait (the SEA sub-phases, and the attention output of a SEA layer, which every block waits for through the
// whole SEA chain): warp 0 polls one word of each of n writers (words[i·stride]), sleeping between polls, until all
// carry tag; the block then reads the data, by then ready, in one pass. (Every thread spinning on its words for tens
// of microseconds kept the L2 busy for everyone.) Ends with a barrier.
__device__ void ll_prewait(const uint64_t *words, int n, int stride, uint32_t tag) {
    if (threadIdx.x < kWarpSize) {
        for (int i = threadIdx.x; i < n; i += kWarpSize) {
            const uint64_t *p = words + (size_t)i * stride;
            uint64_t w;
            while (true) {
                asm volatile("ld.volatile.global.u64 %0, [%1];" : "=l"(w) : "l"(p) : "memory");
                if (ll_ready(w, tag)) break;
                __nanosleep(128);
            }
        }
    }
    compute_sync();
}

// The CNN output's operands, staged by an S block at the start of the phase (cnn_output_row reads each of them
// once per row; from global memory that was a round trip each): w ⊙ mask of the 1×1 conv [H][C] and the area
// windows [K] (stage_cnn_output_operands' layout), then LayerNorm_K's weight and bias [K] each and the conv's bias
// [H] (+1: an even count); bytes sea_operand_bytes(d).
__device__ __forceinline__ float *sea_operands_w4(float *sm) { return sm; }
__device__ __forceinline__ int2 *sea_operands_win(float *sm, const sea::Dims &d) {
    return reinterpret_cast<int2 *>(sm + d.H * d.C);  // H·C = 2H² floats: 8-byte aligned
}
__device__ __forceinline__ float *sea_operands_norm(float *sm, const sea::Dims &d) {  // w [K], b [K], conv4_b [H]
    return sm + d.H * d.C + 2 * d.K;
}

__device__ void sea_stage_operands(const SeaDeviceParams &p, const sea::Dims &d, float *sm) {
    float *w4 = sea_operands_w4(sm);
    stage_batched<kComputeThreads, 8>(
        d.H * d.C, [&](int i) { return sea::cnn_output_weight(p, i); }, [&](int i, float v) { w4[i] = v; });
    int2 *win = sea_operands_win(sm, d);
    for (int x = threadIdx.x; x < d.K; x += kComputeThreads) win[x] = sea::cnn_output_window(x, d.K);
    float *norm = sea_operands_norm(sm, d);
    stage_batched<kComputeThreads, 2>(
        2 * d.K + d.H,
        [&](int i) {
            return __ldg(i < d.K ? p.cnn_norm2_w + i : i < 2 * d.K ? p.cnn_norm2_b + (i - d.K) : p.conv4_b + (i - 2 * d.K));
        },
        [&](int i, float v) { norm[i] = v; });
}

// An L2 prefetch of what a SEA layer's sub-phases read from its parameters (their first loads then hit L2 instead
// of waiting behind the weight stream in HBM), by one thread at the layer's start.
__device__ void sea_prefetch_parameters(const SeaDeviceParams &p, const sea::Dims &d) {
    using namespace sea;
    const auto pf = [](const float *x, size_t n) {
        if (x != nullptr) bulk_prefetch_l2(x, (uint32_t)(n * 4 + 15) / 16 * 16);
    };
    const size_t conv = (size_t)d.C * d.C * kConvStoredTaps;
    pf(p.enc_w, (size_t)kEncHidden * kEncIn);
    pf(p.dec_row_w, (size_t)d.KH * kEncHidden);
    pf(p.performer_proj, (size_t)d.m * kHeadDim);
    pf(p.conv1_w, conv);
    pf(p.conv1_mask, conv);
    pf(p.conv2_w, conv);
    pf(p.conv2_mask, conv);
    pf(p.conv4_w, (size_t)d.H * d.C);
    pf(p.conv4_mask, (size_t)d.H * d.C);
    // The small ones: biases, LayerNorms, gates.
    pf(p.enc_b, kEncHidden);
    pf(p.enc_norm_w, kEncHidden);
    pf(p.enc_norm_b, kEncHidden);
    pf(p.scaler_w, 2 * kEncHidden);
    pf(p.scaler_b, 2);
    pf(p.dec_row_b, d.KH);
    pf(p.cnn_norm1_w, d.W4);
    pf(p.cnn_norm1_b, d.W4);
    pf(p.conv1_b, d.C);
    pf(p.conv2_b, d.C);
}

// E: the estimator row of head h (sea_decode_cuda.cu decode_estimator_kernel, one block of 256 threads there too).
__device__ __noinline__ void sea_estimator(const SeaStep &ss, const SeaDeviceParams &p, char *state, const Handoff &ho,
                              const SeaHandoff &sho, int C, int layer, int h, int pos, float *sm, SeaKeep &keep,
                              long long *prof) {
    const long long t_start = prof ? clock64() : 0;
    using namespace sea;
    const Dims &d = ss.d;
    const int tid = threadIdx.x, m = d.m;
    float *w_perf = sm;                           // [m][65]
    float *xq = w_perf + m * (kHeadDim + 1), *xk = xq + kHeadDim;
    float *phq = xk + kHeadDim, *phk = phq + kMaxFeatures;
    float *vc = phk + kMaxFeatures;               // [E_pos ; v ; 1], 129 (+3)
    float *X = vc + kStateCols + 3;               // [C_perf ; v], 192
    float *z = X + kEncIn;                        // 128
    float *R = z + kEncHidden;                    // K/2
    float *img = R + kMaxK / 2;                   // the two image channels, 2·K/4
    float *norm1 = img + kMaxK / 2;               // LayerNorm_{K/4}'s weight and bias, K/4 each
    float *s_den = norm1 + kMaxK / 2;
    float *old = s_den + 4;                       // the state's old sums [m][129] (in registers they spilled)
    // Before the handover wait: the projection, the state's old column and Σv, the positional row (weights, and
    // what this layer's previous step left).
    stage_batched<kComputeThreads, 12>(
        m * kHeadDim, [&](int i) { return __ldg(p.performer_proj + i); },
        [&](int i, float v) { w_perf[(i / kHeadDim) * (kHeadDim + 1) + i % kHeadDim] = v; });
    if (tid < 2 * d.W4) norm1[tid] = __ldg(tid < d.W4 ? p.cnn_norm1_w + tid : p.cnn_norm1_b + (tid - d.W4));
    const bool fresh = pos == 0;
    float *perf = reinterpret_cast<float *>(state + ss.S.perf) + (size_t)h * m * kStateCols;
    float *vsum = reinterpret_cast<float *>(state + ss.S.v_sum) + (size_t)h * kHeadDim;
    stage_batched<kComputeThreads, 12>(
        m * kStateCols, [&](int i) { return fresh ? 0.0f : perf[i]; }, [&](int i, float v) { old[i] = v; });
    const int which = tid / kWarpSize, w = tid % kWarpSize;  // tid < 96: word w of q (0), k (1) or v (2)
    float2 vsum_old = make_float2(0.0f, 0.0f);
    if (which == 2 && !fresh) vsum_old = make_float2(vsum[2 * w], vsum[2 * w + 1]);
    if (tid < kHeadDim) vc[tid] = __ldg(p.pos_table + (size_t)positional_row(pos, d) * kHeadDim + tid);
    if (tid == 0) vc[kVcat] = 1.0f;
    if (tid < 3 * kWarpSize) {
        const uint64_t *src = ho.qkv + (size_t)which * (C / 2) + (size_t)h * (kHeadDim / 2) + w;
        uint64_t word;
        const uint32_t tag = ho.wait_tag(layer, 0);
        do {
            asm volatile("ld.volatile.global.u64 %0, [%1];" : "=l"(word) : "l"(src) : "memory");
        } while (!ll_ready(word, tag));
        if (prof) prof[17] += clock64() - t_start;  // thread 0: q's first word
        const uint32_t bits = (uint32_t)word;
        const float2 f = half2_bits_to_float2(bits);
        if (which == 0) {
            xq[2 * w] = __fmul_rn(kFeatureNormalizer, __fmul_rn(f.x, 0.125f));
            xq[2 * w + 1] = __fmul_rn(kFeatureNormalizer, __fmul_rn(f.y, 0.125f));
            keep.q[2 * w] = __fmul_rn(f.x, 0.125f);
            keep.q[2 * w + 1] = __fmul_rn(f.y, 0.125f);
        } else if (which == 1) {
            xk[2 * w] = __fmul_rn(kFeatureNormalizer, f.x);
            xk[2 * w + 1] = __fmul_rn(kFeatureNormalizer, f.y);
            keep.k_own[w] = bits;
        } else {
            vc[kHeadDim + 2 * w] = f.x;
            vc[kHeadDim + 2 * w + 1] = f.y;
            X[kVcat + 2 * w] = f.x;
            X[kVcat + 2 * w + 1] = f.y;
            vsum[2 * w] = vsum_old.x + f.x;
            vsum[2 * w + 1] = vsum_old.y + f.y;
            keep.v_own[w] = bits;
        }
    }
    compute_sync();
    decode_features(phq, phk, xq, xk, w_perf, m, tid);
    compute_sync();
    if (tid < kStateCols) {
        const int e = tid;
        const float acc =
            performer_state_column(perf, phq, phk, vc[e], e, m, [&](int j) { return old[j * kStateCols + e]; });
        if (e == kVcat) {
            *s_den = acc;
        } else {
            X[e] = acc;
        }
    }
    compute_sync();
    if (tid < kVcat) X[tid] *= 1.0f / *s_den;
    compute_sync();
    warp_gemv<kEncIn, kComputeWarps, 8>(z, X, p.enc_w, p.enc_b, kEncHidden);
    compute_sync();
    if (tid < kWarpSize) {
        const float2 gt = encoder_norm_gelu_gates(z, encoder_norm_params(p));
        if (tid == 0) {
            keep.gate[0] = gt.x;
            keep.gate[1] = gt.y;
        }
    }
    compute_sync();
    warp_gemv<kEncHidden, kComputeWarps, 8>(R, z, p.dec_row_w, p.dec_row_b, d.KH);
    compute_sync();
    if (tid < 2) image_channel_layernorm(img + tid * d.W4, R + tid * d.W4, d.W4, norm1, norm1 + d.W4);
    compute_sync();
    if (tid < 2 * d.W4) {  // channels 2h, 2h + 1: into the ring (later steps' rows) and to C1
        const int at = 2 * h * d.W4 + tid;
        reinterpret_cast<float *>(state + ss.S.image_ring)[(size_t)(pos % kHistoryRows) * d.C * d.W4 + at] = img[tid];
        ll_store(sho.image + at, __float_as_uint(img[tid]), ho.tag(layer, 0));
    }
}

// C1 / C2: output channel co of a conv row (sea_cnn_cuda.cu decode_conv_kernel): input rows pos-4, pos-2 from the
// ring at in_off of the state (earlier steps'), row pos from the LL words in; out: LL words, and the ring at out_off
// (slot pos % 8) unless out_off = SIZE_MAX.
// in_per_writer: the input row's words per writing block (2·K/4 from E, K/4 from C1).
__device__ __noinline__ void sea_conv(const SeaStep &ss, char *state, size_t in_off, size_t out_off, const uint64_t *in,
                         int in_per_writer, uint64_t *out, const float *w, const float *wmask, const float *b, int co,
                         int pos, uint32_t wait_tag, uint32_t tag, float *sm) {
    using namespace sea;
    const Dims &d = ss.d;
    const int C = d.C, W4 = d.W4, tid = threadIdx.x, n_img = C * W4;
    const int G = kDecodeConvThreads / W4;
    float *rows = sm, *taps = sm + 3 * n_img, *part = taps + 9 * C;
    stage_batched<kComputeThreads, 4>(
        9 * C, [&](int i) { return decode_conv_tap(w, wmask, co, i, C); }, [&](int i, float v) { taps[i] = v; });
    const float *ring = reinterpret_cast<const float *>(state + in_off);
    const float *r0 = ring + (size_t)((pos - 4) & (kHistoryRows - 1)) * n_img;
    const float *r1 = ring + (size_t)((pos - 2) & (kHistoryRows - 1)) * n_img;
    stage_batched<kComputeThreads, 8>(
        2 * n_img,
        [&](int i) {
            const int a = i / n_img;  // rows before position 0 are the causal zero padding
            return pos - 4 + 2 * a < 0 ? 0.0f : (a == 0 ? r0 : r1)[i - a * n_img];
        },
        [&](int i, float v) { rows[i] = v; });
    ll_prewait(in + in_per_writer - 1, n_img / in_per_writer, in_per_writer, wait_tag);
    ll_floats_to_smem(rows + 2 * n_img, in, n_img, wait_tag);  // ends with a barrier
    decode_conv_partial(part, rows, taps, tid, G, d);
    compute_sync();
    if (tid < W4) {
        const float y = decode_conv_output(part, b[co], tid, G, W4);
        if (out_off != SIZE_MAX) {
            reinterpret_cast<float *>(state + out_off)[(size_t)(pos % kHistoryRows) * n_img + (size_t)co * W4 + tid] = y;
        }
        ll_store(out + (size_t)co * W4 + tid, __float_as_uint(y), tag);
    }
}

// S: the CNN output rows of every head and the grouped top-k (sea_cnn_cuda.cu decode_cnn_output_topk_kernel, with
// 8 warps instead of 32), then head h's sparse attention (sea_sparse_cuda.cu decode_sparse_attention_kernel, the
// step's own key and value from the LL words) -> head h's attention output as LL words.
__device__ __noinline__ void sea_select_and_attend(const SeaStep &ss, const SeaDeviceParams &p, const char *state,
                                      const PersistentLayer &L, const PersistentDecodeShape &sh, const Handoff &ho,
                                      const SeaHandoff &sho, int layer, int h, int pos, int seq, const SeaKeep &keep,
                                      float *sm, long long *prof) {
    long long t0 = prof ? clock64() : 0;
    using namespace sea;
    const Dims &d = ss.d;
    const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
    const int K = d.K, n = d.H * K, n_words = d.H * d.KW;
    const float *w4 = sea_operands_w4(sm);
    const int2 *win = sea_operands_win(sm, d);
    const float *norm = sea_operands_norm(sm, d);
    // After the operands: [C·W4] conv2 row | [H·K] keys | [H·KW] mask words | [8][K/4] narrow | offs [K+2] |
    // parts [8][66] | TopkShared
    float *yt = sm + sea_operand_bytes(d) / 4;
    uint32_t *keys = reinterpret_cast<uint32_t *>(yt + d.C * d.W4);
    uint32_t *mw = keys + n;
    float *narrow = reinterpret_cast<float *>(mw + n_words);
    int *offs = reinterpret_cast<int *>(narrow + kComputeWarps * d.W4);
    float *parts = reinterpret_cast<float *>(offs + K + 2);
    auto *tsh = reinterpret_cast<TopkShared<kComputeThreads> *>(parts + kComputeWarps * (kHeadDim + 2));
    for (int i = tid; i < n_words; i += kComputeThreads) mw[i] = 0u;
    ll_prewait(sho.conv2 + d.W4 - 1, d.C, d.W4, ho.wait_tag(layer, 0));
    ll_floats_to_smem(yt, sho.conv2, d.C * d.W4, ho.wait_tag(layer, 0));  // ends with a barrier
    if (prof) {
        const long long t = clock64();
        prof[18] += t - t0;
        t0 = t;
    }
    for (int hh = warp; hh < d.H; hh += kComputeWarps) {  // uniform across the warp
        float *logit = reinterpret_cast<float *>(keys + (size_t)hh * K);
        cnn_output_row(logit, narrow + warp * d.W4, yt, norm[2 * K + hh], norm, norm + K, d, w4 + hh * d.C, win);
        for (int x = lane; x < K; x += kWarpSize) keys[(size_t)hh * K + x] = topk_order_key(logit[x]);
    }
    compute_sync();
    topk_select<kComputeThreads>(keys, mw, n, row_budget(pos, d), K, d.KW, *tsh, ComputeSync{});
    if (prof) prof[19] += clock64() - t0;
    // Head h's keys.
    const int row_len = pos + 1;
    const float s = cell_scale(pos, d);
    if (warp == 0) cell_key_offsets(offs, mw + h * d.KW, s, row_len, d);
    compute_sync();
    const size_t cache_off = ((size_t)seq * sh.H + h) * (size_t)sh.n_ctx * kHeadDim;
    const __half *kb = reinterpret_cast<const __half *>(L.k_cache) + cache_off;
    const __half *vb = reinterpret_cast<const __half *>(L.v_cache) + cache_off;
    float m_run, l_run, acc0, acc1;
    sparse_row_warp_part<kComputeWarps, true>(m_run, l_run, acc0, acc1, offs, keep.q, kb, vb, pos,
                                              reinterpret_cast<const __half *>(keep.k_own),
                                              reinterpret_cast<const __half *>(keep.v_own), s, row_len, d, warp);
    sparse_part_store(parts + warp * (kHeadDim + 2), m_run, l_run, acc0, acc1);
    compute_sync();
    if (warp == 0) {
        float l_all, a0, a1;
        sparse_parts_merge<kComputeWarps>(l_all, a0, a1, parts);
        const float *vsum = reinterpret_cast<const float *>(state + ss.S.v_sum) + (size_t)h * kHeadDim;
        const SparseRowMix mx{make_float2(keep.gate[0], keep.gate[1]), make_float2(vsum[2 * lane], vsum[2 * lane + 1])};
        const float2 o = sparse_row_values(pos, offs[K], l_all, a0, a1, mx);
        ll_store(ho.attn + (size_t)h * (kHeadDim / 2) + lane, pack_half2_bits(o.x, o.y), ho.tag(layer, 1));
    }
}

// Phase 2 of a SEA layer: this block's sub-phases, in order (each waits only on earlier ones: no deadlock).
__device__ __noinline__ void sea_attention_phase(const SeaStep &ss, const PersistentLayer &L,
                                                 const PersistentDecodeShape &sh, const PersistentDecodeArgs &a,
                                                 const Handoff &ho, const SeaHandoff &sho, int layer, float *sm,
                                                 SeaKeep &keep, long long *prof) {
    const PersistentSeaLayer &SL = *L.sea;
    const SeaDeviceParams p = SL.p;  // by value: read through the table, each use was a dependent global load
    char *state = SL.states + (long long)a.seq * ss.state_stride;
    const int H = sh.H, G = (int)gridDim.x, b = (int)blockIdx.x;
    const uint32_t tag = ho.tag(layer, 0), wait = ho.wait_tag(layer, 0);
    float *work = sm + sea_operand_bytes(ss.d) / 4;  // past the CNN output's operands
    long long t0 = prof ? clock64() : 0;
    const auto span = [&](int i) {  // SEAOPT_PERSISTENT_PROFILE: thread 0's time since the last span
        if (prof) {
            const long long t = clock64();
            prof[i] += t - t0;
            t0 = t;
        }
    };
    if (b < H) {
        // The head's cached keys and values into L2 for the sparse attention at the phase's end, where they are few
        // (as the kernel-per-op step's SeaKvCache::prefetch_max_pos).
        if (threadIdx.x == 0 && a.pos > 0 && a.pos <= a.sea_prefetch_max_pos) {
            const size_t at = ((size_t)a.seq * H + b) * (size_t)sh.n_ctx * sea::kHeadDim;
            bulk_prefetch_l2(L.k_cache + at, (uint32_t)a.pos * sea::kHeadDim * 2u);
            bulk_prefetch_l2(L.v_cache + at, (uint32_t)a.pos * sea::kHeadDim * 2u);
        }
        sea_stage_operands(p, ss.d, sm);
        sea_estimator(ss, p, state, ho, sho, sh.C, layer, b, a.pos, work, keep, prof);
        span(13);
    }
    for (int co = ((b - H) % G + G) % G; co < 2 * H; co += G) {
        compute_sync();  // work is free
        sea_conv(ss, state, ss.S.image_ring, ss.S.conv1_ring, sho.image, 2 * ss.d.W4, sho.conv1, p.conv1_w, p.conv1_mask,
                 p.conv1_b, co, a.pos, wait, tag, work);
        span(14);
    }
    for (int co = ((b - 3 * H) % G + G) % G; co < 2 * H; co += G) {
        compute_sync();
        sea_conv(ss, state, ss.S.conv1_ring, SIZE_MAX, sho.conv1, ss.d.W4, sho.conv2, p.conv2_w, p.conv2_mask, p.conv2_b,
                 co, a.pos, wait, tag, work);
        span(15);
    }
    if (b < H) {
        compute_sync();
        sea_select_and_attend(ss, p, state, L, sh, ho, sho, layer, b, a.pos, a.seq, keep, sm, prof);
        span(16);
    }
}

#endif  // !__CUDA_ARCH__ || __CUDA_ARCH__ >= 900

// D: the head size (64, 80, 128), V4: float4s of the residual per thread (4, 5); template parameters so
// that the OPT-1.3B kernel's code (64, 4) stays what it was measured as. kSea: layers may run SEA attention
// (PersistentLayer::sea; heads of 64 only), a kernel of its own so that the dense kernels' code stays as it was.
// kQ8: the layers' matrices stream as Q8_0 (PersistentDecodeShape::q8; dense layers only), kernels of their own too.
template <int D, int V4, bool kSea, bool kQ8>
__global__ void __launch_bounds__(kThreads, 1)
    decode_persistent_kernel(PersistentDecodeShape sh, PersistentDecodeArgs a, int n_slots, int slot_bytes,
                             int parts_bytes, int in_flight, int splits, uint32_t tag_base, int mode, bool evict_first,
                             int head_rows, bool compact, SeaStep ss) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) unsigned char smem[];
    const int C = sh.C, F = sh.F;
    const int vec_bytes = ceil_div(max(C, F) * 2, 128) * 128;
    // Compact (dense kernels only): [header][vector = row parts = attention sums][ring]; else [header with the
    // attention sums][vector][row parts][ring].
    const bool compact_layout = !kSea && compact;
    const int header_bytes = compact_layout ? kCompactHeaderBytes : kHeaderBytes;
    const int area_bytes = compact_layout ? compact_area_bytes(vec_bytes, parts_bytes) : vec_bytes + parts_bytes;
    Ring ring{reinterpret_cast<uint64_t *>(smem + kOffFull),
              reinterpret_cast<uint64_t *>(smem + kOffEmpty),
              smem + header_bytes + area_bytes,
              n_slots,
              slot_bytes,
              in_flight,
              evict_first,
              0,
              mode != kModeComputeOnly};
    float *y_parts = reinterpret_cast<float *>(smem + header_bytes + (compact_layout ? 0 : vec_bytes));
    const int compact_area = compact_layout ? area_bytes : 0;
    float *ln_red = reinterpret_cast<float *>(smem + kOffLn);
    float *x_own = reinterpret_cast<float *>(smem + kOffXOwn);
    const AttnShared attn_sm{reinterpret_cast<float *>(smem + kOffAttnM), reinterpret_cast<float *>(smem + kOffAttnL),
                             reinterpret_cast<float *>(smem + (compact_layout ? header_bytes : kOffAttnAcc)),
                             reinterpret_cast<int *>(smem + kOffFlag)};
    __half *xin = reinterpret_cast<__half *>(smem + header_bytes);
    unsigned long long *const best = reinterpret_cast<unsigned long long *>(smem + kOffBest);
    volatile int *const picked = reinterpret_cast<volatile int *>(smem + kOffPicked);
    if (threadIdx.x == 0) {
        *best = kArgmaxKeyNone;
        *picked = 0;
        for (int i = 0; i < n_slots; ++i) {
            mbar_init(ring.full + i, 1);
            mbar_init(ring.empty + i, kComputeWarps);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (threadIdx.x >= kComputeThreads) {  // the producer warp
        if constexpr (kSea) {
            // Lane 1: the L2 prefetch of SEA layers' parameters, layer l by block l % G, at the step's start (on
            // the compute warps, its chain of loads and prefetches had delayed a block's qkv rows by ~15 us).
            if (threadIdx.x == kComputeThreads + 1) {
                for (int l = (int)blockIdx.x; l < sh.n_layer; l += (int)gridDim.x) {
                    if (a.layers[l].sea != nullptr) {
                        const SeaDeviceParams pv = a.layers[l].sea->p;
                        sea_prefetch_parameters(pv, ss.d);
                    }
                }
            }
        }
        if (threadIdx.x == kComputeThreads) {
            if (evict_first) ring.policy = make_l2_evict_first_policy();
            ProducerPos pp;
            auto produce_matrix = [&](const half_t *w, WeightQ8 wq, int n_in, int n_out) {
                if constexpr (kQ8) {
                    produce(ring, pp, wq, n_in, n_out);
                } else {
                    produce(ring, pp, w, n_in, n_out);
                }
            };
            for (int step = 0; step < a.n_steps; ++step) {  // a greedy chain (n_steps > 1): dense layers only
                const int pos = a.pos + step;
                for (int l = a.layer_begin; l < a.layer_end; ++l) {
                    const PersistentLayer &L = a.layers[l];
                    if (l == a.layer_begin && a.attn_in != nullptr) {  // a segment resumed at the out-projection
                        produce_matrix(L.o_w, L.o_q8, C, C);
                        produce_matrix(L.fc1_w, L.fc1_q8, C, F);
                        produce_matrix(L.fc2_w, L.fc2_q8, F, C);
                        continue;
                    }
                    produce_matrix(L.qkv_w, L.qkv_q8, C, 3 * C);
                    if (l == a.layer_end - 1 && a.qkv_out != nullptr) break;  // a segment stopped after the qkv
                    if (step > 0 && l == 0) {
                        // The cached rows include those the grid wrote in this launch (other blocks' qkv epilogues):
                        // copy none before the block has the last step's pick, which every block stores after all
                        // of its writes of that step (and a gpu-scope fence); then order those generic-proxy writes
                        // before this warp's bulk copies (async proxy).
                        while ((*picked & (kPickedStop - 1)) < step) __nanosleep(64);
                        if (*picked & kPickedStop) return;  // the chain stopped: the compute warps drain the qkv rows
                        __threadfence_block();
                        asm volatile("fence.proxy.async.global;" ::: "memory");
                    }
                    if (!kSea || L.sea == nullptr) produce_kv<D>(ring, pp, sh, a, pos, L, splits);  // SEA: own keys
                    produce_matrix(L.o_w, L.o_q8, C, C);
                    produce_matrix(L.fc1_w, L.fc1_q8, C, F);
                    produce_matrix(L.fc2_w, L.fc2_q8, F, C);
                }
                if (a.qkv_out == nullptr) produce(ring, pp, a.lm_head, C, sh.V);
            }
        }
        return;
    }

    // Scratch: the per-head merge counters, the attention partials, the LL buffers.
    const ScratchLayout sl = scratch_layout(sh, splits, Heads<D>::kPartialFloats);
    auto *scratch = static_cast<unsigned char *>(a.scratch);
    uint32_t *head_counters = reinterpret_cast<uint32_t *>(scratch + sl.counters);
    float *partials = reinterpret_cast<float *>(scratch + sl.partials);
    Handoff ho{reinterpret_cast<uint64_t *>(scratch + sl.x), reinterpret_cast<uint64_t *>(scratch + sl.qkv),
                     reinterpret_cast<uint64_t *>(scratch + sl.attn), reinterpret_cast<uint64_t *>(scratch + sl.ff),
                     tag_base, mode == kModeNoHandoverWaits ? (1u << 30) : 0u};
    const size_t sea_words = align256(8 * (size_t)sh.sea_image_floats) / 8;
    const SeaHandoff sho{reinterpret_cast<uint64_t *>(scratch + sl.sea), reinterpret_cast<uint64_t *>(scratch + sl.sea) + sea_words,
                         reinterpret_cast<uint64_t *>(scratch + sl.sea) + 2 * sea_words};

    if (mode == kModeStreamOnly) {  // timing: consume the ring in the producer's order, compute nothing
        uint32_t cs = 0;
        auto consume = [&](int n_in, int n_out, bool q8) { release_rows(ring, cs, n_in, n_out, q8); };
        const long long ts = clock64();
        for (int l = 0; l < sh.n_layer; ++l) {
            consume(C, 3 * C, kQ8);
            int kv_begin = 0, kv_last = 0;
            const int kv_chunks =
                kSea && a.layers[l].sea ? 0 : attention_kv_chunks<D>(sh, a.pos, splits, kv_begin, kv_last);
            for (int k = kv_chunks; k > 0; --k, ++cs) {
                const int slot = (int)(cs % (uint32_t)ring.n_slots);
                mbar_wait(ring.full + slot, (cs / (uint32_t)ring.n_slots) & 1u);
                __syncwarp();
                if (threadIdx.x % kWarpSize == 0) mbar_arrive(ring.empty + slot);
            }
            consume(C, C, kQ8);
            consume(C, F, kQ8);
            consume(F, C, kQ8);
        }
        consume(C, sh.V, false);
        if (a.profile != nullptr && threadIdx.x == 0) {
            a.profile[(size_t)kPersistentProfileSpans * blockIdx.x] += clock64() - ts;
        }
        return;
    }

    int own0, own1;
    block_rows(C, own0, own1);
    float4 v[V4];
    uint32_t c = 0;  // chunks consumed (the producer's count, in the same order)
    const size_t head_stride = (size_t)sh.n_ctx * D;
    // Profile (SEAOPT_PERSISTENT_PROFILE): clock64 spans of thread 0, per block (kPersistentProfileNames).
    constexpr int kSpans = kSea ? kPersistentProfileSpans : 13;  // the dense kernels: no SEA spans
    long long prof_spans[kSpans];
#pragma unroll
    for (int k = 0; k < kSpans; ++k) prof_spans[k] = 0;
    long long *const prof = a.profile != nullptr && threadIdx.x == 0 ? prof_spans : nullptr;
    long long t_start = 0, t0 = 0;
#define SEAOPT_SPAN(i, ...) if (prof) t0 = clock64(); __VA_ARGS__; if (prof) prof[i] += clock64() - t0;
#define SEAOPT_GEMV(i, ...)                   \
    if (prof) t0 = clock64();                 \
    __VA_ARGS__;                              \
    if (prof) {                               \
        const long long d = clock64() - t0;   \
        prof[1] += d;                         \
        prof[i] += d;                         \
    }
    int *const next_token = reinterpret_cast<int *>(smem + kOffToken);  // the chain's next token (written by thread 0)
    // A greedy chain (a.n_steps > 1): step i decodes at pos + i the greedy pick of step i - 1, with its own tags.
    for (int step = 0; step < a.n_steps; ++step) {
    const int pos = a.pos + step;
    ho.tag_base = tag_base + (uint32_t)step * (uint32_t)(kPhasesPerLayer * sh.n_layer + 1);
    // x = tok_embd[token] + pos_embd[pos + offset] (fp32 sum of the two fp16 values), computed by
    // every block; it keeps its own rows.
    if (a.layer_begin > 0) {
        // A segment resumed after the previous segment and the SEA kernels between: the block's rows of the residual
        // from that segment's last handover of x (the fc2 of layer layer_begin - 1).
        for (int o = own0 + 2 * (int)threadIdx.x; o < own1; o += 2 * kComputeThreads) {
            const uint2 d = ll_load2(ho.x + o, ho.wait_tag(a.layer_begin - 1, 4));
            x_own[o - own0] = __uint_as_float(d.x);
            x_own[o + 1 - own0] = __uint_as_float(d.y);
        }
    } else {
        const int token = step == 0 ? a.token : *next_token;
        const uint2 *tok = reinterpret_cast<const uint2 *>(a.tok_embd + (size_t)token * C);
        const uint2 *pe = reinterpret_cast<const uint2 *>(a.pos_embd + (size_t)(pos + sh.pos_offset) * C);
#pragma unroll
        for (int k = 0; k < V4; ++k) {
            const int i4 = threadIdx.x + k * kComputeThreads;
            v[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i4 < C / 4) {
                const float4 t = half4_to_float4(__ldg(tok + i4)), p = half4_to_float4(__ldg(pe + i4));
                v[k] = make_float4(t.x + p.x, t.y + p.y, t.z + p.z, t.w + p.w);
                const float e[4] = {v[k].x, v[k].y, v[k].z, v[k].w};
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const int o = 4 * i4 + j;
                    if (o >= own0 && o < own1) x_own[o - own0] = e[j];
                }
            }
        }
    }

    const size_t at_pos = (size_t)a.seq * sh.H * head_stride + (size_t)pos * D;
    if (prof && step == 0) t_start = clock64();
    for (int l = a.layer_begin; l < a.layer_end; ++l) {
        const PersistentLayer L = a.layers[l];
        if (l == a.layer_begin && a.attn_in != nullptr) {
            // A segment resumed at the out-projection: the attention output (fp16 [C]) the SEA kernels wrote before
            // the launch.
            const uint4 *src = reinterpret_cast<const uint4 *>(a.attn_in);
            uint4 *dst = reinterpret_cast<uint4 *>(xin);
            for (int i = threadIdx.x; i < C / 8; i += kComputeThreads) dst[i] = src[i];
            compute_sync();  // xin and x_own are written
        } else {
        const LnParams<V4> ln1 = load_ln_params<V4>(L.ln1_w, L.ln1_b, C);
        if (l > 0) { SEAOPT_SPAN(3, load_residual(v, ho.x, C, ho.wait_tag(l - 1, 4))) }
        layernorm_to_smem(v, C, ln1, sh.eps, xin, ln_red);
        const bool stop = l == a.layer_end - 1 && a.qkv_out != nullptr;
        const QkvEpilogue<D> qkv{L.qkv_b, ho.qkv, ho.tag(l, 0), reinterpret_cast<__half *>(L.k_cache) + at_pos,
                                 reinterpret_cast<__half *>(L.v_cache) + at_pos, C, head_stride,
                                 stop ? a.qkv_out : nullptr};
        SEAOPT_GEMV(8, gemv_phase<kQ8>(ring, c, xin, C, 3 * C, y_parts, qkv, prof, compact_area))
        if (stop) break;  // a segment stopped after the qkv: the SEA kernels after the launch take q, k, v
        if (kSea && L.sea != nullptr) {
            if constexpr (kSea) {
                SEAOPT_SPAN(4, sea_attention_phase(ss, L, sh, a, ho, sho, l, reinterpret_cast<float *>(smem + kHeaderBytes),
                                                   *reinterpret_cast<SeaKeep *>(smem + kOffAttnAcc), prof))
            }
        } else {
            SEAOPT_SPAN(4, attention_phase<D>(sh, pos, ring, c, ho, l, splits, partials, head_counters, attn_sm))
        }
        compute_sync();  // the attention's shared memory and xin are free
        if constexpr (kSea) {
            if (L.sea != nullptr) ll_prewait(ho.attn + D / 2 - 1, sh.H, D / 2, ho.wait_tag(l, 1));  // the SEA chain
        }
        SEAOPT_SPAN(3, vector_to_smem(xin, ho.attn, C, ho.wait_tag(l, 1)))
        }
        const ResidualEpilogue out_epi{L.o_b, x_own, own0, ho.x, ho.tag(l, 2)};
        SEAOPT_GEMV(9, gemv_phase<kQ8>(ring, c, xin, C, C, y_parts, out_epi, prof, compact_area))
        const LnParams<V4> ln2 = load_ln_params<V4>(L.ln2_w, L.ln2_b, C);
        SEAOPT_SPAN(3, load_residual(v, ho.x, C, ho.wait_tag(l, 2)))
        layernorm_to_smem(v, C, ln2, sh.eps, xin, ln_red);
        SEAOPT_GEMV(10, gemv_phase<kQ8>(ring, c, xin, C, F, y_parts, ReluEpilogue{L.fc1_b, ho.ff, ho.tag(l, 3)}, prof,
                                    compact_area))
        SEAOPT_SPAN(3, vector_to_smem(xin, ho.ff, F, ho.wait_tag(l, 3)))
        const ResidualEpilogue fc2_epi{L.fc2_b, x_own, own0, ho.x, ho.tag(l, 4)};
        SEAOPT_GEMV(11, gemv_phase<kQ8>(ring, c, xin, F, C, y_parts, fc2_epi, prof, compact_area))
    }
    if (a.qkv_out != nullptr) break;  // a segment stopped after a qkv: no head (n_steps is 1)
    const LnParams<V4> ln_out = load_ln_params<V4>(a.out_norm_w, a.out_norm_b, C);
    SEAOPT_SPAN(3, load_residual(v, ho.x, C, ho.wait_tag(sh.n_layer - 1, 4)))
    layernorm_to_smem(v, C, ln_out, sh.eps, xin, ln_red);
    const LogitsEpilogue head_epi{a.logits, a.argmax_parts != nullptr || a.n_steps > 1 ? best : nullptr};
    {
        int hr0, hr1;
        block_rows(sh.V, hr0, hr1);
        for (int s0 = 0; s0 == 0 || s0 < hr1 - hr0; s0 += head_rows) {
            SEAOPT_GEMV(12, gemv_phase(ring, c, xin, C, sh.V, y_parts, head_epi, prof, compact_area, s0, head_rows))
        }
    }
    // gemv_phase ends with a barrier of the compute warps: every atomic of the block is done.
    if (a.argmax_parts != nullptr && threadIdx.x == 0 && step == a.n_steps - 1) a.argmax_parts[blockIdx.x] = *best;
    if (a.n_steps > 1) {
        // The chain: every block takes the max of all blocks' keys (two LL words each, the tag after the step's
        // last layer's). Each block's key goes out after a gpu-scope fence that follows (by the barrier above)
        // all of the block's writes of the step, its K/V cache rows included, and each reader fences after
        // reading: so a block holding the pick may read every row the step wrote (the producer's wait above).
        const uint32_t pick_tag = ho.tag(sh.n_layer, 0);
        uint64_t *const keys = reinterpret_cast<uint64_t *>(scratch + sl.picks);
        if (threadIdx.x == 0) {
            const unsigned long long mine = *best;
            *best = kArgmaxKeyNone;
            __threadfence();
            const uint64_t w0 = (uint64_t)(uint32_t)mine | ((uint64_t)pick_tag << 32);
            const uint64_t w1 = (mine >> 32) | ((uint64_t)pick_tag << 32);
            asm volatile("st.volatile.global.v2.u64 [%0], {%1, %2};" ::"l"(keys + 2 * blockIdx.x), "l"(w0), "l"(w1)
                         : "memory");
        }
        compute_sync();  // *best is reset
        unsigned long long k = kArgmaxKeyNone;
        for (int b = threadIdx.x; b < (int)gridDim.x; b += kComputeThreads) {
            const uint2 d = ll_load2(keys + 2 * b, pick_tag);
            const unsigned long long kb = (unsigned long long)d.x | ((unsigned long long)d.y << 32);
            k = kb > k ? kb : k;
            __threadfence();
        }
        k = warp_max_u64(k);
        if (threadIdx.x % kWarpSize == 0 && k != kArgmaxKeyNone) atomicMax(best, k);
        compute_sync();
        if (threadIdx.x == 0) {
            // -1: a NaN among the logits, or all of them -inf: the host stops the chain there (the later steps
            // decode token 0 and are discarded).
            const int32_t pick = argmax_key_token(*best);
            if (blockIdx.x == 0 && a.picks != nullptr) a.picks[step] = pick;
            *next_token = pick >= 0 ? pick : 0;
            *best = kArgmaxKeyNone;
            // The producer may copy the rows of this step; with the stop bit it stops instead (every block sees the
            // same pick, so all stop after the same step).
            const bool stop = a.stop_token >= 0 && pick == a.stop_token && step + 1 < a.n_steps;
            *picked = (step + 1) | (stop ? kPickedStop : 0);
        }
        compute_sync();  // next_token and picked are written
        if (*picked & kPickedStop) {  // uniform over the block
            release_rows(ring, c, C, 3 * C, kQ8);  // the next step's qkv rows, streamed before the producer saw the stop
            break;
        }
    }
    }  // step
#undef SEAOPT_SPAN
#undef SEAOPT_GEMV
    if (prof) {
        prof[0] += clock64() - t_start;
        long long *p = a.profile + (size_t)kPersistentProfileSpans * blockIdx.x;
#pragma unroll
        for (int k = 0; k < kSpans; ++k) p[k] += prof[k];
    }
#endif
}

using PersistentKernel = void (*)(PersistentDecodeShape, PersistentDecodeArgs, int, int, int, int, int, uint32_t, int,
                                  bool, int, bool, SeaStep);
// The kernel for a head size and hidden size; null for a pair it is not built for: OPT-125m and 1.3B
// (64, <= 4,096), OPT-2.7B (80), OPT-6.7B (128, 4,096), OPT-13B (128, 5,120). q8: the Q8_0 kernels (dense only).
template <int D, int V4>
PersistentKernel dense_kernel(bool q8) {
    return q8 ? decode_persistent_kernel<D, V4, false, true> : decode_persistent_kernel<D, V4, false, false>;
}
PersistentKernel kernel_for(int head_dim, int C, bool sea, bool q8) {
    const bool v4 = C <= 4 * 4 * kComputeThreads, v5 = C <= 4 * 5 * kComputeThreads;
    if (sea) {  // SEA: heads of 64, fp16 matrices only
        return head_dim == 64 && v4 && !q8 ? decode_persistent_kernel<64, 4, true, false> : nullptr;
    }
    if (head_dim == 64 && v4) return dense_kernel<64, 4>(q8);
    if (head_dim == 80 && v4) return dense_kernel<80, 4>(q8);
    if (head_dim == 128 && v4) return dense_kernel<128, 4>(q8);
    if (head_dim == 128 && v5) return dense_kernel<128, 5>(q8);
    return nullptr;
}

// Shared memory (bytes) the SEA sub-phases need from the GEMV vector and row parts: the CNN output's operands, then
// the largest sub-phase's buffers.
size_t sea_phase_smem_bytes(const sea::Dims &d) {
    const size_t est = ((size_t)d.m * (sea::kHeadDim + 1) + 2 * sea::kHeadDim + 2 * sea::kMaxFeatures +
                        sea::kStateCols + 3 + sea::kEncIn + sea::kEncHidden + 3 * sea::kMaxK / 2 + 4 +
                        (size_t)d.m * sea::kStateCols) * 4;
    const size_t conv = ((size_t)3 * d.C * d.W4 + 9 * (size_t)d.C + sea::kDecodeConvThreads) * 4;
    const size_t n = (size_t)d.H * d.K, n_words = (size_t)d.H * d.KW;
    const size_t sel = (size_t)d.C * d.W4 * 4 + (n + n_words) * 4 + (size_t)kComputeWarps * d.W4 * 4 +
                       ((size_t)d.K + 2) * 4 + (size_t)kComputeWarps * (sea::kHeadDim + 2) * 4 +
                       sizeof(sea::TopkShared<kComputeThreads>);
    return sea_operand_bytes(d) + std::max({est, conv, sel});
}

}  // namespace

PersistentDecodePlan persistent_decode_plan(const PersistentDecodeShape &s, int device, const cpu::SeaConfig *sea,
                                            size_t sea_state_stride) {
    PersistentDecodePlan p;
    auto refuse = [&](const std::string &why) {
        p.ok = false;
        p.why = why;
        return p;
    };
    if (sea != nullptr && s.q8) return refuse("SEA attention with Q8_0 weights (no kernel combines them)");
    const PersistentKernel kernel = kernel_for(s.head_dim, s.C, sea != nullptr, s.q8);
    if (kernel == nullptr) {
        return refuse("no kernel for head_dim " + std::to_string(s.head_dim) + " and hidden size " + std::to_string(s.C) +
                      (sea ? " with SEA attention" : "") + (s.q8 ? " and Q8_0 weights" : ""));
    }
    if (s.n_layer < 1 || s.C < 64 || s.F < 64 || s.V < 1 || s.H < 1) return refuse("empty model");
    if (s.C % 64 != 0 || s.F % 64 != 0) return refuse("hidden or FFN size not a multiple of 64");
    // Q8_0 chunks: each row's scales are n_in / 16 bytes, and a chunk's values and scales must be 16-byte pieces
    // at 16-byte addresses (bulk copies) for any first row.
    if (s.q8 && (s.C % 256 != 0 || s.F % 256 != 0)) return refuse("Q8_0 weights with a hidden or FFN size not a multiple of 256");
    int major = 0, sms = 0, coop = 0, max_optin = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
        cudaGetLastError();
        return refuse("device attributes unavailable");
    }
    if (major < 9) return refuse("needs sm_90 (bulk asynchronous copies)");
    if (!coop) return refuse("no cooperative launch");
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess) {
        cudaGetLastError();
        return refuse("kernel not loadable");
    }
    // The kernel's body exists only in code compiled for sm_90 and up: a GPU that compiles the library's compute_80
    // PTX at load (a build without 90 or 90a on an H100, or a newer GPU) gets binaryVersion >= 90 but an empty kernel.
    if (fa.binaryVersion < 90 || fa.ptxVersion < 90) return refuse("library built without sm_90 code for this GPU");
    // The longest row: the layers' (fp16 or Q8_0) and the lm_head's (fp16). With Q8_0 a slot is 17/16 of the fp16
    // one, so that it takes as many weights (OPT-1.3B: 8 rows of 2,048 values and their scales, 17 KB).
    const int longest_row = std::max(row_bytes(std::max(s.C, s.F), s.q8), row_bytes(s.C, false));
    int min_slot = kMinSlotBytes;
    if (const char *kb = std::getenv("SEAOPT_PERSISTENT_SLOT_KB")) min_slot = std::max(min_slot, std::atoi(kb) << 10);
    if (s.q8) min_slot = min_slot / 16 * 17;
    p.slot_bytes = ceil_div(std::max(min_slot, longest_row), 128) * 128;
    // y_parts: the most (rows of a block) x (warps per row) of any matrix of the step.
    const int row_cap = ceil_div(std::max({3 * s.C, s.F, s.V}), sms) + 2;  // + the pairing's rounding
    if (row_cap > 2 * kMaxPairsPerThread * kComputeThreads) return refuse("too many rows per block");
    if (ceil_div(s.C, sms) + 2 > kMaxOwnRows) return refuse("too many residual rows per block");
    if ((long long)(std::max({3 * s.C, s.F, s.V}) + 1) / 2 * (sms + 1) > (long long)UINT32_MAX) {
        return refuse("too many rows for block_rows' 32-bit arithmetic");
    }
    // The lm_head's rows go in rounds of head_rows (a multiple of its chunk rows; SEAOPT_PERSISTENT_HEAD_ROWS, 0 = all
    // of a block's rows at once): its 381 rows a block at OPT's vocabulary would need 24 KB of row parts, a ring slot.
    const int head_chunk = chunk_rows(s.C, p.slot_bytes);
    int head_rows = 128;
    if (const char *h = std::getenv("SEAOPT_PERSISTENT_HEAD_ROWS")) head_rows = std::max(0, std::atoi(h));
    const int head_block_rows = ceil_div(s.V, sms) + 2;
    p.head_rows = head_rows <= 0 ? head_block_rows : std::min(head_block_rows, ceil_div(head_rows, 2 * head_chunk) * 2 * head_chunk);
    auto parts_of = [&](int n_in, int rows, bool q8) {
        return (long long)rows * (kComputeWarps / chunk_rows(n_in, p.slot_bytes, q8)) * kLanePartials;
    };
    const long long parts =
        std::max({parts_of(s.C, ceil_div(3 * s.C, sms) + 2, s.q8), parts_of(s.C, ceil_div(s.F, sms) + 2, s.q8),
                  parts_of(s.F, ceil_div(s.C, sms) + 2, s.q8), parts_of(s.C, p.head_rows, false)});
    p.parts_bytes = (int)(ceil_div<long long>(parts * 4, 128) * 128);
    if (sea != nullptr) {
        // SEA layers: heads of 64 (the SEA kernels' size), a block per head, the sub-phases' buffers in the GEMV
        // vector and row parts (enlarged where they are short).
        if (s.head_dim != sea::kHeadDim) return refuse("SEA attention with heads of " + std::to_string(s.head_dim));
        if (s.H > sms) return refuse("SEA attention with more heads than SMs");
        if (sea->K > (size_t)sea::kMaxK || sea->n_features > (size_t)sea::kMaxFeatures || sea->n_head != (size_t)s.H) {
            return refuse("SEA config outside the kernel's sizes");
        }
        const sea::Dims d = sea::make_dims(*sea, 1);
        if (s.sea_image_floats != d.C * d.W4) return refuse("SEA image size mismatch");
        const long long need = (long long)sea_phase_smem_bytes(d) - vector_bytes(s);
        if (need > p.parts_bytes) p.parts_bytes = (int)(ceil_div<long long>(need, 128) * 128);
        p.sea = true;
        p.sea_cfg = *sea;
        p.sea_state_stride = sea_state_stride;
    } else if (s.sea_image_floats != 0) {
        return refuse("SEA image size without a SEA config");
    }
    // The compact layout where every GEMV of the step runs on the tensor cores (mma_span_dot reads the vector only
    // into registers, at the phase's start) and the layers are dense (SEAOPT_PERSISTENT_COMPACT=0 turns it off).
    auto on_tensor_cores = [&](int n_in, bool q8) {  // gemv_phase's rule for use_mma
        const int parts = kComputeWarps / chunk_rows(n_in, p.slot_bytes, q8), seg = n_in / 8 / parts;
        return seg % 32 == 0 && (seg / 32 == 2 || seg / 32 == 4 || seg / 32 == 8);
    };
    // The lm_head's rounds all read the same vector: their row parts must fit beside it.
    const int compact_area = compact_area_bytes(vector_bytes(s), p.parts_bytes);
    p.compact = sea == nullptr && on_tensor_cores(s.C, s.q8) && on_tensor_cores(s.F, s.q8) &&
                on_tensor_cores(s.C, false) && ceil_div(s.C * 2, 128) * 128 + parts_of(s.C, p.head_rows, false) * 4 <= compact_area;
    if (const char *e = std::getenv("SEAOPT_PERSISTENT_COMPACT")) p.compact = p.compact && std::atoi(e) != 0;
    const long long fixed = p.compact ? (long long)kCompactHeaderBytes + compact_area
                                      : (long long)kHeaderBytes + vector_bytes(s) + p.parts_bytes;
    const long long room = (long long)max_optin - fixed - (long long)fa.sharedSizeBytes;
    p.slots = (int)std::min<long long>(kMaxSlots, room / p.slot_bytes);
    if (p.slots < kMinSlots) return refuse("shared memory too small for the weight ring");
    p.shared_bytes = (size_t)fixed + (size_t)p.slots * p.slot_bytes;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)p.shared_bytes) != cudaSuccess) {
        cudaGetLastError();
        return refuse("cannot opt in to the shared memory");
    }
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, p.shared_bytes) !=
            cudaSuccess ||
        per_sm < 1) {
        cudaGetLastError();
        return refuse("one block per SM does not fit");
    }
    p.grid = sms;
    p.splits = std::max(1, p.grid / s.H);
    p.tags_per_step = kPhasesPerLayer * s.n_layer + 1;  // + the greedy chain's pick (Handoff::tag(n_layer, 0))
    p.in_flight = 2;
    if (const char *f = std::getenv("SEAOPT_PERSISTENT_INFLIGHT")) p.in_flight = std::max(1, std::min(p.slots, std::atoi(f)));
    if (const char *e = std::getenv("SEAOPT_PERSISTENT_EVICT_FIRST")) p.evict_first = std::atoi(e) != 0;
    if (const char *m = std::getenv("SEAOPT_PERSISTENT_MODE")) p.mode = std::max(0, std::min(3, std::atoi(m)));
    p.ok = true;
    return p;
}

uint64_t persistent_decode_scratch_bytes(const PersistentDecodePlan &plan, const PersistentDecodeShape &shape) {
    return scratch_layout(shape, std::max(plan.splits, 1), shape.head_dim + 2).total;
}

void persistent_decode(const PersistentDecodePlan &plan, const PersistentDecodeShape &shape,
                       const PersistentDecodeArgs &args, uint32_t *tag_base, cudaStream_t stream) {
    check_arg(plan.ok, "persistent_decode", "the plan does not allow the persistent kernel");
    check_arg(args.n_steps >= 1, "persistent_decode", "n_steps must be >= 1");
    check_arg(args.pos >= 0 && args.pos <= shape.n_ctx - args.n_steps, "persistent_decode",
              "position outside the context");
    check_arg(args.n_steps == 1 || (!plan.sea && plan.mode == 0 && args.picks != nullptr && plan.grid <= kMaxGrid),
              "persistent_decode", "a greedy chain needs dense layers, timing mode 0 and a picks array");
    check_arg(args.stop_token >= -1, "persistent_decode", "stop_token must be a token id or -1");
    PersistentDecodeArgs a = args;
    if (a.layer_end < 0) a.layer_end = shape.n_layer;
    const bool segment =
        a.layer_begin != 0 || a.layer_end != shape.n_layer || a.attn_in != nullptr || a.qkv_out != nullptr;
    check_arg(!segment || (a.n_steps == 1 && !plan.sea && plan.mode == 0), "persistent_decode",
              "a segment needs one step, dense kernels and timing mode 0");
    check_arg(a.layer_begin >= 0 && a.layer_begin < a.layer_end && a.layer_end <= shape.n_layer, "persistent_decode",
              "segment layers outside the model");
    check_arg(a.layer_begin == 0 || a.attn_in != nullptr, "persistent_decode",
              "a segment after layer 0 resumes at an out-projection (attn_in)");
    check_arg(a.qkv_out == nullptr || a.attn_in == nullptr || a.layer_end - a.layer_begin >= 2, "persistent_decode",
              "a resumed segment that stops after a qkv needs two layers");
    cudaLaunchConfig_t config{};
    config.gridDim = dim3((unsigned)plan.grid);
    config.blockDim = dim3((unsigned)kThreads);
    config.dynamicSmemBytes = plan.shared_bytes;
    config.stream = stream;
    // Cooperative: every block resident at once, or no launch (the blocks wait on each other's handovers). A segment
    // launched with programmatic stream serialization as well (its producer streaming while the SEA kernel before it
    // ran, the SEA estimator after it launched early) measured slower: docs/development.md.
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeCooperative;
    attribute.val.cooperative = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
    const PersistentKernel kernel = kernel_for(shape.head_dim, shape.C, plan.sea, shape.q8);
    check_arg(kernel != nullptr, "persistent_decode", "no kernel for this head_dim and hidden size");
    SeaStep ss{};
    if (plan.sea) {
        ss.d = sea::make_dims(plan.sea_cfg, 1);
        ss.S = sea_decode_state_layout(plan.sea_cfg);
        ss.state_stride = (long long)plan.sea_state_stride;
    }
    const cudaError_t err = cudaLaunchKernelEx(&config, kernel, shape, a, plan.slots,
                                               plan.slot_bytes, plan.parts_bytes, plan.in_flight, plan.splits,
                                               *tag_base, plan.mode, plan.evict_first, plan.head_rows, plan.compact, ss);
    if (err != cudaSuccess) cudaGetLastError();
    check_cuda(err, "decode_persistent_kernel launch", __FILE__, __LINE__);
    if (a.qkv_out == nullptr) *tag_base += (uint32_t)a.n_steps * (uint32_t)plan.tags_per_step;  // the step's end
}

}  // namespace seaopt::cuda
