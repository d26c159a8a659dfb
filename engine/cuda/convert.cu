// fp32 -> fp16 conversion (post-LN models feed the fp32 residual straight into a GEMM).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "engine/cuda/ops.h"
#include "engine/error.h"

namespace seaopt::cuda {
namespace {

// ---- CUDA kernels ----
__global__ void convert_f32_to_f16_kernel(__half *out, const float *in, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        out[i] = __float2half_rn(in[i]);
    }
}

}  // namespace

// ---- kernel launchers ----
void convert_f32_to_f16(half_t *out, const float *in, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    const int threads = 256;
    const size_t blocks = (n + threads - 1) / threads;
    convert_f32_to_f16_kernel<<<(unsigned)(blocks < 65535 ? blocks : 65535), threads, 0, stream>>>(
        reinterpret_cast<__half *>(out), in, n);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) throw Error(SEAOPT_ERR_DEVICE, std::string("convert_f32_to_f16: ") + cudaGetErrorString(err));
}

}  // namespace seaopt::cuda
