// The CUDA part of the attention-layer benchmark (opt_attention_bench.h): buffers of one layer's prefill of one
// sequence, the engine's kernels on them, CUDA-event timing. Compiled only in builds with CUDA.
//
// What runs, as model/opt_cuda.cpp's layer loop runs it for a sequence that starts at position 0:
//   kv_cache_append   the T rows' K and V from the fused qkv buffer into the KV cache [head][pos][64] (n_ctx = T);
//                     both paths run it (SEA keeps the cache for decoding); timed on its own (kv_append_ms);
//   dense             attention_forward over the cache with the attention tiles of positions 0..T-1 (the flash
//                     prefill: q from qkv, K and V from the cache);
//   SEA               sea_attention_prefill_cuda on the fused qkv (q, k, v from it), q_scale 1/8, the layer's
//                     parameters, its scratch, and the decode state it leaves (state_out), as the engine passes it.
// Timing: every run is enqueued back to back on one stream with an event between runs (a chain of events, in
// batches of kEventBatch runs: the host waits only between batches), so a run's time is the GPU time from its first
// kernel's start to its last kernel's end with the launches queued ahead, as in a forward. (Where the host cannot
// keep ahead -- tiny T, whose kernels take less than their launches -- the gaps between kernels count too.)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attention/sea_cuda.h"
#include "engine/cuda/ops.h"
#include "engine/error.h"
#include "engine/fp16.h"
#include "model/opt_attention_bench.h"
#include "model/opt_cuda.h"

namespace seaopt {

using cuda::half_t;

namespace {

void check(cudaError_t err, const std::string &what) {
    if (err != cudaSuccess) {
        cudaGetLastError();
        throw Error(SEAOPT_ERR_DEVICE, "attention-layer benchmark: " + what + ": " + cudaGetErrorString(err));
    }
}

std::string mib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
    return buf;
}

// cudaMalloc's granularity: what an allocation really takes.
uint64_t footprint(uint64_t bytes) {
    constexpr uint64_t kPage = 2ull << 20;
    return (std::max<uint64_t>(bytes, 1) + kPage - 1) / kPage * kPage;
}

// The benchmark's device memory, stream and events; everything is released on destruction.
struct Resources {
    std::vector<void *> buffers;
    cudaStream_t stream = nullptr;
    std::vector<cudaEvent_t> events;

    ~Resources() {
        if (stream) cudaStreamSynchronize(stream);
        for (cudaEvent_t e : events) cudaEventDestroy(e);
        if (stream) cudaStreamDestroy(stream);
        for (void *p : buffers) cudaFree(p);
        cudaGetLastError();  // leave no sticky error from the teardown
    }

    template <class T> T *alloc(uint64_t bytes, const std::string &what) {
        void *p = nullptr;
        const cudaError_t err = cudaMalloc(&p, std::max<uint64_t>(bytes, 1));
        if (err == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            throw Error(SEAOPT_ERR_OUT_OF_MEMORY, "attention-layer benchmark: cannot allocate " + mib(bytes) +
                                                      " of GPU memory for " + what + " (" + mib(free_b) + " free)");
        }
        check(err, "cudaMalloc for " + what);
        buffers.push_back(p);
        return static_cast<T *>(p);
    }
};

constexpr int kEventBatch = 1024;

// n_warmup untimed runs of `run`, then n_reps timed ones; returns each timed run's milliseconds.
std::vector<double> time_runs(Resources &res, int n_warmup, int n_reps, const std::function<void()> &run) {
    for (int i = 0; i < n_warmup; ++i) run();
    check(cudaStreamSynchronize(res.stream), "the warm-up runs");
    if (res.events.empty()) {
        res.events.resize((size_t)std::min(n_reps, kEventBatch) + 1, nullptr);
        for (cudaEvent_t &e : res.events) check(cudaEventCreate(&e), "cudaEventCreate");
    }
    std::vector<double> ms;
    ms.reserve((size_t)n_reps);
    for (int done = 0; done < n_reps;) {
        const int n = std::min(n_reps - done, (int)res.events.size() - 1);
        check(cudaEventRecord(res.events[0], res.stream), "cudaEventRecord");
        for (int i = 0; i < n; ++i) {
            run();
            check(cudaEventRecord(res.events[(size_t)i + 1], res.stream), "cudaEventRecord");
        }
        check(cudaEventSynchronize(res.events[(size_t)n]), "the timed runs");
        for (int i = 0; i < n; ++i) {
            float t = 0.0f;
            check(cudaEventElapsedTime(&t, res.events[(size_t)i], res.events[(size_t)i + 1]), "cudaEventElapsedTime");
            ms.push_back((double)t);
        }
        done += n;
    }
    return ms;
}

}  // namespace

void bench_attention_layer_cuda(const OptCudaWeights &weights, const AttentionBenchJob &job,
                                seaopt_attention_layer_bench_result &out) {
    check(cudaSetDevice(cuda_weights_device(weights)), "cudaSetDevice");
    const int T = job.T, H = job.n_head, hd = 64;
    const int64_t C = (int64_t)H * hd;

    // Attention tiles of one sequence, positions 0..T-1 (the dense path's batch description).
    std::vector<int32_t> h_seq((size_t)T, 0), h_pos((size_t)T);
    for (int i = 0; i < T; ++i) h_pos[(size_t)i] = i;
    std::vector<cuda::AttentionTile> h_tiles((size_t)T);
    int n_tiles = 0;
    cuda::make_attention_tiles(h_tiles.data(), &n_tiles, h_seq.data(), h_pos.data(), T);
    const bool all_single = T == 1;  // as the engine dispatches: a one-token prompt takes the decode kernel

    // Refuse before allocating anything if it does not fit.
    const uint64_t tiles_bytes = (uint64_t)n_tiles * sizeof(cuda::AttentionTile);
    const uint64_t meta_bytes = 2ull * (uint64_t)T * sizeof(int32_t);
    const uint64_t sea_bytes = job.sea ? out.scratch_bytes + out.state_bytes + out.sea_params_bytes : 0;
    const uint64_t need = footprint(out.qkv_bytes) + footprint(out.kv_cache_bytes) + footprint(out.out_bytes) +
                          footprint(tiles_bytes) + footprint(meta_bytes) +
                          (job.sea ? footprint(out.scratch_bytes) + footprint(out.state_bytes) +
                                         footprint(out.sea_params_bytes)
                                   : 0);
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    if (need > free_b) {
        throw Error(SEAOPT_ERR_OUT_OF_MEMORY,
                    "attention-layer benchmark: T = " + std::to_string(T) + " needs " + mib(need) +
                        " of GPU memory (qkv " + mib(out.qkv_bytes) + ", KV cache " + mib(out.kv_cache_bytes) +
                        ", output " + mib(out.out_bytes) +
                        (job.sea ? ", SEA scratch, state and parameters " + mib(sea_bytes) : std::string()) +
                        ") but only " + mib(free_b) + " is free: use a smaller T");
    }

    // The random q, k, v (opt_attention_bench.h), one [T, 3C] fp16 buffer.
    const int64_t n_qkv = (int64_t)T * 3 * C;
    std::vector<uint16_t> h_qkv((size_t)n_qkv);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n_qkv; ++i) h_qkv[(size_t)i] = f32_to_f16(attention_bench_normal(kAttentionBenchSeed, (uint64_t)i));

    Resources res;
    check(cudaStreamCreateWithFlags(&res.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cudaStream_t st = res.stream;
    half_t *qkv = res.alloc<half_t>(out.qkv_bytes, "q, k, v");
    half_t *kv = res.alloc<half_t>(out.kv_cache_bytes, "the KV cache");
    half_t *k_cache = kv, *v_cache = kv + (size_t)T * C;
    half_t *o = res.alloc<half_t>(out.out_bytes, "the output");
    auto *tiles = res.alloc<cuda::AttentionTile>(tiles_bytes, "the attention tiles");
    int32_t *seq = res.alloc<int32_t>(meta_bytes, "positions and sequence ids");
    int32_t *pos = seq + T;
    // Every upload and fill on the benchmark's stream (a non-blocking one does not wait for the legacy default
    // stream), then one wait, after which the host buffers may go.
    check(cudaMemcpyAsync(qkv, h_qkv.data(), out.qkv_bytes, cudaMemcpyHostToDevice, st), "uploading q, k, v");
    check(cudaMemcpyAsync(tiles, h_tiles.data(), tiles_bytes, cudaMemcpyHostToDevice, st), "uploading the tiles");
    check(cudaMemcpyAsync(seq, h_seq.data(), (size_t)T * 4, cudaMemcpyHostToDevice, st), "uploading sequence ids");
    check(cudaMemcpyAsync(pos, h_pos.data(), (size_t)T * 4, cudaMemcpyHostToDevice, st), "uploading positions");
    check(cudaMemsetAsync(kv, 0, out.kv_cache_bytes, st), "cudaMemset KV cache");
    check(cudaMemsetAsync(o, 0xFF, out.out_bytes, st), "cudaMemset output");  // fp16 NaN: every value must be written

    cuda::SeaDeviceParams params;
    void *scratch = nullptr, *state = nullptr;
    if (job.sea) {
        char *base = res.alloc<char>(job.params.image.size(), "the SEA estimator parameters");
        check(cudaMemcpyAsync(base, job.params.image.data(), job.params.image.size(), cudaMemcpyHostToDevice, st),
              "uploading the SEA estimator parameters");
        params = sea_device_params(base, job.params.offsets.at(0));
        scratch = res.alloc<char>(out.scratch_bytes, "the SEA prefill scratch");
        state = res.alloc<char>(out.state_bytes, "the SEA decode state");
        check(cudaMemsetAsync(state, 0, out.state_bytes, st), "cudaMemset SEA state");
    }
    check(cudaStreamSynchronize(st), "the uploads");
    h_qkv = std::vector<uint16_t>();

    // The KV append both paths run first (timed on its own), leaving the cache filled for the dense attention.
    const std::vector<double> append_ms = time_runs(res, std::max(job.n_warmup, 1), job.n_reps, [&] {
        cuda::kv_cache_append(k_cache, v_cache, qkv, seq, pos, T, H, hd, T, st);
    });
    double append_sum = 0;
    for (double t : append_ms) append_sum += t;

    std::function<void()> attention;
    if (job.sea) {
        const cuda::SeaQkv x = cuda::sea_qkv_fused(qkv, H);
        const float q_scale = 1.0f / std::sqrt((float)hd);
        attention = [&, x, q_scale] {
            cuda::sea_attention_prefill_cuda(job.cfg, params, x, q_scale, T, o, C, scratch, out.scratch_bytes, st,
                                             nullptr, state);
        };
    } else {
        attention = [&] {
            cuda::attention_forward(o, qkv, k_cache, v_cache, tiles, n_tiles, all_single, T - 1, H, hd, T, st);
        };
    }
    const std::vector<double> ms = time_runs(res, job.n_warmup, job.n_reps, attention);

    // Sanity: the output of the last run, all written and finite.
    std::vector<uint16_t> h_out((size_t)T * C);
    check(cudaMemcpyAsync(h_out.data(), o, out.out_bytes, cudaMemcpyDeviceToHost, st), "copying the output");
    check(cudaStreamSynchronize(st), "copying the output");
    double abs_sum = 0;
    int64_t n_bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : abs_sum, n_bad)
    for (int64_t i = 0; i < (int64_t)h_out.size(); ++i) {
        const float v = f16_to_f32(h_out[(size_t)i]);
        if (std::isfinite(v)) {
            abs_sum += std::fabs((double)v);
        } else {
            ++n_bad;
        }
    }

    double sum = 0, lo = ms[0], hi = ms[0];
    for (double t : ms) sum += t, lo = std::min(lo, t), hi = std::max(hi, t);
    const double mean = sum / (double)ms.size();
    double ss = 0;
    for (double t : ms) ss += (t - mean) * (t - mean);
    out.mean_ms = mean;
    out.std_ms = ms.size() > 1 ? std::sqrt(ss / (double)(ms.size() - 1)) : 0.0;
    out.min_ms = lo;
    out.max_ms = hi;
    out.kv_append_ms = append_sum / (double)append_ms.size();
    out.output_mean_abs = n_bad ? NAN : abs_sum / (double)h_out.size();
}

}  // namespace seaopt
