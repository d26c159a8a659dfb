// Builds without CUDA: no devices.
#include "engine/cuda/device.h"
#include "engine/error.h"

namespace seaopt {

std::string cuda_build_description() { return "built without CUDA"; }
int cuda_device_count() { return 0; }
std::string cuda_device_count_error() { return ""; }
std::string cuda_device_name(int) { return ""; }
std::string cuda_device_description(int) { return ""; }
std::string cuda_device_unsupported_reason(int) { return "this build of seaopt has no CUDA support"; }
std::vector<float> cuda_f16_to_f32_all_patterns(int) {
    throw Error(SEAOPT_ERR_DEVICE, "this build of seaopt has no CUDA support");
}

}  // namespace seaopt
