// Micro-benchmark (not a test): one SEA incremental-decode call (sea_attention_decode_cuda, R = 1) at the OPT-1.3B
// attention shape (H 32, K 64, k 64, m 33) for a query at position P, timed as 200 plain launches and as a CUDA
// graph of 32 calls (programmatic dependent launch between the kernels, as in the engine's captured decode step).
// Random estimator weights, q, k, v and KV cache; the state starts at zero and accumulates over the calls (timing
// only: no result is checked). It isolates the SEA layer's share of a decode step, which seaopt-bench's tg128 shows
// only mixed with the GEMVs.
//
//   usage: build/bin/bench_gpu_sea_decode [P ...]   (default: 200 1900)
#include <cuda_runtime.h>

#include <cstdio>
#include <exception>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "attention/sea_cuda.h"
#include "engine/fp16.h"
#include "gpu_sea_test_util.h"
#include "sea_test_util.h"

namespace {

using seaopt::cuda::half_t;
using seaopt_test::cuda_ok;
using seaopt_test::DeviceBuffer;

constexpr size_t kH = 32, kK = 64, kTopK = 64, kD = 64, kC = kH * kD, kCtx = 2048;

void bench_position(int P) {
    const seaopt::cpu::SeaConfig cfg = seaopt_test::sea_make_config(kH, kK, kTopK, kCtx);
    const seaopt::cpu::SeaParams params = seaopt_test::sea_random_params(cfg, 7);
    const seaopt_test::DeviceParams dp = seaopt_test::upload_params(cfg, params);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<uint16_t> qkv(3 * kC), kc(kH * kCtx * kD), vc(kH * kCtx * kD);
    for (auto *v : {&qkv, &kc, &vc}) {
        for (uint16_t &x : *v) x = seaopt::f32_to_f16(normal(rng));
    }
    const auto d_qkv = seaopt_test::upload(qkv), d_k = seaopt_test::upload(kc), d_v = seaopt_test::upload(vc);
    const size_t state_bytes = seaopt::cuda::sea_decode_state_bytes(cfg);
    DeviceBuffer states(state_bytes), scratch(seaopt::cuda::sea_decode_scratch_bytes(cfg, 1)), out(kC * 2), meta(12);
    cuda_ok(cudaMemset(states.as<void>(), 0, state_bytes), "cudaMemset(states)");
    const int32_t rows[3] = {0, P, 0};  // batch row 0, position P, sequence 0
    cuda_ok(cudaMemcpy(meta.as<void>(), rows, sizeof rows, cudaMemcpyHostToDevice), "rows");
    const seaopt::cuda::SeaDecodeRows dr{meta.as<int32_t>(), meta.as<int32_t>() + 1, meta.as<int32_t>() + 2, 1};
    const seaopt::cuda::SeaKvCache cache{d_k->as<half_t>(), d_v->as<half_t>(), (int64_t)(kH * kCtx * kD),
                                         (int64_t)(kCtx * kD), false};
    cudaStream_t stream = nullptr;
    cuda_ok(cudaStreamCreate(&stream), "cudaStreamCreate");
    auto call = [&]() {
        seaopt::cuda::sea_attention_decode_cuda(cfg, dp.view, seaopt::cuda::sea_qkv_fused(d_qkv->as<half_t>(), (int)kH),
                                                0.125f, dr, cache, states.as<void>(), state_bytes, out.as<half_t>(),
                                                (int64_t)kC, scratch.as<void>(), scratch.bytes(), stream);
    };
    constexpr int kWarmup = 20, kPlain = 200, kPerGraph = 32, kGraphs = 10;
    for (int i = 0; i < kWarmup; ++i) call();
    const float plain_ms = seaopt_test::stream_elapsed_ms(stream, kPlain, call);

    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
    for (int i = 0; i < kPerGraph; ++i) call();
    cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
    cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    cuda_ok(cudaGraphLaunch(exec, stream), "graph warm-up");
    const float graph_ms =
        seaopt_test::stream_elapsed_ms(stream, kGraphs, [&] { cuda_ok(cudaGraphLaunch(exec, stream), "graph launch"); });
    std::printf("SEA decode call, H %zu K %zu k %zu, position %d: %.2f us per call (plain launches), %.2f us (CUDA graph)\n",
                kH, kK, kTopK, P, 1000.0f * plain_ms / kPlain, 1000.0f * graph_ms / (kPerGraph * kGraphs));

    cuda_ok(cudaGraphExecDestroy(exec), "cudaGraphExecDestroy");
    cuda_ok(cudaGraphDestroy(graph), "cudaGraphDestroy");
    cuda_ok(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

}  // namespace

int main(int argc, char **argv) {
    std::vector<int> positions;
    for (int i = 1; i < argc; ++i) {
        char *end = nullptr;
        const long p = std::strtol(argv[i], &end, 10);
        if (end == argv[i] || *end != '\0' || p < 0 || p >= (long)kCtx) {
            std::fprintf(stderr, "bench_gpu_sea_decode: position '%s' must be an integer in [0, %zu)\n", argv[i], kCtx);
            return 1;
        }
        positions.push_back((int)p);
    }
    if (positions.empty()) positions = {200, 1900};
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::fprintf(stderr, "bench_gpu_sea_decode: no CUDA device\n");
        return 1;
    }
    try {
        for (int p : positions) bench_position(p);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "bench_gpu_sea_decode: %s\n", e.what());
        return 1;
    }
    return 0;
}
