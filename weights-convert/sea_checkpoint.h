// seaopt-convert --sea: the SEA estimator, and the fine-tuned OPT weights that come with it, from
// the checkpoint files of the authors' trainer (sea.md §5).
//
// Files (sea.md §5.3), told apart by their content:
//   * a torch.save zip (.pth / .pt, fp16 or fp32), read by the restricted unpickler in its
//     Checkpoint mode (weights-convert/unpickler.h), holding one of
//       - the trainer's checkpoint.pth: {step, _istep, epoch, model, base_model, scaler, optimizer,
//         config}: the student's state_dict is `model`; the teacher (`base_model`), the optimizer
//         etc. are never looked at, except config['additional_config'] (k, K, enc_per_layer);
//       - DeepSpeed's mp_rank_00_model_states.pt: {module, param_shapes, ds_config, ...}: `module`
//         is the KD wrapper's state_dict, student under "model.", teacher under "base_model.";
//       - a plain state_dict;
//   * a safetensors file with the state_dict.
// Keys: the student's "[model.[model.]]decoder.layers.N.self_attn.perlin_self_attention.<sea.md §5.1
// key>" for SEA, and the usual HF OPT names for the fine-tuned OPT tensors (sea.md §5.2), which
// replace the base model's. "base_model.*" (the teacher) and the tensors sea.md §5.1 marks unused
// are skipped; any other key is refused, since the authors' architecture switches (sea.md §5.1,
// §11) change the keys and a silently ignored tensor would give a wrong model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/opt_format.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/hf_config.h"

namespace seaopt::convert {

struct SeaCheckpoint {
    std::string format;  // in words: "trainer checkpoint (its 'model' state_dict)", "safetensors", ...
    std::vector<SourceTensor> tensors;  // the state_dict, names as stored
    // From the trainer's config['additional_config'] (PerlinAttentionConfig, sea.md §5.3), if present.
    std::optional<int64_t> config_k;
    std::optional<int64_t> config_compressed_width;  // attention_predictor_length
    std::optional<bool> config_enc_per_layer;        // attention_predictor_enc_per_layer
};

// Reads the checkpoint's index (no tensor data). `file` is stored in each SourceTensor. Throws
// seaopt::Error naming the file and the problem.
SeaCheckpoint read_sea_checkpoint(const ByteSource &src, size_t file);
SeaCheckpoint open_sea_checkpoint(const std::string &path, size_t file);

// One GGUF SEA tensor and where its values come from.
struct SeaPlannedTensor {
    OptTensorSpec spec;                     // from sea_tensor_specs (GGUF name, canonical HF key, GGUF shape)
    const SourceTensor *source = nullptr;
    // Causal convs (sea.md §2.6): the stored weight is (out, in, 2kh-1, kw) with a weight_mask
    // buffer; the GGUF tensor is the live rows 0..kh-1 of weight * weight_mask.
    bool masked_conv = false;
    const SourceTensor *mask = nullptr;     // nullptr: the checkpoint has no weight_mask, the
                                            // constructor's mask (1 on rows 0..kh-1) is used
};

struct SeaPlan {
    SeaHparams sea;                // K, m, d', P from the tensor shapes; k resolved
    std::string k_source;          // "--sea-k", "the trainer config" or "the default of sea.md §6"
    std::vector<SeaPlannedTensor> tensors;  // in sea_tensor_specs order
    size_t n_sea_source = 0;       // SEA state_dict entries used (masks included)
    size_t n_opt_replaced = 0;     // base tensors replaced by the checkpoint's fine-tuned ones
    size_t n_ignored = 0;          // SEA entries sea.md §5.1 marks unused
    size_t n_teacher = 0;          // base_model.* entries (the teacher)
    size_t n_tied_lm_head = 0;     // a tied lm_head.weight (the embedding is used)
    std::vector<std::string> notes;  // worth telling the user (a k override, a missing mask, ...)
    std::string engine_warning;      // why seaopt's engine cannot run SEA on this model ("" = it can)
};

// Matches the checkpoint to the base model: derives the SEA hyperparameters from the tensor
// shapes (sea.md §5.1), checks every SEA tensor of every layer and every OPT tensor it carries
// against the base model, and points base_plan's tensors at the fine-tuned ones. k_option:
// --sea-k, 0 when not given. Throws SEAOPT_ERR_MODEL_FORMAT listing what does not match, or
// SEAOPT_ERR_UNSUPPORTED for SEA variants seaopt does not implement.
SeaPlan plan_sea(const SeaCheckpoint &ckpt, const HfOptConfig &config, uint32_t k_option, TensorPlan &base_plan);

// The values of one planned SEA tensor in GGUF element order, read from `src` (the SEA checkpoint
// file). Throws if a masked conv weight is non-zero outside its live kernel rows.
std::vector<float> sea_tensor_data(const SeaPlannedTensor &t, const ByteSource &src);

// A stored key -> the student's canonical HF name ("decoder.layers.0...."; "lm_head.weight"); ""
// for the teacher ("base_model.*") and for keys that name no student tensor. Strips torch.compile's
// "_orig_mod." (sea.md §5.1) and up to two leading "model.".
std::string sea_student_name(const std::string &stored);

}  // namespace seaopt::convert
