// A restricted unpickler for the data.pkl of a torch.save'd state_dict. It executes nothing.
//
// What a state_dict pickle is (torch/serialization.py, torch/_utils.py; protocol 2):
//   {name: torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
//                                          OrderedDict() [, metadata]), ...}
// where each storage is a persistent id ('storage', torch.HalfStorage, '<key>', 'cpu', numel)
// whose bytes are the zip entry '<archive>/data/<key>'. The top level may be a dict or an
// OrderedDict (collections.OrderedDict() + SETITEMS, possibly + BUILD of its _metadata).
//
// So the interpreter knows an explicit whitelist of opcodes (everything a state_dict needs:
// containers, memo, ints/floats/strings, GLOBAL/STACK_GLOBAL, REDUCE, BUILD, BINPERSID) and of
// globals (collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter, the
// torch.*Storage classes, torch dtypes); REDUCE is evaluated only for those callables and yields
// plain C++ records. Any other global (os.system, builtins.eval, ...) and any other opcode (INST,
// OBJ, NEWOBJ, ...) is refused with a message naming it. The stack, marks, memo, object count and
// nesting depth are bounded, and every length is checked against the remaining bytes.
//
// PickleMode::Checkpoint reads a whole training checkpoint (seaopt-convert --sea, sea.md §5.3):
// the trainer's {step, model, base_model, scaler, optimizer, config} dict or DeepSpeed's
// {module, param_shapes, ds_config, ...}. Those hold more than tensors: class references in the
// trainer's config, torch.Size, sets, DeepSpeed's own objects. In this mode a global outside the
// whitelist is still never resolved or called: it becomes an inert placeholder (Kind::Opaque, its
// name kept for messages), and REDUCE / NEWOBJ / NEWOBJ_EX on a placeholder, sets, bytes and big
// ints give inert placeholders too (BUILD's state is dropped). Tensors of other dtypes or not
// contiguous are kept with a reason in PickledTensor::unconvertible instead of refusing the file;
// whoever reads the result refuses them only where it needs them. All the bounds above still apply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "weights-convert/dtype.h"

namespace seaopt::convert {

inline constexpr size_t kPickleMaxStack = 1u << 20;
inline constexpr size_t kPickleMaxMarks = 256;
inline constexpr uint64_t kPickleMaxMemoIndex = 1u << 20;
inline constexpr size_t kPickleMaxObjects = 1u << 20;
inline constexpr int kPickleMaxDepth = 32;
inline constexpr size_t kPickleMaxRank = 8;

// One tensor of the state_dict. Its bytes are storage elements [storage_offset, storage_offset +
// numel) of the storage `storage_key`, contiguous (row-major); the unpickler has checked that this
// range lies inside the storage's declared numel.
struct PickledTensor {
    std::string name;
    std::string storage_key;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;   // PyTorch order, outermost first
    std::vector<uint64_t> stride;  // in elements
    uint64_t storage_offset = 0;   // in elements
    uint64_t storage_numel = 0;    // elements of the whole storage, as the persistent id says
    // Empty for a tensor seaopt can convert; else why not, e.g. "storage torch.LongStorage" or "not
    // contiguous" (only in PickleMode::Checkpoint: StateDict mode refuses the file instead).
    std::string unconvertible;
    uint64_t numel() const;
};

enum class PickleMode : uint8_t {
    StateDict,   // a pytorch_model.bin: exactly what a state_dict needs, anything else refused by name
    Checkpoint,  // a training checkpoint: foreign objects become inert placeholders (see above)
};

// A value of the unpickled object graph. Containers share their items (the pickle memo).
struct PickleValue {
    enum class Kind : uint8_t { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor, Opaque };
    Kind kind = Kind::None;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s;  // Str; Global: "module.name"; Storage: its key; Opaque: what it stands for
    std::vector<std::shared_ptr<PickleValue>> items;  // Tuple, List, set (Opaque); Dict: key0, value0, key1, ...
    std::shared_ptr<PickledTensor> tensor;           // Tensor (name unset)

    // A Dict's value under a string key; nullptr if this is not a Dict or has no such key.
    const PickleValue *get(const std::string &key) const;

    // Reader bookkeeping, not for callers.
    bool frozen = false;  // a list/dict/set nested in another container: immutable from then on
    bool is_set = false;  // an Opaque set under construction (EMPTY_SET / ADDITEMS)
    int depth = 0;        // nesting depth of containers below and including this one
    uint8_t global_id = 0;
    bool storage_supported = false;  // Global storage class / Storage: F16, BF16 or F32
    DType storage_dtype = DType::F32;
    uint64_t storage_numel = 0;
    std::string storage_class;  // Storage: "torch.HalfStorage", for messages
};

const char *pickle_kind_name(PickleValue::Kind k);  // "dict", "tensor", ...

// Interprets a state_dict pickle. `what` names the source in messages ("pytorch_model.bin").
// Throws seaopt::Error: SEAOPT_ERR_MODEL_FORMAT for malformed or refused content,
// SEAOPT_ERR_UNSUPPORTED for a valid tensor of a dtype seaopt does not convert, or non-contiguous.
std::vector<PickledTensor> unpickle_state_dict(const uint8_t *data, size_t size, const std::string &what);

// Interprets any pickle (see PickleMode) and returns its top-level value. Throws as above.
std::shared_ptr<const PickleValue> unpickle(const uint8_t *data, size_t size, const std::string &what, PickleMode mode);

// The tensors of a state_dict value: a Dict of string -> Tensor. `what` names it in messages.
// Throws SEAOPT_ERR_MODEL_FORMAT for anything else (a non-string key, a non-tensor value, a key
// twice); tensors marked unconvertible are returned as they are.
std::vector<PickledTensor> state_dict_tensors(const PickleValue &dict, const std::string &what);

}  // namespace seaopt::convert
