// safetensors reader (https://github.com/huggingface/safetensors; anchors.md E5).
//
// Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
// {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data buffer; offsets are relative to the buffer. Nothing is trusted: the header length
// is capped (100 MB, as the reference implementation), the JSON is parsed by a SAX handler that
// refuses duplicate keys and keeps no DOM, every size is overflow checked, and every tensor's bytes
// must lie inside the buffer without overlapping another's. Problems throw
// seaopt::Error(SEAOPT_ERR_MODEL_FORMAT) ("model.safetensors: ..."); a valid file with a dtype
// seaopt does not convert throws SEAOPT_ERR_UNSUPPORTED.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "weights-convert/byte_source.h"
#include "weights-convert/dtype.h"

namespace seaopt::convert {

inline constexpr uint64_t kSafetensorsMaxHeader = 100000000;  // safetensors' MAX_HEADER_SIZE
inline constexpr size_t kSafetensorsMaxRank = 8;

struct SafetensorsTensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;  // row-major, outermost first (PyTorch order)
    uint64_t offset = 0;          // absolute offset of the first byte in the file
    uint64_t n_bytes = 0;
    std::string unconvertible;    // with keep_unconvertible: "dtype I64" for a dtype seaopt does not convert
};

// Reads and validates the header of a safetensors file. Tensors are in header order.
// keep_unconvertible: a tensor of a known dtype seaopt does not convert (I64, ...) is listed with
// `unconvertible` set (and dtype meaningless) instead of refusing the file; a SEA checkpoint has
// an int64 counter it does not need (sea.md §5.1).
std::vector<SafetensorsTensor> read_safetensors_header(const ByteSource &src, bool keep_unconvertible = false);

}  // namespace seaopt::convert
