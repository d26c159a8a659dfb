// GPU discovery and the build's CUDA description. Safe to call in builds without CUDA and on
// machines without a GPU: they report 0 devices instead of failing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seaopt {

std::string cuda_build_description();  // e.g. "CUDA 13.0 (sm_90)" or "built without CUDA"
int cuda_device_count();               // 0 when CUDA is absent, no driver, or no GPU
// Why cuda_device_count() is 0 where the CUDA runtime says why (its error text, e.g. a driver older than the
// runtime); "" when it found GPUs or in a build without CUDA.
std::string cuda_device_count_error();
std::string cuda_device_name(int device);
// e.g. "NVIDIA H200, compute capability 9.0, 139.8 GiB"; "" when its properties cannot be read.
std::string cuda_device_description(int device);

// Why this build cannot run its kernels on `device`, or "" when it can: the kernels need compute
// capability 8.0 (tensor-core mma.sync), and the build must hold machine code or PTX the driver
// can use for the device (CMAKE_CUDA_ARCHITECTURES).
std::string cuda_device_unsupported_reason(int device);

// Converts every fp16 bit pattern (0..65535) to fp32 on the GPU — a smoke test of the device path
// with a CPU reference (engine/fp16.h) beside it. Throws seaopt::Error(SEAOPT_ERR_DEVICE) on failure.
std::vector<float> cuda_f16_to_f32_all_patterns(int device);

}  // namespace seaopt
