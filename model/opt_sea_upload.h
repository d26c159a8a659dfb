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

// Where each tensor of one layer lies in the image: (the SeaParams member, byte offset).
using SeaParamOffsets = std::vector<std::pair<std::vector<float> cpu::SeaParams::*, uint64_t>>;

struct SeaParamsImage {
    std::vector<char> image;               // the bytes to upload (a multiple of 256)
    std::vector<SeaParamOffsets> offsets;  // per entry of `params` (empty for the layers left out)
};

// Packs params[l] for every l with on[l] != 0 (on.size() == params.size()), the tensors of sea_tensor_specs(cfg)
// in order; an empty optional weight mask is left out (the kernels then use the stored mask).
SeaParamsImage pack_sea_params(const cpu::SeaConfig &cfg, const std::vector<cpu::SeaParams> &params,
                               const std::vector<uint8_t> &on);

// The device pointers of one layer, given where the image was uploaded (device_base); tensors left out are null.
cuda::SeaDeviceParams sea_device_params(const char *device_base, const SeaParamOffsets &offsets);

}  // namespace seaopt
