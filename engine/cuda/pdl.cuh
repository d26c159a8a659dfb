// Programmatic dependent launch (PDL, sm_90+) for the decode-path kernels (included by .cu files
// only; the switch is declared in engine/cuda/ops.h and defined in gemm.cu).
//
// A kernel launched with programmatic stream serialization may start while the kernel before it in
// the stream is still running, once every block of that one has called pdl_launch_dependents() (or
// exited). It must therefore call pdl_wait() — which returns when the previous kernel has completed
// and its memory is visible — before it reads anything the kernel just before it writes or writes
// anything an earlier kernel reads. The kernels here call pdl_launch_dependents() only right after
// pdl_wait(), so at most the next kernel starts early, and when a kernel starts, every kernel before
// the one just before it has completed: what those wrote may be read before the wait too (the SEA
// decode kernels load their sequence's state, history rows and q that way). The time before the
// wait pulls weights into L2 (the GEMV) or loads parameters (the LayerNorm), which hides the launch
// gap and a memory round trip per kernel boundary of a decode step. Keep the rule: a kernel that
// called pdl_launch_dependents() before its pdl_wait() would break that chain. Captured in a CUDA
// graph this becomes programmatic edges. Launched without the attribute (the default, or before
// sm_90), both calls are no-ops and launches serialize as usual.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "engine/cuda/common.cuh"
#include "engine/cuda/ops.h"

namespace seaopt::cuda {

// Waits for the previous kernel of the stream (complete, memory visible) when launched with PDL.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel of the stream start (once every block of this grid has called it or exited).
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches `kernel`, with programmatic stream serialization when `pdl`; throws like check_launch.
template <typename... Params, typename... Args>
void launch_kernel(const char *name, bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared,
                   cudaStream_t stream, Args &&...args) {
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared;
    config.stream = stream;
    cudaLaunchAttribute attribute{};
    if (pdl) {
        attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attribute.val.programmaticStreamSerializationAllowed = 1;
        config.attrs = &attribute;
        config.numAttrs = 1;
    }
    const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    if (err != cudaSuccess) cudaGetLastError();  // reported here, not again by a later check
    check_cuda(err, name, __FILE__, __LINE__);
    check_launch(name);
}

}  // namespace seaopt::cuda
