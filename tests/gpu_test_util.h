// Device helpers shared by the GPU kernel tests: a checked CUDA call, a CUDA graph captured from a stream, and a
// device array. (tests/gpu_sea_test_util.h has the SEA tests' own, byte-sized DeviceBuffer: include one or the other.)
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace seaopt_test {

inline void cuda_ok(cudaError_t err, const char *what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Captures what `enqueue` puts on `stream` into an instantiated CUDA graph (the capture is ended and
// the partial graph freed if enqueue throws). The caller destroys the returned exec.
inline cudaGraphExec_t capture_graph(cudaStream_t stream, const std::function<void()> &enqueue) {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
        enqueue();
    } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
    }
    cuda_ok(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    cuda_ok(err, "cudaGraphInstantiate");
    return exec;
}

// A device array of n elements of T; freed on scope exit.
template <typename T>
class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t n) : n_(n) {
        cuda_ok(cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
    }
    explicit DeviceBuffer(const std::vector<T> &host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() { cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;

    T *get() const { return ptr_; }
    size_t size() const { return n_; }
    void upload(const std::vector<T> &host) {
        if (host.size() != n_) throw std::runtime_error("DeviceBuffer::upload: size mismatch");
        cuda_ok(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
    }
    std::vector<T> download() const {
        std::vector<T> host(n_);
        cuda_ok(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
        return host;
    }

private:
    T *ptr_ = nullptr;
    size_t n_;
};

}  // namespace seaopt_test
