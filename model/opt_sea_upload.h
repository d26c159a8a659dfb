// The SEA estimator parameters as the CUDA kernels take them (attention/sea_cuda.h: SeaDeviceParams, fp32 in the
// layouts of cpu::SeaParams): one host image holding every tensor of the chosen layers, 256-byte aligned, to upload
// with one copy, and the device pointers into the uploaded copy. Plain host code (no CUDA headers, no CUDA calls):
// the CUDA engine (model/opt_cuda.cpp) and the attention-layer benchmark (model/opt_attention_bench_cuda.cpp) share it.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "attention/sea_cpu.h"
#include "attention/sea_cuda.h"

namespace seaopt {

// Where one layer's pieces lie in the image: each tensor as (the SeaParams member, byte offset), then the prefill's
// tensor-core fragments of its weights (attention/sea_layout.h).
struct SeaParamOffsets {
    std::vector<std::pair<std::vector<float> cpu::SeaParams::*, uint64_t>> tensors;
    uint64_t weight_frags = 0;  // sea_pack_weight_fragments
    uint64_t conv_frags = 0;    // sea_pack_conv_fragments; meaningful where has_conv_frags
    bool has_conv_frags = false;
};

struct SeaParamsImage {
    std::vector<char> image;               // the bytes to upload (a multiple of 256)
    std::vector<SeaParamOffsets> offsets;  // per entry of `params` (empty for the layers left out)
};

// Packs params[l] for every l with on[l] != 0 (on.size() == params.size()), the tensors of sea_tensor_specs(cfg)
// in order (an empty optional weight mask is left out: the kernels then use the stored mask), then the weights as
// the prefill's pre-split tensor-core fragments (0.8 MiB a layer at OPT-1.3B's shape).
SeaParamsImage pack_sea_params(const cpu::SeaConfig &cfg, const std::vector<cpu::SeaParams> &params,
                               const std::vector<uint8_t> &on);

// The device pointers of one layer, given where the image was uploaded (device_base); tensors left out are null.
cuda::SeaDeviceParams sea_device_params(const char *device_base, const SeaParamOffsets &offsets);

}  // namespace seaopt
