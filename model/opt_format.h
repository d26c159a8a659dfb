// The seaopt GGUF layout for OPT: metadata keys, tensor names and the hyperparameters they carry.
// The converter writes exactly this; the loader (model/opt_loader.cpp) demands exactly this.
//
// Metadata:
//   general.architecture            STRING  "opt"
//   general.name                    STRING  e.g. "opt-1.3b" (informational)
//   general.file_type               UINT32  0 = all f32, 1 = mostly f16, 7 = mostly Q8_0, 32 = mostly bf16
//                                           (llama.cpp's enum; informational: the tensors' types decide)
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
//   tokenizer.seaopt.added_token_ids   ARRAY[INT32]  optional: added tokens (CONTROL / USER_DEFINED) with options
//   tokenizer.seaopt.added_token_flags ARRAY[INT32]  their options, one each: AddedTokenFlags (tokenizer.h) bits,
//                                   1 single_word, 2 lstrip, 4 rstrip, 8 normalized; an added token not listed has none
//
// SEA estimator (sea.md; only in files converted with `seaopt-convert --sea`: either every sea.*
// key and every blk.N.sea.* tensor is present, or none is):
//   sea.k                           UINT32  sparsity budget k, ~keys per query per head (sea.md §2.7, §6: 64)
//   sea.compressed_width            UINT32  K, width of the compressed mask (§2.5-2.8: 64; a multiple of 4)
//   sea.random_features             UINT32  m, Performer random features (§2.3: 33 = int(d ln d / 8))
//   sea.hidden                      UINT32  d', width of the encoder output Z (§2.4: 128 = 2d)
//   sea.position_table_length       UINT32  rows of the learned positional table E_pos (§2.2: 2048)
//   sea.cnn_channels_per_head       UINT32  c_h, CNN image channels per head (§1, §2.5: 2)
//   sea.width_reduction             UINT32  c_s, CNN width reduction K -> K/c_s (§1, §2.6: 4)
//   sea.grouping                    STRING  top-k grouping: "causal-per-batch" (§2.7, the only OPT mode)
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
// SEA estimator tensors of each layer (sea.md §5.1; d = head_dim, H = head_count, m, d', K, c_h,
// c_s as above, P = sea.position_table_length, W = K / c_s, G = c_h * H CNN channels):
//   blk.N.sea.pos_table           {d, P}        E_pos (attention.v_eye_learned_causal[0, 0])
//   blk.N.sea.performer_proj      {d, m}        W of the random features (performer.projection_matrix)
//   blk.N.sea.enc.weight {3d, d'}, .bias {d'}   encoder Linear (attention_predictor_enc.0)
//   blk.N.sea.enc_norm.weight/bias {d'}         encoder LayerNorm (attention_predictor_enc.1)
//   blk.N.sea.dec_row.weight {d', c_h W}, .bias {c_h W}   row decoder nu (attention_predictor_dec_row.0)
//   blk.N.sea.cnn_norm_in.weight/bias {W}       LayerNorm over K/4 (attention_predictor_cnn.0)
//   blk.N.sea.conv1.weight {3, 3, G, G}, .bias {G}   causal dilated 3x3 conv (cnn.1.module.net.0):
//                                 the live kernel rows 0..2 of weight * weight_mask (§2.6)
//   blk.N.sea.conv2.weight {3, 3, G, G}, .bias {G}   the second one (cnn.1.module.net.2), likewise
//   blk.N.sea.conv4.weight {G, H}, .bias {H}    1x1 conv (cnn.1.module.net.5), weight * weight_mask
//   blk.N.sea.cnn_norm_out.weight/bias {K}      LayerNorm over K (attention_predictor_cnn.2)
//   blk.N.sea.scaler.weight {d', 2}, .bias {2}  row 0 -> s_prob, row 1 -> s_mix (attention_predictor_dec_scaler.0)
// All tensors are F32, F16 or BF16, except that the six matrices of every block may all be Q8_0 (ggml's blocks of 32
// along ne[0], model/q8_0.h; `seaopt-convert --outtype q8_0`: the rest is then f16) (the converter writes the SEA ones as F32: the estimator runs in
// fp32, sea.md §2.3, §2.7, and they are < 1 % of the weights).
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
inline constexpr const char *kTokAddedIds = "tokenizer.seaopt.added_token_ids";
inline constexpr const char *kTokAddedFlags = "tokenizer.seaopt.added_token_flags";
inline constexpr const char *kSeaK = "sea.k";
inline constexpr const char *kSeaCompressedWidth = "sea.compressed_width";
inline constexpr const char *kSeaRandomFeatures = "sea.random_features";
inline constexpr const char *kSeaHidden = "sea.hidden";
inline constexpr const char *kSeaPositionTableLength = "sea.position_table_length";
inline constexpr const char *kSeaCnnChannelsPerHead = "sea.cnn_channels_per_head";
inline constexpr const char *kSeaWidthReduction = "sea.width_reduction";
inline constexpr const char *kSeaGrouping = "sea.grouping";
inline constexpr const char *kSeaPrefix = "sea.";  // every SEA key starts with this
}  // namespace keys

inline constexpr const char *kArchitectureName = "opt";
inline constexpr uint32_t kFileTypeMostlyQ8_0 = 7;  // general.file_type of a Q8_0 file (llama.cpp's MOSTLY_Q8_0)
inline constexpr uint32_t kPositionOffset = 2;

// Sanity caps for untrusted files: larger values are refused before any allocation.
inline constexpr uint32_t kMaxLayers = 512;
inline constexpr uint32_t kMaxVocab = 1u << 20;
inline constexpr uint32_t kMaxEmbedding = 1u << 16;
inline constexpr uint32_t kMaxContext = 1u << 16;  // OPT learned 2,048 positions; the default context is this long

// SEA (sea.md §1, §6). The architecture constants are those of the authors' OPT runs; other values
// (their env vars PERLIN_HOTFIX_OPT_INNER_CH etc., sea.md §5.1) are refused as unsupported.
inline constexpr uint32_t kSeaDefaultK = 64;              // §6, Table 2
inline constexpr uint32_t kSeaCnnChannelsPerHead = 2;     // c_h, §1
inline constexpr uint32_t kSeaWidthReduction = 4;         // c_s, §1, §2.6 (x4 nearest upsample)
inline constexpr const char *kSeaGroupingCausalPerBatch = "causal-per-batch";  // §2.7
inline constexpr uint32_t kSeaMaxK = 1u << 20;
inline constexpr uint32_t kSeaMaxCompressedWidth = 1u << 14;  // 64 and 256 are used (§6)
inline constexpr uint32_t kSeaMaxRandomFeatures = 1u << 14;   // 33 (nbf 8) or 266 (nbf 1), §2.3

struct SeaHparams {
    uint32_t k = kSeaDefaultK;             // sea.k
    uint32_t compressed_width = 64;        // K
    uint32_t random_features = 33;         // m
    uint32_t hidden = 128;                 // d'
    uint32_t position_table_length = 2048; // rows of E_pos
    uint32_t cnn_channels_per_head = kSeaCnnChannelsPerHead;
    uint32_t width_reduction = kSeaWidthReduction;

    uint32_t cnn_width() const { return compressed_width / width_reduction; }  // K/4: the CNN image width
};

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
    bool has_sea = false;          // the file carries the SEA estimator (sea.* keys, blk.N.sea.* tensors)
    SeaHparams sea;                // meaningful only when has_sea

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
    // One of the six matrices of a block (attn_q/k/v/output, ffn_up/down .weight): the tensors a Q8_0 file stores
    // as Q8_0 (all of them in every block, or none); every other tensor is F32, F16 or BF16.
    bool quantizable = false;
};

// The exact tensor set of a model with these hyperparameters, in file order. `untied_output`:
// the model has its own lm_head (-> output.weight). The converter writes exactly these tensors
// and the loader demands exactly these.
std::vector<OptTensorSpec> opt_tensor_specs(const OptHparams &hp, bool untied_output);

// The SEA estimator tensors (blk.N.sea.*) of a model with hp.has_sea, in file order (they follow
// the tensors of opt_tensor_specs); empty without SEA. hf_name is the checkpoint key of the tensor
// they come from, relative to the student model ("decoder.layers.N.self_attn.perlin_self_attention.
// attention.performer.projection_matrix"; sea.md §5.1); the converter knows which need reshaping.
std::vector<OptTensorSpec> sea_tensor_specs(const OptHparams &hp);

// "decoder.layers.N.self_attn.perlin_self_attention." : where SEA's state_dict keys start (§5.1).
std::string sea_hf_prefix(uint32_t layer);

// Checks the SEA hyperparameters (hp.sea, for hp.has_sea) against sea.md's constraints. Throws
// seaopt::Error naming the key: SEAOPT_ERR_MODEL_FORMAT for a value out of range or inconsistent,
// SEAOPT_ERR_UNSUPPORTED for a valid SEA variant that seaopt does not implement.
void check_sea_hparams(const OptHparams &hp);

// Q8_0 blocks of 32 run along the matrices' rows: hidden size and ffn width must be multiples of 32 (every OPT
// model's are). Throws SEAOPT_ERR_INVALID_ARGUMENT naming both.
void check_q8_0_widths(const OptHparams &hp);

}  // namespace seaopt
