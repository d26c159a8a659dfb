// Device helpers shared by the CUDA SEA tests (tests/test_gpu_sea.cpp, tests/test_gpu_sea_fixtures.cpp): a device
// buffer, host <-> device copies, event timing, the SEA parameters of one layer uploaded as SeaDeviceParams, and the selected cells
// of the kernels' bit masks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention/sea_cpu.h"
#include "attention/sea_cuda.h"
#include "attention/sea_layout.h"

namespace seaopt_test {

inline void cuda_ok(cudaError_t err, const char *what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Milliseconds that n calls of fn take on stream, between two events recorded around them (warm up first).
inline float stream_elapsed_ms(cudaStream_t stream, int n, const std::function<void()> &fn) {
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    cuda_ok(cudaEventCreate(&e0), "cudaEventCreate");
    cuda_ok(cudaEventCreate(&e1), "cudaEventCreate");
    cuda_ok(cudaEventRecord(e0, stream), "cudaEventRecord");
    for (int i = 0; i < n; ++i) fn();
    cuda_ok(cudaEventRecord(e1, stream), "cudaEventRecord");
    cuda_ok(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0.0f;
    cuda_ok(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return ms;
}

class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t bytes) : bytes_(bytes) { cuda_ok(cudaMalloc(&ptr_, bytes ? bytes : 1), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;
    template <class T> T *as() const { return static_cast<T *>(ptr_); }
    size_t bytes() const { return bytes_; }
    void fill(int byte) { cuda_ok(cudaMemset(ptr_, byte, bytes_ ? bytes_ : 1), "cudaMemset"); }

private:
    void *ptr_ = nullptr;
    size_t bytes_ = 0;
};

template <class T> inline std::unique_ptr<DeviceBuffer> upload(const std::vector<T> &src) {
    auto buf = std::make_unique<DeviceBuffer>(src.size() * sizeof(T));
    if (!src.empty()) {
        const size_t bytes = src.size() * sizeof(T);
        cuda_ok(cudaMemcpy(buf->template as<void>(), src.data(), bytes, cudaMemcpyHostToDevice), "H2D");
    }
    return buf;
}

// n values of type T from byte `offset` of the buffer.
template <class T> inline std::vector<T> download(const DeviceBuffer &src, size_t n, size_t offset = 0) {
    std::vector<T> v(n);
    if (n) cuda_ok(cudaMemcpy(v.data(), src.as<char>() + offset, n * sizeof(T), cudaMemcpyDeviceToHost), "D2H");
    return v;
}

struct DeviceParams {
    std::vector<std::unique_ptr<DeviceBuffer>> bufs;
    seaopt::cuda::SeaDeviceParams view;
};

// The layer's tensors, each in its own buffer, and the prefill's pre-split weight fragments (sea_layout.h), as
// model/opt_sea_upload.cpp packs them for the engine.
inline DeviceParams upload_params(const seaopt::cpu::SeaConfig &cfg, const seaopt::cpu::SeaParams &p) {
    DeviceParams d;
    auto put = [&d](const std::vector<float> &v) -> const float * {
        if (v.empty()) return nullptr;
        d.bufs.push_back(upload(v));
        return d.bufs.back()->as<float>();
    };
    seaopt::cuda::SeaDeviceParams &s = d.view;
    s.pos_table = put(p.pos_table);
    s.performer_proj = put(p.performer_proj);
    s.enc_w = put(p.enc_w);
    s.enc_b = put(p.enc_b);
    s.enc_norm_w = put(p.enc_norm_w);
    s.enc_norm_b = put(p.enc_norm_b);
    s.dec_row_w = put(p.dec_row_w);
    s.dec_row_b = put(p.dec_row_b);
    s.cnn_norm1_w = put(p.cnn_norm1_w);
    s.cnn_norm1_b = put(p.cnn_norm1_b);
    s.conv1_w = put(p.conv1_w);
    s.conv1_mask = put(p.conv1_mask);
    s.conv1_b = put(p.conv1_b);
    s.conv2_w = put(p.conv2_w);
    s.conv2_mask = put(p.conv2_mask);
    s.conv2_b = put(p.conv2_b);
    s.conv4_w = put(p.conv4_w);
    s.conv4_mask = put(p.conv4_mask);
    s.conv4_b = put(p.conv4_b);
    s.cnn_norm2_w = put(p.cnn_norm2_w);
    s.cnn_norm2_b = put(p.cnn_norm2_b);
    s.scaler_w = put(p.scaler_w);
    s.scaler_b = put(p.scaler_b);
    auto put_bytes = [&d](const std::vector<char> &bytes) -> const void * {
        if (bytes.empty()) return nullptr;
        d.bufs.push_back(upload(bytes));
        return d.bufs.back()->as<char>();
    };
    std::vector<char> frags(seaopt::cuda::sea_weight_fragments(cfg).total);
    seaopt::cuda::sea_pack_weight_fragments(cfg, p, frags.data());
    s.weight_frags = put_bytes(frags);
    std::vector<char> conv(2 * seaopt::cuda::sea_conv_fragment_bytes(cfg));
    seaopt::cuda::sea_pack_conv_fragments(cfg, p, conv.data());
    s.conv_frags = put_bytes(conv);
    return d;
}

// The selected cells of T query rows from the kernels' bit mask [T, H, ⌈K/32⌉] (bit c % 32 of word c / 32 of
// (t, h)), as ascending flat indices h·K + c.
inline std::vector<std::vector<int32_t>> cells_of_mask(const std::vector<uint32_t> &mask,
                                                       const seaopt::cpu::SeaConfig &cfg, size_t T) {
    const size_t H = cfg.n_head, K = cfg.K, KW = (K + 31) / 32;
    std::vector<std::vector<int32_t>> cells(T);
    for (size_t t = 0; t < T; ++t) {
        for (size_t h = 0; h < H; ++h) {
            for (size_t c = 0; c < K; ++c) {
                if ((mask[(t * H + h) * KW + c / 32] >> (c % 32)) & 1u) cells[t].push_back((int32_t)(h * K + c));
            }
        }
    }
    return cells;
}

}  // namespace seaopt_test
