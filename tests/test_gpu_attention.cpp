// The CUDA dense causal attention (attention/dense_cuda.cu) against the CPU reference
// (attention/dense_cpu.h), and the host tiling (make_attention_tiles).
//
// Inputs are random N(0,1) values rounded to fp16 (fixed seeds). `ref` is the fp32 CPU reference
// on the same fp16 inputs; `naive` is the same attention done the straightforward fp16 way (scores,
// probabilities and output rounded to fp16). As for FlashAttention, the GPU must be at least as
// close to ref as naive is, within a factor 2: max|gpu - ref| <= 2 max|naive - ref| + 1e-4.
// The decode kernel runs three ways: plain (no scratch: one block per (tile, head)), split over
// keys (flash-decoding: partials and counters given), and split with the fused KV append (the
// cache slots of the rows' positions start as NaN and must end as the rows' K and V); the prefill
// kernel plain and with the fused KV append (the same NaN holes, filled from qkv, and the batch's own
// keys read from qkv), where each sequence's rows are one run. The split
// counters must be zero again after every call. A CUDA graph captured at one position must give
// a direct call's bits at any other (the engine replays its decode graph at every position).
// Runs only where a GPU exists (tests/gpu_test_main.cpp skips the program otherwise).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention/dense_cpu.h"
#include "engine/cuda/ops.h"
#include "engine/error.h"
#include "engine/fp16.h"

namespace {

using seaopt::cuda::AttentionTile;
using seaopt::cuda::half_t;
constexpr uint16_t kNanF16 = 0x7E00;

void cuda_ok(cudaError_t err, const char *what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// A device allocation freed on scope exit.
class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t bytes) { cuda_ok(cudaMalloc(&ptr_, bytes ? bytes : 1), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;
    template <class T> T *as() const { return static_cast<T *>(ptr_); }

private:
    void *ptr_ = nullptr;
};

template <class T> void upload(const DeviceBuffer &dst, const std::vector<T> &src) {
    cuda_ok(cudaMemcpy(dst.as<void>(), src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}

// A batch: per-row sequence and position, with the model's head count and context size.
struct Batch {
    std::string name;
    std::vector<int32_t> seq;
    std::vector<int32_t> pos;
    int n_head = 32;  // OPT-1.3B: 32 heads x 64
    int n_ctx = 2048;
    int head_dim = 64;  // OPT-2.7B: 80; OPT-6.7B and larger: 128
};

// Rows `n` of sequence `s` at positions p0, p0+1, ...
void add_rows(Batch &b, int32_t s, int32_t p0, int n) {
    for (int i = 0; i < n; ++i) {
        b.seq.push_back(s);
        b.pos.push_back(p0 + i);
    }
}

float round16(float x) { return seaopt::f16_to_f32(seaopt::f32_to_f16(x)); }

// Attention of one query (fp32, q already scaled) the naive fp16 way: scores, probabilities and
// the output rounded to fp16, accumulations in fp32 (as an fp16 GEMM + fp16 softmax would do).
void naive_fp16_attention_one_query(float *out, const float *q, const float *k, const float *v, size_t kv_stride,
                                    size_t n_kv, int n_head, int head_dim, float *scratch) {
    for (int h = 0; h < n_head; ++h) {
        const float *qh = q + (size_t)h * head_dim;
        float mx = -INFINITY;
        for (size_t j = 0; j < n_kv; ++j) {
            const float *kj = k + j * kv_stride + (size_t)h * head_dim;
            float s = 0.0f;
            for (int d = 0; d < head_dim; ++d) s += round16(qh[d]) * kj[d];
            scratch[j] = round16(s);
            mx = std::max(mx, scratch[j]);
        }
        float sum = 0.0f;
        for (size_t j = 0; j < n_kv; ++j) {
            scratch[j] = std::exp(scratch[j] - mx);
            sum += scratch[j];
        }
        for (size_t j = 0; j < n_kv; ++j) scratch[j] = round16(scratch[j] / sum);
        for (int d = 0; d < head_dim; ++d) {
            float o = 0.0f;
            for (size_t j = 0; j < n_kv; ++j) o += scratch[j] * v[j * kv_stride + (size_t)h * head_dim + d];
            out[(size_t)h * head_dim + d] = round16(o);
        }
    }
}

// Natural: all_single_row from the tiles. Decode: the decode kernel without scratch (no split);
// DecodeSplit: with partials and counters; DecodeAppend: also append_kv (distinct sequences only);
// PrefillAppend: the prefill kernel with append_kv (each sequence's rows one run; skipped otherwise);
// PrefillMmaSync: the mma.sync prefill kernel where the wgmma one would run (heads of 64 on sm_90a).
enum class Path { Natural, Prefill, Decode, DecodeSplit, DecodeAppend, PrefillAppend, PrefillMmaSync };

const char *path_name(Path p, bool all_single_row) {
    switch (p) {
        case Path::Natural: return all_single_row ? "decode" : "prefill";
        case Path::Prefill: return "prefill";
        case Path::Decode: return "decode";
        case Path::DecodeSplit: return "split";
        case Path::DecodeAppend: return "split+append";
        case Path::PrefillAppend: return "prefill+append";
        case Path::PrefillMmaSync: return "prefill mma.sync";
    }
    return "?";
}

// Split-K scratch for a decode batch: partials (NaN-filled: nothing may read stale values) and
// counters (zeroed once; every call must leave them zero).
struct DecodeScratch {
    DecodeScratch(int n_tiles, int n_head, int head_dim)
        : partials_bytes(std::max<uint64_t>(seaopt::cuda::attention_decode_partials_bytes(n_tiles, n_head, head_dim), 4)),
          partials(partials_bytes), counters(counters_bytes) {
        cuda_ok(cudaMemset(partials.as<void>(), 0xFF, partials_bytes), "cudaMemset partials");
        cuda_ok(cudaMemset(counters.as<void>(), 0, counters_bytes), "cudaMemset counters");
    }
    seaopt::cuda::AttentionOptions options(bool append) const {
        seaopt::cuda::AttentionOptions o;
        o.append_kv = append;
        o.partials = partials.as<float>();
        o.partials_bytes = partials_bytes;
        o.counters = counters.as<uint32_t>();
        o.counters_bytes = counters_bytes;
        return o;
    }
    size_t nonzero_counters() const {
        std::vector<uint32_t> c(seaopt::cuda::kAttentionDecodeCounters);
        cuda_ok(cudaMemcpy(c.data(), counters.as<void>(), counters_bytes, cudaMemcpyDeviceToHost), "counters D2H");
        return (size_t)std::count_if(c.begin(), c.end(), [](uint32_t v) { return v != 0; });
    }
    const size_t partials_bytes;
    const size_t counters_bytes = seaopt::cuda::kAttentionDecodeCounters * sizeof(uint32_t);
    DeviceBuffer partials, counters;
};

// Runs the batch on the GPU (once per path asked) and checks every output against the references.
void check_batch(const Batch &b, uint32_t seed, std::vector<Path> paths = {Path::Natural}) {
    SCOPED_TRACE(b.name);
    const int rows = (int)b.seq.size();
    const int n_head = b.n_head, n_ctx = b.n_ctx, kHeadDim = b.head_dim, C = n_head * kHeadDim;
    int n_seq = 0, max_pos = 0;
    std::map<int32_t, int32_t> kv_len;  // per sequence: positions 0..max filled, NaN past them
    for (int r = 0; r < rows; ++r) {
        n_seq = std::max(n_seq, b.seq[r] + 1);
        max_pos = std::max(max_pos, b.pos[r]);
        kv_len[b.seq[r]] = std::max(kv_len[b.seq[r]], b.pos[r] + 1);
    }
    ASSERT_LT(max_pos, n_ctx);

    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const size_t head_stride = (size_t)n_ctx * kHeadDim;
    const size_t cache_elems = (size_t)n_seq * n_head * head_stride;
    std::vector<uint16_t> k_cache(cache_elems, kNanF16), v_cache(cache_elems, kNanF16);
    for (const auto &[s, len] : kv_len) {
        for (int h = 0; h < n_head; ++h) {
            const size_t base = ((size_t)s * n_head + h) * head_stride;
            for (size_t i = 0; i < (size_t)len * kHeadDim; ++i) {
                k_cache[base + i] = seaopt::f32_to_f16(normal(rng));
                v_cache[base + i] = seaopt::f32_to_f16(normal(rng));
            }
        }
    }
    // qkv: random q; k and v equal to what kv_cache_append put in the cache for the row.
    std::vector<uint16_t> qkv((size_t)rows * 3 * C);
    for (int r = 0; r < rows; ++r) {
        uint16_t *row = qkv.data() + (size_t)r * 3 * C;
        for (int c = 0; c < C; ++c) row[c] = seaopt::f32_to_f16(normal(rng));
        for (int h = 0; h < n_head; ++h) {
            const size_t src = ((size_t)b.seq[r] * n_head + h) * head_stride + (size_t)b.pos[r] * kHeadDim;
            for (int d = 0; d < kHeadDim; ++d) {
                row[C + h * kHeadDim + d] = k_cache[src + d];
                row[2 * C + h * kHeadDim + d] = v_cache[src + d];
            }
        }
    }

    // References, row by row (K/V of a sequence as fp32 [pos][C] rows, as the CPU function reads them).
    std::map<int32_t, std::pair<std::vector<float>, std::vector<float>>> kv32;
    for (const auto &[s, len] : kv_len) {
        auto &[k32, v32] = kv32[s];
        k32.resize((size_t)len * C);
        v32.resize((size_t)len * C);
        for (int p = 0; p < len; ++p) {
            for (int h = 0; h < n_head; ++h) {
                for (int d = 0; d < kHeadDim; ++d) {
                    const size_t src = ((size_t)s * n_head + h) * head_stride + (size_t)p * kHeadDim + d;
                    k32[(size_t)p * C + h * kHeadDim + d] = seaopt::f16_to_f32(k_cache[src]);
                    v32[(size_t)p * C + h * kHeadDim + d] = seaopt::f16_to_f32(v_cache[src]);
                }
            }
        }
    }
    const float scale = 1.0f / std::sqrt((float)kHeadDim);
    std::vector<float> ref((size_t)rows * C), naive((size_t)rows * C), q(C), scratch((size_t)n_ctx);
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < C; ++c) q[c] = seaopt::f16_to_f32(qkv[(size_t)r * 3 * C + c]) * scale;
        const auto &[k32, v32] = kv32.at(b.seq[r]);
        const size_t n_kv = (size_t)b.pos[r] + 1;
        seaopt::cpu::dense_attention_one_query(ref.data() + (size_t)r * C, q.data(), k32.data(), v32.data(), C,
                                               n_kv, n_head, kHeadDim, scratch.data());
        naive_fp16_attention_one_query(naive.data() + (size_t)r * C, q.data(), k32.data(), v32.data(), C, n_kv,
                                       n_head, kHeadDim, scratch.data());
    }
    double naive_err = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) naive_err = std::max(naive_err, (double)std::fabs(naive[i] - ref[i]));

    // The GPU.
    std::vector<AttentionTile> tiles((size_t)std::max(rows, 1));
    int n_tiles = -1;
    seaopt::cuda::make_attention_tiles(tiles.data(), &n_tiles, b.seq.data(), b.pos.data(), rows);
    tiles.resize((size_t)n_tiles);
    const bool single = std::all_of(tiles.begin(), tiles.end(), [](const AttentionTile &t) { return t.n_rows == 1; });
    DeviceBuffer d_qkv(qkv.size() * 2), d_k(cache_elems * 2), d_v(cache_elems * 2);
    DeviceBuffer d_tiles(tiles.size() * sizeof(AttentionTile));
    const size_t out_elems = (size_t)rows * C, guard_elems = (size_t)C;  // one guard row past the output
    DeviceBuffer d_out((out_elems + guard_elems) * 2);
    upload(d_qkv, qkv);
    upload(d_k, k_cache);
    upload(d_v, v_cache);
    upload(d_tiles, tiles);

    DecodeScratch scratch_buf(n_tiles, n_head, kHeadDim);
    bool distinct_seqs = true;
    {
        std::vector<int32_t> sorted = b.seq;
        std::sort(sorted.begin(), sorted.end());
        distinct_seqs = std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
    }
    for (const Path path : paths) {
        const bool all_single_row =
            path == Path::Natural
                ? single
                : (path != Path::Prefill && path != Path::PrefillAppend && path != Path::PrefillMmaSync);  // Decode*
        if (all_single_row && !single) continue;  // the decode kernel only takes one-row tiles
        const bool append = path == Path::DecodeAppend || path == Path::PrefillAppend;
        ASSERT_TRUE(path != Path::DecodeAppend || distinct_seqs) << "append_kv needs one row per sequence";
        if (path == Path::PrefillAppend && !seaopt::cuda::attention_tiles_one_run_per_sequence(tiles.data(), n_tiles)) {
            continue;  // a sequence in several runs: the engine appends with kv_cache_append first
        }
        if (append) {
            // The rows' own cache slots start as NaN: the kernel must write them (and not read them).
            std::vector<uint16_t> k_holes = k_cache, v_holes = v_cache;
            for (int r = 0; r < rows; ++r) {
                for (int h = 0; h < n_head; ++h) {
                    const size_t at = ((size_t)b.seq[r] * n_head + h) * head_stride + (size_t)b.pos[r] * kHeadDim;
                    std::fill(k_holes.begin() + at, k_holes.begin() + at + kHeadDim, kNanF16);
                    std::fill(v_holes.begin() + at, v_holes.begin() + at + kHeadDim, kNanF16);
                }
            }
            upload(d_k, k_holes);
            upload(d_v, v_holes);
        }
        cuda_ok(cudaMemset(d_out.as<void>(), 0xFF, (out_elems + guard_elems) * 2), "cudaMemset");  // NaN
        if (path == Path::DecodeSplit || append || path == Path::PrefillMmaSync) {
            seaopt::cuda::AttentionOptions opt = scratch_buf.options(append);
            opt.prefill_mma_sync = path == Path::PrefillMmaSync;
            seaopt::cuda::attention_forward(d_out.as<half_t>(), d_qkv.as<half_t>(), d_k.as<half_t>(),
                                            d_v.as<half_t>(), d_tiles.as<AttentionTile>(), n_tiles, all_single_row,
                                            max_pos, n_head, kHeadDim, n_ctx, opt, /*stream*/ nullptr);
        } else {
            seaopt::cuda::attention_forward(d_out.as<half_t>(), d_qkv.as<half_t>(), d_k.as<half_t>(),
                                            d_v.as<half_t>(), d_tiles.as<AttentionTile>(), n_tiles, all_single_row,
                                            max_pos, n_head, kHeadDim, n_ctx, /*stream*/ nullptr);
        }
        cuda_ok(cudaDeviceSynchronize(), "attention_forward");
        EXPECT_EQ(scratch_buf.nonzero_counters(), 0u) << "split counters not left at zero";
        if (append) {
            std::vector<uint16_t> k_after(cache_elems), v_after(cache_elems);
            cuda_ok(cudaMemcpy(k_after.data(), d_k.as<void>(), cache_elems * 2, cudaMemcpyDeviceToHost), "K D2H");
            cuda_ok(cudaMemcpy(v_after.data(), d_v.as<void>(), cache_elems * 2, cudaMemcpyDeviceToHost), "V D2H");
            size_t k_diff = 0, v_diff = 0;
            for (size_t i = 0; i < cache_elems; ++i) {
                k_diff += k_after[i] != k_cache[i];
                v_diff += v_after[i] != v_cache[i];
            }
            EXPECT_EQ(k_diff, 0u) << "append_kv: K cache differs from the expected cache";
            EXPECT_EQ(v_diff, 0u) << "append_kv: V cache differs from the expected cache";
            upload(d_k, k_cache);
            upload(d_v, v_cache);
        }
        std::vector<uint16_t> out16(out_elems + guard_elems);
        cuda_ok(cudaMemcpy(out16.data(), d_out.as<void>(), out16.size() * 2, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");

        double gpu_err = 0.0;
        size_t non_finite = 0, worst = 0;
        for (size_t i = 0; i < out_elems; ++i) {
            const float g = seaopt::f16_to_f32(out16[i]);
            if (!std::isfinite(g)) {
                ++non_finite;
                continue;
            }
            const double e = std::fabs((double)g - ref[i]);
            if (e > gpu_err) {
                gpu_err = e;
                worst = i;
            }
        }
        size_t guard_touched = 0;
        for (size_t i = out_elems; i < out16.size(); ++i) guard_touched += out16[i] != 0xFFFF;

        const char *kernel = path_name(path, all_single_row);
        const int splits = path == Path::DecodeSplit || path == Path::DecodeAppend
                               ? seaopt::cuda::attention_decode_splits(n_tiles, n_head, n_ctx)
                               : 1;
        std::printf("  %-44s rows %4d tiles %3d heads %2d x %3d %-12s (splits %2d): max|gpu-ref| = %.3e, "
                    "max|naive-ref| = %.3e\n",
                    b.name.c_str(), rows, n_tiles, n_head, kHeadDim, kernel, splits, gpu_err, naive_err);
        EXPECT_EQ(non_finite, 0u) << kernel << " kernel: outputs not written or not finite";
        EXPECT_EQ(guard_touched, 0u) << kernel << " kernel: wrote past the output";
        EXPECT_LE(gpu_err, 2.0 * naive_err + 1e-4)
            << kernel << " kernel, worst at row " << worst / C << " head " << (worst % C) / kHeadDim << " dim "
            << worst % kHeadDim << ": gpu " << seaopt::f16_to_f32(out16[worst]) << ", ref " << ref[worst];
    }
}

Batch one_sequence(const std::string &name, int32_t p0, int n, int n_head = 32, int n_ctx = 2048, int head_dim = 64) {
    Batch b;
    b.name = name;
    b.n_head = n_head;
    b.n_ctx = n_ctx;
    b.head_dim = head_dim;
    add_rows(b, 0, p0, n);
    return b;
}

// ---- prefill ----

// Every prefill kernel a batch can run: the plain one, with the fused KV append, and the mma.sync one where the
// wgmma one would run.
const std::vector<Path> kAllPrefillPaths = {Path::Prefill, Path::PrefillAppend, Path::PrefillMmaSync};
// The same and the decode kernel (a one-row batch runs through both).
const std::vector<Path> kAllPrefillAndDecodePaths = {Path::Prefill, Path::PrefillAppend, Path::PrefillMmaSync,
                                                     Path::Decode};

TEST(GpuAttention, PrefillOneSequenceFromPositionZero) {
    uint32_t seed = 100;
    for (const int n : {1, 17, 64, 65, 300}) {
        // One row is a one-row tile: run it through both kernels.
        check_batch(one_sequence("prefill from 0, " + std::to_string(n) + " rows", 0, n), seed++,
                    kAllPrefillAndDecodePaths);
    }
}

TEST(GpuAttention, PrefillContinuesACachedSequence) {
    // 100 positions already cached; the chunk's tiles start at 100, 164, 228 (not key-block aligned).
    check_batch(one_sequence("chunked prefill, 100 cached + 150", 100, 150), 200, kAllPrefillPaths);
    check_batch(one_sequence("chunked prefill, 100 cached + 1", 100, 1), 201,
                kAllPrefillAndDecodePaths);
}

TEST(GpuAttention, PrefillSeveralSequences) {
    Batch two;
    two.name = "two sequences (70 from 0, 30 from 37)";
    add_rows(two, 0, 0, 70);
    add_rows(two, 1, 37, 30);
    check_batch(two, 300, kAllPrefillPaths);

    // Three sequences, sequence 1's rows in two runs, one-row tiles among multi-row ones.
    Batch three;
    three.name = "three sequences, interleaved runs";
    add_rows(three, 1, 0, 10);
    add_rows(three, 0, 200, 40);
    add_rows(three, 2, 77, 1);
    add_rows(three, 1, 10, 30);
    add_rows(three, 0, 240, 1);
    check_batch(three, 301, kAllPrefillPaths);  // several runs: PrefillAppend skipped
}

TEST(GpuAttention, PrefillOtherShapes) {
    check_batch(one_sequence("40 heads, 65 rows from 3", 3, 65, 40), 400, kAllPrefillPaths);
    // n_ctx not a multiple of the key block: the last block ends past the cache's end.
    check_batch(one_sequence("n_ctx 300, 300 rows from 0", 0, 300, 8, 300), 401, kAllPrefillPaths);
}

// ---- decode ----

const std::vector<Path> kAllDecodePaths = {Path::Decode, Path::DecodeSplit, Path::DecodeAppend, Path::Prefill};

TEST(GpuAttention, DecodeOneSequence) {
    uint32_t seed = 500;
    for (const int p : {0, 1, 63, 64, 1000, 2047}) {
        check_batch(one_sequence("decode, 1 sequence at " + std::to_string(p), p, 1), seed++, kAllDecodePaths);
    }
}

TEST(GpuAttention, DecodeFourSequences) {
    uint32_t seed = 600;
    for (const int p : {0, 1, 63, 64, 1000, 2047}) {
        Batch b;
        b.name = "decode, 4 sequences at " + std::to_string(p);
        for (int s = 0; s < 4; ++s) add_rows(b, s, p, 1);
        check_batch(b, seed++, kAllDecodePaths);
    }
    Batch mixed;
    mixed.name = "decode, 4 sequences at 2047, 0, 64, 1000";
    const int32_t seqs[4] = {3, 0, 2, 1}, positions[4] = {2047, 0, 64, 1000};
    for (int i = 0; i < 4; ++i) add_rows(mixed, seqs[i], positions[i], 1);
    check_batch(mixed, 610, kAllDecodePaths);
    mixed.name = "decode, 4 sequences mixed, 40 heads";
    mixed.n_head = 40;
    check_batch(mixed, 611, kAllDecodePaths);
    Batch small_ctx = one_sequence("decode, n_ctx 300 at 299", 299, 1, 8, 300);
    check_batch(small_ctx, 612, kAllDecodePaths);
}

// Split-K ("flash-decoding") at long and short positions: batch 1 with 32 heads splits n_ctx 2048
// into 16 ranges of 128 keys, so position 2047 uses all 16, 128 and 129 the first two (a split of
// one key), and 5 only the first (15 splits idle, the direct write). Other shapes: 40 heads (8
// splits of 256), n_ctx not a multiple of a split, several sequences at different positions (some
// with one valid split, some with all), and rows of one sequence in separate one-row tiles (no
// append: a row reads the key the row before it added).
TEST(GpuAttention, DecodeSplitOverKeys) {
    uint32_t seed = 700;
    for (const int p : {5, 127, 128, 129, 255, 256, 1500, 2046, 2047}) {
        check_batch(one_sequence("split decode, 1 sequence at " + std::to_string(p), p, 1), seed++,
                    {Path::DecodeSplit, Path::DecodeAppend, Path::Decode});
    }
    check_batch(one_sequence("split decode, 40 heads at 2047", 2047, 1, 40), seed++,
                {Path::DecodeSplit, Path::DecodeAppend});
    check_batch(one_sequence("split decode, OPT-125m heads at 1999", 1999, 1, 12), seed++,
                {Path::DecodeSplit, Path::DecodeAppend});
    check_batch(one_sequence("split decode, n_ctx 1000 at 999", 999, 1, 32, 1000), seed++,
                {Path::DecodeSplit, Path::DecodeAppend});
    check_batch(one_sequence("split decode, n_ctx 300 at 130", 130, 1, 8, 300), seed++,
                {Path::DecodeSplit, Path::DecodeAppend});

    Batch several;
    several.name = "split decode, 6 sequences at 2047, 0, 64, 1000, 1500, 129";
    const int32_t positions[6] = {2047, 0, 64, 1000, 1500, 129};
    for (int i = 0; i < 6; ++i) add_rows(several, 5 - i, positions[i], 1);
    check_batch(several, seed++, {Path::DecodeSplit, Path::DecodeAppend, Path::Decode});

    Batch many;  // 15 tiles x 32 heads = 480 pairs: 2 splits of 1024 keys
    many.name = "split decode, 15 sequences at 2047 - 100 s";
    for (int i = 0; i < 15; ++i) add_rows(many, i, 2047 - 100 * i, 1);
    check_batch(many, seed++, {Path::DecodeSplit, Path::DecodeAppend});

    Batch runs;
    runs.name = "split decode, one sequence in 3 one-row tiles";
    add_rows(runs, 0, 1800, 1);
    add_rows(runs, 1, 40, 1);
    add_rows(runs, 0, 1801, 1);
    add_rows(runs, 1, 41, 1);
    add_rows(runs, 0, 1802, 1);
    check_batch(runs, seed++, {Path::DecodeSplit, Path::Decode, Path::Prefill});
}

// The head sizes of the larger OPT models: OPT-2.7B (32 heads x 80), OPT-6.7B (32 x 128) and OPT-13B
// (40 x 128). Prefill from 0 and continuing a cache (tiles not key-block aligned), several
// sequences, and decode at short and long positions through every decode path (split, append).
TEST(GpuAttention, OtherHeadSizes) {
    uint32_t seed = 1000;
    struct Shape {
        const char *name;
        int n_head, head_dim;
    };
    for (const Shape &sh : {Shape{"OPT-2.7B heads (32 x 80)", 32, 80}, Shape{"OPT-6.7B heads (32 x 128)", 32, 128},
                            Shape{"OPT-13B heads (40 x 128)", 40, 128}}) {
        const std::string n = sh.name;
        check_batch(one_sequence(n + ", prefill 300 rows from 0", 0, 300, sh.n_head, 2048, sh.head_dim), seed++,
                    kAllPrefillPaths);
        check_batch(one_sequence(n + ", prefill 100 cached + 150", 100, 150, sh.n_head, 2048, sh.head_dim), seed++,
                    kAllPrefillPaths);
        check_batch(one_sequence(n + ", n_ctx 300, 300 rows", 0, 300, sh.n_head, 300, sh.head_dim), seed++,
                    kAllPrefillPaths);
        Batch two;
        two.name = n + ", two sequences (70 from 0, 30 from 37)";
        two.n_head = sh.n_head;
        two.head_dim = sh.head_dim;
        add_rows(two, 0, 0, 70);
        add_rows(two, 1, 37, 30);
        check_batch(two, seed++, kAllPrefillPaths);
        for (const int p : {0, 1, 64, 129, 1000, 2047}) {
            check_batch(one_sequence(n + ", decode at " + std::to_string(p), p, 1, sh.n_head, 2048, sh.head_dim), seed++,
                        kAllDecodePaths);
        }
        Batch mixed;
        mixed.name = n + ", decode, 4 sequences at 2047, 0, 64, 1000";
        mixed.n_head = sh.n_head;
        mixed.head_dim = sh.head_dim;
        const int32_t seqs[4] = {3, 0, 2, 1}, positions[4] = {2047, 0, 64, 1000};
        for (int i = 0; i < 4; ++i) add_rows(mixed, seqs[i], positions[i], 1);
        check_batch(mixed, seed++, kAllDecodePaths);
    }
}

// The engine captures its batch-1 decode step once and replays it at every later position: the
// split decode (with append) captured at position 3 must, replayed after the tile moved to other
// positions, give the bits of a direct call there, and leave the cache and counters as a direct
// call does.
TEST(GpuAttention, DecodeSplitGraphReplaysAtAnyPosition) {
    const int n_head = 32, n_ctx = 2048, kHeadDim = 64, C = n_head * kHeadDim;
    std::mt19937 rng(900);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const size_t cache_elems = (size_t)n_head * n_ctx * kHeadDim;
    std::vector<uint16_t> k_cache(cache_elems), v_cache(cache_elems), qkv((size_t)3 * C);
    for (size_t i = 0; i < cache_elems; ++i) {
        k_cache[i] = seaopt::f32_to_f16(normal(rng));
        v_cache[i] = seaopt::f32_to_f16(normal(rng));
    }
    for (int c = 0; c < C; ++c) qkv[(size_t)c] = seaopt::f32_to_f16(normal(rng));
    DeviceBuffer d_k(cache_elems * 2), d_v(cache_elems * 2), d_qkv(qkv.size() * 2), d_tiles(sizeof(AttentionTile));
    DeviceBuffer d_out_graph((size_t)C * 2), d_out_direct((size_t)C * 2);
    upload(d_k, k_cache);
    upload(d_v, v_cache);
    DecodeScratch scratch(1, n_head, kHeadDim);
    const seaopt::cuda::AttentionOptions opt = scratch.options(/*append=*/true);

    cudaStream_t stream = nullptr;
    cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    // The row at `pos`: its K and V are the cache's (append writes the same bits back).
    auto set_position = [&](int pos) {
        for (int h = 0; h < n_head; ++h) {
            for (int d = 0; d < kHeadDim; ++d) {
                const size_t at = ((size_t)h * n_ctx + pos) * kHeadDim + d;
                qkv[(size_t)C + h * kHeadDim + d] = k_cache[at];
                qkv[(size_t)2 * C + h * kHeadDim + d] = v_cache[at];
            }
        }
        upload(d_qkv, qkv);
        upload(d_tiles, std::vector<AttentionTile>{AttentionTile{0, 1, 0, pos, pos}});
    };
    auto enqueue = [&](half_t *out, int max_pos) {
        seaopt::cuda::attention_forward(out, d_qkv.as<half_t>(), d_k.as<half_t>(), d_v.as<half_t>(),
                                        d_tiles.as<AttentionTile>(), 1, true, max_pos, n_head, kHeadDim, n_ctx, opt,
                                        stream);
    };

    set_position(3);
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    enqueue(d_out_graph.as<half_t>(), 3);
    cuda_ok(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(graph);

    for (const int pos : {3, 2047, 128, 1000, 0, 129}) {
        set_position(pos);
        cuda_ok(cudaMemset(d_out_graph.as<void>(), 0xFF, (size_t)C * 2), "cudaMemset");
        cuda_ok(cudaMemset(d_out_direct.as<void>(), 0xFF, (size_t)C * 2), "cudaMemset");
        cuda_ok(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
        enqueue(d_out_direct.as<half_t>(), pos);
        cuda_ok(cudaStreamSynchronize(stream), "replay");
        std::vector<uint16_t> graph_out(C), direct_out(C);
        cuda_ok(cudaMemcpy(graph_out.data(), d_out_graph.as<void>(), (size_t)C * 2, cudaMemcpyDeviceToHost), "D2H");
        cuda_ok(cudaMemcpy(direct_out.data(), d_out_direct.as<void>(), (size_t)C * 2, cudaMemcpyDeviceToHost), "D2H");
        size_t differ = 0, non_finite = 0;
        for (int c = 0; c < C; ++c) {
            differ += graph_out[c] != direct_out[c];
            non_finite += !std::isfinite(seaopt::f16_to_f32(graph_out[c]));
        }
        std::printf("  split decode graph captured at 3, replayed at %4d: %zu of %d outputs differ from a direct "
                    "call\n",
                    pos, differ, C);
        EXPECT_EQ(differ, 0u) << "position " << pos;
        EXPECT_EQ(non_finite, 0u) << "position " << pos;
        EXPECT_EQ(scratch.nonzero_counters(), 0u) << "position " << pos;
    }
    cudaGraphExecDestroy(exec);
    cudaStreamDestroy(stream);
}

TEST(GpuAttention, LauncherRejectsBadArguments) {
    DeviceBuffer buf(1 << 16);
    half_t *p = buf.as<half_t>();
    const AttentionTile *t = buf.as<AttentionTile>();
    try {
        seaopt::cuda::attention_forward(p, p, p, p, t, 1, false, 0, 12, 96, 2048, nullptr);
        ADD_FAILURE() << "head_dim 96 was accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("96"), std::string::npos) << e.what();
    }
    try {
        seaopt::cuda::attention_forward(p, p, p, p, t, 1, false, 2048, 12, 64, 2048, nullptr);
        ADD_FAILURE() << "max_pos = n_ctx was accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_INVALID_ARGUMENT);
    }
}

// ---- make_attention_tiles ----

std::vector<AttentionTile> tiles_of(const std::vector<int32_t> &seq, const std::vector<int32_t> &pos) {
    std::vector<AttentionTile> t(seq.size() + 1, AttentionTile{-1, -1, -1, -1, -1});
    int n = -1;
    seaopt::cuda::make_attention_tiles(t.data(), &n, seq.data(), pos.data(), (int)seq.size());
    EXPECT_GE(n, 0);
    t.resize((size_t)std::max(n, 0));
    return t;
}

std::string str(const std::vector<AttentionTile> &tiles) {
    std::string s;
    for (const AttentionTile &t : tiles) {
        s += "{" + std::to_string(t.row0) + "," + std::to_string(t.n_rows) + "," + std::to_string(t.seq) + "," +
             std::to_string(t.pos0) + "," + std::to_string(t.run_pos0) + "}";
    }
    return s;
}

std::vector<int32_t> iota(int n, int32_t from) {
    std::vector<int32_t> v((size_t)n);
    for (int i = 0; i < n; ++i) v[(size_t)i] = from + i;
    return v;
}

TEST(GpuAttentionTiles, HandCheckedLists) {  // tile = {row0, n_rows, seq, pos0, run_pos0}
    using seaopt::cuda::attention_tiles_one_run_per_sequence;
    auto one_run = [](const std::vector<AttentionTile> &t) {
        return attention_tiles_one_run_per_sequence(t.data(), (int)t.size());
    };
    EXPECT_EQ(str(tiles_of({}, {})), "");
    EXPECT_EQ(str(tiles_of({0}, {0})), "{0,1,0,0,0}");
    EXPECT_EQ(str(tiles_of(std::vector<int32_t>(64, 0), iota(64, 0))), "{0,64,0,0,0}");
    EXPECT_EQ(str(tiles_of(std::vector<int32_t>(65, 0), iota(65, 0))), "{0,64,0,0,0}{64,1,0,64,0}");
    // A long run: tiles of 64 that share the run's first position.
    const auto long_run = tiles_of(std::vector<int32_t>(300, 7), iota(300, 100));
    EXPECT_EQ(str(long_run), "{0,64,7,100,100}{64,64,7,164,100}{128,64,7,228,100}{192,64,7,292,100}{256,44,7,356,100}");
    EXPECT_TRUE(one_run(long_run));
    // A new sequence starts a new tile (and run), even at the next position.
    const auto three = tiles_of({0, 0, 0, 1, 1, 2}, {5, 6, 7, 8, 9, 9});
    EXPECT_EQ(str(three), "{0,3,0,5,5}{3,2,1,8,8}{5,1,2,9,9}");
    EXPECT_TRUE(one_run(three));
    // A sequence's rows in two runs: each run is a tile, positions continue across the runs; the fused
    // KV append is off for such a batch (the second run reads keys the first one appends).
    const auto split = tiles_of({0, 0, 1, 0, 0}, {3, 4, 0, 5, 6});
    EXPECT_EQ(str(split), "{0,2,0,3,3}{2,1,1,0,0}{3,2,0,5,5}");
    EXPECT_FALSE(one_run(split));
    // Decode: one row per sequence (one run each); two rows of one sequence that are not adjacent: two runs.
    const auto decode = tiles_of({3, 0, 2, 1}, {2047, 0, 64, 1000});
    EXPECT_EQ(str(decode), "{0,1,3,2047,2047}{1,1,0,0,0}{2,1,2,64,64}{3,1,1,1000,1000}");
    EXPECT_TRUE(one_run(decode));
    EXPECT_FALSE(one_run(tiles_of({0, 1, 0}, {4, 0, 5})));
}

void expect_invalid(const std::vector<int32_t> &seq, const std::vector<int32_t> &pos, const char *why) {
    std::vector<AttentionTile> t(seq.size());
    int n = -1;
    try {
        seaopt::cuda::make_attention_tiles(t.data(), &n, seq.data(), pos.data(), (int)seq.size());
        ADD_FAILURE() << why << ": accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_INVALID_ARGUMENT) << why;
        std::printf("  %s: %s\n", why, e.what());
    }
}

TEST(GpuAttentionTiles, RejectsNonConsecutivePositions) {
    expect_invalid({0, 0}, {0, 2}, "a gap");
    expect_invalid({0, 0}, {1, 1}, "a repeated position");
    expect_invalid({0, 0}, {5, 4}, "a position going back");
    expect_invalid({0, 1, 0}, {0, 0, 0}, "a repeated position after another sequence");
    expect_invalid({0, 1, 0}, {0, 0, 2}, "a gap after another sequence");
    expect_invalid({0}, {-1}, "a negative position");
    expect_invalid({-1}, {0}, "a negative sequence id");
}

}  // namespace
