// The seaopt GGUF layout for OPT: metadata keys, tensor names and the hyperparameters they carry.
// The converter writes exactly this; the loader (model/opt_loader.cpp) demands exactly this.
//
// Metadata:
//   general.architecture            STRING  "opt"
//   general.name                    STRING  e.g. "opt-1.3b" (informational)
//   general.file_type               UINT32  0 = all f32, 1 = mostly f16, 32 = mostly bf16 (llama.cpp's enum)
//   general.alignment               UINT32  32
//   opt.vocab_size                  UINT32  embedding rows (50272)
//   opt.context_length              UINT32  max_position_embeddings (2048)
//   opt.embedding_length            UINT32  hidden_size
//   opt.block_count                 UINT32  num_hidden_layers
//   opt.feed_forward_length         UINT32  ffn_dim
//   opt.attention.head_count        UINT32  num_attention_heads
//   opt.attention.layer_norm_epsilon FLOAT32 1e-5 (OPT's LayerNorm default)
//   opt.do_layer_norm_before        BOOL    true = pre-LN (all but OPT-350m)
//   opt.word_embed_proj_dim         UINT32  = embedding_length except OPT-350m (512)
//   opt.position_offset             UINT32  2 (OPT's learned positions start at row 2)
//   tokenizer.ggml.model            STRING  "gpt2"
//   tokenizer.ggml.tokens           ARRAY[STRING]  vocab_size entries (padded with unused tokens)
//   tokenizer.ggml.token_type       ARRAY[INT32]   TokenType per token
//   tokenizer.ggml.merges           ARRAY[STRING]  "left right", rank order
//   tokenizer.ggml.bos_token_id / eos_token_id / padding_token_id / unknown_token_id   UINT32
//   tokenizer.ggml.add_bos_token    BOOL    true
//   sea.*                           reserved for the SEA estimator (a later format addition)
//
// Tensors (GGUF ne order, innermost first; D = word_embed_proj_dim, C = embedding_length,
// F = feed_forward_length, V = vocab_size, P = context_length + position_offset):
//   token_embd.weight       {D, V}
//   position_embd.weight    {C, P}
//   proj_in.weight          {D, C}   only when D != C (HF decoder.project_in, no bias)
//   proj_out.weight         {C, D}   only when D != C (HF decoder.project_out, no bias)
//   output_norm.weight/bias {C}      only when do_layer_norm_before (HF decoder.final_layer_norm)
//   output.weight           {D, V}   only when the checkpoint's lm_head is not tied to token_embd
//   blk.N.attn_norm.weight/bias   {C}     self_attn_layer_norm
//   blk.N.attn_q.weight {C, C}, blk.N.attn_q.bias {C}   (likewise attn_k, attn_v)
//   blk.N.attn_output.weight {C, C}, .bias {C}          self_attn.out_proj
//   blk.N.ffn_norm.weight/bias    {C}     final_layer_norm (of the block)
//   blk.N.ffn_up.weight {C, F}, .bias {F}               fc1
//   blk.N.ffn_down.weight {F, C}, .bias {C}             fc2
// All tensors are F32, F16 or BF16.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seaopt {

namespace keys {
inline constexpr const char *kArchitecture = "general.architecture";
inline constexpr const char *kName = "general.name";
inline constexpr const char *kFileType = "general.file_type";
inline constexpr const char *kAlignment = "general.alignment";
inline constexpr const char *kVocabSize = "opt.vocab_size";
inline constexpr const char *kContextLength = "opt.context_length";
inline constexpr const char *kEmbeddingLength = "opt.embedding_length";
inline constexpr const char *kBlockCount = "opt.block_count";
inline constexpr const char *kFeedForwardLength = "opt.feed_forward_length";
inline constexpr const char *kHeadCount = "opt.attention.head_count";
inline constexpr const char *kLayerNormEps = "opt.attention.layer_norm_epsilon";
inline constexpr const char *kDoLayerNormBefore = "opt.do_layer_norm_before";
inline constexpr const char *kWordEmbedProjDim = "opt.word_embed_proj_dim";
inline constexpr const char *kPositionOffset = "opt.position_offset";
inline constexpr const char *kTokModel = "tokenizer.ggml.model";
inline constexpr const char *kTokTokens = "tokenizer.ggml.tokens";
inline constexpr const char *kTokTokenType = "tokenizer.ggml.token_type";
inline constexpr const char *kTokMerges = "tokenizer.ggml.merges";
inline constexpr const char *kTokBos = "tokenizer.ggml.bos_token_id";
inline constexpr const char *kTokEos = "tokenizer.ggml.eos_token_id";
inline constexpr const char *kTokPad = "tokenizer.ggml.padding_token_id";
inline constexpr const char *kTokUnk = "tokenizer.ggml.unknown_token_id";
inline constexpr const char *kTokAddBos = "tokenizer.ggml.add_bos_token";
}  // namespace keys

inline constexpr const char *kArchitectureName = "opt";
inline constexpr uint32_t kPositionOffset = 2;

// Sanity caps for untrusted files: larger values are refused before any allocation.
inline constexpr uint32_t kMaxLayers = 512;
inline constexpr uint32_t kMaxVocab = 1u << 20;
inline constexpr uint32_t kMaxEmbedding = 1u << 16;
inline constexpr uint32_t kMaxContext = 1u << 20;

struct OptHparams {
    uint32_t n_vocab = 50272;
    uint32_t n_ctx_train = 2048;   // max_position_embeddings
    uint32_t n_embd = 768;         // hidden_size
    uint32_t n_layer = 12;
    uint32_t n_ff = 3072;
    uint32_t n_head = 12;
    float ln_eps = 1e-5f;
    bool pre_ln = true;            // do_layer_norm_before
    uint32_t n_embd_proj = 768;    // word_embed_proj_dim
    uint32_t pos_offset = kPositionOffset;

    uint32_t head_dim() const { return n_embd / n_head; }
    bool has_proj() const { return n_embd_proj != n_embd; }
    bool has_output_norm() const { return pre_ln; }
    uint32_t n_pos_rows() const { return n_ctx_train + pos_offset; }
};

// Tensor names, one place for the writer and the reader.
inline std::string blk_tensor(uint32_t layer, const char *what) {
    return "blk." + std::to_string(layer) + "." + what;
}

// One tensor of the layout above, with the Hugging Face tensor it comes from.
struct OptTensorSpec {
    std::string gguf_name;    // "blk.0.ffn_up.weight"
    std::string hf_name;      // canonical HF name: "decoder.layers.0.fc1.weight" or "lm_head.weight"
    std::vector<int64_t> ne;  // GGUF order (innermost first): the reverse of the PyTorch shape
};

// The exact tensor set of a model with these hyperparameters, in file order. `untied_output`:
// the model has its own lm_head (-> output.weight). The converter writes exactly these tensors
// and the loader demands exactly these.
std::vector<OptTensorSpec> opt_tensor_specs(const OptHparams &hp, bool untied_output);

}  // namespace seaopt
