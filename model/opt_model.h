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

struct OptModel {
    OptHparams hp;
    std::string name;       // general.name, may be empty
    std::string file_type;  // "f32", "f16", "bf16" or "mixed"
    uint64_t n_params = 0;
    std::unique_ptr<Tokenizer> tokenizer;
    seaopt_device device = SEAOPT_DEVICE_CPU;
    bool vocab_only = false;
    OptWeightsCpu cpu;  // when device == CPU
    std::unique_ptr<OptCudaWeights, OptCudaWeightsDeleter> cuda;  // when device == CUDA
};

// Reads and validates the hyperparameters of a parsed seaopt GGUF file (architecture "opt",
// every required key with its type, values in range and consistent).
OptHparams read_opt_hparams(const gguf::File &file);

// Loads a seaopt GGUF model file: validates everything (header, keys, tokenizer, the exact tensor
// set with dtypes and shapes) before trusting it. Throws seaopt::Error naming the first problem.
std::unique_ptr<OptModel> load_opt_model(const std::string &path, const seaopt_model_params &params);

}  // namespace seaopt
