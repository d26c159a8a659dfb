// A small safetensors writer: seaopt-make-tiny-checkpoint uses it, and the tests build their
// checkpoints with it. Tensor bytes are streamed from a callback, so multi-GB test files need no
// memory. Writes to a new "<path>.tmp.XXXXXX" and renames it onto `path` on success.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "weights-convert/dtype.h"

namespace seaopt::convert {

struct SafetensorsWriteSpec {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;  // PyTorch order
};

// A tensor written with a dtype seaopt does not convert (test checkpoints: SEA's int64 counter).
struct SafetensorsOtherDtype {
    std::string dtype;  // "I64"
    size_t element_size = 8;
};

using ByteSink = std::function<void(const void *data, size_t n)>;
// Asked for the bytes of tensor `index` (exactly its size, in one or more pieces).
using TensorBytesFn = std::function<void(size_t index, const ByteSink &sink)>;

// other_dtypes: tensor index -> the dtype it is written with instead of its DType.
void write_safetensors(const std::string &path, const std::vector<SafetensorsWriteSpec> &tensors,
                       const TensorBytesFn &tensor_bytes, const std::map<std::string, std::string> &metadata = {},
                       const std::map<size_t, SafetensorsOtherDtype> &other_dtypes = {});

// In-memory convenience.
struct SafetensorsBlob {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;
    std::vector<uint8_t> data;
};
void write_safetensors(const std::string &path, const std::vector<SafetensorsBlob> &tensors);

// Writes `bytes` to a new "<path>.tmp.XXXXXX" and renames it onto `path` (throws SEAOPT_ERR_IO).
void write_file_atomically(const std::string &path, const std::string &bytes);
void write_file_atomically(const std::string &path, const void *data, size_t size);

}  // namespace seaopt::convert
