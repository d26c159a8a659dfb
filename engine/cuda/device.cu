// GPU discovery and a smoke-test kernel. CUDA errors become seaopt::Error at the call site.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "engine/cuda/device.h"
#include "engine/error.h"

namespace seaopt {
namespace {

void cuda_check(cudaError_t err, const char *what) {
    if (err != cudaSuccess) {
        throw Error(SEAOPT_ERR_DEVICE, std::string(what) + ": " + cudaGetErrorString(err));
    }
}

// ---- kernels ----
__global__ void f16_bits_to_f32_kernel(float *out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __half2float(__ushort_as_half((unsigned short)i));
}

}  // namespace

// ---- launchers ----
std::string cuda_build_description() {
    std::string s = "CUDA " + std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
#ifdef SEAOPT_CUDA_ARCHS
    s += ", compiled for sm_" SEAOPT_CUDA_ARCHS;
#endif
    return s;
}

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

std::string cuda_device_count_error() {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaSuccess) return "";
    cudaGetLastError();
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

std::string cuda_device_name(int device) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        return "";
    }
    return prop.name;
}

std::string cuda_device_description(int device) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        return "";
    }
    char text[320];
    std::snprintf(text, sizeof text, "%s, compute capability %d.%d, %.1f GiB", prop.name, prop.major, prop.minor,
                  (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return text;
}

std::string cuda_device_unsupported_reason(int device) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        return "cannot read the properties of GPU " + std::to_string(device);
    }
    const std::string gpu = std::string(prop.name) + " (compute capability " + std::to_string(prop.major) + "." +
                            std::to_string(prop.minor) + ")";
    if (prop.major < 8) return gpu + " is older than the compute capability 8.0 the CUDA kernels need";
    // A kernel of this build that the device cannot load reports cudaErrorNoKernelImageForDevice.
    if (cudaSetDevice(device) != cudaSuccess) {
        cudaGetLastError();
        return "cannot select GPU " + std::to_string(device);
    }
    cudaFuncAttributes attr;
    const cudaError_t err = cudaFuncGetAttributes(&attr, f16_bits_to_f32_kernel);
    if (err != cudaSuccess) {
        cudaGetLastError();
        return gpu + " cannot run this build's kernels (" + cudaGetErrorString(err) + "; " + cuda_build_description() +
               "): rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(prop.major) + std::to_string(prop.minor);
    }
    return "";
}

std::vector<float> cuda_f16_to_f32_all_patterns(int device) {
    cuda_check(cudaSetDevice(device), "cudaSetDevice");
    constexpr int n = 65536;
    float *d_out = nullptr;
    cuda_check(cudaMalloc(&d_out, n * sizeof(float)), "cudaMalloc");
    f16_bits_to_f32_kernel<<<n / 256, 256>>>(d_out, n);
    cudaError_t err = cudaGetLastError();
    std::vector<float> out(n);
    if (err == cudaSuccess) err = cudaMemcpy(out.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(d_out);
    cuda_check(err, "f16_bits_to_f32_kernel");
    return out;
}

}  // namespace seaopt
