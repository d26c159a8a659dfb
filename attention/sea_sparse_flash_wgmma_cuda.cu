// SEA sparse attention of a prefill on Hopper's warpgroup tensor-core instructions (wgmma.mma_async, sm_90a): the
// mma.sync kernel of sea_sparse_flash_cuda.cu (read its header first: the same grid, key-block bitmap, key sets,
// masking, softmax and output, from sea_sparse_flash.cuh) with the products of dense_prefill_wgmma_cuda.cu.
//
//   sparse_flash_wgmma_kernel  grid (tile of 64 queries, head), 128 threads = one warpgroup; warp w owns rows
//     16w..16w+15. The tile's q rows and each visited 64-key block of K and V sit in shared memory in the 128-byte
//     swizzle the tensor cores read (attention/wgmma.cuh), K and V two stages deep by cp.async. Only the blocks of the
//     tile's bitmap are visited, the next one prefetched while this one is computed. Per block:
//       S = Q Kᵀ   4 × wgmma m64n64k16 (A, B from shared memory); then each row's key set masks S to -inf, the
//                  online softmax in fp32 (log2 domain), P rounded to fp16;
//       O += P V   4 × wgmma m64n64k16 (A = P from registers, B = V N-major).
//     Pipelined as the dense kernel: S of block j+1 and P_j V_j are issued together; while the tensor cores run them
//     the warps work out block j+1's key sets (row_half_keys: the cell walk that the mma.sync kernel does between
//     its products), then S_{j+1} is masked and softmaxed while P_j V_j may still run.
//   Unlike the mma.sync kernel, a warpgroup instruction covers all 64 rows: every warp takes part in every visited
//   block, and the products of 16-key groups that no row selected are not skipped (their p are 0, their
//   exponentials skipped per warp as before). The arithmetic per score and output is the mma.sync kernel's (fp16
//   products, fp32 accumulation); only the summation order inside the tensor cores may differ.
// Built into the sm_90a code only; sparse_flash_wgmma_available() says whether this process has it for the device
// (SEAOPT_SEA_FLASH_WGMMA=0 selects the mma.sync kernel, for same-run comparisons and its tests).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "attention/mma_f16.cuh"
#include "attention/sea_cuda_kernels.cuh"
#include "attention/sea_sparse_flash.cuh"
#include "attention/wgmma.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/pdl.cuh"
#include "engine/error.h"

namespace seaopt::cuda::sea {
namespace {

constexpr int kTileBytes = 64 * 128;  // 64 rows of 64 halves, swizzled
[[maybe_unused]] constexpr int kQOffset = 0;  // q tile, then K stages 0, 1, then V stages 0, 1
[[maybe_unused]] constexpr int kKOffset = kTileBytes;
[[maybe_unused]] constexpr int kVOffset = 3 * kTileBytes;
constexpr int kMaskOffset = 5 * kTileBytes;  // then the tile's mask rows [64][KW], then the bitmap [n_words]
constexpr int kAlignPad = 1024;               // room to align the base to 1024 bytes

// kMinBlocks: blocks an SM must hold (the register budget: 4 -> 128 a thread, with some spilled around the key-set
// walk; 3 -> up to 168); kDebug: the key index sums are kept (tests only).
template <int kMinBlocks, bool kDebug>
__global__ void __launch_bounds__(kFlashThreads, kMinBlocks)
    sparse_flash_wgmma_kernel(__half *__restrict__ out, long long out_row, QkvView x, const float *__restrict__ gates,
                              const uint32_t *__restrict__ cell_mask, const float *__restrict__ v_prefix, Dims d,
                              int32_t *__restrict__ key_count, uint32_t *__restrict__ key_sum) {
#ifdef SEAOPT_WGMMA
    extern __shared__ __align__(128) unsigned char raw_smem[];
    __shared__ __align__(8) uint32_t s_keys[kFlashWarps][kWarpSize];  // a block's selected keys per row half
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(raw_smem);
    const uint32_t smem = (raw + 1023u) & ~1023u;
    unsigned char *fsm = raw_smem + (smem - raw);
    const int T = d.T, H = d.H, KW = d.KW;
    const int n_tiles = (T + kFlashRows - 1) / kFlashRows;
    const int n_words = (n_tiles + 31) / 32;
    const int block = (int)blockIdx.x;  // n_tiles · H blocks, the later tiles (most keys) of every head first
    const int tile = n_tiles - 1 - block / H, h = block % H;
    const int t0 = tile * kFlashRows, n_rows = min(kFlashRows, T - t0), last = t0 + n_rows - 1;
    const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize, g = lane / 4, tq4 = lane % 4;

    uint32_t *s_mask = reinterpret_cast<uint32_t *>(fsm + kMaskOffset);
    uint32_t *s_any = s_mask + kFlashRows * KW;  // [n_words]: the key blocks some row of the tile selects
    const __half *k_head = k_at(x, 0, h), *v_head = v_at(x, 0, h);
    auto load_kv = [&](int stage, int b) {  // key block b into stage `stage`, zero past the tile's last row
        load_tile(smem + kKOffset + stage * kTileBytes, k_head, (size_t)x.k_row, 0, b * kFlashKeys, 0, INT_MAX, last);
        load_tile(smem + kVOffset + stage * kTileBytes, v_head, (size_t)x.v_row, 0, b * kFlashKeys, 0, INT_MAX, last);
    };

    // q of the tile's rows (zero past n_rows), issued first; its group completes with the first K/V block.
    load_tile(smem + kQOffset, q_at(x, t0, h), (size_t)x.q_row, 0, 0, 0, INT_MAX, n_rows - 1);
    stage_tile_masks(s_mask, cell_mask, t0, n_rows, h, d);
    for (int i = tid; i < n_words; i += kFlashThreads) s_any[i] = 0u;
    __syncthreads();
    {
        const int r = warp * kFlashWarpRows + lane / 2;
        if (r < n_rows) mark_row_key_blocks(s_any, s_mask + r * KW, t0 + r, lane & 1, d);
    }
    __syncthreads();

    int blk = next_marked(s_any, 0, n_tiles);
    int nxt = blk < n_tiles ? next_marked(s_any, blk + 1, n_tiles) : n_tiles;
    if (blk < n_tiles) load_kv(0, blk);
    cp_async_commit();  // q and the first K/V block: one group
    if (nxt < n_tiles) load_kv(1, nxt);
    cp_async_commit();  // (maybe empty: the count stays uniform)

    const int row_a = warp * kFlashWarpRows + g, row_b = row_a + 8;
    const float q_scale = x.q_scale * kFlashLog2e;  // scores in the log2 domain: exp(q_eff·k) = exp2(q·k · q_scale)
    float o[8][4];  // O[row_a][8j + 2·tq4, +1] in [j][0, 1], row_b in [j][2, 3]; unnormalised
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
    int count[2] = {0, 0};      // rows a, b: selected keys
    uint32_t sum[2] = {0u, 0u};  // their index sums (debug)
    float s[8][4] = {};          // the scores of the block being softmaxed (accumulate = 0 overwrites them)
    uint32_t pa[4][4];           // P (fp16): k16 slice kk is S tiles 2kk, 2kk + 1
    bool group[4];

    const uint64_t q_desc = tile_descriptor(smem + kQOffset);
    auto issue_scores = [&](int stage) {
        const uint64_t k_desc = tile_descriptor(smem + kKOffset + stage * kTileBytes);
#pragma unroll
        for (int kk = 0; kk < kHeadDim / 16; ++kk) wgmma_ss(s, q_desc + 2 * kk, k_desc + 2 * kk, kk);
        wgmma_commit();
    };
    auto issue_pv = [&](int stage) {
        const uint64_t v_desc = tile_descriptor(smem + kVOffset + stage * kTileBytes);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) wgmma_rs_nmajor(o, pa[kk], v_desc + (uint64_t)(kk * 2048 >> 4));
        wgmma_commit();
    };
    auto keys_of = [&](int b) {
        const LaneKeys k = block_row_keys(s_keys[warp], s_mask, warp * kFlashWarpRows, n_rows, t0, b * kFlashKeys, d,
                                          count, sum, kDebug);
        warp_key_groups(k, group);
        return k;
    };
    auto pack_p = [&]() {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            pa[kk][0] = pack_f16x2(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = pack_f16x2(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = pack_f16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = pack_f16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
    };
    auto keep = [&](int j) { return group[j / 2]; };

    if (blk < n_tiles) {
        // The first block: its key sets while the copies land, its scores, P.
        LaneKeys keys = keys_of(blk);
        cp_async_wait<1>();          // q and the first block have landed (for this thread's copies) ...
        fence_proxy_async_shared();  // ... visible to the tensor cores' async proxy ...
        __syncthreads();             // ... and for every thread's
        wgmma_fence();
        issue_scores(0);
        wgmma_wait<0>();
        mask_unselected(s, keys, tq4);
        flash_rescale(o, flash_softmax_scores(s, m_a, m_b, l_a, l_b, q_scale, keep));
        pack_p();

        int stage = 0;
        while (nxt < n_tiles) {  // block nxt's scores and the current block's P V
            const int after = next_marked(s_any, nxt + 1, n_tiles);
            cp_async_wait<0>();  // block nxt (the only group in flight) has landed
            fence_proxy_async_shared();
            __syncthreads();
            wgmma_fence();  // pa and o were written by the threads
            issue_scores(stage ^ 1);
            issue_pv(stage);
            keys = keys_of(nxt);  // on the CUDA cores while the tensor cores run
            wgmma_wait<1>();      // S of block nxt (committed first) is done; P V may still run
            mask_unselected(s, keys, tq4);
            const float2 alpha = flash_softmax_scores(s, m_a, m_b, l_a, l_b, q_scale, keep);
            wgmma_wait<0>();
            flash_rescale(o, alpha);
            pack_p();
            __syncthreads();  // every warp is done with this stage's K and V before it is refilled
            if (after < n_tiles) load_kv(stage, after);
            cp_async_commit();
            stage ^= 1;
            nxt = after;
        }
        wgmma_fence();
        issue_pv(stage);  // the last block's P V
        wgmma_wait<0>();
    }
    cp_async_wait<0>();  // no copy may still target shared memory when the block exits
    // Everything so far read q, k, v, the gates and the mask (kernels that have completed); the running sums of v
    // come from the kernel just before (v_prefix), which may still be running (PDL).
    pdl_wait();
    pdl_launch_dependents();

    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    if (row_a < n_rows) {
        store_sparse_row(out, out_row, o, 0, t0 + row_a, h, tq4, count[0], l_a, sum[0], gates, v_prefix, H, key_count,
                         key_sum);
    }
    if (row_b < n_rows) {
        store_sparse_row(out, out_row, o, 2, t0 + row_b, h, tq4, count[1], l_b, sum[1], gates, v_prefix, H, key_count,
                         key_sum);
    }
#endif  // SEAOPT_WGMMA
}

}  // namespace

bool sparse_flash_wgmma_available() {
#if defined(SEAOPT_CUDA_SM90A)
    static const bool available = [] {
        const char *env = std::getenv("SEAOPT_SEA_FLASH_WGMMA");  // "0": the mma.sync kernel (A/B runs, its tests)
        if (env && std::string(env) == "0") return false;
        int device = 0, major = 0, minor = 0;
        if (cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        return major == 9 && minor == 0;  // sm_90a code runs on compute capability 9.0 only
    }();
    return available;
#else
    return false;
#endif
}

// SEAOPT_SEA_FLASH_WGMMA_BLOCKS=3: the kernel built for 3 blocks an SM (more registers) instead of 4, for sweeps.
static int wgmma_min_blocks() {
    static const int blocks = [] {
        const char *env = std::getenv("SEAOPT_SEA_FLASH_WGMMA_BLOCKS");
        return env && std::string(env) == "3" ? 3 : 4;
    }();
    return blocks;
}

size_t sparse_flash_wgmma_smem_bytes(const Dims &d) {
    const size_t n_tiles = ((size_t)d.T + kFlashRows - 1) / kFlashRows, n_words = (n_tiles + 31) / 32;
    return (size_t)kMaskOffset + kAlignPad + ((size_t)kFlashRows * d.KW + n_words) * sizeof(uint32_t);
}

void launch_sparse_flash_wgmma(__half *out, long long out_row_stride, const QkvView &x, const float *gates,
                               const uint32_t *cell_mask, const float *v_prefix, const Dims &d, int32_t *key_count,
                               uint32_t *key_sum, cudaStream_t stream) {
    const size_t smem = sparse_flash_wgmma_smem_bytes(d);  // the caller checked the device grants it
    const bool debug = key_sum != nullptr;
    const bool three = wgmma_min_blocks() == 3;
    auto kernel = three ? (debug ? sparse_flash_wgmma_kernel<3, true> : sparse_flash_wgmma_kernel<3, false>)
                        : (debug ? sparse_flash_wgmma_kernel<4, true> : sparse_flash_wgmma_kernel<4, false>);
    check_cuda(cudaFuncSetAttribute(reinterpret_cast<const void *>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem),
               "cudaFuncSetAttribute(sparse_flash_wgmma)", __FILE__, __LINE__);
    const long long blocks = (long long)((d.T + kFlashRows - 1) / kFlashRows) * d.H;
    if (blocks > 0x7fffffffLL) throw_unsupported("SEA sparse attention: T·n_head too large for one grid");
    launch_kernel("sea sparse_flash_wgmma_kernel", programmatic_launch_enabled(), kernel, dim3((unsigned)blocks),
                  dim3(kFlashThreads), smem, stream, out, out_row_stride, x, gates, cell_mask, v_prefix, d, key_count,
                  key_sum);
}

}  // namespace seaopt::cuda::sea
