// Launch-transition costs on this GPU (docs/development.md, "the split step"): a do-nothing kernel of the persistent
// decode kernel's shape (one 288-thread block per SM, 200 KB of shared memory) alone and followed by five
// SEA-decode-shaped kernels, launched into a stream or as a CUDA graph, cooperative or not, with PDL or not, with a
// shared-memory carveout preference or not. Build and run on the GPU machine:
//   nvcc -arch=sm_90a -O2 -o /tmp/probe scripts/probe-launch-transitions.cu && /tmp/probe
#include <cuda_runtime.h>
#include <cstdio>
#include <vector>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s (line %d)\n", #x, cudaGetErrorString(e), __LINE__); return 1; } } while (0)

__global__ void big(int *out, int n) {
    extern __shared__ float s[];
    s[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    if (threadIdx.x == 0 && s[5] == 12345.f) out[blockIdx.x] = n;
}
__global__ void est(int *out) {  // 32 blocks x 256, 120 KB smem
    extern __shared__ float s[];
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    s[threadIdx.x] = 1.f;
    __syncthreads();
    if (threadIdx.x == 0 && s[3] == 7.f) out[blockIdx.x] = 1;
}
__global__ void small(int *out) {  // 1 block x 1024, static smem 13 KB
    __shared__ float s[3300];
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    s[threadIdx.x] = 1.f;
    __syncthreads();
    if (threadIdx.x == 0 && s[3] == 7.f) out[blockIdx.x] = 2;
}

int *d_out;
size_t big_smem = 200 * 1024, est_smem = 120 * 1024;

cudaError_t launch_big(cudaStream_t st, bool coop, int sms) {
    cudaLaunchConfig_t c{};
    c.gridDim = dim3(sms); c.blockDim = dim3(288); c.dynamicSmemBytes = big_smem; c.stream = st;
    cudaLaunchAttribute a{}; a.id = cudaLaunchAttributeCooperative; a.val.cooperative = 1;
    if (coop) { c.attrs = &a; c.numAttrs = 1; }
    return cudaLaunchKernelEx(&c, big, d_out, 1);
}
template <typename K, typename... A>
cudaError_t launch_pdl(cudaStream_t st, bool pdl, K k, dim3 g, dim3 b, size_t sm, A... args) {
    cudaLaunchConfig_t c{};
    c.gridDim = g; c.blockDim = b; c.dynamicSmemBytes = sm; c.stream = st;
    cudaLaunchAttribute a{}; a.id = cudaLaunchAttributeProgrammaticStreamSerialization; a.val.programmaticStreamSerializationAllowed = 1;
    if (pdl) { c.attrs = &a; c.numAttrs = 1; }
    return cudaLaunchKernelEx(&c, k, args...);
}
// one "transition pair": big, est, small, small, small, est(-> sparse-like)
cudaError_t iteration(cudaStream_t st, int mode, bool coop, bool pdl, int sms) {
    cudaError_t e = cudaSuccess;
    if (mode == 0) return launch_big(st, coop, sms);
    if (mode == 1) {  // chain only
        for (int i = 0; i < 5 && e == cudaSuccess; ++i)
            e = (i == 0) ? launch_pdl(st, pdl, est, dim3(32), dim3(256), est_smem, d_out)
                         : launch_pdl(st, pdl, small, dim3(i == 4 ? 32 : 1), dim3(i == 4 ? 256 : 1024), 0, d_out);
        return e;
    }
    e = launch_big(st, coop, sms);
    for (int i = 0; i < 5 && e == cudaSuccess; ++i)
        e = (i == 0) ? launch_pdl(st, pdl, est, dim3(32), dim3(256), est_smem, d_out)
                     : launch_pdl(st, pdl, small, dim3(i == 4 ? 32 : 1), dim3(i == 4 ? 256 : 1024), 0, d_out);
    return e;
}

int main() {
    int dev = 0, sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CK(cudaMalloc(&d_out, 4096));
    CK(cudaFuncSetAttribute(big, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big_smem));
    CK(cudaFuncSetAttribute(est, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)est_smem));
    cudaStream_t st; CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    const int N = 2000;
    const char *names[] = {"big only", "SEA-like chain of 5 only", "big + chain of 5"};
    for (int carve = 0; carve < 2; ++carve) {
        if (carve) {
            CK(cudaFuncSetAttribute(est, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
            CK(cudaFuncSetAttribute(small, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
            printf("-- est/small carveout = 100 (max shared)\n");
        }
        for (int mode = 0; mode < 3; ++mode)
            for (int coop = 0; coop < 2; ++coop)
                for (int pdl = 0; pdl < 2; ++pdl) {
                    if (mode == 0 && pdl) continue;
                    if (mode == 1 && coop) continue;
                    for (int graph = 0; graph < 2; ++graph) {
                        float ms = 0;
                        if (!graph) {
                            for (int i = 0; i < 50; ++i) CK(iteration(st, mode, coop, pdl, sms));
                            CK(cudaEventRecord(e0, st));
                            for (int i = 0; i < N; ++i) CK(iteration(st, mode, coop, pdl, sms));
                            CK(cudaEventRecord(e1, st));
                            CK(cudaEventSynchronize(e1));
                            CK(cudaEventElapsedTime(&ms, e0, e1));
                        } else {
                            cudaGraph_t g; cudaGraphExec_t ge;
                            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                            cudaError_t err = cudaSuccess;
                            for (int i = 0; i < 100 && err == cudaSuccess; ++i) err = iteration(st, mode, coop, pdl, sms);
                            cudaError_t err2 = cudaStreamEndCapture(st, &g);
                            if (err != cudaSuccess || err2 != cudaSuccess) {
                                printf("%-26s coop=%d pdl=%d graph: capture failed: %s / %s\n", names[mode], coop, pdl,
                                       cudaGetErrorString(err), cudaGetErrorString(err2));
                                cudaGetLastError();
                                continue;
                            }
                            if (cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
                                printf("%-26s coop=%d pdl=%d graph: instantiate failed\n", names[mode], coop, pdl);
                                cudaGetLastError();
                                continue;
                            }
                            CK(cudaGraphLaunch(ge, st));
                            CK(cudaEventRecord(e0, st));
                            for (int i = 0; i < N / 100; ++i) CK(cudaGraphLaunch(ge, st));
                            CK(cudaEventRecord(e1, st));
                            CK(cudaEventSynchronize(e1));
                            CK(cudaEventElapsedTime(&ms, e0, e1));
                            cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
                        }
                        printf("%-26s coop=%d pdl=%d graph=%d: %.2f us per iteration\n", names[mode], coop, pdl, graph,
                               1000.0 * ms / N);
                    }
                }
    }
    CK(cudaDeviceSynchronize());
    return 0;
}
