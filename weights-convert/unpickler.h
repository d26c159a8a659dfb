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
#pragma once

#include <cstddef>
#include <cstdint>
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
    uint64_t numel() const;
};

// Interprets a state_dict pickle. `what` names the source in messages ("pytorch_model.bin").
// Throws seaopt::Error: SEAOPT_ERR_MODEL_FORMAT for malformed or refused content,
// SEAOPT_ERR_UNSUPPORTED for a valid tensor of a dtype seaopt does not convert, or non-contiguous.
std::vector<PickledTensor> unpickle_state_dict(const uint8_t *data, size_t size, const std::string &what);

}  // namespace seaopt::convert
