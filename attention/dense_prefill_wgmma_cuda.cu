// Dense causal attention, prefill, heads of 64, on Hopper's warpgroup tensor-core instructions
// (wgmma.mma_async, sm_90a): the same algorithm, grid, tiles and arithmetic as the mma.sync kernel of
// dense_prefill_cuda.cu (read its header first), with each 64 x 64 product issued by the block's
// warpgroup as one asynchronous instruction per k16 slice instead of 32 mma.sync per warp.
//
//   attention_prefill_wgmma_kernel   grid (tile, head), 128 threads = one warpgroup; warp w owns
//       rows 16w..16w+15 of the tile. The tile's q rows and each 64-key block of K and V sit in
//       shared memory as 64 rows of 128 bytes in the 128-byte swizzle the tensor cores read
//       (16-byte chunk c of row r at r·128 + (c ^ (r % 8))·16; tiles 1024-byte aligned), K and V
//       two stages deep by cp.async as before. Per key block:
//         S = Q Kᵀ    4 × wgmma m64n64k16, A = Q and B = K from shared memory (both K-major:
//                     descriptors with the 1024-byte stride between 8-row groups, a k16 slice 32
//                     bytes further along the row);
//         the causal mask and the online softmax in fp32, log2 domain (flash_softmax_step, as
//         the mma.sync kernel: the wgmma accumulator of a warp is the mma.sync layout of its 16
//         rows, n8 tile j in registers 4j..4j+3);
//         O += P V    4 × wgmma m64n64k16, A = P from registers (fp16; the accumulator layout of
//                     two n8 tiles is the A-fragment layout of a k16 slice), B = V from shared
//                     memory, N-major (transposed: a key row holds the 64 output dims; the k16
//                     slice of keys 16kk.. is 2048 bytes further).
//       Pipelined within the warpgroup (FlashAttention-3's intra-warpgroup overlap): S of block j+1
//       and P_j V_j are issued together, S_{j+1} is waited for alone (wgmma.wait_group 1; groups
//       finish in commit order) and masked and softmaxed while P_j V_j runs, then O is rescaled and
//       P_{j+1} packed once that product is done (wait_group 0): O is rescaled before each product it
//       receives, as in the unpipelined loop. The last block's P V is peeled out of the loop (a wgmma
//       issued under a condition made ptxas serialize them all). K/V block j+2 is copied into block
//       j's stage once both of its products are done. The copies into shared memory (generic proxy)
//       are fenced for the tensor cores' async proxy before the block barrier that publishes them.
//   Unlike the mma.sync kernel, every warp takes part in every product (a warpgroup instruction):
//   warps whose rows precede a block compute scores the causal mask then removes.
// Built into the sm_90a code only (the "a" features: CMake's default CUDA architecture is 90a);
// attention_prefill_wgmma_available() says whether this process has it for the device.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "attention/dense_cuda_kernels.cuh"
#include "attention/mma_f16.cuh"
#include "attention/wgmma.cuh"
#include "engine/cuda/common.cuh"
#include "engine/error.h"

namespace seaopt::cuda::dense {
namespace {

[[maybe_unused]] constexpr int kD = 64;      // head size of this kernel
constexpr int kRows = 64;                    // query rows per block (one tile)
[[maybe_unused]] constexpr int kKeys = 64;   // keys per block step
constexpr int kThreads = 128;                // one warpgroup
constexpr int kTileBytes = 64 * 128;         // 64 rows of 64 halves
[[maybe_unused]] constexpr int kQOffset = 0;  // q tile, then K stages 0, 1, then V stages 0, 1
[[maybe_unused]] constexpr int kKOffset = kTileBytes;
[[maybe_unused]] constexpr int kVOffset = 3 * kTileBytes;
constexpr int kSmemBytes = 5 * kTileBytes + 1024;  // + room to align the base to 1024 bytes
static_assert(kRows == kAttentionTileRows, "one tile per block");

template <bool kAppend>
__global__ void __launch_bounds__(kThreads, 4)
    attention_prefill_wgmma_kernel(__half *__restrict__ out, const __half *__restrict__ qkv,
                                   __half *__restrict__ k_cache, __half *__restrict__ v_cache,
                                   const AttentionTile *__restrict__ tiles, int n_tiles, int n_head, int n_ctx,
                                   float q_scale) {
#ifdef SEAOPT_WGMMA
    extern __shared__ __align__(128) unsigned char raw_smem[];
    const uint32_t smem = ((uint32_t)__cvta_generic_to_shared(raw_smem) + 1023u) & ~1023u;

    // Later tiles of a sequence have more keys: start them first, for every head.
    const int block = (int)(blockIdx.y * gridDim.x + blockIdx.x);
    const AttentionTile tile = tiles[n_tiles - 1 - block / n_head];
    if (!tile_ok(tile, n_ctx)) return;  // uniform over the block
    const int h = block % n_head;
    const int C = n_head * kD;
    const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
    const int g = lane / 4, t = lane % 4;
    const int last = tile.pos0 + tile.n_rows - 1;
    const int row_a = warp * 16 + g, row_b = row_a + 8;
    const int diag0 = tile.pos0 + row_a - 2 * t;  // row_a's position minus 2t
    const int warp_first_pos = tile.pos0 + warp * 16;

    const size_t kv_base = ((size_t)tile.seq * (size_t)n_head + (size_t)h) * (size_t)n_ctx * kD;
    __half *k_head = k_cache + kv_base, *v_head = v_cache + kv_base;
    const __half *qk_head = qkv + C + h * kD;  // the head's k column of batch row 0; v is C further
    const int row_shift = tile.row0 - tile.pos0;
    // Key block r0 into stage `stage`: with append_kv the run's keys from the qkv rows, earlier
    // ones from the cache (dense_prefill_cuda.cu's load_kv).
    auto load_kv = [&](int stage, int r0) {
        const uint32_t kd = smem + kKOffset + stage * kTileBytes, vd = smem + kVOffset + stage * kTileBytes;
        const int run = kAppend ? tile.run_pos0 : INT_MAX;
        if (r0 < run) {
            load_tile(kd, k_head, kD, 0, r0, r0, run, last);
            load_tile(vd, v_head, kD, 0, r0, r0, run, last);
        }
        if (r0 + kKeys > run) {
            load_tile(kd, qk_head, (size_t)(3 * C), row_shift, r0, run, INT_MAX, last);
            load_tile(vd, qk_head + C, (size_t)(3 * C), row_shift, r0, run, INT_MAX, last);
        }
    };

    // The tile's q rows (zero past n_rows) and the first K/V block: one group; the second block: another.
    const int n_blocks = last / kKeys + 1;
    load_tile(smem + kQOffset, qkv + (size_t)tile.row0 * (size_t)(3 * C) + (size_t)h * kD, (size_t)(3 * C), 0, 0, 0,
              INT_MAX, tile.n_rows - 1);
    load_kv(0, 0);
    cp_async_commit();
    if (n_blocks > 1) load_kv(1, kKeys);
    cp_async_commit();  // (maybe empty: the count stays uniform)

    float o[8][4];  // O[row_a][8j + 2t, +1] in [j][0, 1], row_b in [j][2, 3]; unnormalised
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
    const uint64_t q_desc = tile_descriptor(smem + kQOffset);
    float s[8][4] = {};  // the scores of the block being softmaxed (accumulate = 0 overwrites them)

    // S of key block j0 in stage `stage` into s (issued, not waited for), then the causal mask once landed.
    auto issue_scores = [&](int stage) {
        const uint64_t k_desc = tile_descriptor(smem + kKOffset + stage * kTileBytes);
#pragma unroll
        for (int kk = 0; kk < kD / 16; ++kk) wgmma_ss(s, q_desc + 2 * kk, k_desc + 2 * kk, kk);  // +32 bytes a slice
        wgmma_commit();
    };
    auto mask_scores = [&](int j0) {  // only where the block reaches past the warp's first position
        if (j0 + kKeys - 1 > warp_first_pos) flash_causal_mask(s, diag0 - j0);
    };
    // P (fp16, registers): P's k16 slice kk is S tiles 2kk, 2kk + 1.
    uint32_t pa[4][4];
    auto pack_p = [&]() {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            pa[kk][0] = pack_f16x2(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = pack_f16x2(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = pack_f16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = pack_f16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
    };

    // Block 0: its scores and P.
    cp_async_wait<1>();          // block 0 has landed (for this thread's copies) ...
    fence_proxy_async_shared();  // ... visible to the tensor cores' async proxy ...
    __syncthreads();             // ... and for every thread's
    wgmma_fence();
    issue_scores(0);
    wgmma_wait<0>();
    mask_scores(0);
    flash_rescale(o, flash_softmax_scores(s, m_a, m_b, l_a, l_b, q_scale, [](int) { return true; }));
    pack_p();

    // Block j: O += P_j V_j runs on the tensor cores while the scores of block j + 1 are softmaxed
    // (intra-warpgroup overlap, as FlashAttention-3): issue S_{j+1}, issue P_j V_j, wait for S_{j+1}
    // only, mask and softmax it, wait for P_j V_j, then rescale O and pack P_{j+1}. The arithmetic and
    // its order are those of the unpipelined loop: O is rescaled before each product it receives.
    auto issue_pv = [&](int stage) {
        const uint64_t v_desc = tile_descriptor(smem + kVOffset + stage * kTileBytes);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) wgmma_rs_nmajor(o, pa[kk], v_desc + (uint64_t)(kk * 2048 >> 4));
        wgmma_commit();
    };
    int jb = 0;
    for (; jb + 1 < n_blocks; ++jb) {
        const int stage = jb & 1;
        cp_async_wait<0>();  // block jb + 1 (the only group in flight) has landed
        fence_proxy_async_shared();
        __syncthreads();
        wgmma_fence();  // pa and o were written by the threads
        issue_scores(stage ^ 1);
        issue_pv(stage);
        wgmma_wait<1>();  // S_{jb+1} (committed first) is done; P_jb V_jb may still run
        mask_scores((jb + 1) * kKeys);
        const float2 alpha = flash_softmax_scores(s, m_a, m_b, l_a, l_b, q_scale, [](int) { return true; });
        wgmma_wait<0>();
        flash_rescale(o, alpha);
        pack_p();
        __syncthreads();  // every warp is done with stage `stage` (K_jb, V_jb) before it is refilled
        if (jb + 2 < n_blocks) load_kv(stage, (jb + 2) * kKeys);
        cp_async_commit();
    }
    wgmma_fence();
    issue_pv(jb & 1);  // the last block's P V
    wgmma_wait<0>();

    // Normalise and store the tile's real rows: O[row][8j + 2t, +1] as one fp16 pair.
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float inv_a = l_a > 0.0f ? 1.0f / l_a : 0.0f;
    const float inv_b = l_b > 0.0f ? 1.0f / l_b : 0.0f;
    const size_t o_col = (size_t)h * kD + 2 * t;
    if (row_a < tile.n_rows) {
        uint32_t *orow = reinterpret_cast<uint32_t *>(out + (size_t)(tile.row0 + row_a) * (size_t)C + o_col);
#pragma unroll
        for (int j = 0; j < 8; ++j) orow[4 * j] = pack_f16x2(o[j][0] * inv_a, o[j][1] * inv_a);
    }
    if (row_b < tile.n_rows) {
        uint32_t *orow = reinterpret_cast<uint32_t *>(out + (size_t)(tile.row0 + row_b) * (size_t)C + o_col);
#pragma unroll
        for (int j = 0; j < 8; ++j) orow[4 * j] = pack_f16x2(o[j][2] * inv_b, o[j][3] * inv_b);
    }
    if (kAppend) append_tile_kv<kD, kThreads>(k_head, v_head, qk_head, qk_head + C, (size_t)(3 * C), tile);
#endif  // SEAOPT_WGMMA
}

}  // namespace

bool attention_prefill_wgmma_available() {
#if defined(SEAOPT_CUDA_SM90A)
    static const bool available = [] {
        const char *env = std::getenv("SEAOPT_FLASH_WGMMA");  // "0": the mma.sync kernel (A/B runs)
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

void launch_attention_prefill_wgmma(__half *out, const __half *qkv, __half *k_cache, __half *v_cache,
                                    const AttentionTile *tiles, int n_tiles, int n_head, int n_ctx, float q_scale,
                                    bool append_kv, cudaStream_t stream) {
    auto kernel = append_kv ? attention_prefill_wgmma_kernel<true> : attention_prefill_wgmma_kernel<false>;
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (err != cudaSuccess) cudaGetLastError();
    check_cuda(err, "attention_prefill_wgmma_kernel shared memory", __FILE__, __LINE__);
    kernel<<<dim3((unsigned)n_tiles, (unsigned)n_head), kThreads, kSmemBytes, stream>>>(out, qkv, k_cache, v_cache, tiles,
                                                                                       n_tiles, n_head, n_ctx, q_scale);
    check_launch("attention_prefill_wgmma_kernel");
}

}  // namespace seaopt::cuda::dense
