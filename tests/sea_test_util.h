// Helpers shared by the SEA tests (tests/test_sea_cpu.cpp, tests/test_gpu_sea.cpp): configs, random parameters of
// the sea.md §5.1 shapes, and random q, k, v.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "attention/sea_cpu.h"

namespace seaopt_test {

inline seaopt::cpu::SeaConfig sea_make_config(size_t H, size_t K, size_t k, size_t n_pos = 256) {
    seaopt::cpu::SeaConfig cfg;
    cfg.n_head = H;
    cfg.K = K;
    cfg.k = k;
    cfg.n_features = 33;
    cfg.n_pos_table = n_pos;
    cfg.n_pos_ctx = n_pos;
    return cfg;
}

inline bool sea_ends_with(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Random parameters of the §5.1 shapes, at scales that keep every stage O(1): Linear and conv weights
// ~ N(0, 1/fan_in), LayerNorm weights ~ 1 + N(0, 0.3²), biases ~ N(0, 0.1²), tables ~ N(0, 1). The dead kernel
// rows 3..4 of the causal convs are random too: the weight masks (standard ones when with_masks, else left
// empty, which means the same) must remove them.
inline seaopt::cpu::SeaParams sea_random_params(const seaopt::cpu::SeaConfig &cfg, uint32_t seed,
                                                bool with_masks = false) {
    using namespace seaopt::cpu;
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    SeaParams p;
    for (const SeaTensorSpec &spec : sea_tensor_specs(cfg)) {
        std::vector<float> &t = p.*spec.member;
        size_t n = 1;
        for (size_t d : spec.shape) n *= d;
        if (spec.optional) {
            if (!with_masks) continue;
            t.assign(n, 0.0f);
            const size_t kh = spec.shape[2], kw = spec.shape[3];
            const size_t live = std::min<size_t>(kh, kSeaConvLiveRows);
            for (size_t i = 0; i < n; ++i) t[i] = ((i / kw) % kh) < live ? 1.0f : 0.0f;
            continue;
        }
        t.resize(n);
        const bool is_norm = spec.key.find("attention_predictor_enc.1.") != std::string::npos ||
                             spec.key.find("cnn.0.module") != std::string::npos ||
                             spec.key.find("cnn.2.module") != std::string::npos;
        float mean = 0.0f, stddev = 1.0f;
        if (is_norm && sea_ends_with(spec.key, "weight")) {
            mean = 1.0f;
            stddev = 0.3f;
        } else if (sea_ends_with(spec.key, "bias")) {
            stddev = 0.1f;
        } else if (spec.shape.size() >= 2 && spec.key != "v_eye_learned_causal" &&
                   spec.key != "performer.projection_matrix") {
            size_t fan_in = 1;
            for (size_t i = 1; i < spec.shape.size(); ++i) fan_in *= spec.shape[i];
            if (spec.shape.size() == 4) fan_in = spec.shape[1] * kSeaConvLiveRows * spec.shape[3];
            stddev = 1.0f / std::sqrt((float)fan_in);
        }
        for (float &x : t) x = mean + stddev * normal(rng);
    }
    return p;
}

struct SeaQkv32 {
    std::vector<float> q, k, v;
};

// q as OPT hands it over: already multiplied by 1/8, so q·k has std ≈ 1.
inline SeaQkv32 sea_random_qkv(const seaopt::cpu::SeaConfig &cfg, size_t T, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const size_t n = T * cfg.n_head * seaopt::cpu::kSeaHeadDim;
    SeaQkv32 x{std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
    for (float &a : x.q) a = normal(rng) / 8.0f;
    for (float &a : x.k) a = normal(rng);
    for (float &a : x.v) a = normal(rng);
    return x;
}

}  // namespace seaopt_test
