// An OPT model in memory: validated hyperparameters, the tokenizer, and the weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/opt_cuda.h"
#include "model/opt_format.h"
#include "seaopt.h"
#include "tokenizer/tokenizer.h"

namespace seaopt {

namespace gguf {
struct File;
struct TensorInfo;
}

// fp32 weights for the CPU reference engine, Linear weights as PyTorch's [out, in].
struct OptLayerWeightsCpu {
    std::vector<float> attn_norm_w, attn_norm_b;
    std::vector<float> q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
    std::vector<float> ffn_norm_w, ffn_norm_b;
    std::vector<float> up_w, up_b, down_w, down_b;
};

struct OptWeightsCpu {
    std::vector<float> tok_embd;   // [n_vocab, n_embd_proj]
    std::vector<float> pos_embd;   // [n_ctx_train + 2, n_embd]
    std::vector<float> proj_in;    // [n_embd, n_embd_proj]  (only when has_proj)
    std::vector<float> proj_out;   // [n_embd_proj, n_embd]  (only when has_proj)
    std::vector<float> out_norm_w, out_norm_b;  // only when has_output_norm
    std::vector<float> output;     // [n_vocab, n_embd_proj] only when lm_head is untied
    std::vector<OptLayerWeightsCpu> layers;

    const float *lm_head() const { return output.empty() ? tok_embd.data() : output.data(); }
};

// The SEA estimator of one layer (sea.md §5.1; GGUF blk.N.sea.*, model/opt_format.h), fp32 on the
// host whatever the device, Linear weights as PyTorch's [out, in]. d = head_dim, G = 2 * n_head.
struct SeaLayerWeightsCpu {
    std::vector<float> pos_table;                     // [P, d]   E_pos (§2.2)
    std::vector<float> performer_proj;                // [m, d]   W of the random features (§2.3)
    std::vector<float> enc_w, enc_b;                  // [d', 3d], [d']   (§2.4)
    std::vector<float> enc_norm_w, enc_norm_b;        // [d']
    std::vector<float> dec_row_w, dec_row_b;          // [K/2, d'], [K/2]   (§2.5)
    std::vector<float> cnn_norm_in_w, cnn_norm_in_b;  // [K/4]   (§2.6 step 1)
    std::vector<float> conv1_w, conv1_b;              // [G, G, 3, 3], [G]   live rows of weight * weight_mask
    std::vector<float> conv2_w, conv2_b;              // [G, G, 3, 3], [G]
    std::vector<float> conv4_w, conv4_b;              // [n_head, G], [n_head]   the 1x1 conv
    std::vector<float> cnn_norm_out_w, cnn_norm_out_b;  // [K]   (§2.6 step 9)
    std::vector<float> scaler_w, scaler_b;            // [2, d'], [2]   row 0 -> s_prob, row 1 -> s_mix (§2.9)
};

struct OptModel {
    OptHparams hp;
    std::string name;       // general.name, may be empty
    std::string file_type;  // the token embedding's type ("f32", "f16", "bf16"), or "q8_0" for Q8_0 block matrices
    uint64_t n_params = 0;
    // FNV-1a over every tensor's name, type, shape and three 4 KiB samples of its bytes in the file: saved sequence
    // states (engine/state.h) carry it, so that a state is not restored into another model of the same shape.
    uint64_t fingerprint = 0;
    std::unique_ptr<Tokenizer> tokenizer;
    seaopt_device device = SEAOPT_DEVICE_CPU;
    bool vocab_only = false;
    OptWeightsCpu cpu;  // when device == CPU
    std::unique_ptr<OptCudaWeights, OptCudaWeightsDeleter> cuda;  // when device == CUDA
    std::vector<SeaLayerWeightsCpu> sea;  // n_layer entries when hp.has_sea (and not vocab_only), any device
};

// Reads and validates the hyperparameters of a parsed seaopt GGUF file (architecture "opt",
// every required key with its type, values in range and consistent; the sea.* keys when any is present).
OptHparams read_opt_hparams(const gguf::File &file);

// One tensor's values as fp32 (F32, F16, BF16 or Q8_0 in the file; `data` its bytes as parse() placed them).
void tensor_to_f32(std::vector<float> &out, const gguf::TensorInfo &t, const uint8_t *data);

// Loads a seaopt GGUF model file: validates everything (header, keys, tokenizer, the exact tensor
// set with dtypes and shapes) before trusting it. Throws seaopt::Error naming the first problem.
std::unique_ptr<OptModel> load_opt_model(const std::string &path, const seaopt_model_params &params);
// The same over a file's bytes already in memory (`path` names them in messages); the model keeps no pointer into
// them. The loader as a function of a byte buffer: what tests/fuzz/fuzz_model_load.cpp drives.
std::unique_ptr<OptModel> load_opt_model_from_memory(const uint8_t *bytes, size_t size, const std::string &path,
                                                     const seaopt_model_params &params);

}  // namespace seaopt
