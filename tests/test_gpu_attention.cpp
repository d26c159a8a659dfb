// The CUDA dense causal attention (attention/dense_cuda.cu) against the CPU reference
// (attention/dense_cpu.h), and the host tiling (make_attention_tiles).
//
// Inputs are random N(0,1) values rounded to fp16 (fixed seeds). `ref` is the fp32 CPU reference
// on the same fp16 inputs; `naive` is the same attention done the straightforward fp16 way (scores,
// probabilities and output rounded to fp16). As for FlashAttention, the GPU must be at least as
// close to ref as naive is, within a factor 2: max|gpu - ref| <= 2 max|naive - ref| + 1e-4.
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
constexpr int kHeadDim = 64;
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
                                    size_t n_kv, int n_head, float *scratch) {
    for (int h = 0; h < n_head; ++h) {
        const float *qh = q + (size_t)h * kHeadDim;
        float mx = -INFINITY;
        for (size_t j = 0; j < n_kv; ++j) {
            const float *kj = k + j * kv_stride + (size_t)h * kHeadDim;
            float s = 0.0f;
            for (int d = 0; d < kHeadDim; ++d) s += round16(qh[d]) * kj[d];
            scratch[j] = round16(s);
            mx = std::max(mx, scratch[j]);
        }
        float sum = 0.0f;
        for (size_t j = 0; j < n_kv; ++j) {
            scratch[j] = std::exp(scratch[j] - mx);
            sum += scratch[j];
        }
        for (size_t j = 0; j < n_kv; ++j) scratch[j] = round16(scratch[j] / sum);
        for (int d = 0; d < kHeadDim; ++d) {
            float o = 0.0f;
            for (size_t j = 0; j < n_kv; ++j) o += scratch[j] * v[j * kv_stride + (size_t)h * kHeadDim + d];
            out[(size_t)h * kHeadDim + d] = round16(o);
        }
    }
}

enum class Path { Natural, Prefill, Decode };  // Natural: all_single_row from the tiles

// Runs the batch on the GPU (once per path asked) and checks every output against the references.
void check_batch(const Batch &b, uint32_t seed, std::vector<Path> paths = {Path::Natural}) {
    SCOPED_TRACE(b.name);
    const int rows = (int)b.seq.size();
    const int n_head = b.n_head, n_ctx = b.n_ctx, C = n_head * kHeadDim;
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
                                       n_head, scratch.data());
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

    for (const Path path : paths) {
        const bool all_single_row = path == Path::Natural ? single : path == Path::Decode;
        if (all_single_row && !single) continue;  // the decode kernel only takes one-row tiles
        cuda_ok(cudaMemset(d_out.as<void>(), 0xFF, (out_elems + guard_elems) * 2), "cudaMemset");  // NaN
        seaopt::cuda::attention_forward(d_out.as<half_t>(), d_qkv.as<half_t>(), d_k.as<half_t>(), d_v.as<half_t>(),
                                        d_tiles.as<AttentionTile>(), n_tiles, all_single_row, max_pos, n_head, kHeadDim,
                                        n_ctx, /*stream*/ nullptr);
        cuda_ok(cudaDeviceSynchronize(), "attention_forward");
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

        const char *kernel = all_single_row ? "decode" : "prefill";
        std::printf("  %-44s rows %4d tiles %3d heads %2d %-7s kernel: max|gpu-ref| = %.3e, max|naive-ref| = %.3e\n",
                    b.name.c_str(), rows, n_tiles, n_head, kernel, gpu_err, naive_err);
        EXPECT_EQ(non_finite, 0u) << kernel << " kernel: outputs not written or not finite";
        EXPECT_EQ(guard_touched, 0u) << kernel << " kernel: wrote past the output";
        EXPECT_LE(gpu_err, 2.0 * naive_err + 1e-4)
            << kernel << " kernel, worst at row " << worst / C << " head " << (worst % C) / kHeadDim << " dim "
            << worst % kHeadDim << ": gpu " << seaopt::f16_to_f32(out16[worst]) << ", ref " << ref[worst];
    }
}

Batch one_sequence(const std::string &name, int32_t p0, int n, int n_head = 32, int n_ctx = 2048) {
    Batch b;
    b.name = name;
    b.n_head = n_head;
    b.n_ctx = n_ctx;
    add_rows(b, 0, p0, n);
    return b;
}

// ---- prefill ----

TEST(GpuAttention, PrefillOneSequenceFromPositionZero) {
    uint32_t seed = 100;
    for (const int n : {1, 17, 64, 65, 300}) {
        // One row is a one-row tile: run it through both kernels.
        check_batch(one_sequence("prefill from 0, " + std::to_string(n) + " rows", 0, n), seed++,
                    {Path::Prefill, Path::Decode});
    }
}

TEST(GpuAttention, PrefillContinuesACachedSequence) {
    // 100 positions already cached; the chunk's tiles start at 100, 164, 228 (not key-block aligned).
    check_batch(one_sequence("chunked prefill, 100 cached + 150", 100, 150), 200);
    check_batch(one_sequence("chunked prefill, 100 cached + 1", 100, 1), 201, {Path::Prefill, Path::Decode});
}

TEST(GpuAttention, PrefillSeveralSequences) {
    Batch two;
    two.name = "two sequences (70 from 0, 30 from 37)";
    add_rows(two, 0, 0, 70);
    add_rows(two, 1, 37, 30);
    check_batch(two, 300);

    // Three sequences, sequence 1's rows in two runs, one-row tiles among multi-row ones.
    Batch three;
    three.name = "three sequences, interleaved runs";
    add_rows(three, 1, 0, 10);
    add_rows(three, 0, 200, 40);
    add_rows(three, 2, 77, 1);
    add_rows(three, 1, 10, 30);
    add_rows(three, 0, 240, 1);
    check_batch(three, 301);
}

TEST(GpuAttention, PrefillOtherShapes) {
    check_batch(one_sequence("OPT-13B heads (40), 65 rows from 3", 3, 65, 40), 400);
    // n_ctx not a multiple of the key block: the last block ends past the cache's end.
    check_batch(one_sequence("n_ctx 300, 300 rows from 0", 0, 300, 8, 300), 401);
}

// ---- decode ----

TEST(GpuAttention, DecodeOneSequence) {
    uint32_t seed = 500;
    for (const int p : {0, 1, 63, 64, 1000, 2047}) {
        check_batch(one_sequence("decode, 1 sequence at " + std::to_string(p), p, 1), seed++,
                    {Path::Decode, Path::Prefill});
    }
}

TEST(GpuAttention, DecodeFourSequences) {
    uint32_t seed = 600;
    for (const int p : {0, 1, 63, 64, 1000, 2047}) {
        Batch b;
        b.name = "decode, 4 sequences at " + std::to_string(p);
        for (int s = 0; s < 4; ++s) add_rows(b, s, p, 1);
        check_batch(b, seed++, {Path::Natural, Path::Prefill});
    }
    Batch mixed;
    mixed.name = "decode, 4 sequences at 2047, 0, 64, 1000";
    const int32_t seqs[4] = {3, 0, 2, 1}, positions[4] = {2047, 0, 64, 1000};
    for (int i = 0; i < 4; ++i) add_rows(mixed, seqs[i], positions[i], 1);
    check_batch(mixed, 610, {Path::Natural, Path::Prefill});
    mixed.name = "decode, 4 sequences mixed, OPT-13B heads";
    mixed.n_head = 40;
    check_batch(mixed, 611);
    Batch small_ctx = one_sequence("decode, n_ctx 300 at 299", 299, 1, 8, 300);
    check_batch(small_ctx, 612, {Path::Decode, Path::Prefill});
}

TEST(GpuAttention, LauncherRejectsBadArguments) {
    DeviceBuffer buf(1 << 16);
    half_t *p = buf.as<half_t>();
    const AttentionTile *t = buf.as<AttentionTile>();
    try {
        seaopt::cuda::attention_forward(p, p, p, p, t, 1, false, 0, 12, 128, 2048, nullptr);
        ADD_FAILURE() << "head_dim 128 was accepted";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("128"), std::string::npos) << e.what();
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
    std::vector<AttentionTile> t(seq.size() + 1, AttentionTile{-1, -1, -1, -1});
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
             std::to_string(t.pos0) + "}";
    }
    return s;
}

std::vector<int32_t> iota(int n, int32_t from) {
    std::vector<int32_t> v((size_t)n);
    for (int i = 0; i < n; ++i) v[(size_t)i] = from + i;
    return v;
}

TEST(GpuAttentionTiles, HandCheckedLists) {  // tile = {row0, n_rows, seq, pos0}
    EXPECT_EQ(str(tiles_of({}, {})), "");
    EXPECT_EQ(str(tiles_of({0}, {0})), "{0,1,0,0}");
    EXPECT_EQ(str(tiles_of(std::vector<int32_t>(64, 0), iota(64, 0))), "{0,64,0,0}");
    EXPECT_EQ(str(tiles_of(std::vector<int32_t>(65, 0), iota(65, 0))), "{0,64,0,0}{64,1,0,64}");
    EXPECT_EQ(str(tiles_of(std::vector<int32_t>(300, 7), iota(300, 100))),
              "{0,64,7,100}{64,64,7,164}{128,64,7,228}{192,64,7,292}{256,44,7,356}");
    // A new sequence starts a new tile, even at the next position.
    EXPECT_EQ(str(tiles_of({0, 0, 0, 1, 1, 2}, {5, 6, 7, 8, 9, 9})), "{0,3,0,5}{3,2,1,8}{5,1,2,9}");
    // A sequence's rows in two runs: each run is a tile, positions continue across the runs.
    EXPECT_EQ(str(tiles_of({0, 0, 1, 0, 0}, {3, 4, 0, 5, 6})), "{0,2,0,3}{2,1,1,0}{3,2,0,5}");
    // Decode: one row per sequence.
    EXPECT_EQ(str(tiles_of({3, 0, 2, 1}, {2047, 0, 64, 1000})), "{0,1,3,2047}{1,1,0,0}{2,1,2,64}{3,1,1,1000}");
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
