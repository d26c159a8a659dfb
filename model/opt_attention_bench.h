// The attention-layer benchmark behind seaopt_bench_attention_layer (include/seaopt.h): one attention layer's
// prefill of one sequence of T tokens on the model's GPU, dense (the flash prefill) or SEA (estimator + top-k +
// sparse attention), on random q, k, v of the model's shape, timed with CUDA events (issue 4's layer targets).
//
// Split in two so that every build validates the same way: bench_attention_layer (opt_attention_bench.cpp, host
// code in every build) checks the parameters, prepares SEA's config and the layer's parameters and fills the memory
// fields; bench_attention_layer_cuda (opt_attention_bench_cuda.cpp; in builds without CUDA the stub in
// opt_attention_bench_none.cpp) allocates, runs and times.
#pragma once

#include <cstdint>

#include "attention/sea_cpu.h"
#include "model/opt_model.h"
#include "model/opt_sea_upload.h"
#include "seaopt.h"

namespace seaopt {

// Seed of the random q, k, v (N(0, 1), rounded to fp16): value i of the [T, 3C] buffer comes from a counter-based
// generator at (seed, i), so the data depends only on T and C, not on the attention kind or the thread count.
constexpr uint64_t kAttentionBenchSeed = 0x5EA0A77E9B3Eull;

// What the CUDA part runs, validated.
struct AttentionBenchJob {
    bool sea = false;
    int32_t T = 0, n_reps = 0, n_warmup = 0, n_head = 0;
    // SEA: the config (n_pos_ctx stretched to cover T) and the layer's parameters packed for upload.
    cpu::SeaConfig cfg;
    SeaParamsImage params;
};

// Validates `p` against the model (throws seaopt::Error with the codes seaopt.h lists), then runs the benchmark
// and fills *out (every field; on a throw *out is left to the caller to zero).
void bench_attention_layer(const OptModel &model, const seaopt_attention_layer_bench_params &p,
                           seaopt_attention_layer_bench_result &out);

// The CUDA part: out's shape and memory fields are already filled; writes n_reps timings, kv_append_ms and
// output_mean_abs. Throws SEAOPT_ERR_OUT_OF_MEMORY before allocating when the buffers do not fit,
// SEAOPT_ERR_DEVICE for CUDA failures, SEAOPT_ERR_UNSUPPORTED in a build without CUDA.
void bench_attention_layer_cuda(const OptCudaWeights &weights, const AttentionBenchJob &job,
                                seaopt_attention_layer_bench_result &out);

// Value i of the benchmark's random N(0, 1) data (before rounding to fp16), for any i: splitmix64 of (seed, i / 2)
// gives two 32-bit uniforms, Box-Muller gives two normals, i picks one.
float attention_bench_normal(uint64_t seed, uint64_t i);

}  // namespace seaopt
