// The OPT forward on the GPU (see opt_cuda.h). Same layer loop as model/opt_forward_cpu.cpp, as a
// sequence of GPU ops; the residual stream stays fp32, GEMM inputs are fp16.
#include "model/opt_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "attention/sea_cuda.h"
#include "engine/argmax_key.h"
#include "engine/cuda/decode_persistent.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/ops.h"
#include "engine/error.h"
#include "engine/fp16.h"
#include "engine/log.h"
#include "engine/memory_plan.h"
#include "model/gguf.h"
#include "model/opt_forward_cpu.h"
#include "model/opt_sea_upload.h"
#include "model/q8_0.h"

namespace seaopt {

using cuda::half_t;

namespace {

void check(cudaError_t err, const std::string &what) {
    if (err != cudaSuccess) throw Error(SEAOPT_ERR_DEVICE, what + ": " + cudaGetErrorString(err));
}

// cudaMalloc with an out-of-memory error that says how much was asked and what is free.
void *device_alloc(size_t bytes, const std::string &what) {
    void *p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw Error(SEAOPT_ERR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes >> 20) + " MiB of GPU memory for " +
                                                  what + " (" + std::to_string(free_b >> 20) + " MiB free)");
    }
    check(err, "cudaMalloc for " + what);
    return p;
}

// The device's address of mapped pinned host memory, or null where it cannot be mapped (the callers then copy, or
// do without; the error is cleared).
template <typename T> T *mapped_on_device(T *host) {
    void *dev = nullptr;
    if (cudaHostGetDevicePointer(&dev, host, 0) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return static_cast<T *>(dev);
}

struct LayerWeightsCuda {
    const half_t *attn_norm_w, *attn_norm_b, *ffn_norm_w, *ffn_norm_b;
    const half_t *qkv_w, *qkv_b;  // fused [3C, C] and [3C]
    const half_t *o_w;
    const float *o_b;             // fp32: the out-projection GEMM writes the fp32 residual
    const half_t *up_w, *up_b, *down_w;
    const float *down_b;
    // A Q8_0 model's four matrices (gemm.h: int8 [n_out][n_in] + fp16 scales [n_out][n_in/32]); the fp16 pointers
    // qkv_w, o_w, up_w and down_w are then null.
    cuda::WeightQ8 qkv_q8, o_q8, up_q8, down_q8;
};

}  // namespace

bool cuda_engine_built() { return true; }

struct OptCudaWeights {
    int device = 0;
    void *block = nullptr;  // one allocation for every weight, pointer-bumped
    uint64_t bytes = 0;
    bool q8 = false;        // the blocks' matrices are Q8_0 (LayerWeightsCuda::*_q8), the rest fp16
    const half_t *tok_embd = nullptr, *pos_embd = nullptr, *proj_in = nullptr, *proj_out = nullptr;
    const half_t *out_norm_w = nullptr, *out_norm_b = nullptr, *lm_head = nullptr;
    std::vector<LayerWeightsCuda> layers;
};

void destroy_cuda_weights(OptCudaWeights *w) {
    if (!w) return;
    if (w->block) cudaFree(w->block);
    delete w;
}

uint64_t cuda_weights_bytes(const OptCudaWeights &w) { return w.bytes; }
bool cuda_weights_q8(const OptCudaWeights &w) { return w.q8; }
int cuda_weights_device(const OptCudaWeights &w) { return w.device; }

std::unique_ptr<OptCudaWeights, OptCudaWeightsDeleter> upload_opt_weights_cuda(
    const OptHparams &hp, const gguf::File &file, const uint8_t *file_data, int device, bool untied_output,
    const std::function<void(uint64_t)> &progress) {
    check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
    std::unique_ptr<OptCudaWeights, OptCudaWeightsDeleter> w(new OptCudaWeights);
    w->device = device;

    // Layout (one allocation, 256-byte aligned pieces): every tensor as fp16 at dest[name]; q, k, v
    // of a layer go into one fused [3C, C] weight and one [3C] bias (q, k, v stacked along the
    // output dimension), and the two biases that feed fp32 outputs get fp32 copies. A Q8_0 matrix (the loader
    // allows all of the blocks' matrices or none) is split into its int8 values at dest[name] and its fp16 scales
    // at dest[name + ".d"] (gemm.h's WeightQ8), q, k and v again stacked.
    const std::vector<OptTensorSpec> specs = opt_tensor_specs(hp, untied_output);
    const uint64_t C = hp.n_embd;
    w->q8 = file.find_tensor(blk_tensor(0, "attn_q.weight"))->type == gguf::TensorType::Q8_0;
    const uint64_t qkv_elem_bytes = w->q8 ? 1 : 2;  // q, k, v: int8 or fp16
    std::map<std::string, uint64_t> dest;
    SequentialPlacer placer;
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        const uint64_t qkv_w = placer.place(3 * C * C * qkv_elem_bytes), qkv_b = placer.place(3 * C * 2);
        const uint64_t qkv_d = w->q8 ? placer.place(3 * C * (C / kQ8Block) * 2) : 0;
        const char *parts[3] = {"attn_q", "attn_k", "attn_v"};
        for (uint64_t p = 0; p < 3; ++p) {
            const std::string weight = blk_tensor(l, (std::string(parts[p]) + ".weight").c_str());
            dest[weight] = qkv_w + p * C * C * qkv_elem_bytes;
            if (w->q8) dest[weight + ".d"] = qkv_d + p * C * (C / kQ8Block) * 2;
            dest[blk_tensor(l, (std::string(parts[p]) + ".bias").c_str())] = qkv_b + p * C * 2;
        }
        dest[blk_tensor(l, "attn_output.bias.f32")] = placer.place(C * 4);
        dest[blk_tensor(l, "ffn_down.bias.f32")] = placer.place(C * 4);
    }
    for (const OptTensorSpec &s : specs) {
        if (dest.count(s.gguf_name)) continue;
        const uint64_t n = file.find_tensor(s.gguf_name)->n_elements;
        if (w->q8 && s.quantizable) {
            dest[s.gguf_name] = placer.place(n);
            dest[s.gguf_name + ".d"] = placer.place(n / kQ8Block * 2);
        } else {
            dest[s.gguf_name] = placer.place(n * 2);
        }
    }
    w->block = device_alloc(placer.total, "the model weights");
    w->bytes = placer.total;
    char *base = static_cast<char *>(w->block);

    std::vector<uint16_t> staging;
    std::vector<float> staging_f32;
    std::vector<int8_t> staging_q;
    uint64_t done = 0;
    for (const OptTensorSpec &s : specs) {
        const gguf::TensorInfo *t = file.find_tensor(s.gguf_name);
        const uint8_t *src = file_data + file.data_offset + t->offset;
        if (t->type == gguf::TensorType::Q8_0) {  // 34-byte blocks -> the values and the scales, apart
            const uint64_t n_blocks = t->n_elements / kQ8Block;
            staging_q.resize(t->n_elements);
            staging.resize(n_blocks);
            for (uint64_t b = 0; b < n_blocks; ++b) {
                std::memcpy(&staging[b], src + b * kQ8BlockBytes, 2);
                std::memcpy(&staging_q[b * kQ8Block], src + b * kQ8BlockBytes + 2, kQ8Block);
            }
            check(cudaMemcpy(base + dest.at(s.gguf_name), staging_q.data(), t->n_elements, cudaMemcpyHostToDevice),
                  "uploading " + s.gguf_name);
            check(cudaMemcpy(base + dest.at(s.gguf_name + ".d"), staging.data(), n_blocks * 2, cudaMemcpyHostToDevice),
                  "uploading " + s.gguf_name);
            done += t->n_bytes;
            if (progress) progress(done);
            continue;
        }
        staging.resize(t->n_elements);
        for (uint64_t i = 0; i < t->n_elements; ++i) {
            uint16_t h;
            if (t->type == gguf::TensorType::F16) {
                std::memcpy(&h, src + 2 * i, 2);
            } else if (t->type == gguf::TensorType::BF16) {
                uint16_t b;
                std::memcpy(&b, src + 2 * i, 2);
                h = f32_to_f16(bf16_to_f32(b));
            } else {
                float f;
                std::memcpy(&f, src + 4 * i, 4);
                h = f32_to_f16(f);
            }
            staging[i] = h;
        }
        check(cudaMemcpy(base + dest.at(s.gguf_name), staging.data(), t->n_elements * 2, cudaMemcpyHostToDevice),
              "uploading " + s.gguf_name);
        // fp32 copies of the biases added into the fp32 residual stream.
        for (const char *which : {"attn_output.bias", "ffn_down.bias"}) {
            const std::string suffix = std::string(".") + which;
            if (s.gguf_name.size() > suffix.size() &&
                s.gguf_name.compare(s.gguf_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
                staging_f32.resize(t->n_elements);
                for (uint64_t i = 0; i < t->n_elements; ++i) staging_f32[i] = f16_to_f32(staging[i]);
                check(cudaMemcpy(base + dest.at(s.gguf_name + ".f32"), staging_f32.data(), t->n_elements * 4,
                                 cudaMemcpyHostToDevice),
                      "uploading " + s.gguf_name);
            }
        }
        done += t->n_bytes;
        if (progress) progress(done);
    }

    auto h = [&](const std::string &name) { return reinterpret_cast<const half_t *>(base + dest.at(name)); };
    auto f = [&](const std::string &name) { return reinterpret_cast<const float *>(base + dest.at(name)); };
    w->tok_embd = h("token_embd.weight");
    w->pos_embd = h("position_embd.weight");
    if (hp.has_proj()) {
        w->proj_in = h("proj_in.weight");
        w->proj_out = h("proj_out.weight");
    }
    if (hp.has_output_norm()) {
        w->out_norm_w = h("output_norm.weight");
        w->out_norm_b = h("output_norm.bias");
    }
    w->lm_head = untied_output ? h("output.weight") : w->tok_embd;
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        LayerWeightsCuda L;
        L.attn_norm_w = h(blk_tensor(l, "attn_norm.weight"));
        L.attn_norm_b = h(blk_tensor(l, "attn_norm.bias"));
        L.ffn_norm_w = h(blk_tensor(l, "ffn_norm.weight"));
        L.ffn_norm_b = h(blk_tensor(l, "ffn_norm.bias"));
        L.qkv_b = h(blk_tensor(l, "attn_q.bias"));
        L.o_b = f(blk_tensor(l, "attn_output.bias.f32"));
        L.up_b = h(blk_tensor(l, "ffn_up.bias"));
        L.down_b = f(blk_tensor(l, "ffn_down.bias.f32"));
        if (w->q8) {
            auto q8 = [&](const char *what) {
                const std::string name = blk_tensor(l, what);
                return cuda::WeightQ8{reinterpret_cast<const int8_t *>(base + dest.at(name)), h(name + ".d")};
            };
            L.qkv_w = L.o_w = L.up_w = L.down_w = nullptr;
            L.qkv_q8 = q8("attn_q.weight");
            L.o_q8 = q8("attn_output.weight");
            L.up_q8 = q8("ffn_up.weight");
            L.down_q8 = q8("ffn_down.weight");
        } else {
            L.qkv_w = h(blk_tensor(l, "attn_q.weight"));
            L.o_w = h(blk_tensor(l, "attn_output.weight"));
            L.up_w = h(blk_tensor(l, "ffn_up.weight"));
            L.down_w = h(blk_tensor(l, "ffn_down.weight"));
        }
        w->layers.push_back(L);
    }
    return w;
}

// ---- per-context state ---------------------------------------------------------------------

struct OptCudaState {
    const OptHparams *hp = nullptr;  // the model's (it outlives its contexts)
    int device = 0;
    cudaStream_t stream = nullptr;
    cuda::GemmHandle *gemm = nullptr;
    uint32_t n_ctx = 0, n_seq = 0, n_batch = 0;
    uint64_t weights_bytes = 0, kv_bytes = 0;
    // [layer][K|V][seq][head][pos][head_dim] fp16 (kv_bytes), then the decode attention's split-K
    // counters (cuda::AttentionOptions::counters: zero once, left zero by every decode step).
    void *kv_block = nullptr;
    uint64_t kv_alloc_bytes = 0;
    uint32_t *attn_counters = nullptr;
    MemoryPlan plan;
    void *arena = nullptr;
    std::map<std::string, char *> buffers;  // name -> address inside the arena
    void *host_staging = nullptr;           // pinned: batch metadata on its way to the GPU
    // pinned: one row of logits (the captured decode step); two where the persistent kernel stores into them (mapped),
    // used in turn (next_logits_row) so that the caller can read the last step's row in place while the next step
    // writes the other: a step that fails leaves the caller's row as it was.
    float *pinned_logits = nullptr;
    int next_logits_row = 0;
    // The same row as the device sees it (mapped), where the persistent kernel stores the logits itself; null
    // with SEAOPT_PERSISTENT_ZERO_COPY=0 or where the row is not mapped: a copy after the kernel then.
    float *pinned_logits_on_device = nullptr;
    // The greedy pick of a batch with one output row, made on the device (engine/argmax_key.h): per-block keys
    // in mapped pinned memory (the persistent kernel's blocks, or cuda::argmax_parts' kArgmaxParts), whose
    // max the host takes after the forward; null where the memory cannot be mapped (no pick then).
    uint64_t *pinned_argmax = nullptr;
    uint64_t *pinned_argmax_on_device = nullptr;
    // The persistent kernel's greedy chain (opt_generate_greedy_cuda): one pick per step, n_ctx of them, mapped.
    int32_t *pinned_picks = nullptr;
    int32_t *pinned_picks_on_device = nullptr;
    // Batch-1 decode runs as one CUDA graph: captured on the second such step (the first makes the
    // GEMM plans, autotuning the lm_head's: gemm.h), replayed after. SEAOPT_NO_CUDA_GRAPH=1 turns
    // this off.
    bool graphs_enabled = true;
    uint32_t head_chunk_rows = 0;  // outputs per lm_head GEMM (the logits buffer holds one chunk): n_head_batch
    uint64_t dequant_scratch_bytes = 0;  // Q8_0 models: the arena's dequant_w16 (0: fp16 matrices, or n_batch <= 16)
    int n_decode_steps = 0;
    cudaGraphExec_t decode_graph = nullptr;
    // Prefill keeps the fp32 residual stream x in L2 as persisting lines (l2_persist_setup): bytes of the device's
    // persisting set-aside this context may use (0: off), and whether the stream's access window is set now.
    size_t l2_persist_bytes = 0, l2_window_max = 0;
    bool x_window_set = false;
    // SEA attention (the layers sea_on): the estimator parameters of those layers and one decode state per
    // (SEA layer, sequence), in one allocation beside the KV cache: parameters first, then the states of SEA
    // layer i (i-th in layer order) at sea_states + (i·n_seq + seq)·sea_state_stride.
    bool sea_any = false;
    cpu::SeaConfig sea_cfg;
    std::vector<uint8_t> sea_on;
    std::vector<int> sea_index;                      // layer -> its place among the SEA layers, or -1
    std::vector<cuda::SeaDeviceParams> sea_params;   // per layer (null pointers for dense layers)
    void *sea_block = nullptr;
    uint64_t sea_block_bytes = 0, sea_params_bytes = 0, sea_state_stride = 0;
    char *sea_states = nullptr;
    // A SEA decode row at a position up to this has its keys and values pulled into L2 at the start of the call
    // (cuda::SeaKvCache::prefetch_max_pos); SEAOPT_SEA_PREFETCH_KV overrides it (sweeps; 0 turns it off).
    int sea_prefetch_max_pos = 0;
    // Batch-1 decode as one persistent kernel (engine/cuda/decode_persistent.h) where the model and the
    // device allow it and SEAOPT_PERSISTENT_DECODE is not 0; else the captured kernel-per-op step. Its
    // layer table and scratch sit at the end of the KV cache's allocation, before the attention counters.
    cuda::PersistentDecodePlan persistent;
    cuda::PersistentDecodeShape persistent_shape;
    cuda::PersistentLayer *persistent_layers = nullptr;
    void *persistent_scratch = nullptr;
    uint64_t persistent_bytes = 0;
    void *persistent_profile = nullptr;
    long long persistent_steps = 0;
    // SEAOPT_PERSISTENT_PROFILE, host side (us summed over steps): the caller between steps, enqueue, the
    // wait for the stream, the logits copy to the caller, the kernel by events.
    double host_profile[5] = {0, 0, 0, 0, 0};
    long long host_profile_gaps = 0;
    std::chrono::steady_clock::time_point last_forward_end;
    cudaEvent_t profile_events[2] = {nullptr, nullptr};
    uint32_t persistent_tag = 1;  // the next step's first handover tag (the scratch starts at tag 0)
    // A context with SEA layers: the persistent kernel runs the dense part of the step in segments and each SEA
    // layer's attention runs as the kernel-per-op SEA kernels between them (persistent_split_step). False where the
    // kernel runs SEA inside (persistent.sea) or where the step is kernel-per-op.
    bool persistent_split = false;

    char *sea_layer_states(uint32_t layer) const {
        return sea_states + (size_t)sea_index[layer] * n_seq * sea_state_stride;
    }

    uint64_t plan_bytes(const std::string &name) const {
        for (const PlannedBuffer &b : plan.buffers) {
            if (b.req.name == name) return b.req.bytes;
        }
        return 0;
    }
    char *buffer_or_null(const std::string &name) const {
        const auto it = buffers.find(name);
        return it == buffers.end() ? nullptr : it->second;
    }
    char *buffer(const std::string &name) const {
        const auto it = buffers.find(name);
        if (it == buffers.end()) throw Error(SEAOPT_ERR_INTERNAL, "memory plan has no buffer '" + name + "'");
        return it->second;
    }
    half_t *k_cache(const OptHparams &hp, uint32_t layer) const {
        return static_cast<half_t *>(kv_block) + (size_t)layer * 2 * per_layer_elems(hp);
    }
    half_t *v_cache(const OptHparams &hp, uint32_t layer) const { return k_cache(hp, layer) + per_layer_elems(hp); }
    size_t per_layer_elems(const OptHparams &hp) const { return (size_t)n_seq * hp.n_embd * n_ctx; }
};

void destroy_cuda_state(OptCudaState *s) {
    if (!s) return;
    if (s->persistent_profile) {
        const int K = cuda::kPersistentProfileSpans;
        std::vector<long long> p((size_t)s->persistent.grid * K);
        cudaMemcpy(p.data(), s->persistent_profile, p.size() * 8, cudaMemcpyDeviceToHost);
        // Per span: the blocks' mean, min, median and max (min and max apart show the blocks' skew: the block that
        // waits least at the handovers is the one the others wait for).
        const int G = s->persistent.grid;
        const double steps = (double)std::max<long long>(1, s->persistent_steps);
        std::string line;
        char buf[128];
        std::vector<double> col((size_t)G);
        for (int k = 0; k < K; ++k) {
            double sum = 0.0;
            for (int b = 0; b < G; ++b) {
                col[(size_t)b] = (double)p[(size_t)b * K + k] / steps / 1e3;
                sum += col[(size_t)b];
            }
            std::sort(col.begin(), col.end());
            std::snprintf(buf, sizeof buf, " %s %.1f/%.1f/%.1f/%.1f", cuda::kPersistentProfileNames[k], sum / G,
                          col.front(), col[(size_t)G / 2], col.back());
            line += buf;
        }
        SEAOPT_LOG_WARN_("persistent profile (%lld steps, kcycles per step over the blocks: mean/min/median/max):%s\n",
                         s->persistent_steps, line.c_str());
        SEAOPT_LOG_WARN_("persistent profile, host (us per step): caller between steps %.1f, enqueue %.1f, wait %.1f, "
                         "logits copy %.1f; kernel (events) %.1f\n",
                         s->host_profile[0] / (double)std::max<long long>(1, s->host_profile_gaps),
                         s->host_profile[1] / steps, s->host_profile[2] / steps, s->host_profile[3] / steps,
                         s->host_profile[4] / steps);
        for (cudaEvent_t e : s->profile_events) {
            if (e) cudaEventDestroy(e);
        }
        cudaFree(s->persistent_profile);
    }
    if (s->gemm) cuda::gemm_destroy(s->gemm);
    if (s->stream) cudaStreamDestroy(s->stream);
    if (s->arena) cudaFree(s->arena);
    if (s->kv_block) cudaFree(s->kv_block);
    if (s->host_staging) cudaFreeHost(s->host_staging);
    if (s->pinned_logits) cudaFreeHost(s->pinned_logits);
    if (s->pinned_argmax) cudaFreeHost(s->pinned_argmax);
    if (s->pinned_picks) cudaFreeHost(s->pinned_picks);
    if (s->decode_graph) cudaGraphExecDestroy(s->decode_graph);
    if (s->sea_block) cudaFree(s->sea_block);
    delete s;
}

namespace {
constexpr uint64_t kGemmWorkspaceBytes = 32ull << 20;  // cuBLASLt workspace (gemm.h)
constexpr int kArgmaxParts = 32;  // blocks of the kernel-per-op step's greedy pick (cuda::argmax_parts)
constexpr uint64_t kAttnCounterBytes = cuda::kAttentionDecodeCounters * sizeof(uint32_t);
// Outputs per lm_head GEMM unless the context asks for more (n_head_batch): 26 MB of fp32 logits
// for OPT, which fits within the memory a 2048-token batch's layers already need.
constexpr uint32_t kDefaultHeadChunkRows = 128;
constexpr uint32_t kPersistMinRows = 256;  // prefills of fewer rows keep x in L2 anyway
// OptCudaState::sea_prefetch_max_pos (measured on H100, docs/development.md).
constexpr int kDefaultSeaPrefetchMaxPos = 512;
// Pinned staging of the batch metadata: ids, positions, sequence ids, output rows, targets, and the SEA
// decode's rows, positions, sequences (int32 each, n_batch slots apiece), then the attention tiles, then the
// NLLs coming back (fp32, n_batch).
constexpr int kStagingInt32Arrays = 8;
// Prefill's residual stream x [T][C] fp32 is read back by every LayerNorm and by the out-projection's and FC2's
// epilogues (beta = 1), each time after a GEMM that streams more than L2 holds (FC2 at OPT-1.3B and T = 2,048: 96 MB
// through a 50 MB L2), so without help the epilogues read it from HBM. An access-policy window on the stream marks
// x's lines persisting during the layers (H100, OPT-1.3B, T = 2,048: those two GEMMs 65.0 -> 61.7 µs each, pp2048
// 9.58-9.70 -> 9.37-9.40 ms); the last layer's out-projection and FC2 run with the window's hit property normal,
// which turns the lines they touch back to normal, and the window is removed after the layers, so decode never
// sees it. The set-aside is a device-wide limit: raised to what this context wants, never
// lowered. SEAOPT_L2_PERSIST=0 turns this off. Returns the set-aside's bytes usable (0: off or unsupported).
size_t l2_persist_setup(int device, size_t want, size_t *window_max) {
    *window_max = 0;
    const char *env = std::getenv("SEAOPT_L2_PERSIST");
    if (env && std::string(env) == "0") return 0;
    int max_persist = 0, max_window = 0;
    if (cudaDeviceGetAttribute(&max_persist, cudaDevAttrMaxPersistingL2CacheSize, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&max_window, cudaDevAttrMaxAccessPolicyWindowSize, device) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (max_persist <= 0 || max_window <= 0) return 0;
    const size_t bytes = std::min(want, (size_t)max_persist);
    size_t current = 0;
    if (cudaDeviceGetLimit(&current, cudaLimitPersistingL2CacheSize) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (current < bytes && cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, bytes) != cudaSuccess) {
        cudaGetLastError();  // e.g. under MPS: prefill runs as before
        return 0;
    }
    *window_max = (size_t)max_window;
    return std::max(current, bytes);
}

// The stream's access window over x: persisting or normal hits (bytes > 0), or none (bytes == 0).
void set_x_window(OptCudaState &s, void *x, size_t bytes, cudaAccessProperty hit) {
    if (bytes > 0 && s.l2_persist_bytes == 0) return;  // turned off (or failed earlier in this forward)
    cudaStreamAttrValue v{};
    if (bytes > 0) {
        bytes = std::min(bytes, s.l2_window_max);
        v.accessPolicyWindow.base_ptr = x;
        v.accessPolicyWindow.num_bytes = bytes;
        // Persisting hits: as many lines as the set-aside holds. Normal hits (turning persisting lines back): all.
        v.accessPolicyWindow.hitRatio =
            hit == cudaAccessPropertyPersisting
                ? std::min(1.0f, (float)((double)s.l2_persist_bytes / (double)bytes))
                : 1.0f;
        v.accessPolicyWindow.hitProp = hit;
        v.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
    }
    if (cudaStreamSetAttribute(s.stream, cudaStreamAttributeAccessPolicyWindow, &v) != cudaSuccess) {
        // Only a hint: prefill runs on without it (and this context stops asking).
        const cudaError_t err = cudaGetLastError();
        if (s.l2_persist_bytes > 0) {
            SEAOPT_LOG_WARN_("prefill: the L2 access window failed (%s); continuing without it\n",
                             cudaGetErrorString(err));
        }
        s.l2_persist_bytes = 0;
        s.x_window_set = false;
        return;
    }
    s.x_window_set = bytes > 0;
}

uint64_t staging_bytes(uint32_t n_batch) {
    return (uint64_t)n_batch * (kStagingInt32Arrays * sizeof(int32_t) + sizeof(cuda::AttentionTile) + sizeof(float));
}
}  // namespace

namespace {

// Scratch of the SEA kernels for batches of up to n_batch tokens: one prefill of a sequence of up to
// min(n_batch, n_ctx) tokens, or one decode call of up to min(n_batch, n_seq) rows.
uint64_t sea_scratch_bytes(const cpu::SeaConfig &cfg, uint32_t n_ctx, uint32_t n_seq, uint32_t n_batch) {
    return std::max<uint64_t>(cuda::sea_prefill_scratch_bytes(cfg, std::min(n_batch, n_ctx)),
                              cuda::sea_decode_scratch_bytes(cfg, (int)std::min(n_batch, n_seq)));
}

}  // namespace

namespace {

// The persistent kernel's layer table in the KV cache's allocation (256-byte aligned; its scratch follows), with
// the SEA layers' entries after it where the context runs SEA.
uint64_t persistent_table_bytes(const OptHparams &hp, bool sea) {
    return (hp.n_layer * (sizeof(cuda::PersistentLayer) + (sea ? sizeof(cuda::PersistentSeaLayer) : 0)) + 255) / 256 *
           256;
}

// Whether batch-1 decode runs as the persistent kernel: by default (SEAOPT_PERSISTENT_DECODE=0 turns it
// off) for a pre-LN model without project_in/out, a device and build with sm_90 (persistent_decode_plan).
// A context with SEA layers runs the split step by default (SEAOPT_PERSISTENT_SEA unset or "split"): the dense
// kernel in segments, the kernel-per-op SEA kernels between them (persistent_split_step). SEAOPT_PERSISTENT_SEA=1
// runs SEA inside the persistent kernel: correct (GpuEngine.PersistentSeaDecodeMatchesThePerOpStep) but slower on
// H100 (tg128 358 against 514-525 t/s for the per-op step, docs/development.md); 0 keeps the per-op step. On H100
// at the OPT-1.3B shape: tg128 ~856 t/s against the captured per-op step's ~706-723, ~737 against ~639 at depth
// 1,920 (docs/development.md). Q8_0 models too (the stream carries the int8 rows and scales: ~1,100 t/s against the
// per-op q8 step's ~1,010-1,030). Sets s.persistent, its shape and the bytes it adds.
void plan_persistent_decode(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s) {
    const char *env = std::getenv("SEAOPT_PERSISTENT_DECODE");
    const char *sea_env = std::getenv("SEAOPT_PERSISTENT_SEA");
    const std::string sea_mode = sea_env ? sea_env : "split";
    std::string why;
    if (env && std::string(env) == "0") {
        why = "SEAOPT_PERSISTENT_DECODE=0";
    } else if (!hp.pre_ln || hp.has_proj() || !hp.has_output_norm()) {
        why = "post-LN or projected model";
    } else if (s.sea_any && sea_mode == "0") {
        why = "SEA attention with SEAOPT_PERSISTENT_SEA=0";
    } else if (s.sea_any && sea_mode != "1" && sea_mode != "split") {
        throw Error(SEAOPT_ERR_INVALID_ARGUMENT, "SEAOPT_PERSISTENT_SEA must be split, 1 or 0, not '" + sea_mode + "'");
    } else {
        // SEA inside the kernel only where asked; else the split step plans the dense kernels.
        const bool inside = s.sea_any && sea_mode == "1";
        cuda::PersistentDecodeShape &sh = s.persistent_shape;
        sh.n_layer = (int)hp.n_layer;
        sh.C = (int)hp.n_embd;
        sh.F = (int)hp.n_ff;
        sh.V = (int)hp.n_vocab;
        sh.H = (int)hp.n_head;
        sh.head_dim = (int)hp.head_dim();
        sh.n_ctx = (int)s.n_ctx;
        sh.pos_offset = (int)hp.pos_offset;
        sh.eps = hp.ln_eps;
        sh.sea_image_floats = inside ? (int)(2 * s.sea_cfg.n_head * (s.sea_cfg.K / 4)) : 0;
        sh.q8 = w.q8;
        s.persistent = cuda::persistent_decode_plan(sh, w.device, inside ? &s.sea_cfg : nullptr, s.sea_state_stride);
        s.persistent_split = s.sea_any && !inside && s.persistent.ok;
        why = s.persistent.why;
    }
    if (!s.persistent.ok) {
        SEAOPT_LOG_INFO_("decode: one kernel per op, in a CUDA graph (persistent kernel off: %s)\n", why.c_str());
        return;
    }
    s.persistent_bytes = persistent_table_bytes(hp, s.sea_any) +
                         (cuda::persistent_decode_scratch_bytes(s.persistent, s.persistent_shape) + 255) / 256 * 256;
    SEAOPT_LOG_INFO_("decode: one persistent kernel (%d blocks, %d x %d KiB weight ring per block%s)\n",
                     s.persistent.grid, s.persistent.slots, s.persistent.slot_bytes >> 10,
                     s.persistent.sea      ? ", SEA attention inside"
                     : s.persistent_split ? ", in segments between the SEA layers' kernels"
                                          : "");
}

// The persistent kernel's layer table, after the KV cache (zeroed with it: the scratch must start at zero).
void upload_persistent_layers(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s) {
    char *at = static_cast<char *>(s.kv_block) + (s.kv_bytes + 255) / 256 * 256;
    std::vector<cuda::PersistentLayer> table(hp.n_layer);
    std::vector<cuda::PersistentSeaLayer> sea_table(s.sea_any ? hp.n_layer : 0);
    auto *sea_at = reinterpret_cast<cuda::PersistentSeaLayer *>(at + hp.n_layer * sizeof(cuda::PersistentLayer));
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        const LayerWeightsCuda &L = w.layers[l];
        const bool sea = s.sea_any && s.sea_on[l];
        if (sea) sea_table[l] = {s.sea_params[l], s.sea_layer_states(l)};
        table[l] = {L.attn_norm_w, L.attn_norm_b, L.qkv_w,  L.qkv_b,          L.o_w,           L.o_b,
                    L.ffn_norm_w,  L.ffn_norm_b,  L.up_w,   L.up_b,           L.down_w,        L.down_b,
                    s.k_cache(hp, l), s.v_cache(hp, l), sea ? sea_at + l : nullptr,
                    L.qkv_q8,      L.o_q8,        L.up_q8,  L.down_q8};
    }
    check(cudaMemcpy(at, table.data(), table.size() * sizeof(table[0]), cudaMemcpyHostToDevice),
          "uploading the decode layer table");
    if (!sea_table.empty()) {
        check(cudaMemcpy(sea_at, sea_table.data(), sea_table.size() * sizeof(sea_table[0]), cudaMemcpyHostToDevice),
              "uploading the decode SEA layer table");
    }
    s.persistent_layers = reinterpret_cast<cuda::PersistentLayer *>(at);
    s.persistent_scratch = at + persistent_table_bytes(hp, s.sea_any);
}

}  // namespace

std::unique_ptr<OptCudaState, OptCudaStateDeleter> create_cuda_state(const OptHparams &hp, const OptCudaWeights &w,
                                                                     uint32_t n_ctx, uint32_t n_seq, uint32_t n_batch,
                                                                     uint32_t n_head_batch, const SeaCpuState *sea,
                                                                     bool plan_only) {
    check(cudaSetDevice(w.device), "cudaSetDevice");
    std::unique_ptr<OptCudaState, OptCudaStateDeleter> s(new OptCudaState);
    s->hp = &hp;
    s->device = w.device;
    s->n_ctx = n_ctx;
    s->n_seq = n_seq;
    s->n_batch = n_batch;
    s->weights_bytes = w.bytes;
    s->kv_bytes = 2ull * hp.n_layer * s->per_layer_elems(hp) * sizeof(half_t);
    SeaParamsImage sea_upload;
    uint64_t sea_scratch = 0;
    if (sea && sea->any()) {
        s->sea_any = true;
        s->sea_cfg = sea->cfg;
        s->sea_on = sea->on;
        s->sea_index.assign(hp.n_layer, -1);
        int n_sea = 0;
        for (uint32_t l = 0; l < hp.n_layer; ++l) {
            if (sea->on[l]) s->sea_index[l] = n_sea++;
        }
        sea_upload = pack_sea_params(sea->cfg, sea->params, sea->on);
        s->sea_params_bytes = sea_upload.image.size();
        s->sea_state_stride = cuda::sea_decode_state_bytes(sea->cfg);
        s->sea_block_bytes = s->sea_params_bytes + (uint64_t)n_sea * n_seq * s->sea_state_stride;
        sea_scratch = sea_scratch_bytes(sea->cfg, n_ctx, n_seq, n_batch);
        s->sea_prefetch_max_pos = kDefaultSeaPrefetchMaxPos;
        if (const char *kv = std::getenv("SEAOPT_SEA_PREFETCH_KV")) {
            s->sea_prefetch_max_pos = std::max(0, std::atoi(kv));
        }
    }
    plan_persistent_decode(hp, w, *s);
    s->kv_alloc_bytes = (s->kv_bytes + 255) / 256 * 256 + s->persistent_bytes + kAttnCounterBytes;
    s->head_chunk_rows = std::min<uint32_t>(n_head_batch > 0 ? n_head_batch : kDefaultHeadChunkRows, n_batch);
    // Q8_0 models: batches of more than 16 rows dequantize each matrix into an fp16 scratch before its GEMM.
    if (w.q8) {
        const int C = (int)hp.n_embd, F = (int)hp.n_ff, B = (int)n_batch;
        s->dequant_scratch_bytes =
            std::max({cuda::gemm_q8_scratch_bytes(B, C, 3 * C), cuda::gemm_q8_scratch_bytes(B, C, C),
                      cuda::gemm_q8_scratch_bytes(B, C, F), cuda::gemm_q8_scratch_bytes(B, F, C)});
    }
    s->plan = plan_memory(opt_forward_buffers(hp, n_batch, s->head_chunk_rows, sea_scratch, s->dequant_scratch_bytes));
    if (plan_only) return s;  // seaopt_context_memory_estimate: the sizes, nothing allocated

    // Refuse before allocating anything if the plan does not fit.
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    const uint64_t need = s->kv_alloc_bytes + s->plan.arena_bytes + kGemmWorkspaceBytes + s->sea_block_bytes;
    if (need > free_b) {
        throw Error(SEAOPT_ERR_OUT_OF_MEMORY,
                    "the context needs " + std::to_string(need >> 20) + " MiB of GPU memory (KV cache " +
                        std::to_string(s->kv_bytes >> 20) + " MiB, activations " +
                        std::to_string(s->plan.arena_bytes >> 20) + " MiB" +
                        (s->sea_any ? ", SEA states and parameters " + std::to_string(s->sea_block_bytes >> 20) + " MiB"
                                    : std::string()) +
                        ") but only " + std::to_string(free_b >> 20) +
                        " MiB is free: lower n_ctx, n_seq_max or n_batch");
    }
    if (s->sea_any) {
        s->sea_block = device_alloc(s->sea_block_bytes, "the SEA estimator parameters and decode states");
        char *base = static_cast<char *>(s->sea_block);
        check(cudaMemcpy(base, sea_upload.image.data(), sea_upload.image.size(), cudaMemcpyHostToDevice),
              "uploading the SEA estimator");
        s->sea_params.resize(hp.n_layer);
        for (uint32_t l = 0; l < hp.n_layer; ++l) {
            if (s->sea_on[l]) s->sea_params[l] = sea_device_params(base, sea_upload.offsets[l]);
        }
        s->sea_states = base + s->sea_params_bytes;  // a multiple of 256: every piece was rounded up
        // A state is never read at position 0 (sea_cuda.h), so zeros are not needed; they make it deterministic.
        check(cudaMemset(s->sea_states, 0, s->sea_block_bytes - s->sea_params_bytes), "cudaMemset SEA states");
    }
    s->kv_block = device_alloc(s->kv_alloc_bytes, "the KV cache");
    check(cudaMemset(s->kv_block, 0, s->kv_alloc_bytes), "cudaMemset KV cache");
    s->attn_counters = reinterpret_cast<uint32_t *>(static_cast<char *>(s->kv_block) + s->kv_alloc_bytes -
                                                    kAttnCounterBytes);
    if (s->persistent.ok) upload_persistent_layers(hp, w, *s);
    s->arena = device_alloc(std::max<uint64_t>(s->plan.arena_bytes, 256), "the activation arena");
    for (const PlannedBuffer &b : s->plan.buffers) s->buffers[b.req.name] = static_cast<char *>(s->arena) + b.offset;
    check(cudaMallocHost(&s->host_staging, staging_bytes(n_batch)), "cudaMallocHost");
    check(cudaMallocHost(reinterpret_cast<void **>(&s->pinned_logits),
                         (s->persistent.ok ? 2 : 1) * (size_t)hp.n_vocab * sizeof(float)),
          "cudaMallocHost");
    // The persistent kernel stores the logits straight into the pinned row during its last phase instead of a
    // copy after it (H100: tg128 +2%); SEAOPT_PERSISTENT_ZERO_COPY=0 copies after.
    const char *zero_copy = std::getenv("SEAOPT_PERSISTENT_ZERO_COPY");
    if (s->persistent.ok && !(zero_copy && std::string(zero_copy) == "0")) {
        s->pinned_logits_on_device = mapped_on_device(s->pinned_logits);
    }
    const int n_argmax_keys = std::max(kArgmaxParts, s->persistent.ok ? s->persistent.grid : 0);
    check(cudaMallocHost(reinterpret_cast<void **>(&s->pinned_argmax), (size_t)n_argmax_keys * sizeof(uint64_t)),
          "cudaMallocHost");
    s->pinned_argmax_on_device = mapped_on_device(s->pinned_argmax);
    if (s->persistent.ok && !s->persistent.sea && !s->persistent_split) {
        check(cudaMallocHost(reinterpret_cast<void **>(&s->pinned_picks), (size_t)n_ctx * sizeof(int32_t)),
              "cudaMallocHost");
        s->pinned_picks_on_device = mapped_on_device(s->pinned_picks);
    }
    const char *no_graph = std::getenv("SEAOPT_NO_CUDA_GRAPH");
    s->graphs_enabled = !(no_graph && std::string(no_graph) == "1");
    check(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    if (n_batch >= kPersistMinRows) {
        s->l2_persist_bytes = l2_persist_setup(s->device, (size_t)n_batch * hp.n_embd * 4, &s->l2_window_max);
    }
    s->gemm = cuda::gemm_create();
    SEAOPT_LOG_INFO_("%s", cuda_memory_report(*s).c_str());
    return s;
}

std::string cuda_memory_report(const OptCudaState &s) {
    char line[512];
    const double MiB = 1048576.0;
    const double fixed = (double)kGemmWorkspaceBytes;
    std::snprintf(line, sizeof line,
                  "GPU memory: weights %.1f MiB, KV cache %.1f MiB, activation arena %.1f MiB, workspace %.1f MiB%s, "
                  "total %.1f MiB\n",
                  s.weights_bytes / MiB, s.kv_bytes / MiB, s.plan.arena_bytes / MiB, (fixed + s.sea_block_bytes) / MiB,
                  s.sea_any ? " (SEA states and parameters included)" : "",
                  (s.weights_bytes + s.kv_bytes + s.plan.arena_bytes + fixed + s.sea_block_bytes) / MiB);
    std::string out = line;
    if (s.sea_any) {
        // The same context with dense attention, for comparison: the plan without SEA's buffers.
        const std::vector<BufferRequest> dense_req =
            opt_forward_buffers(*s.hp, s.n_batch, s.head_chunk_rows, 0, s.dequant_scratch_bytes);
        const MemoryPlan dense = plan_memory(dense_req);
        const size_t n_sea = (size_t)std::count(s.sea_on.begin(), s.sea_on.end(), 1);
        const cuda::SeaPrefillScratchLayout P = cuda::sea_prefill_scratch_layout(s.sea_cfg, std::min(s.n_batch, s.n_ctx));
        out += "                       dense        SEA  (n_batch " + std::to_string(s.n_batch) + ", n_ctx " +
               std::to_string(s.n_ctx) + ", n_seq " + std::to_string(s.n_seq) + ")\n";
        auto row = [&](const char *name, double a, double b) {
            std::snprintf(line, sizeof line, "  %-18s %9.1f %10.1f MiB\n", name, a / MiB, b / MiB);
            out += line;
        };
        row("weights", (double)s.weights_bytes, (double)s.weights_bytes);
        row("KV cache", (double)s.kv_bytes, (double)s.kv_bytes);
        row("activation arena", (double)dense.arena_bytes, (double)s.plan.arena_bytes);
        row("  of it SEA scratch", 0.0, (double)s.plan_bytes("sea_scratch"));
        row("SEA decode states", 0.0, (double)(s.sea_block_bytes - s.sea_params_bytes));
        row("SEA parameters", 0.0, (double)s.sea_params_bytes);
        row("GEMM workspace", fixed, fixed);
        row("total", (double)s.weights_bytes + s.kv_bytes + dense.arena_bytes + fixed,
            (double)s.weights_bytes + s.kv_bytes + s.plan.arena_bytes + fixed + s.sea_block_bytes);
        std::snprintf(line, sizeof line,
                      "SEA: %zu of %zu layers, k %zu, K %zu; prefill scratch per layer at T = %u: Performer chunk "
                      "states %.1f | A-hat [T,H,K] %.1f | sum v [T,H,64] %.1f (one region, reused), decoder image "
                      "%.1f, conv1 %.1f, gates %.2f, cell masks %.2f MiB; no T x T buffer, no per-key buffer\n",
                      n_sea, s.sea_on.size(), s.sea_cfg.k, s.sea_cfg.K, std::min(s.n_batch, s.n_ctx),
                      P.perf_state_bytes / MiB, P.probs_bytes / MiB, P.v_prefix_bytes / MiB, P.image_bytes / MiB,
                      P.conv1_bytes / MiB, P.gates_bytes / MiB, P.cell_mask_bytes / MiB);
        out += line;
    }
    return out + format_memory_plan(s.plan);
}

// cudaMalloc hands out memory in 2 MiB pages: the footprint of an allocation is its size rounded up.
uint64_t device_footprint(uint64_t bytes) {
    constexpr uint64_t kPage = 2ull << 20;
    return (bytes + kPage - 1) / kPage * kPage;
}

CudaMemoryNumbers cuda_memory_numbers(const OptCudaState &s) {
    CudaMemoryNumbers m;
    m.weights = device_footprint(s.weights_bytes);
    m.kv_cache = device_footprint(s.kv_alloc_bytes);  // with the attention counters
    m.arena = device_footprint(s.plan.arena_bytes);
    // cuBLASLt workspace (staging buffers are host memory), and the SEA states and parameters.
    m.sea = s.sea_any ? device_footprint(s.sea_block_bytes) : 0;
    m.workspace = device_footprint(kGemmWorkspaceBytes) + m.sea;
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(s.device) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        m.device_used = total_b - free_b;
        m.device_free = free_b;
    } else {
        cudaGetLastError();
    }
    return m;
}

namespace {

// The greedy pick from the device's keys (engine/argmax_key.h), or -1 (a NaN or only -inf: the sampler decides).
int32_t greedy_from_keys(const uint64_t *keys, int n) {
    uint64_t best = kArgmaxKeyNone;
    for (int i = 0; i < n; ++i) best = std::max(best, keys[i]);
    return argmax_key_token(best);
}

// The persistent kernel's arguments that do not change between steps: the weights, the scratch, the greedy keys.
cuda::PersistentDecodeArgs persistent_args(const OptCudaWeights &w, const OptCudaState &s) {
    cuda::PersistentDecodeArgs a;
    a.layers = s.persistent_layers;
    a.tok_embd = w.tok_embd;
    a.pos_embd = w.pos_embd;
    a.out_norm_w = w.out_norm_w;
    a.out_norm_b = w.out_norm_b;
    a.lm_head = w.lm_head;
    a.scratch = s.persistent_scratch;
    a.argmax_parts = s.pinned_argmax_on_device;
    a.sea_prefetch_max_pos = s.sea_prefetch_max_pos;
    return a;
}

// SEA layer l's incremental decode of `rows` (sea_cuda.h): q, k, v from the fused qkv rows, the attention output to
// attn, the arena's SEA scratch; append: the first kernel writes each row's key and value into the layer's cache
// (else they are there already). q is scaled by head_dim^-1/2 inside (1/8 for OPT's heads: exact).
void enqueue_sea_decode(const OptHparams &hp, OptCudaState &s, uint32_t l, const half_t *qkv,
                        const cuda::SeaDecodeRows &rows, bool append, half_t *attn, cudaStream_t st) {
    const int C = (int)hp.n_embd, H = (int)hp.n_head, hd = (int)hp.head_dim(), n_ctx = (int)s.n_ctx;
    const cuda::SeaKvCache cache{s.k_cache(hp, l), s.v_cache(hp, l), (int64_t)H * n_ctx * hd, (int64_t)n_ctx * hd,
                                 append, s.sea_prefetch_max_pos};
    cuda::sea_attention_decode_cuda(s.sea_cfg, s.sea_params[l], cuda::sea_qkv_fused(qkv, H),
                                    1.0f / std::sqrt((float)hd), rows, cache, s.sea_layer_states(l),
                                    s.sea_state_stride, attn, C, s.buffer("sea_scratch"), s.plan_bytes("sea_scratch"),
                                    st);
}

// The split step (s.persistent_split): the persistent kernel in segments, each SEA layer's attention between them
// as the kernel-per-op SEA decode (sea_cuda.h), all enqueued on the stream. The segment before SEA layer l stops
// after l's qkv GEMV (q, k, v to the arena's qkv buffer, K and V to the cache), the SEA kernels write the attention
// output to the arena's attn buffer, and the next segment resumes at l's out-projection. a: the step's arguments
// (token, position, logits, ...); rows: the one SEA decode row (row 0, its position and sequence) on the device.
void persistent_split_step(const OptHparams &hp, OptCudaState &s, const cuda::PersistentDecodeArgs &a,
                           const cuda::SeaDecodeRows &rows, cudaStream_t st) {
    half_t *qkv = reinterpret_cast<half_t *>(s.buffer("qkv"));
    half_t *attn = reinterpret_cast<half_t *>(s.buffer("attn"));
    cuda::PersistentDecodeArgs seg = a;
    seg.layer_begin = 0;
    seg.attn_in = nullptr;
    // A step stopped between its segments (a failed launch) has written handover words with some of its tags: the
    // next step must not reuse them, or its waits would take those words as ready.
    const uint32_t step_tag = s.persistent_tag;
    try {
        for (uint32_t l = 0; l < hp.n_layer; ++l) {
            if (!s.sea_on[l]) continue;
            seg.layer_end = (int)l + 1;
            seg.qkv_out = qkv;
            cuda::persistent_decode(s.persistent, s.persistent_shape, seg, &s.persistent_tag, st);
            // The segment wrote the row's key and value into the cache: no append.
            enqueue_sea_decode(hp, s, l, qkv, rows, /*append=*/false, attn, st);
            seg.layer_begin = (int)l;
            seg.attn_in = attn;
        }
        seg.layer_end = (int)hp.n_layer;
        seg.qkv_out = nullptr;
        cuda::persistent_decode(s.persistent, s.persistent_shape, seg, &s.persistent_tag, st);
    } catch (...) {
        if (s.persistent_tag == step_tag) s.persistent_tag += (uint32_t)s.persistent.tags_per_step;
        throw;
    }
}

// The forward of both entry points: with output_targets == nullptr it writes the logits of the
// outputs to host_out ([N, V]); otherwise the fused loss writes one NLL per output to host_out ([N]).
void forward_impl(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s, const std::vector<TokenSlot> &tokens,
                  const std::vector<int32_t> &output_tokens, const std::vector<int32_t> *output_targets,
                  float *host_out, int32_t *greedy, const float **logits_view) {
    const bool fused_loss = output_targets != nullptr;
    if (greedy) *greedy = -1;
    if (logits_view) *logits_view = nullptr;
    const int T = (int)tokens.size(), N = (int)output_tokens.size();
    const int C = (int)hp.n_embd, D = (int)hp.n_embd_proj, F = (int)hp.n_ff, V = (int)hp.n_vocab;
    const int H = (int)hp.n_head, hd = (int)hp.head_dim(), n_ctx = (int)s.n_ctx;
    if (T < 1 || (uint32_t)T > s.n_batch) throw Error(SEAOPT_ERR_INTERNAL, "batch size outside the plan");
    check(cudaSetDevice(s.device), "cudaSetDevice");
    cudaStream_t st = s.stream;

    // Batch metadata: host (pinned) -> device buffers of the arena.
    int32_t *h_ids = static_cast<int32_t *>(s.host_staging);
    int32_t *h_pos = h_ids + T, *h_seq = h_pos + T, *h_out = h_seq + T;
    int32_t *h_tgt = h_ids + 4 * (size_t)s.n_batch;
    auto *h_tiles = reinterpret_cast<cuda::AttentionTile *>(h_ids + kStagingInt32Arrays * (size_t)s.n_batch);
    float *h_nll = reinterpret_cast<float *>(h_tiles + s.n_batch);
    int max_pos = 0;
    for (int i = 0; i < T; ++i) {
        h_ids[i] = tokens[(size_t)i].token;
        h_pos[i] = tokens[(size_t)i].pos;
        h_seq[i] = tokens[(size_t)i].seq;
        max_pos = std::max(max_pos, h_pos[i]);
    }
    for (int r = 0; r < N; ++r) h_out[r] = output_tokens[(size_t)r];
    if (fused_loss) {
        if (output_targets->size() != output_tokens.size()) {
            throw Error(SEAOPT_ERR_INTERNAL, "fused loss: one target per output is needed");
        }
        for (int r = 0; r < N; ++r) h_tgt[r] = (*output_targets)[(size_t)r];
    }
    // SEA layers: the sequences that run the SEA prefill (n >= 2 tokens in the consecutive batch rows row0..row0+n-1,
    // at positions p0..p0+n-1: from 0, or continuing the sequence from its decode state, sea_cuda.h), and decode
    // waves for every other token: wave w holds the w-th of each remaining sequence's tokens (one row per sequence
    // per call), in batch order.
    struct SeaPrefill {
        int seq, row0, n, p0;
    };
    std::vector<SeaPrefill> sea_prefills;
    std::vector<std::pair<int, int>> sea_waves;  // (first row in the wave arrays, rows)
    int32_t *h_wrow = h_ids + 5 * (size_t)s.n_batch, *h_wpos = h_ids + 6 * (size_t)s.n_batch;
    int32_t *h_wseq = h_ids + 7 * (size_t)s.n_batch;
    int n_wave_rows = 0;
    if (s.sea_any) {
        std::map<int, std::vector<int>> rows_of;
        for (int i = 0; i < T; ++i) rows_of[h_seq[i]].push_back(i);
        std::vector<const std::vector<int> *> pending;
        for (const auto &[sq, rows] : rows_of) {
            bool consecutive = true;
            for (size_t k = 1; k < rows.size(); ++k) consecutive = consecutive && rows[k] == rows[0] + (int)k;
            // (validate_batch has checked that a sequence's positions are consecutive from its length.)
            if (rows.size() >= 2 && consecutive) {
                sea_prefills.push_back({sq, rows[0], (int)rows.size(), h_pos[rows[0]]});
            } else {
                pending.push_back(&rows);
            }
        }
        for (size_t w = 0;; ++w) {
            const int first = n_wave_rows;
            for (const std::vector<int> *rows : pending) {
                if (w >= rows->size()) continue;
                const int i = (*rows)[w];
                h_wrow[n_wave_rows] = i;
                h_wpos[n_wave_rows] = h_pos[i];
                h_wseq[n_wave_rows] = h_seq[i];
                ++n_wave_rows;
            }
            if (n_wave_rows == first) break;
            sea_waves.emplace_back(first, n_wave_rows - first);
        }
    }
    int n_tiles = 0;
    cuda::make_attention_tiles(h_tiles, &n_tiles, h_seq, h_pos, T);
    bool all_single = true;
    for (int i = 0; i < n_tiles; ++i) all_single = all_single && h_tiles[i].n_rows == 1;
    // A batch whose sequences each come as one run of rows (a decode step of distinct sequences, a
    // prefill, a batch of perplexity windows) lets the dense attention kernels append K and V
    // themselves (no block reads a key that another appends): one launch fewer per layer.
    const bool fused_append = cuda::attention_tiles_one_run_per_sequence(h_tiles, n_tiles);

    // The kernel-per-op step's greedy pick (a batch with one logits row): argmax_parts after the head, its keys read
    // after the stream.
    const bool per_op_pick = !fused_loss && N == 1 && s.pinned_argmax_on_device != nullptr;
    if (s.x_window_set) set_x_window(s, nullptr, 0, cudaAccessPropertyNormal);  // a forward stopped by an error
    // Everything from the metadata upload to the logits (or NLL) download, enqueued on the stream.
    auto enqueue = [&](float *dst) {
        auto *ids = reinterpret_cast<int32_t *>(s.buffer("ids"));
        auto *pos = reinterpret_cast<int32_t *>(s.buffer("positions"));
        auto *seq = reinterpret_cast<int32_t *>(s.buffer("seq_ids"));
        auto *out_rows = reinterpret_cast<int32_t *>(s.buffer("output_rows"));
        auto *tiles = reinterpret_cast<cuda::AttentionTile *>(s.buffer("tiles"));
        check(cudaMemcpyAsync(ids, h_ids, T * 4, cudaMemcpyHostToDevice, st), "copy ids");
        check(cudaMemcpyAsync(pos, h_pos, T * 4, cudaMemcpyHostToDevice, st), "copy positions");
        check(cudaMemcpyAsync(seq, h_seq, T * 4, cudaMemcpyHostToDevice, st), "copy sequence ids");
        if (N) check(cudaMemcpyAsync(out_rows, h_out, N * 4, cudaMemcpyHostToDevice, st), "copy output rows");
        int32_t *targets = fused_loss ? reinterpret_cast<int32_t *>(s.buffer("targets")) : nullptr;
        if (fused_loss && N) check(cudaMemcpyAsync(targets, h_tgt, N * 4, cudaMemcpyHostToDevice, st), "copy targets");
        check(cudaMemcpyAsync(tiles, h_tiles, n_tiles * sizeof(cuda::AttentionTile), cudaMemcpyHostToDevice, st),
              "copy attention tiles");
        int32_t *d_wrow = nullptr, *d_wpos = nullptr, *d_wseq = nullptr;
        if (n_wave_rows > 0) {
            d_wrow = reinterpret_cast<int32_t *>(s.buffer("sea_rows"));
            d_wpos = d_wrow + s.n_batch;
            d_wseq = d_wpos + s.n_batch;
            check(cudaMemcpyAsync(d_wrow, h_wrow, n_wave_rows * 4, cudaMemcpyHostToDevice, st), "copy SEA rows");
            check(cudaMemcpyAsync(d_wpos, h_wpos, n_wave_rows * 4, cudaMemcpyHostToDevice, st), "copy SEA positions");
            check(cudaMemcpyAsync(d_wseq, h_wseq, n_wave_rows * 4, cudaMemcpyHostToDevice, st), "copy SEA sequences");
        }

        float *x = reinterpret_cast<float *>(s.buffer("x"));
        const bool persist_x = s.l2_persist_bytes > 0 && T >= (int)kPersistMinRows;
        if (persist_x) set_x_window(s, x, (size_t)T * C * 4, cudaAccessPropertyPersisting);
        half_t *h16 = reinterpret_cast<half_t *>(s.buffer("h16"));
        // The ffn LayerNorm's output: its own buffer in pre-LN models (memory_plan.h), h16 in post-LN.
        half_t *h16_ffn = hp.pre_ln ? reinterpret_cast<half_t *>(s.buffer("h16_ffn")) : h16;
        cuda::AttentionOptions attn_opt;
        attn_opt.append_kv = fused_append;
        attn_opt.partials = reinterpret_cast<float *>(s.buffer_or_null("attn_partials"));
        attn_opt.partials_bytes = attn_opt.partials ? s.plan_bytes("attn_partials") : 0;
        attn_opt.counters = s.attn_counters;
        attn_opt.counters_bytes = kAttnCounterBytes;
        half_t *qkv = reinterpret_cast<half_t *>(s.buffer("qkv"));
        half_t *attn = reinterpret_cast<half_t *>(s.buffer("attn"));
        half_t *ff = reinterpret_cast<half_t *>(s.buffer("ff"));
        // Q8_0 models' dequantized matrix before a GEMM of more than 16 rows (memory_plan.h); null otherwise.
        half_t *w16 = reinterpret_cast<half_t *>(s.buffer_or_null("dequant_w16"));

        // Embeddings (+ project_in for OPT-350m-style models).
        const int pos_offset = (int)hp.pos_offset;
        if (hp.has_proj()) {
            half_t *e = reinterpret_cast<half_t *>(s.buffer("embd_proj_in"));
            cuda::gather_rows_f16(e, w.tok_embd, ids, T, D, st);
            cuda::gemm_f16_to_f32(s.gemm, x, e, w.proj_in, nullptr, 0.0f, T, D, C, st);
            cuda::embedding_forward(x, nullptr, w.pos_embd, ids, pos, T, C, pos_offset, st);
        } else {
            cuda::embedding_forward(x, w.tok_embd, w.pos_embd, ids, pos, T, C, pos_offset, st);
        }
        if (!hp.pre_ln) cuda::convert_f32_to_f16(h16, x, (size_t)T * C, st);

        const float eps = hp.ln_eps;
        for (uint32_t l = 0; l < hp.n_layer; ++l) {
            const LayerWeightsCuda &L = w.layers[l];
            half_t *k_l = s.k_cache(hp, l), *v_l = s.v_cache(hp, l);
            // Pre-LN: LN1 and the qkv GEMM in one call (one kernel for decode batches of <= 8 rows,
            // gemm.h: gemm_f16_layernorm; h16 is its scratch otherwise).
            if (w.q8) {  // Q8_0: the LayerNorm apart (gemm.h: gemm_q8_f16 takes fp16 rows)
                if (hp.pre_ln) cuda::layernorm_forward(h16, nullptr, x, L.attn_norm_w, L.attn_norm_b, T, C, eps, st);
                cuda::gemm_q8_f16(s.gemm, qkv, h16, L.qkv_q8, L.qkv_b, cuda::Epilogue::Bias, T, C, 3 * C, w16, st);
            } else if (hp.pre_ln) {
                cuda::gemm_f16_layernorm(s.gemm, qkv, h16, x, L.attn_norm_w, L.attn_norm_b, eps, L.qkv_w, L.qkv_b,
                                         cuda::Epilogue::Bias, T, C, 3 * C, st);
            } else {
                cuda::gemm_f16(s.gemm, qkv, h16, L.qkv_w, L.qkv_b, cuda::Epilogue::Bias, T, C, 3 * C, st);
            }
            const bool sea_layer = s.sea_any && s.sea_on[l];
            // Every row's key and value go into the cache inside the attention: SEA layers' prefills copy their
            // rows in their first kernel and the SEA decode's first kernel appends each wave's; the dense kernels
            // do it where each sequence's rows are one run (fused_append). Only other dense batches append first.
            if (!sea_layer && !fused_append) cuda::kv_cache_append(k_l, v_l, qkv, seq, pos, T, H, hd, n_ctx, st);
            if (sea_layer) {
                // SEA attention (sea_cuda.h); q is scaled by head_dim^-1/2 = 1/8 inside (exact: a power of two).
                const cuda::SeaDeviceParams &P = s.sea_params[l];
                char *states = s.sea_layer_states(l);
                void *scratch = s.buffer("sea_scratch");
                const size_t scratch_bytes = s.plan_bytes("sea_scratch");
                const float q_scale = 1.0f / std::sqrt((float)hd);
                for (const SeaPrefill &pf : sea_prefills) {
                    const int64_t seq_at = (int64_t)pf.seq * H * n_ctx * hd;  // the sequence's cache
                    const cuda::SeaKvOut kv{k_l + seq_at, v_l + seq_at, (int64_t)n_ctx * hd};
                    cuda::sea_attention_prefill_cuda(s.sea_cfg, P, cuda::sea_qkv_fused(qkv + (size_t)pf.row0 * 3 * C, H),
                                                     q_scale, pf.n, attn + (size_t)pf.row0 * C, C, scratch,
                                                     scratch_bytes, st, nullptr,
                                                     states + (size_t)pf.seq * s.sea_state_stride, kv, pf.p0);
                }
                for (const auto &[first, R] : sea_waves) {
                    const cuda::SeaDecodeRows rows{d_wrow + first, d_wpos + first, d_wseq + first, R};
                    enqueue_sea_decode(hp, s, l, qkv, rows, /*append=*/true, attn, st);
                }
            } else {
                cuda::attention_forward(attn, qkv, k_l, v_l, tiles, n_tiles, all_single, max_pos, H, hd, n_ctx,
                                        attn_opt, st);
            }
            // The last layer's accesses of x turn its persisting lines back to normal (l2_persist_setup).
            if (persist_x && l + 1 == hp.n_layer) set_x_window(s, x, (size_t)T * C * 4, cudaAccessPropertyNormal);
            if (w.q8) {
                cuda::gemm_q8_to_f32(s.gemm, x, attn, L.o_q8, L.o_b, 1.0f, T, C, C, w16, st);  // x += out_proj(attn)
                if (hp.pre_ln) {
                    cuda::layernorm_forward(h16_ffn, nullptr, x, L.ffn_norm_w, L.ffn_norm_b, T, C, eps, st);
                } else {
                    cuda::layernorm_forward(h16, x, x, L.attn_norm_w, L.attn_norm_b, T, C, eps, st);  // x = LN1(x)
                }
                cuda::gemm_q8_f16(s.gemm, ff, h16_ffn, L.up_q8, L.up_b, cuda::Epilogue::BiasRelu, T, C, F, w16, st);
                cuda::gemm_q8_to_f32(s.gemm, x, ff, L.down_q8, L.down_b, 1.0f, T, F, C, w16, st);  // x += fc2(..)
            } else {
                cuda::gemm_f16_to_f32(s.gemm, x, attn, L.o_w, L.o_b, 1.0f, T, C, C, st);  // x += out_proj(attn)
                if (hp.pre_ln) {  // LN2 and fc1 in one call, as above
                    cuda::gemm_f16_layernorm(s.gemm, ff, h16_ffn, x, L.ffn_norm_w, L.ffn_norm_b, eps, L.up_w, L.up_b,
                                             cuda::Epilogue::BiasRelu, T, C, F, st);
                } else {
                    cuda::layernorm_forward(h16, x, x, L.attn_norm_w, L.attn_norm_b, T, C, eps, st);  // x = LN1(x)
                    cuda::gemm_f16(s.gemm, ff, h16_ffn, L.up_w, L.up_b, cuda::Epilogue::BiasRelu, T, C, F, st);
                }
                cuda::gemm_f16_to_f32(s.gemm, x, ff, L.down_w, L.down_b, 1.0f, T, F, C, st);  // x += fc2(relu(fc1))
            }
            if (!hp.pre_ln) cuda::layernorm_forward(h16, x, x, L.ffn_norm_w, L.ffn_norm_b, T, C, eps, st);  // x = LN2(x)
        }
        if (persist_x) set_x_window(s, nullptr, 0, cudaAccessPropertyNormal);

        // The head, in chunks of at most head_chunk_rows outputs: the logits buffer of the arena
        // holds one chunk (26 MB for OPT), not all of a 2048-token window's (412 MB).
        float *head_x = reinterpret_cast<float *>(s.buffer_or_null("head_x"));
        half_t *head16 = reinterpret_cast<half_t *>(s.buffer_or_null("head16"));
        float *logits = reinterpret_cast<float *>(s.buffer_or_null("logits"));
        for (int r0 = 0; r0 < N; r0 += (int)s.head_chunk_rows) {
            const int n = std::min((int)s.head_chunk_rows, N - r0);
            cuda::gather_rows_f32(head_x, x, out_rows + r0, n, C, st);
            // The final LayerNorm goes into the GEMM that follows it (project_out or the lm_head),
            // fused for <= 8 rows where the GEMV takes the shape (gemm.h); head16 is its scratch.
            if (hp.has_output_norm() && hp.has_proj()) {
                half_t *hp16 = reinterpret_cast<half_t *>(s.buffer("head_proj16"));
                cuda::gemm_f16_layernorm(s.gemm, hp16, head16, head_x, w.out_norm_w, w.out_norm_b, eps, w.proj_out,
                                         nullptr, cuda::Epilogue::None, n, C, D, st);
                cuda::gemm_f16_to_f32(s.gemm, logits, hp16, w.lm_head, nullptr, 0.0f, n, D, V, st);
            } else if (hp.has_output_norm()) {
                cuda::gemm_f16_to_f32_layernorm(s.gemm, logits, head16, head_x, w.out_norm_w, w.out_norm_b, eps,
                                                w.lm_head, nullptr, 0.0f, n, C, V, st);
            } else {
                cuda::convert_f32_to_f16(head16, head_x, (size_t)n * C, st);
                const half_t *head_in = head16;
                if (hp.has_proj()) {
                    half_t *hp16 = reinterpret_cast<half_t *>(s.buffer("head_proj16"));
                    cuda::gemm_f16(s.gemm, hp16, head16, w.proj_out, nullptr, cuda::Epilogue::None, n, C, D, st);
                    head_in = hp16;
                }
                cuda::gemm_f16_to_f32(s.gemm, logits, head_in, w.lm_head, nullptr, 0.0f, n, D, V, st);
            }
            if (per_op_pick) {  // the greedy pick's keys, read by the host after the stream (greedy_from_keys)
                cuda::argmax_parts(s.pinned_argmax_on_device, logits, V, kArgmaxParts, st);
            }
            if (fused_loss) {
                // Only the n NLLs leave the device, not the n x V logits: all of them at once below.
                float *nll = reinterpret_cast<float *>(s.buffer("nll"));
                cuda::log_softmax_nll(nll + r0, logits, targets + r0, n, V, st);
            } else {
                check(cudaMemcpyAsync(dst + (size_t)r0 * V, logits, (size_t)n * V * 4, cudaMemcpyDeviceToHost,
                                      st),
                      "copy logits");
            }
        }
        if (fused_loss && N) {
            check(cudaMemcpyAsync(dst, s.buffer("nll"), (size_t)N * 4, cudaMemcpyDeviceToHost, st), "copy NLLs");
        }
    };

    // Batch-1 decode of one sequence: the persistent kernel where planned (embedding to logits in one launch).
    if (!fused_loss && T == 1 && N == 1 && h_out[0] == 0 && s.persistent.ok) {
        cuda::PersistentDecodeArgs a = persistent_args(w, s);
        // Mapped: the kernel stores the logits into the pinned row the caller is not reading (next_logits_row).
        float *const row = s.pinned_logits + (s.pinned_logits_on_device ? (size_t)s.next_logits_row * V : 0);
        a.logits = s.pinned_logits_on_device ? s.pinned_logits_on_device + (size_t)s.next_logits_row * V
                                             : reinterpret_cast<float *>(s.buffer("logits"));
        // SEAOPT_PERSISTENT_PROFILE=1: per-block clock spans of thread 0, summed over the steps and
        // logged (WARN) when the context is freed: where a step's time goes (docs/development.md).
        static const bool profile = std::getenv("SEAOPT_PERSISTENT_PROFILE") != nullptr;
        if (profile && s.persistent_profile == nullptr) {
            const size_t bytes = (size_t)s.persistent.grid * cuda::kPersistentProfileSpans * 8;
            check(cudaMalloc(&s.persistent_profile, bytes), "profile");
            check(cudaMemset(s.persistent_profile, 0, bytes), "profile");
        }
        a.profile = static_cast<long long *>(s.persistent_profile);
        if (profile) ++s.persistent_steps;
        a.token = h_ids[0];
        a.pos = h_pos[0];
        a.seq = h_seq[0];
        // The profile's host side: wall times of this call's parts, the kernel's time by events, and the
        // time between the end of the previous call and the start of this one (the caller's share).
        using HostClock = std::chrono::steady_clock;
        const auto now = [] { return profile ? HostClock::now() : HostClock::time_point{}; };
        const HostClock::time_point h0 = now();
        if (profile) {
            if (!s.profile_events[0]) {
                check(cudaEventCreate(&s.profile_events[0]), "profile event");
                check(cudaEventCreate(&s.profile_events[1]), "profile event");
            }
            check(cudaEventRecord(s.profile_events[0], st), "profile event");
        }
        if (s.persistent_split) {
            // The SEA decode row (n_wave_rows is 1): batch row 0, its position and sequence.
            int32_t *d_rows = reinterpret_cast<int32_t *>(s.buffer("sea_rows"));
            check(cudaMemcpyAsync(d_rows, h_wrow, 4, cudaMemcpyHostToDevice, st), "copy SEA rows");
            check(cudaMemcpyAsync(d_rows + 1, h_wpos, 4, cudaMemcpyHostToDevice, st), "copy SEA positions");
            check(cudaMemcpyAsync(d_rows + 2, h_wseq, 4, cudaMemcpyHostToDevice, st), "copy SEA sequences");
            persistent_split_step(hp, s, a, cuda::SeaDecodeRows{d_rows, d_rows + 1, d_rows + 2, 1}, st);
        } else {
            cuda::persistent_decode(s.persistent, s.persistent_shape, a, &s.persistent_tag, st);
        }
        if (profile) check(cudaEventRecord(s.profile_events[1], st), "profile event");
        if (!s.pinned_logits_on_device) {
            check(cudaMemcpyAsync(s.pinned_logits, a.logits, (size_t)V * sizeof(float), cudaMemcpyDeviceToHost, st),
                  "copy logits");
        }
        const HostClock::time_point h1 = now();
        check(cudaStreamSynchronize(st), "the forward");
        const HostClock::time_point h2 = now();
        if (logits_view && s.pinned_logits_on_device) {
            *logits_view = row;  // read in place: no 200 KB copy per token (~11 us on the GPU machine)
            s.next_logits_row ^= 1;
        } else {
            std::memcpy(host_out, row, (size_t)V * sizeof(float));
        }
        if (greedy && a.argmax_parts) *greedy = greedy_from_keys(s.pinned_argmax, s.persistent.grid);
        if (profile) {
            const HostClock::time_point h3 = HostClock::now();
            float kernel_ms = 0.0f;
            check(cudaEventElapsedTime(&kernel_ms, s.profile_events[0], s.profile_events[1]), "profile event");
            auto us = [](HostClock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
            const double gap = us(h0 - s.last_forward_end);
            if (s.persistent_steps > 1 && gap < 1000.0) {  // longer: the caller did something else between steps
                s.host_profile[0] += gap;
                ++s.host_profile_gaps;
            }
            s.host_profile[1] += us(h1 - h0);
            s.host_profile[2] += us(h2 - h1);
            s.host_profile[3] += us(h3 - h2);
            s.host_profile[4] += 1e3 * kernel_ms;
            s.last_forward_end = h3;
        }
        return;
    }

    // Only the logits path is captured: the fused loss runs with plain launches.
    const bool graphable = !fused_loss && s.graphs_enabled && T == 1 && N == 1;
    if (graphable && !s.decode_graph && s.n_decode_steps++ >= 1) {
        cudaGraph_t graph = nullptr;
        check(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        try {
            enqueue(s.pinned_logits);
            check(cudaStreamEndCapture(st, &graph), "cudaStreamEndCapture");
            const cudaError_t err = cudaGraphInstantiate(&s.decode_graph, graph, 0);
            cudaGraphDestroy(graph);
            check(err, "cudaGraphInstantiate");
        } catch (const std::exception &e) {
            // Capture is an optimisation: fall back to plain launches, say so once.
            cudaStreamEndCapture(st, &graph);
            if (graph) cudaGraphDestroy(graph);
            cudaGetLastError();
            s.decode_graph = nullptr;
            s.graphs_enabled = false;
            SEAOPT_LOG_WARN_("CUDA graph capture of the decode step failed (%s); running without graphs\n", e.what());
        }
    }
    if (graphable && s.decode_graph) {
        check(cudaGraphLaunch(s.decode_graph, st), "cudaGraphLaunch");
        check(cudaStreamSynchronize(st), "the forward");
        std::memcpy(host_out, s.pinned_logits, (size_t)V * sizeof(float));
        if (greedy && per_op_pick) *greedy = greedy_from_keys(s.pinned_argmax, kArgmaxParts);
        return;
    }
    // The NLLs come back through pinned memory (an asynchronous copy), then go to host_out.
    enqueue(fused_loss ? h_nll : host_out);
    check(cudaStreamSynchronize(st), "the forward");
    if (fused_loss) std::memcpy(host_out, h_nll, (size_t)N * sizeof(float));
    if (greedy && per_op_pick) *greedy = greedy_from_keys(s.pinned_argmax, kArgmaxParts);
}

}  // namespace

bool opt_cuda_greedy_chain(const OptCudaState &s) {
    return s.persistent.ok && !s.persistent.sea && !s.persistent_split && s.persistent.mode == 0 &&
           s.pinned_picks_on_device != nullptr && s.pinned_logits_on_device != nullptr;
}

int32_t opt_generate_greedy_cuda(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s, int32_t seq,
                                 int32_t pos, int32_t token, int32_t n_steps, int32_t stop_token, int32_t *picks,
                                 const float **logits_view) {
    if (!opt_cuda_greedy_chain(s)) throw Error(SEAOPT_ERR_INTERNAL, "greedy chain: not available on this context");
    if (n_steps < 1 || pos < 0 || (int64_t)pos + n_steps > (int64_t)s.n_ctx || seq < 0 || (uint32_t)seq >= s.n_seq) {
        throw Error(SEAOPT_ERR_INTERNAL, "greedy chain: steps outside the context");
    }
    check(cudaSetDevice(s.device), "cudaSetDevice");
    if (s.x_window_set) set_x_window(s, nullptr, 0, cudaAccessPropertyNormal);  // a prefill stopped by an error
    cudaStream_t st = s.stream;
    const int V = (int)hp.n_vocab;
    cuda::PersistentDecodeArgs a = persistent_args(w, s);
    // The last step's logits go to the pinned row the caller is not reading, as a single step's do.
    a.logits = s.pinned_logits_on_device + (size_t)s.next_logits_row * V;
    a.profile = static_cast<long long *>(s.persistent_profile);  // set up by a single step, if profiling
    if (a.profile) s.persistent_steps += n_steps;
    a.token = token;
    a.pos = pos;
    a.seq = seq;
    a.n_steps = n_steps;
    a.picks = s.pinned_picks_on_device;
    a.stop_token = stop_token;
    cuda::persistent_decode(s.persistent, s.persistent_shape, a, &s.persistent_tag, st);
    check(cudaStreamSynchronize(st), "the greedy chain");
    // The steps run: up to the first pick that is the stop token (the entries after it are an earlier call's).
    int32_t n_run = 0;
    while (n_run < n_steps) {
        const int32_t pick = s.pinned_picks[n_run++];
        if (stop_token >= 0 && pick == stop_token) break;
    }
    std::memcpy(picks, s.pinned_picks, (size_t)n_run * sizeof(int32_t));
    if (logits_view) {
        *logits_view = s.pinned_logits + (size_t)s.next_logits_row * V;
        s.next_logits_row ^= 1;
    }
    return n_run;
}

void opt_forward_cuda(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s,
                      const std::vector<TokenSlot> &tokens, const std::vector<int32_t> &output_tokens,
                      float *host_logits, int32_t *greedy_token, const float **logits_view) {
    forward_impl(hp, w, s, tokens, output_tokens, nullptr, host_logits, greedy_token, logits_view);
}

void opt_forward_cuda(const OptHparams &hp, const OptCudaWeights &w, OptCudaState &s,
                      const std::vector<TokenSlot> &tokens, const std::vector<int32_t> &output_tokens,
                      const std::vector<int32_t> &output_targets, float *host_nll) {
    forward_impl(hp, w, s, tokens, output_tokens, &output_targets, host_nll, nullptr, nullptr);
}


// ---- Sequence state (engine/state.h): the KV rows and SEA decode states of one sequence to and from the host ----

namespace {

// Sequence seq's (layer, K|V) cache is [head][n_ctx][head_dim]: the first n rows of every head are a strided block
// of n_head rows of row_bytes each, pitch bytes apart (one cudaMemcpy2D).
struct KvSeqBlock {
    half_t *base;
    size_t pitch, row_bytes;
};
KvSeqBlock kv_seq_block(const OptHparams &hp, const OptCudaState &s, uint32_t layer, int kv, uint32_t seq, uint32_t n) {
    const size_t hd = hp.n_embd / hp.n_head;
    half_t *cache = kv == 0 ? s.k_cache(hp, layer) : s.v_cache(hp, layer);
    return {cache + (size_t)seq * hp.n_head * s.n_ctx * hd, (size_t)s.n_ctx * hd * sizeof(half_t),
            (size_t)n * hd * sizeof(half_t)};
}

// The first n rows of sequence seq to (down) or from (up) the host's [layer][K, V][head][n][head_dim].
void kv_copy(const OptHparams &hp, const OptCudaState &s, uint32_t seq, uint32_t n, char *down, const char *up) {
    check(cudaSetDevice(s.device), "cudaSetDevice");
    if (n == 0) return;
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        for (int kv = 0; kv < 2; ++kv) {
            const KvSeqBlock b = kv_seq_block(hp, s, l, kv, seq, n);
            const size_t at = ((size_t)l * 2 + (size_t)kv) * hp.n_head * b.row_bytes;  // one (layer, K|V) a block
            if (down) {
                check(cudaMemcpy2DAsync(down + at, b.row_bytes, b.base, b.pitch, b.row_bytes, hp.n_head,
                                        cudaMemcpyDeviceToHost, s.stream),
                      "copying the KV cache to the host");
            } else {
                check(cudaMemcpy2DAsync(b.base, b.pitch, up + at, b.row_bytes, b.row_bytes, hp.n_head,
                                        cudaMemcpyHostToDevice, s.stream),
                      "copying the KV cache to the GPU");
            }
        }
    }
    check(cudaStreamSynchronize(s.stream), "the KV cache copy");
}

void check_sea_layer(const OptCudaState &s, uint32_t seq, uint32_t layer) {
    if (!s.sea_any || layer >= s.sea_on.size() || !s.sea_on[layer] || seq >= s.n_seq) {
        throw Error(SEAOPT_ERR_INTERNAL, "no SEA decode state for sequence " + std::to_string(seq) + " in layer " +
                                             std::to_string(layer));
    }
}

}  // namespace

void cuda_kv_download(const OptHparams &hp, const OptCudaState &s, uint32_t seq, uint32_t n, void *host) {
    kv_copy(hp, s, seq, n, static_cast<char *>(host), nullptr);
}

void cuda_kv_upload(const OptHparams &hp, OptCudaState &s, uint32_t seq, uint32_t n, const void *host) {
    kv_copy(hp, s, seq, n, nullptr, static_cast<const char *>(host));
}

void cuda_seq_copy(const OptHparams &hp, OptCudaState &s, uint32_t src, uint32_t dst, uint32_t n) {
    check(cudaSetDevice(s.device), "cudaSetDevice");
    if (src == dst) return;
    for (uint32_t l = 0; n > 0 && l < hp.n_layer; ++l) {
        for (int kv = 0; kv < 2; ++kv) {
            const KvSeqBlock from = kv_seq_block(hp, s, l, kv, src, n), to = kv_seq_block(hp, s, l, kv, dst, n);
            check(cudaMemcpy2DAsync(to.base, to.pitch, from.base, from.pitch, from.row_bytes, hp.n_head,
                                    cudaMemcpyDeviceToDevice, s.stream),
                  "copying a sequence's keys and values");
        }
    }
    for (uint32_t l = 0; s.sea_any && l < hp.n_layer; ++l) {
        if (!s.sea_on[l]) continue;
        char *states = s.sea_layer_states(l);
        check(cudaMemcpyAsync(states + (size_t)dst * s.sea_state_stride, states + (size_t)src * s.sea_state_stride,
                              s.sea_state_stride, cudaMemcpyDeviceToDevice, s.stream),
              "copying a sequence's SEA decode state");
    }
    check(cudaStreamSynchronize(s.stream), "the sequence copy");
}

void cuda_sea_state_download(const OptCudaState &s, uint32_t seq, uint32_t layer, uint32_t n,
                             cpu::SeaDecodeState &out) {
    check_sea_layer(s, seq, layer);
    check(cudaSetDevice(s.device), "cudaSetDevice");
    const cpu::SeaConfig &cfg = s.sea_cfg;
    const cuda::SeaDecodeStateLayout L = cuda::sea_decode_state_layout(cfg);
    std::vector<float> blob(L.total / sizeof(float));
    check(cudaMemcpyAsync(blob.data(), s.sea_layer_states(layer) + (size_t)seq * s.sea_state_stride, L.total,
                          cudaMemcpyDeviceToHost, s.stream),
          "copying a SEA decode state to the host");
    check(cudaStreamSynchronize(s.stream), "the SEA decode state copy");
    out.reset(cfg);
    out.n_tokens = n;
    const size_t cols = cuda::kSeaStateCols, width = cols - 1, Hm = cfg.n_head * cfg.n_features;
    const float *perf = blob.data() + L.perf / sizeof(float);
    for (size_t j = 0; j < Hm; ++j) {
        out.perf_k_sum[j] = perf[j * cols + width];
        std::copy_n(perf + j * cols, width, out.perf_kv_sum.data() + j * width);
    }
    std::copy_n(blob.data() + L.v_sum / sizeof(float), out.v_sum.size(), out.v_sum.data());
    const size_t row = out.image_hist.size() / 4;  // 2H·K/4 floats
    for (uint32_t back = 1; back <= 4 && back <= n; ++back) {  // rows n-1 .. n-4: GPU slot r % 8, CPU slot r % 4
        const uint32_t r = n - back;
        std::copy_n(blob.data() + L.image_ring / sizeof(float) + (r % cuda::kSeaHistoryRows) * row, row,
                    out.image_hist.data() + (r % 4) * row);
        std::copy_n(blob.data() + L.conv1_ring / sizeof(float) + (r % cuda::kSeaHistoryRows) * row, row,
                    out.conv1_hist.data() + (r % 4) * row);
    }
}

void cuda_sea_state_upload(OptCudaState &s, uint32_t seq, uint32_t layer, uint32_t n, const cpu::SeaDecodeState &in) {
    check_sea_layer(s, seq, layer);
    check(cudaSetDevice(s.device), "cudaSetDevice");
    const cpu::SeaConfig &cfg = s.sea_cfg;
    const cuda::SeaDecodeStateLayout L = cuda::sea_decode_state_layout(cfg);
    const size_t cols = cuda::kSeaStateCols, width = cols - 1, Hm = cfg.n_head * cfg.n_features;
    const size_t row = 2 * cfg.n_head * (cfg.K / 4);
    if (in.perf_k_sum.size() != Hm || in.perf_kv_sum.size() != Hm * width || in.v_sum.size() != cfg.n_head * cpu::kSeaHeadDim ||
        in.image_hist.size() != 4 * row || in.conv1_hist.size() != 4 * row) {
        throw Error(SEAOPT_ERR_INTERNAL, "a SEA decode state of the wrong size");
    }
    std::vector<float> blob(L.total / sizeof(float), 0.0f);
    float *perf = blob.data() + L.perf / sizeof(float);
    for (size_t j = 0; j < Hm; ++j) {
        perf[j * cols + width] = in.perf_k_sum[j];
        std::copy_n(in.perf_kv_sum.data() + j * width, width, perf + j * cols);
    }
    std::copy_n(in.v_sum.data(), in.v_sum.size(), blob.data() + L.v_sum / sizeof(float));
    for (uint32_t back = 1; back <= 4 && back <= n; ++back) {
        const uint32_t r = n - back;
        std::copy_n(in.image_hist.data() + (r % 4) * row, row,
                    blob.data() + L.image_ring / sizeof(float) + (r % cuda::kSeaHistoryRows) * row);
        std::copy_n(in.conv1_hist.data() + (r % 4) * row, row,
                    blob.data() + L.conv1_ring / sizeof(float) + (r % cuda::kSeaHistoryRows) * row);
    }
    check(cudaMemcpyAsync(s.sea_layer_states(layer) + (size_t)seq * s.sea_state_stride, blob.data(), L.total,
                          cudaMemcpyHostToDevice, s.stream),
          "copying a SEA decode state to the GPU");
    check(cudaStreamSynchronize(s.stream), "the SEA decode state copy");
}

}  // namespace seaopt
