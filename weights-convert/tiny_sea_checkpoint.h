// Small random (untrained) SEA checkpoints in the layouts of the authors' trainer (sea.md §5), for
// seaopt-make-tiny-checkpoint --sea and the tests of seaopt-convert --sea: the student's
// state_dict with every key of sea.md §5.1 (used and unused) and the fine-tuned OPT tensors, as
//   * Safetensors: a .safetensors state_dict;
//   * StateDict:   a torch.save'd state_dict (.pth);
//   * Trainer:     the trainer's checkpoint.pth {step, _istep, epoch, model, base_model, scaler,
//                  optimizer, config}, with class references and objects in config as a real one has;
//   * DeepSpeed:   mp_rank_00_model_states.pt {module (student "model.model.*" + teacher
//                  "base_model.*"), param_shapes (torch.Size), sparse_tensor_module_names (set), ...}.
// Values come from a fixed-seed PRNG per tensor name. The causal conv weights are random in their
// masked kernel rows too, so that a converter that forgot weight_mask would be caught.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/opt_format.h"
#include "weights-convert/dtype.h"

namespace seaopt::convert {

enum class SeaCheckpointLayout { Safetensors, StateDict, Trainer, DeepSpeed };

// "safetensors", "state-dict", "trainer", "deepspeed" <-> the layout (throws SEAOPT_ERR_INVALID_ARGUMENT).
SeaCheckpointLayout parse_sea_checkpoint_layout(const std::string &s);
const char *sea_checkpoint_layout_name(SeaCheckpointLayout l);

struct TinySeaSpec {
    OptHparams hp;                         // the base model (its shapes; hp.has_sea is ignored)
    bool tied = true;                      // the base model ties lm_head to the embedding
    uint32_t compressed_width = 64;        // K
    uint32_t random_features = 0;          // m; 0 = int(d ln d / 8) as nbf = 8 gives (sea.md §2.3)
    uint32_t hidden = 0;                   // d'; 0 = 2d (sea.md §2.4)
    uint32_t position_table_length = 0;    // P; 0 = hp.n_ctx_train
    int64_t config_k = 0;                  // Trainer: config['additional_config']['k']; 0 = none written
    bool config_enc_per_layer = false;     // Trainer: config['additional_config']['attention_predictor_enc_per_layer']
    DType dtype = DType::F16;              // of the float tensors
    SeaCheckpointLayout layout = SeaCheckpointLayout::DeepSpeed;
    std::string prefix = "default";        // before "decoder.": "", "model.", "model.model."; "default":
                                           // "model.model." for DeepSpeed, else "model."
    bool with_opt = true;                  // the fine-tuned OPT tensors
    bool with_unused = true;               // the entries sea.md §5.1 marks unused
    bool with_teacher = true;              // Trainer: base_model; DeepSpeed: base_model.* keys
    uint64_t seed = 1;

    uint32_t m() const;
    uint32_t d_hidden() const;
    uint32_t positions() const;
};

// One tensor of the student's state_dict. Floats are written in spec.dtype; `int64` tensors as
// LongStorage / I64 (their values are whole numbers).
struct TinySeaTensor {
    std::string name;  // as stored, prefix included
    std::vector<uint64_t> shape;
    std::vector<float> values;
    bool int64 = false;
    int shares_storage_with = -1;  // torch layouts: index of an earlier tensor whose storage this one is (tied lm_head)
};

// The student's state_dict, in the order the authors' model lists it. Tests edit it (drop, reshape)
// before writing.
std::vector<TinySeaTensor> tiny_sea_state_dict(const TinySeaSpec &spec);

// Writes `student` (and the rest of spec.layout's container) to `path` (via a new "<path>.tmp.XXXXXX").
void write_tiny_sea_checkpoint(const std::string &path, const TinySeaSpec &spec,
                               const std::vector<TinySeaTensor> &student);

}  // namespace seaopt::convert
